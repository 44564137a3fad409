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
- *Greedy steps start mid-model.* A pass of a greedy search (``engine.GreedySearch``)
  starts at the block of the layer whose substitution changed since the previous pass,
  from that block's input as the previous pass recorded it (:meth:`Shortcut.resume_blocks`);
  this needs the model's blocks in an ``nn.Sequential`` with one site per block, in order.
- *Shared work once.* Everything before the first site (``layers[0]``) is the same at
  every quadrature node, so the patch embedding, the blocks before the first site's block
  and, when the first site is that block's MLP activation, its attention branch and first
  MLP layer run once per example; the batch is repeated to ``n_steps`` copies right before
  the first site. The first time a plan is used it checks that the model's input rows
  really are such copies (a ``forward_func`` that adds noise per row keeps the generic
  path).
- *In-place writes.* A site whose module neither keeps its output for the backward pass
  nor returns a view of its input (``nn.GELU``, ``nn.Linear``) gets the substituted
  values written into its output directly instead of into a copy. Where the site is an
  MLP's activation, whose output only the next linear layer reads, the backward pass
  also blocks the gradient at the token set in place instead of in a copy of the
  gradient.

A plan is made once per ``attribute()`` call from the modules that the clean pass saw
run: it applies only when exactly one known model ran, once, and every site is inside
it. Anything else (another model, a wrapper that calls the model twice, a site outside
it) keeps the generic path. :func:`generic_only` turns the shortcuts off, which the tests
use to check that both paths give the same paths and scores.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from timm.layers import Mlp as TimmMlp
from timm.models.vision_transformer import Block as TimmBlock
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from torch import Tensor, nn
from torch.nn import Module
from torchvision.models.vision_transformer import EncoderBlock as TorchvisionBlock
from torchvision.models.vision_transformer import MLPBlock as TorchvisionMlp
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionVisionTransformer

from captum_neuronpath._utils.sites import ModuleInput
from captum_neuronpath._utils.tokens import Positions

_enabled = True

#: Sites whose output may be overwritten in place: their backward does not need their
#: output and their output is a fresh tensor, not a view of their input.
_IN_PLACE_TYPES = (nn.GELU, nn.Linear)


@dataclass
class SharedWork:
    """Where the quadrature nodes' common work starts and where the batch is repeated."""

    start: Module  # its input is the model's first batch-first tensor: deduplicated there
    block: Module  # the block holding layers[0]: repeated there
    repeat: Callable[[Tensor, int], Tensor]  # block's forward on one copy, returning n copies
    verified: bool = False  # whether a pass has seen the input rows repeat


@dataclass
class Shortcut:
    """What the substituted pass may do differently for one model."""

    forwards: Dict[Module, Callable] = field(default_factory=dict)  # replacement forward per module, every pass
    in_place: FrozenSet[int] = frozenset()  # indices of sites written in place
    own_gradient: FrozenSet[int] = frozenset()  # in-place sites whose gradient arrives in a tensor of its own
    shared: Optional[SharedWork] = None
    blocks: Optional[Module] = None  # the model's nn.Sequential of blocks, where a pass can start mid-model
    site_blocks: List[int] = field(default_factory=list)  # the block of each site, increasing

    def resume_blocks(self, resume) -> Callable[[Tensor], Tensor]:
        """A forward of :attr:`blocks` for a pass of a greedy search (``engine.Resume``).

        It starts at the block of site ``resume.start`` from ``resume.block_input`` (or at
        the first block), and records the input of the block of site ``resume.keep``.
        """
        blocks = list(self.blocks)
        resumed = resume.start is not None and resume.block_input is not None
        first = self.site_blocks[resume.start] if resumed else 0
        keep = self.site_blocks[resume.keep] if resume.keep is not None else None

        def forward(x: Tensor) -> Tensor:
            hidden = resume.block_input if resumed else x
            resume.block_input = None  # only what the next pass starts from stays
            for index in range(first, len(blocks)):
                if index == keep:
                    resume.block_input = hidden
                hidden = blocks[index](hidden)
            return hidden

        return forward

    def pass_forwards(self, n_nodes: int, batch_size: int, first_site: int) -> Dict[Module, Callable]:
        """The replacement forwards of one pass over ``n_nodes`` copies of a ``batch_size`` batch."""
        forwards = dict(self.forwards)
        shared = self.shared
        if shared is None or n_nodes == 1 or first_site != 0:
            return forwards
        start_forward = forwards.get(shared.start, type(shared.start).forward.__get__(shared.start))
        block_forward = forwards.get(shared.block, type(shared.block).forward.__get__(shared.block))

        def start(x: Tensor, *args, **kwargs) -> Tensor:
            if x.shape[0] == n_nodes * batch_size and self._repeats(x, n_nodes, batch_size):
                x = x[:batch_size]
                if shared.start is shared.block:
                    return shared.repeat(x, n_nodes)
            return start_forward(x, *args, **kwargs)

        def block(x: Tensor, *args, **kwargs) -> Tensor:
            if x.shape[0] == batch_size and not args and not kwargs:  # one copy: the start deduplicated it
                return shared.repeat(x, n_nodes)
            return block_forward(x, *args, **kwargs)

        forwards[shared.start] = start
        if shared.block is not shared.start:
            forwards[shared.block] = block
        return forwards

    def _repeats(self, x: Tensor, n_nodes: int, batch_size: int) -> bool:
        """Whether ``x`` is ``n_nodes`` copies of its first rows; checked once per plan (a host sync)."""
        shared = self.shared
        if not shared.verified:
            first = x[:batch_size]
            if not torch.equal(x.view(n_nodes, *first.shape), first.unsqueeze(0).expand(n_nodes, *first.shape)):
                self.shared = None  # this forward_func does not give every node the same input
                return False
            shared.verified = True
        return True


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
    activations = {id(act) for act in map(_mlp_activation, _blocks(root)) if act is not None}
    shortcut = Shortcut(
        in_place=frozenset(
            i for i, layer in enumerate(layers) if not isinstance(layer, ModuleInput) and type(layer) in _IN_PLACE_TYPES
        ),
        own_gradient=frozenset(
            i for i, layer in enumerate(layers) if type(layer) is nn.GELU and id(layer) in activations
        ),
    )
    readout = _readout_forward(root, layers, positions)
    if readout is not None:
        shortcut.forwards[readout[0]] = readout[1]
    container = _blocks(root)
    blocks = list(container)
    owners = [next((i for i, b in enumerate(blocks) if any(m is site for m in b.modules())), -1) for site in modules]
    if owners[0] >= 0:
        block = blocks[owners[0]]
        shortcut.shared = _shared_work(root, blocks, block, layers[0], positions[0], shortcut.forwards)
        resumable = type(container) is nn.Sequential and "forward" not in container.__dict__
        if resumable and not getattr(root, "grad_checkpointing", False):
            if all(a < b for a, b in zip(owners, owners[1:])):  # one site per block, in order
                shortcut.blocks, shortcut.site_blocks = container, owners
    return shortcut


def _blocks(root: Module) -> Module:
    """The container of ``root``'s blocks."""
    return root.blocks if isinstance(root, TimmVisionTransformer) else root.encoder.layers


def _span(positions: Positions) -> Optional[Tuple[int, int]]:
    """``(start, stop)`` where ``positions`` is a run of consecutive tokens, else ``None``."""
    if isinstance(positions, list) and positions == list(range(positions[0], positions[0] + len(positions))):
        return positions[0], positions[0] + len(positions)
    return None


def _shared_work(
    root: Module, blocks: List[Module], block: Module, first: Module, positions: Positions,
    replaced: Dict[Module, Callable],
) -> Optional[SharedWork]:  # fmt: skip
    """Where the nodes' common work ends for a first site ``first`` in ``block`` at ``positions``, or ``None``."""
    if block in replaced or "forward" in block.__dict__:
        return None
    if isinstance(root, TimmVisionTransformer):
        if type(block) is not TimmBlock or getattr(root, "grad_checkpointing", False):
            return None
        start = root.patch_embed
    elif type(block) is TorchvisionBlock:
        start = blocks[0]
    else:
        return None
    if "forward" in start.__dict__:
        return None
    if first is _mlp_activation(block):
        return SharedWork(start, block, _repeat_at_activation(_block_parts(block), _span(positions)))
    original = type(block).forward

    def repeat(x: Tensor, n: int) -> Tensor:  # a first site elsewhere in its block: repeat at its input
        return original(block, x.repeat(n, *[1] * (x.dim() - 1)))

    return SharedWork(start, block, repeat)


def _mlp_activation(block: Module) -> Optional[Module]:
    """The activation of a standard MLP (timm's ``Mlp``, torchvision's ``MLPBlock``): only its next layer reads it."""
    mlp = getattr(block, "mlp", None)
    if type(mlp) is TimmMlp:
        return mlp.act
    if type(mlp) is TorchvisionMlp:
        return mlp[1]
    return None


@dataclass
class _BlockParts:
    """A pre-norm block with an MLP, ``y = x + attention(x)``, ``out = y + contract(act(expand(y)))``."""

    attend: Callable[[Tensor], Tensor]  # x -> y
    expand: Callable[[Tensor], Tensor]  # y -> the MLP's first layer's output
    act: Module  # the MLP's activation: the site
    contract: Callable[[Tensor], Tensor]  # the activation's output -> the branch's output, token by token
    add: Callable[[Tensor, Tensor], Tensor]  # (y, branch output) -> block output


def _block_parts(block: Module) -> _BlockParts:
    mlp = block.mlp
    if type(block) is TimmBlock:
        return _BlockParts(
            attend=lambda x: x + block.drop_path1(block.ls1(block.attn(block.norm1(x)))),
            expand=lambda y: mlp.fc1(block.norm2(y)),
            act=mlp.act,
            contract=lambda a: mlp.drop2(mlp.fc2(mlp.norm(mlp.drop1(a)))),
            add=lambda y, branch: y + block.drop_path2(block.ls2(branch)),
        )
    return _BlockParts(
        attend=lambda x: block.dropout(block.self_attention(*[block.ln_1(x)] * 3, need_weights=False)[0]) + x,
        expand=lambda y: mlp[0](block.ln_2(y)),
        act=mlp[1],
        contract=lambda a: mlp[4](mlp[3](mlp[2](a))),
        add=lambda y, branch: y + branch,
    )


def _repeat_at_activation(parts: _BlockParts, span: Optional[Tuple[int, int]]) -> Callable[[Tensor, int], Tensor]:
    """The block on one copy up to its MLP's first layer, then on ``n`` copies.

    With the site's token set a span ``[start, stop)``, the tokens outside it hold the
    clean activation at every node, so they finish the block once, and only the span
    runs the rest of the MLP per node. The site then sees its first ``stop`` tokens
    only, which hold the token set.
    """

    def repeat(x: Tensor, n: int) -> Tensor:
        y = parts.attend(x)
        hidden = parts.expand(y)
        if span is None:
            substituted = parts.act(hidden.repeat(n, 1, 1))  # the site's hook writes each node's values
            return parts.add(y.repeat(n, 1, 1), parts.contract(substituted))
        start, stop = span
        substituted = parts.act(hidden[:, :stop].repeat(n, 1, 1))[:, start:stop]
        out = parts.add(y, parts.contract(parts.act.forward(hidden))).repeat(n, 1, 1)  # .forward: no hooks
        out[:, start:stop] = parts.add(y[:, start:stop].repeat(n, 1, 1), parts.contract(substituted))
        return out

    return repeat


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


def write_in_place(output: Tensor, positions: Positions, values: Tensor, own_gradient: bool) -> Tensor:
    """``write_tokens`` into ``output`` itself, for a site that the plan allows it.

    ``own_gradient``: the gradient that reaches ``output`` is a tensor that nothing else
    reads, so the backward pass may block the token set in it in place.
    """
    if positions is None:
        return values[:, 0].to(output.dtype)
    values = values.to(output.dtype)
    span = _span(positions)
    if isinstance(positions, Tensor):
        rows = torch.arange(output.shape[0], device=output.device)
        output[rows, positions.to(output.device)] = values[:, 0]
    elif span is not None:
        if own_gradient:
            return _OverwriteSpan.apply(output, values, *span)
        output[:, span[0] : span[1]] = values  # a view: no indexing
    else:
        output[:, positions] = values
    return output


class _OverwriteSpan(torch.autograd.Function):
    """``output[:, start:stop] = values`` in place; the backward zeroes that span of the gradient in place.

    Autograd's own in-place write copies the whole gradient to zero the span in the copy.
    """

    @staticmethod
    def forward(ctx, output: Tensor, values: Tensor, start: int, stop: int) -> Tensor:
        ctx.span = (start, stop)
        ctx.mark_dirty(output)
        output[:, start:stop] = values
        return output

    @staticmethod
    def backward(ctx, gradient: Tensor):
        start, stop = ctx.span
        if not gradient.is_contiguous():  # e.g. an expanded tensor: not ours to write
            gradient = gradient.contiguous()
        values_gradient = gradient[:, start:stop].clone()
        gradient[:, start:stop] = 0
        return gradient, values_gradient, None, None


def observed_calls() -> Tuple[Dict[Module, int], Callable[[Module], None]]:
    """A dict of module -> number of calls, and the observer that fills it."""
    called: Dict[Module, int] = {}

    def observe(module: Module) -> None:
        called[module] = called.get(module, 0) + 1

    return called, observe
