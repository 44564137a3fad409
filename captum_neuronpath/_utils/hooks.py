"""The one place where the library puts hooks, replacement ``forward`` methods (the fast plans) and call
observers on a model, and removes them on every exit, so a model leaves an attribution as it came in."""

from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import torch
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
def site_hooks(
    layers: Sequence[Module],
    functions: Mapping[int, SiteFunction],
    forwards: Optional[Mapping[Module, Callable]] = None,
    observe: Optional[Callable[[Module], None]] = None,
) -> Iterator[None]:
    """Within the block, ``functions[i]`` sees (and may replace) the value of site ``layers[i]``, a single
    tensor; ``forwards`` replace modules' ``forward``; ``observe`` sees every module called, before it runs."""
    handles: List[Any] = []
    replaced: Dict[Module, Any] = {}
    try:
        if observe is not None:
            handles.append(torch.nn.modules.module.register_module_forward_pre_hook(lambda m, args: observe(m)))
        for module, forward in (forwards or {}).items():
            replaced[module] = module.__dict__.get("forward")  # None: the class's forward
            module.forward = forward
        for index, function in functions.items():
            layer = layers[index]
            if isinstance(layer, ModuleInput):
                handles.append(layer.module.register_forward_pre_hook(partial(_input_hook, index, layer, function)))
            else:
                handles.append(layer.register_forward_hook(partial(_output_hook, index, layer, function)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, previous in replaced.items():
            del module.forward
            if previous is not None:
                module.forward = previous


def _output_hook(index: int, layer: Module, function: SiteFunction, module: Module, args: Any, output: Any):
    """A forward hook, once ``partial`` binds the site: ``function`` of the module's output."""
    if not isinstance(output, Tensor):
        raise TypeError(f"{describe_layer(index, layer)} must output a single tensor, got {type(output).__name__}")
    return function(output)


def _input_hook(index: int, layer: Module, function: SiteFunction, module: Module, args: Any) -> Optional[tuple]:
    """A forward pre-hook, once ``partial`` binds the site: ``function`` of the module's first input."""
    if not args or not isinstance(args[0], Tensor):
        raise TypeError(f"{describe_layer(index, layer)} must receive a tensor as its first positional input")
    replaced = function(args[0])
    return None if replaced is None else (replaced,) + tuple(args[1:])
