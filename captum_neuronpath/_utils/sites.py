"""Neuron sites: a module's output, or the input of one (:class:`ModuleInput`)."""

from typing import Any

from torch.nn import Module


class ModuleInput(Module):
    r"""
    The input of ``module`` as a neuron site: pass it in ``layers`` wherever a module's
    output would go. The model never calls it; hooks go on ``module`` itself, and only
    its first positional input is read and replaced.

    Args:

        module (torch.nn.Module): The module whose first input holds the neurons, e.g. a
                    gated MLP's down projection.

    Examples::

        >>> import torch, captum_neuronpath as cnp
        >>> down = torch.nn.Linear(8, 4)
        >>> site = cnp.ModuleInput(down)
        >>> site.module is down
        True
    """

    def __init__(self, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleInput needs a torch.nn.Module, got {type(module).__name__}")
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ModuleInput names a neuron site for the attribution classes; it is not a layer to call")

    def extra_repr(self) -> str:
        return "the input of this module"


def module_of(layer: Module) -> Module:
    """The module whose hooks read a site: ``layer`` itself, or the module of a :class:`ModuleInput`."""
    return layer.module if isinstance(layer, ModuleInput) else layer
