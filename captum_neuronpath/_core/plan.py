"""Fast plans of the substituted pass: the same numbers, less work, for models whose family
describes itself (``captum_neuronpath/_models/``).

The generic substituted pass runs the whole model at every quadrature node and writes
the substituted values into a copy of each site's output. A model family can tell the
engine, through a :class:`Layout`, where its blocks are and how one block computes; the
plan made from it does less, and nothing else changes:

- *Readout-only last block.* After the last block only the tokens the head reads
  (``r`` leading positions, e.g. the class token) reach the output, so the last block
  runs its queries and everything after them for those tokens only (the family gives
  that forward); it applies when every site inside the last block is in the modules the
  family names, at positions below ``r``.
- *Greedy steps start mid-model.* A pass of a greedy search (``engine.GreedySearch``)
  starts at the block of the layer whose substitution changed since the previous pass,
  from that block's input as the previous pass recorded it (:meth:`Plan.resume_blocks`);
  this needs the blocks in an ``nn.Sequential`` with one site per block, in order.
- *Shared work once.* Everything before the first site is the same at every quadrature
  node, so the model runs it once per example and repeats the batch to ``n_steps`` copies
  right before the first site (when that site is its block's MLP activation, only the
  token set runs the rest of that MLP per node). The first time a plan is used it checks
  that the model's input rows really are such copies (a ``forward_func`` that adds noise
  per row keeps the generic path).
- *In-place writes.* A site whose module neither keeps its output for the backward pass
  nor returns a view of its input (``nn.GELU``, ``nn.Linear``) gets the substituted
  values written into its output directly instead of into a copy.

A plan is made once per ``attribute()`` call from the modules that the clean pass saw
run: it applies only when exactly one model with a layout ran, once, in evaluation mode,
and every site is inside it. Anything else keeps the generic path, and so does every
attribution object whose ``family_plan`` attribute is ``False``.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import Module

from captum_neuronpath._utils.sites import module_of
from captum_neuronpath._utils.tokens import Positions, span

#: Sites whose output may be overwritten in place: their backward does not need their
#: output and their output is a fresh tensor, not a view of their input.
_IN_PLACE_TYPES = (nn.GELU, nn.Linear)


@dataclass
class BlockParts:
    """A pre-norm block, ``y = x + attend(x)``, ``out = add(y, contract(act(expand(y))))``.

    ``act`` is ``None`` (and so are the functions) where the block's MLP is not one whose
    activation only its next linear layer reads.
    """

    act: Optional[Module] = None  # the MLP's activation: only ``contract`` reads its output
    attend: Optional[Callable[[Tensor], Tensor]] = None  # x -> y
    expand: Optional[Callable[[Tensor], Tensor]] = None  # y -> the MLP's first layer's output
    contract: Optional[Callable[[Tensor], Tensor]] = None  # the activation's output -> the branch's output
    add: Optional[Callable[[Tensor, Tensor], Tensor]] = None  # (y, branch output) -> block output


@dataclass
class Layout:
    """What a model family tells the engine about one model (its ``root``)."""

    root: Module
    blocks: Module  # the container of the blocks, in the order they run
    start: Module  # its first input is the model's batch: the nodes' shared work starts there
    #: A block's parts where the block is exactly of the family's type, else ``None`` (no
    #: shared work starts in it).
    parts: Callable[[Module], Optional[BlockParts]]
    #: ``(last block, the modules in it a site may be in, r -> its readout-only forward)``, or ``None``.
    readout: Optional[Tuple[Module, Sequence[Module], Callable[[int], Callable]]] = None
    num_readout: int = 1  # the leading tokens the head reads
    checkpointing: bool = False  # gradient checkpointing: the blocks must run as the model runs them


@dataclass
class SharedWork:
    """Where the quadrature nodes' common work starts and where the batch is repeated."""

    start: Module  # its input is the model's first batch-first tensor: deduplicated there
    block: Module  # the block holding layers[0]: repeated there
    repeat: Callable[[Tensor, int], Tensor]  # block's forward on one copy, returning n copies
    verified: bool = False  # whether a pass has seen the input rows repeat


@dataclass
class Plan:
    """What the substituted pass may do differently for one model."""

    forwards: Dict[Module, Callable] = field(default_factory=dict)  # replacement forward per module, every pass
    in_place: FrozenSet[int] = frozenset()  # indices of sites written in place
    shared: Optional[SharedWork] = None
    blocks: Optional[Module] = None  # the model's nn.Sequential of blocks, where a pass can start mid-model
    site_blocks: List[int] = field(default_factory=list)  # the block of each site, increasing
    #: Blocks (by index) whose site is their MLP's activation: a pass carrying tangents may
    #: start at their MLP's input ``y``, past the attention, whose work it then skips.
    mlp_starts: Dict[int, BlockParts] = field(default_factory=dict)
    readout_tokens: Optional[int] = None  # where the last block runs readout-only: the tokens it keeps

    def finish_block(self, index: int, y: Tensor) -> Tensor:
        """Block ``index``'s output from its MLP's input ``y`` (readout-only in the last block)."""
        parts = self.mlp_starts[index]
        if index == len(self.blocks) - 1 and self.readout_tokens is not None:
            y = y[:, : self.readout_tokens]
        return parts.add(y, parts.contract(parts.act(parts.expand(y))))

    def resume_forwards(self, resume, batch_size: int, forwards: Dict[Module, Callable]) -> Dict[Module, Callable]:
        """The replacement forwards of a pass of a greedy search (``engine.Resume``), over those of ``forwards``.

        :meth:`resume_blocks`; and where the pass starts mid-model, the work before the
        blocks on one copy of the ``batch_size`` batch, since the blocks ignore it.
        """
        replaced = {self.blocks: self.resume_blocks(resume)}
        start = self.shared.start if self.shared is not None else None
        resumed = resume.start is not None and resume.block_input is not None
        if resumed and start is not None and not any(m is start for m in self.blocks.modules()):
            start_forward = _forward_of(start, forwards)
            replaced[start] = lambda x, *args, **kwargs: start_forward(x[:batch_size], *args, **kwargs)
        return replaced

    def resume_blocks(self, resume) -> Callable[[Tensor], Tensor]:
        """A forward of :attr:`blocks` for a pass of a greedy search (``engine.Resume``).

        It starts at the block of site ``resume.start`` from ``resume.block_input``, that
        block's input or, where ``resume.past_attention``, its MLP's input (or at the first
        block), and records the input of the block of site ``resume.keep``: with its
        autograd graph, or detached where ``resume.carry`` and nothing is recorded yet (the
        engine moves a carried block input on itself).
        """
        blocks = list(self.blocks)
        resumed = resume.start is not None and resume.block_input is not None
        first = self.site_blocks[resume.start] if resumed else 0
        keep = self.site_blocks[resume.keep] if resume.keep is not None else None
        record = not resume.carry or resume.block_input is None

        def forward(x: Tensor) -> Tensor:
            hidden = resume.block_input if resumed else x
            if not resume.carry:
                resume.block_input = None  # only what the next pass starts from stays
            start = first
            if resumed and resume.past_attention:
                hidden, start = self.finish_block(first, hidden), first + 1
            for index in range(start, len(blocks)):
                if index == keep and record:
                    resume.block_input = hidden.detach() if resume.carry else hidden
                hidden = blocks[index](hidden)
            return hidden

        return forward

    def pass_forwards(self, n_nodes: int, batch_size: int, first_site: int) -> Dict[Module, Callable]:
        """The replacement forwards of one pass over ``n_nodes`` copies of a ``batch_size`` batch."""
        forwards = dict(self.forwards)
        shared = self.shared
        if shared is None or n_nodes == 1 or first_site != 0:
            return forwards
        start_forward, block_forward = _forward_of(shared.start, forwards), _forward_of(shared.block, forwards)

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


def _forward_of(module: Module, forwards: Dict[Module, Callable]) -> Callable:
    """``module``'s forward in a pass: its replacement in ``forwards``, else its class's."""
    return forwards.get(module, type(module).forward.__get__(module))


LayoutOf = Callable[[Module], Optional[Layout]]


def make_plan(
    called: Dict[Module, int], layers: Sequence[Module], positions: List[Positions], layout_of: Optional[LayoutOf]
) -> Optional[Plan]:
    """The plan for the model that ran in the clean pass (``called``: module -> calls), if any.

    ``layout_of`` gives a module's :class:`Layout` where its family has one (``None``: the
    generic path).
    """
    if layout_of is None:
        return None
    layouts = [layout for layout in map(layout_of, called) if layout is not None]
    if len(layouts) != 1 or called[layouts[0].root] != 1:
        return None
    layout = layouts[0]
    root = layout.root
    if any(m.training for m in root.modules()):
        return None
    inside = {id(m) for m in root.modules()}
    modules = [module_of(layer) for layer in layers]
    if not all(id(m) in inside for m in modules):
        return None
    blocks = list(layout.blocks)
    block_parts = [layout.parts(block) for block in blocks]
    in_place = (i for i, layer in enumerate(layers) if layer is module_of(layer) and type(layer) in _IN_PLACE_TYPES)
    plan = Plan(in_place=frozenset(in_place))
    readout = _readout_forward(layout, layers, positions)
    if readout is not None:
        plan.forwards[readout[0]] = readout[1]
        plan.readout_tokens = layout.num_readout
    owners = [next((i for i, b in enumerate(blocks) if any(m is site for m in b.modules())), -1) for site in modules]
    if owners[0] >= 0:
        block = blocks[owners[0]]
        plan.shared = _shared_work(layout, block, block_parts[owners[0]], layers[0], positions[0], plan.forwards)
        container = layout.blocks
        resumable = type(container) is nn.Sequential and "forward" not in container.__dict__
        if resumable and not layout.checkpointing and all(a < b for a, b in zip(owners, owners[1:])):
            plan.blocks, plan.site_blocks = container, owners  # one site per block, in order
            for layer, owner in zip(layers, owners):
                parts = block_parts[owner]
                if parts is not None and parts.act is not None and layer is parts.act:
                    plan.mlp_starts[owner] = parts
    return plan


def _shared_work(
    layout: Layout, block: Module, parts: Optional[BlockParts], first: Module, positions: Positions,
    replaced: Dict[Module, Callable],
) -> Optional[SharedWork]:  # fmt: skip
    """Where the nodes' common work ends for a first site ``first`` in ``block`` at ``positions``, or ``None``."""
    if parts is None or layout.checkpointing or block in replaced or "forward" in block.__dict__:
        return None
    if "forward" in layout.start.__dict__:
        return None
    if parts.act is not None and first is parts.act:
        return SharedWork(layout.start, block, _repeat_at_activation(parts, span(positions)))
    original = type(block).forward

    def repeat(x: Tensor, n: int) -> Tensor:  # a first site elsewhere in its block: repeat at its input
        return original(block, x.repeat(n, *[1] * (x.dim() - 1)))

    return SharedWork(layout.start, block, repeat)


def _repeat_at_activation(parts: BlockParts, span: Optional[Tuple[int, int]]) -> Callable[[Tensor, int], Tensor]:
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


def _readout_forward(layout: Layout, layers: Sequence[Module], positions: List[Positions]):
    """``(last block, its readout-only forward)``, or ``None`` where it does not apply."""
    if layout.readout is None or layout.checkpointing:
        return None
    block, allowed, make = layout.readout
    if "forward" in block.__dict__:  # someone already replaced this block's forward
        return None
    in_block = {id(m) for m in block.modules()}
    allowed_ids = {id(m) for a in allowed for m in a.modules()}
    for layer, pos in zip(layers, positions):
        module = module_of(layer)
        if id(module) not in in_block:
            continue
        if id(module) not in allowed_ids or pos is None or int(max(pos)) >= layout.num_readout:
            return None
    return block, make(layout.num_readout)
