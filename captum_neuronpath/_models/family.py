"""What the library knows of one family of vision models, in one record."""

from dataclasses import dataclass
from typing import Callable, List, Optional, Union

from torch.nn import Module

from captum_neuronpath._core.plan import BlockParts, Layout


@dataclass(frozen=True)
class VisionFamily:
    """One family of vision models: where its neurons are, what its head reads, how it runs.

    ``network`` finds the family's network in a model (the model itself, or the backbone
    or vision tower of a model with a head); the sites are that network's, the readout is
    the model's own (its head decides).
    """

    network: Callable[[object], Optional[Module]]
    mlp_sites: Callable[[Module], List[Module]]
    readout: Callable[[Module], Union[int, slice]]
    attention_sites: Optional[Callable[[Module], List[Module]]] = None  # None: not supported
    layout: Optional[Callable[[Module], Optional[Layout]]] = None  # the fast plan's layout, for the network


def attribute_at(obj: object, path: str) -> Optional[object]:
    """``obj.a.b`` for the dotted path ``"a.b"``, or ``None`` where an attribute is missing."""
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def instance_of(cls: type) -> Callable[[object], Optional[Module]]:
    """``VisionFamily.network`` of a family whose network is the model itself, an instance of ``cls``."""
    return lambda model: model if isinstance(model, cls) else None


def exact_block_parts(
    block_type: type, mlp_type: type, parts: Callable[[Module, Module], BlockParts]
) -> Callable[[Module], Optional[BlockParts]]:
    """``Layout.parts``: ``parts(block, block.mlp)``, empty parts for another MLP, ``None`` for another block."""

    def block_parts(block: Module) -> Optional[BlockParts]:
        if type(block) is not block_type:
            return None
        return parts(block, block.mlp) if type(block.mlp) is mlp_type else BlockParts()

    return block_parts
