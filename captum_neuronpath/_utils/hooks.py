"""The one place where the library puts hooks, replacement ``forward`` methods (the fast plans) and call
observers on a model, and removes them on every exit, so a model leaves an attribution as it came in."""

from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence
from unittest.mock import patch

from torch import Tensor
from torch.nn import Module
from torch.nn.modules.module import register_module_forward_pre_hook

from captum_neuronpath._utils.sites import ModuleInput, module_of

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
    with ExitStack() as stack:  # unwound on every exit, the hooks first
        if observe is not None:
            stack.enter_context(register_module_forward_pre_hook(lambda module, args: observe(module)))
        for module, forward in (forwards or {}).items():
            stack.enter_context(patch.object(module, "forward", forward))  # the previous forward again on exit
        for index, function in functions.items():
            module = module_of(layers[index])  # a ModuleInput's module: a pre-hook reads its input
            register = module.register_forward_hook if module is layers[index] else module.register_forward_pre_hook
            stack.enter_context(register(partial(_site_hook, describe_layer(index, layers[index]), function)))
        yield


def _site_hook(where: str, function: SiteFunction, module: Module, args: tuple, *output: Any) -> Any:
    """A site's forward hook (called with the module's ``output``) or pre-hook (without), once ``partial`` binds
    the site: ``function`` of the module's output, or of its first positional input."""
    value = output[0] if output else next(iter(args), None)
    if not isinstance(value, Tensor):
        what = "output a single tensor" if output else "receive a tensor as its first positional input"
        raise TypeError(f"{where} must {what}, got {type(value).__name__}")
    replaced = function(value)
    return replaced if output or replaced is None else (replaced, *args[1:])
