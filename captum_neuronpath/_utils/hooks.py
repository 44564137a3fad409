"""The one place where the library puts hooks on a model.

Every hook the library registers goes through :func:`site_hooks`, which registers them
inside its ``try`` and removes them on every exit, errors included, so a model always
leaves an attribution exactly as it came in.
"""

from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence

from torch import Tensor
from torch.nn import Module

from captum_neuronpath._utils.sites import ModuleInput

#: Called with a site's value (a module's output, or the first input of a
#: :class:`ModuleInput`'s module); returns a replacement value, or ``None`` to keep it.
SiteFunction = Callable[[Tensor], Optional[Tensor]]


def describe_layer(index: int, layer: Module) -> str:
    """``layers[i] (Type)`` for error messages."""
    if isinstance(layer, ModuleInput):
        return f"layers[{index}] (the input of {type(layer.module).__name__})"
    return f"layers[{index}] ({type(layer).__name__})"


@contextmanager
def site_hooks(layers: Sequence[Module], functions: Mapping[int, SiteFunction]) -> Iterator[None]:
    """Within the block, ``functions[i]`` sees (and may replace) the value of site ``layers[i]``.

    A site must hold a single tensor; anything else raises a ``TypeError`` that names it.
    """
    handles: List[Any] = []
    try:
        for index, function in functions.items():
            layer = layers[index]
            if isinstance(layer, ModuleInput):
                handles.append(layer.module.register_forward_pre_hook(_input_hook(index, layer, function)))
            else:
                handles.append(layer.register_forward_hook(_output_hook(index, layer, function)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _output_hook(index: int, layer: Module, function: SiteFunction) -> Callable:
    def hook(module: Module, args: Any, output: Any) -> Optional[Tensor]:
        if not isinstance(output, Tensor):
            raise TypeError(f"{describe_layer(index, layer)} must output a single tensor, got {type(output).__name__}")
        return function(output)

    return hook


def _input_hook(index: int, layer: Module, function: SiteFunction) -> Callable:
    def hook(module: Module, args: Any) -> Optional[tuple]:
        if not args or not isinstance(args[0], Tensor):
            raise TypeError(f"{describe_layer(index, layer)} must receive a tensor as its first positional input")
        replaced = function(args[0])
        return None if replaced is None else (replaced,) + tuple(args[1:])

    return hook
