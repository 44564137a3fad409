"""What the library knows of one family of vision models, in one record."""

import contextlib
from dataclasses import dataclass
from operator import attrgetter
from typing import Callable, Iterable, Optional, Tuple, Union

from torch.nn import Module

from captum_neuronpath._core.plan import BlockParts, Layout


@dataclass(frozen=True)
class VisionFamily:
    """One family of vision models: where its neurons are, what its head reads, how it runs.

    A model of one of ``classes`` holds the family's network: the model itself, or its
    attribute ``inner`` where it has one (the backbone or vision tower of a model with a
    head). The sites are the network's, one per block; the readout is the model's own (its
    head decides).
    """

    classes: Tuple[type, ...]
    blocks: Callable[[Module], Iterable[Module]]  # the network's blocks, input side first
    mlp: Callable[[Module], Module]  # a block's MLP neuron site
    readout: Callable[[Module], Union[int, slice]]
    attention: Optional[Callable[[Module], Module]] = None  # a block's attention output; None: not supported
    layout: Optional[Callable[[Module], Optional[Layout]]] = None  # the fast plan's layout, for the network
    inner: str = ""

    def network(self, model: object) -> Optional[Module]:
        """The family's network in ``model``, or ``None`` where ``model`` is not of the family."""
        if not isinstance(model, self.classes):
            return None
        return getattr(model, self.inner, model) if self.inner else model


def attribute_at(obj: object, *paths: str) -> Optional[object]:
    """``obj.a.b`` for the first dotted path ``"a.b"`` of ``paths`` that ``obj`` has, else ``None``."""
    for path in paths:
        with contextlib.suppress(AttributeError):
            return attrgetter(path)(obj)
    return None


def exact_block_parts(
    block_type: type, mlp_type: type, parts: Callable[[Module, Module], BlockParts]
) -> Callable[[Module], Optional[BlockParts]]:
    """``Layout.parts``: ``parts(block, block.mlp)``, empty parts for another MLP, ``None`` for another block."""

    def block_parts(block: Module) -> Optional[BlockParts]:
        if type(block) is not block_type:
            return None
        return parts(block, block.mlp) if type(block.mlp) is mlp_type else BlockParts()

    return block_parts
