"""Model-family shortcuts of the substituted pass: the same numbers, less work.

The generic substituted pass runs the whole model at every quadrature node and writes
the substituted values into a copy of each site's output. For the model families the
library knows it does less, and nothing else changes:

- *Readout-only last block.* After the last block only the tokens the head reads
  (``r`` leading positions, e.g. the class token) reach the output, so the last block
  runs its attention queries, the rest of the attention branch, the MLP and everything
  after for those tokens only; the keys and values still come from every token. This
  holds for timm ``VisionTransformer`` with class-token pooling and torchvision
  ``VisionTransformer``, in evaluation mode, when every site inside the last block sits
  in its MLP (or is its attention output) at positions below ``r``.
- *In-place writes.* A site whose module neither keeps its output for the backward pass
  nor returns a view of its input (``nn.GELU``, ``nn.Linear``) gets the substituted
  values written into its output directly instead of into a copy.

A plan is made once per ``attribute()`` call from the modules that the clean pass saw
run: it applies only when exactly one known model ran, once, and every site is inside
it. Anything else (another model, a wrapper that calls the model twice, a site outside
it) keeps the generic path. :func:`generic_only` turns the shortcuts off, which the tests
use to check that both paths give the same paths and scores.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from timm.models.vision_transformer import Block as TimmBlock
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from torch import Tensor, nn
from torch.nn import Module
from torchvision.models.vision_transformer import EncoderBlock as TorchvisionBlock
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionVisionTransformer

from captum_neuronpath._utils.sites import ModuleInput
from captum_neuronpath._utils.tokens import Positions

_enabled = True

#: Sites whose output may be overwritten in place: their backward does not need their
#: output and their output is a fresh tensor, not a view of their input.
_IN_PLACE_TYPES = (nn.GELU, nn.Linear)


@dataclass
class Shortcut:
    """What the substituted pass may do differently for one model."""

    forwards: Dict[Module, Callable] = field(default_factory=dict)  # replacement forward per module
    in_place: FrozenSet[int] = frozenset()  # indices of sites written in place


@contextmanager
def generic_only() -> Iterator[None]:
    """Within the block, every substituted pass takes the generic path."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def enabled() -> bool:
    return _enabled


def plan(called: Dict[Module, int], layers: Sequence[Module], positions: List[Positions]) -> Optional[Shortcut]:
    """The shortcut for the model that ran in the clean pass (``called``: module -> calls), if any."""
    roots = [m for m in called if type(m) in (TimmVisionTransformer, TorchvisionVisionTransformer)]
    if len(roots) != 1 or called[roots[0]] != 1:
        return None
    root = roots[0]
    if root.training or any(m.training for m in root.modules()):
        return None
    inside = {id(m) for m in root.modules()}
    modules = [layer.module if isinstance(layer, ModuleInput) else layer for layer in layers]
    if not all(id(m) in inside for m in modules):
        return None
    shortcut = Shortcut(
        in_place=frozenset(
            i for i, layer in enumerate(layers) if not isinstance(layer, ModuleInput) and type(layer) in _IN_PLACE_TYPES
        )
    )
    readout = _readout_forward(root, layers, positions)
    if readout is not None:
        shortcut.forwards[readout[0]] = readout[1]
    return shortcut


def _readout_forward(root: Module, layers: Sequence[Module], positions: List[Positions]):
    """``(last block, its readout-only forward)``, or ``None`` where it does not apply."""
    if isinstance(root, TimmVisionTransformer):
        if root.attn_pool is not None or root.global_pool != "token" or getattr(root, "grad_checkpointing", False):
            return None
        block = root.blocks[-1]
        if type(block) is not TimmBlock or type(block.attn) is not TimmAttention:
            return None
        allowed = [block.mlp, block.attn.proj]
        make = _timm_block_forward
    else:
        block = root.encoder.layers[-1]
        if type(block) is not TorchvisionBlock or not block.self_attention.batch_first:
            return None
        allowed = [block.mlp, block.dropout]
        make = _torchvision_block_forward
    if "forward" in block.__dict__:  # someone already replaced this block's forward
        return None
    num_readout = 1  # the class token
    in_block = {id(m) for m in block.modules()}
    allowed_ids = {id(m) for a in allowed for m in a.modules()}
    for layer, pos in zip(layers, positions):
        module = layer.module if isinstance(layer, ModuleInput) else layer
        if id(module) not in in_block:
            continue
        if id(module) not in allowed_ids or pos is None or _max_position(pos) >= num_readout:
            return None
    return block, make(block, num_readout)


def _max_position(positions: Positions) -> int:
    return int(positions.max()) if isinstance(positions, Tensor) else max(positions)


def _timm_block_forward(block: Module, r: int) -> Callable:
    """timm's ``Block.forward`` with the queries and everything after them at the first ``r`` tokens."""
    attention = block.attn
    original = type(block).forward

    def forward(x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            return original(block, x, attn_mask=attn_mask, is_causal=is_causal)
        normed = block.norm1(x)
        batch, tokens, _ = normed.shape
        qkv = attention.qkv(normed).reshape(batch, tokens, 3, attention.num_heads, attention.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attention.q_norm(q[:, :, :r]), attention.k_norm(k)
        if attention.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = attention.attn_drop((q * attention.scale @ k.transpose(-2, -1)).softmax(dim=-1)) @ v
        out = attention.norm(out.transpose(1, 2).reshape(batch, r, attention.attn_dim))
        gate = getattr(attention, "gate", None)
        if gate is not None:
            out = out * gate(normed[:, :r]).sigmoid()
        out = attention.proj_drop(attention.proj(out))
        y = x[:, :r] + block.drop_path1(block.ls1(out))
        return y + block.drop_path2(block.ls2(block.mlp(block.norm2(y))))

    return forward


def _torchvision_block_forward(block: Module, r: int) -> Callable:
    """torchvision's ``EncoderBlock.forward`` with the queries and everything after them at the first ``r`` tokens."""

    def forward(input: Tensor) -> Tensor:
        x = block.ln_1(input)
        x, _ = block.self_attention(x[:, :r], x, x, need_weights=False)
        x = block.dropout(x) + input[:, :r]
        return x + block.mlp(block.ln_2(x))

    return forward


def observed_calls() -> Tuple[Dict[Module, int], Callable[[Module], None]]:
    """A dict of module -> number of calls, and the observer that fills it."""
    called: Dict[Module, int] = {}

    def observe(module: Module) -> None:
        called[module] = called.get(module, 0) + 1

    return called, observe
