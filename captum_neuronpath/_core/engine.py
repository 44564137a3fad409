"""The substituted-pass engine that every attribution class stands on.

1. :func:`prepare` checks the arguments every ``attribute()`` shares and runs the *clean
   pass*: one unmodified forward pass that records each layer's activation ``w̄[l]`` at
   the token set.
2. The *substituted pass* runs the model at the quadrature nodes ``alpha_k`` with chosen
   channels of some layers replaced by ``alpha_k`` times their clean value (the layer's
   other channels keep their clean value even though upstream changes would move them;
   layers without a chosen channel run normally), and takes ``sum_k s_k dF/dw`` with
   respect to the replaced values from one backward pass. ``F`` is the forward's output
   selected with Captum's ``target``.
3. Two functions give everything the public classes report:

   - :func:`candidate_scores`: one step of the layer-progressive locator. With the
     path prefix ``p_0 .. p_{t-1}`` scaled and layer ``t`` scaled as a whole, channel
     ``c`` of layer ``t`` scores ``sum_tokens (w̄[t][c] + sum_l w̄[l][p_l]) *
     (IG[t][c] + sum_l IG[l][p_l])``.
   - :func:`joint_score`: the joint attribution score (JAS) of a neuron set,
     ``sum_tokens (sum_S w̄) * (sum_S IG)`` with every neuron of the set scaled at once:
     the paper's product of two sums, which for one neuron is its integrated gradient.

4. :class:`GreedySearch` runs the candidate scores of a whole greedy search and the JAS
   of its path as a chain, so that each pass may start where the previous one changed.

The docs' concepts page derives these from the paper's equations.
"""

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_tensor_into_tuples,
    _run_forward,
)
from torch import Tensor
from torch.autograd import forward_ad
from torch.nn import Module
from torch.nn.attention import SDPBackend, sdpa_kernel

from captum_neuronpath import _models
from captum_neuronpath._core.plan import Plan, make_plan
from captum_neuronpath._utils.hooks import describe_layer, site_hooks
from captum_neuronpath._utils.joint import channel_masks, extended_set_scores, joint_attribution_score, set_sum
from captum_neuronpath._utils.quadrature import Quadrature
from captum_neuronpath._utils.sites import module_of
from captum_neuronpath._utils.tokens import (
    Positions,
    TokenType,
    channel_axis,
    read_tokens,
    repeat_positions,
    token_positions,
    write_tokens,
)
from captum_neuronpath._utils.validation import check_forward_output, check_inputs, format_target, warn_if_training


@dataclass
class CleanPass:
    """What one unmodified forward pass gives."""

    activations: List[Tensor]  # per layer, (B, T_sel, C), detached
    positions: List[Positions]  # per layer, the resolved token set
    output: Tensor  # forward_func's output, before target selection
    plan: Optional[Plan] = None  # what the substituted pass may skip for this model
    called: Dict[Module, int] = field(default_factory=dict)  # every module that ran, in order: number of calls
    num_tokens: List[int] = field(default_factory=list)  # per layer, the positions of its output


@dataclass
class Prepared:
    """Validated ``attribute()`` arguments and the clean pass they lead to."""

    inputs: Tuple[Tensor, ...]
    additional_forward_args: Any
    target: Any
    clean: CleanPass
    dtype: torch.dtype  # the dtype results are computed and returned in (see :func:`compute_dtype`)
    output_independent: bool = False  # set when no substituted site received any gradient

    def nodes(self, rule: Quadrature) -> Tuple[Tensor, Tensor]:
        """The rule's ``(alphas, step sizes)`` as tensors on the activations' device."""
        device = self.clean.activations[0].device
        return tuple(torch.tensor(v, dtype=self.dtype, device=device) for v in (rule.alphas, rule.step_sizes))

    @property
    def batch_size(self) -> int:
        return self.inputs[0].shape[0]

    @property
    def num_channels(self) -> List[int]:
        return [a.shape[-1] for a in self.clean.activations]


def prepare(
    forward_func: Callable,
    layers: Sequence[Module],
    token: TokenType,
    inputs: Any,
    target: Any,
    additional_forward_args: Any,
    check_target: bool = True,
    family_plan: bool = True,
) -> Prepared:
    """Format and check the arguments every ``attribute()`` shares, then run the clean pass.

    ``check_target=False`` is for a method that explains something else than the output;
    ``family_plan=False`` keeps every substituted pass on the generic path.
    """
    if not isinstance(inputs, (Tensor, tuple)):  # Captum's formatting would only assert
        raise TypeError(f"inputs must be a tensor or a tuple of tensors, got {type(inputs).__name__}")
    inputs = _format_tensor_into_tuples(inputs)
    check_inputs(inputs)
    warn_if_training(forward_func, layers, stacklevel=6)  # the caller of attribute()
    additional_forward_args = _format_additional_forward_args(additional_forward_args)
    clean = clean_pass(forward_func, layers, token, inputs, additional_forward_args, family_plan)
    target = format_target(target, clean.output) if check_target else None
    return Prepared(inputs, additional_forward_args, target, clean, clean.activations[0].dtype)


def compute_dtype(inputs: Tuple[Tensor, ...], activations: Sequence[Tensor]) -> torch.dtype:
    """The precision policy: what the library computes in, whatever the model runs in.

    The quadrature nodes and weights, the substituted values, the sums of gradients over
    nodes and chunks, the JAS and the candidate scores are float64 where the inputs or the
    activations are, else float32: a model run in bfloat16 or float16 (under
    ``torch.autocast`` or converted) only runs its own layers in that precision.
    """
    if inputs[0].dtype == torch.float64 or any(a.dtype == torch.float64 for a in activations):
        return torch.float64
    return torch.float32


def clean_pass(
    forward_func: Callable,
    layers: Sequence[Module],
    token: TokenType,
    inputs: Tuple[Tensor, ...],
    additional_forward_args: Any,
    family_plan: bool = True,
) -> CleanPass:
    """Each layer's activation at the token set, from one unmodified forward pass.

    Checks what only a run can show: every layer runs exactly once, in the order given,
    and their outputs share the number of tokens. The model's own errors pass through
    unchanged; a dtype mismatch between inputs and model is explained on top of them.
    """
    recorded: Dict[int, Tensor] = {}
    called: Dict[Module, int] = Counter()  # every module that ran, in the order of its first call
    records = {i: partial(recorded.__setitem__, i) for i in range(len(layers))}
    with torch.no_grad(), site_hooks(layers, records, observe=lambda module: called.update([module])):
        try:
            output = _run_forward(forward_func, inputs, None, additional_forward_args)
        except Exception as error:
            _explain_dtype_mismatch(error, [forward_func, *map(module_of, layers), *called], inputs)
            raise
    for i, layer in enumerate(layers):
        if i not in recorded:
            raise ValueError(
                f"{describe_layer(i, layer)} never ran: the forward pass of forward_func finished without "
                "calling it; pass modules that the model calls (e.g. cnp.mlp_layers(model))"
            )
        if (runs := called[module_of(layer)]) > 1:
            raise ValueError(
                f"{describe_layer(i, layer)} ran {runs} times in one forward pass; a neuron site must run once"
                " (a module shared between blocks cannot tell the blocks' neurons apart)"
            )
    order = list(recorded)  # in the order of their first call
    if order != list(range(len(layers))):
        raise ValueError(
            f"layers must be listed input side first, in the order the forward pass runs them; it ran them "
            f"in the order {order} (indices into layers): pass [layers[i] for i in {order}]"
        )
    output = check_forward_output(output, inputs[0].shape[0])
    dtype = compute_dtype(inputs, list(recorded.values()))
    activations, positions = [], []
    for i, layer in enumerate(layers):
        axis = _channel_axis(layer, called) if recorded[i].dim() > 3 else "last"
        pos = token_positions(token, recorded[i].shape, describe_layer(i, layer), axis)
        positions.append(pos)
        activations.append(read_tokens(recorded[i], pos).to(dtype))
    _check_shared_tokens(layers, [recorded[i].shape for i in range(len(layers))], token)
    plan = make_plan(called, layers, positions, _models.layout_of if family_plan else None)
    num_tokens = [math.prod(recorded[i].shape[1:-1]) for i in range(len(layers))]
    return CleanPass(activations, positions, output, plan, called, num_tokens)


def _channel_axis(layer: Module, called: Dict[Module, int]) -> Optional[str]:
    """:func:`channel_axis` of a site, with the module that ran before it in the clean pass."""
    module = module_of(layer)
    leaves = [m for m in called if next(m.children(), None) is None]
    index = next((i for i, m in enumerate(leaves) if m is module), 0)
    return channel_axis(module, leaves[index - 1] if index > 0 else None, module is not layer)


def _check_shared_tokens(layers: Sequence[Module], shapes: List[torch.Size], token: TokenType) -> None:
    """The JAS adds activations of different layers token by token: they must share the tokens."""
    counts = [math.prod(shape[1:-1]) for shape in shapes if len(shape) >= 3]
    if len(set(counts)) > 1:
        listed = ", ".join(
            f"{describe_layer(i, layer)}: {shape[1]}" for i, (layer, shape) in enumerate(zip(layers, shapes))
        )
        shown = "a (B,) tensor" if isinstance(token, Tensor) else repr(token)
        raise ValueError(
            f"layers output different numbers of tokens ({listed}), so token={shown} names different "
            "positions in different layers and their neurons cannot be added token by token; pass layers "
            "that share one token set (e.g. the blocks of one stage)"
        )


def _explain_dtype_mismatch(error: Exception, modules: Sequence[Any], inputs: Tuple[Tensor, ...]) -> None:
    """Raise a ``TypeError`` from ``error`` when the inputs' dtype is the likely cause.

    ``modules``: the forward function, the sites and the modules that ran before the error,
    whose first floating parameter tells the model's dtype.
    """
    model_dtype = next(
        (p.dtype for m in modules if isinstance(m, Module) for p in m.parameters() if p.is_floating_point()),
        None,
    )
    for i, inp in enumerate(inputs):
        if inp.dtype in (torch.uint8, torch.bool):
            raise TypeError(
                f"inputs tensor {i} has dtype {inp.dtype} and the forward pass failed on it (the model's "
                "error is above); convert images to a floating dtype and normalise them as the model "
                "expects, e.g. images.float() / 255"
            ) from error
        if inp.is_floating_point() and (
            (model_dtype is not None and inp.dtype != model_dtype)
            or (model_dtype is None and "type" in str(error) and inp.dtype != torch.get_default_dtype())
        ):
            expected = model_dtype or torch.get_default_dtype()
            raise TypeError(
                f"inputs tensor {i} has dtype {inp.dtype} but the model computes in {expected}, and the "
                f"forward pass failed on it (the model's error is above); pass inputs.to({expected}) or "
                f"convert the model with model.to({inp.dtype})"
            ) from error


def candidate_scores(
    forward_func: Callable,
    layers: Sequence[Module],
    prepared: Prepared,
    layer_index: int,
    prefix: Tensor,
    rule: Quadrature,
    internal_batch_size: Optional[int],
    resume: Optional["Resume"] = None,
) -> Tensor:
    """``score_t(c)`` of every channel of layer ``t = layer_index``, ``(B, C)``, for the ``(B, t, K)`` prefix.

    ``resume``: see :class:`GreedySearch`.
    """
    activations = prepared.clean.activations
    candidate = activations[layer_index]
    prefix_masks = channel_masks(prefix, activations)
    scaled = dict(prefix_masks)
    scaled[layer_index] = torch.ones_like(candidate[:, :1], dtype=torch.bool)
    gradients, carried = _integrated_gradients(
        forward_func, layers, prepared, scaled, rule, internal_batch_size, resume
    )
    prefix_activation = set_sum(activations, prefix_masks, candidate)
    prefix_gradient = _gradient_sum(gradients, carried, prefix_masks, candidate)
    return extended_set_scores(prefix_activation, prefix_gradient, candidate, gradients[layer_index])


def joint_score(
    forward_func: Callable,
    layers: Sequence[Module],
    prepared: Prepared,
    indices: Tensor,
    rule: Quadrature,
    internal_batch_size: Optional[int],
    resume: Optional["Resume"] = None,
) -> Tuple[Tensor, Dict[int, Tensor], Tensor]:
    """The JAS ``(B,)`` of the ``(B, L, K)`` neuron set ``indices``, the pass's ``sum_k s_k dF/dw`` of every
    channel, and their set sum.

    The gradients are ``(B, T_sel, C)`` per layer; a pass that carries tangents (``resume``,
    see :class:`GreedySearch`) gives those of the layers from ``resume.start`` on only. The
    set sum, ``(B, T_sel)``, covers every layer.
    """
    activations = prepared.clean.activations
    masks = channel_masks(indices, activations)
    gradients, carried = _integrated_gradients(forward_func, layers, prepared, masks, rule, internal_batch_size, resume)
    reference = activations[0]
    gradient_sum = _gradient_sum(gradients, carried, masks, reference)
    return joint_attribution_score(set_sum(activations, masks, reference), gradient_sum), gradients, gradient_sum


def advance_block_input(
    layers: Sequence[Module], prepared: Prepared, rule: Quadrature, path: Tensor, index: int, resume: "Resume"
) -> None:
    """Move ``resume``'s block input and tangents from site ``index``'s block to site ``index + 1``'s.

    The blocks between run in forward mode without autograd, with ``path``'s (``(B, L, K)``)
    neurons of site ``index`` substituted, as a tangent-carrying pass would run them: once
    per token of the set, with tangent 1 at that token's neurons. Where site ``index + 1``
    is its block's MLP activation, its block's attention runs too and ``resume`` holds the
    MLP's input (``past_attention``).
    """
    plan, clean = prepared.clean.plan, prepared.clean
    alphas, _ = prepared.nodes(rule)
    n_nodes, batch_size = len(alphas), prepared.batch_size
    hidden, tangent = resume.block_input.detach(), resume.tangent
    if hidden.shape[0] == batch_size < n_nodes * batch_size:  # the nodes' shared work ended after it
        hidden = hidden.repeat(n_nodes, *[1] * (hidden.dim() - 1))
    mask = channel_masks(path[:, index : index + 1], clean.activations[index : index + 1])[0]
    value = _scaled_values(clean.activations[index], mask, alphas)
    positions = repeat_positions(clean.positions[index], n_nodes)
    first, last = plan.site_blocks[index], plan.site_blocks[index + 1]
    blocks = list(plan.blocks)[first + 1 if resume.past_attention else first : last]
    ends_past_attention = last in plan.mlp_starts
    unit = mask[:, 0].to(value.dtype).repeat(n_nodes, 1)  # tangent 1 at the path's channels
    token = 0  # the token of the set whose tangent this run carries

    def substitute(output: Tensor) -> Tensor:
        value_tangent = torch.zeros_like(value)
        value_tangent[:, token] = unit
        return write_tokens(output, positions, forward_ad.make_dual(value, value_tangent))

    linears = {
        m: _tangent_linear(m)
        for block in list(plan.blocks)[first : last + 1]
        for m in block.modules()
        if isinstance(m, torch.nn.Linear) and "forward" not in m.__dict__
    }

    # Fused attention kernels have no forward mode: the math kernel, and no fused inference
    # path of torch.nn.MultiheadAttention.
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    tangents = []
    try:
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), site_hooks(layers, {index: substitute}, linears):
            for token in range(value.shape[1]):  # one forward-mode run per token of the set
                with forward_ad.dual_level():
                    dual = hidden if tangent is None else forward_ad.make_dual(hidden, tangent[:, token])
                    if resume.past_attention:
                        dual = plan.finish_block(first, dual)
                    for block in blocks:
                        dual = block(dual)
                    if ends_past_attention:
                        dual = plan.mlp_starts[last].attend(dual)
                    block_input, block_tangent = forward_ad.unpack_dual(dual)
                    tangents.append(torch.zeros_like(block_input) if block_tangent is None else block_tangent)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    resume.past_attention = ends_past_attention
    resume.block_input, resume.tangent = block_input, torch.stack(tangents, dim=1)


class _LinearWithTangent(torch.autograd.Function):
    """``F.linear`` whose forward-mode rule is one matrix product, ``linear(x_t, W)``.

    PyTorch's own rule for ``linear`` also multiplies by the weight's (zero) tangent.
    """

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return torch.nn.functional.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Tensor, ...], output: Tensor) -> None:
        ctx.weight = inputs[1]

    @staticmethod
    def jvp(ctx: Any, x_tangent: Optional[Tensor], *_: Any) -> Tensor:
        return torch.nn.functional.linear(x_tangent, ctx.weight)


def _tangent_linear(module: torch.nn.Linear) -> Callable[[Tensor], Tensor]:
    return lambda x: _LinearWithTangent.apply(x, module.weight, module.bias)


def _scaled_values(activation: Tensor, mask: Tensor, alphas: Tensor) -> Tensor:
    """A layer's substituted values at the nodes ``alphas``: its clean ``(B, T_sel, C)`` ``activation`` with
    the ``(B, 1, C)`` ``mask``'s channels times ``alpha``, row ``k * B + b`` for node ``k``."""
    n_nodes, batch_size = len(alphas), activation.shape[0]
    clean_value = activation.repeat(n_nodes, 1, 1)
    alpha = alphas.repeat_interleave(batch_size).view(-1, 1, 1)
    return torch.where(mask.repeat(n_nodes, 1, 1), alpha * clean_value, clean_value)


def _gradient_sum(
    gradients: Dict[int, Tensor], carried: Optional[Tensor], masks: Dict[int, Tensor], reference: Tensor
) -> Tensor:
    """:func:`set_sum` of the gradients, with the layers a tangent carried (``carried``) already summed."""
    total = set_sum(gradients, {i: mask for i, mask in masks.items() if i in gradients}, reference)
    return total if carried is None else total + carried


@dataclass
class Resume:
    """What one pass of a :class:`GreedySearch` takes from the previous one and leaves for the next."""

    start: Optional[int] = None  # start at this site's block, from block_input (None: from the beginning)
    keep: Optional[int] = None  # record the input of this site's block for the next pass
    carry: bool = False  # tangents carry the earlier layers' gradients (else: the kept autograd graph)
    values: Dict[int, Tensor] = field(default_factory=dict)  # kept graph: site -> the leaf substituted there
    block_input: Optional[Tensor] = None  # kept graph: with its autograd graph; carry: detached
    tangent: Optional[Tensor] = None  # carry: block_input's tangents, one per token, (rows, T_sel, ...) (None: zero)
    past_attention: bool = False  # carry: block_input is the MLP input of its block (``Plan.mlp_starts``)


class GreedySearch:
    """The passes of one greedy search: step ``t`` extends step ``t - 1``'s path by one layer.

    Step ``t`` substitutes what step ``t - 1`` did, except at layer ``t - 1`` (now one
    channel, before the whole layer) and layer ``t``; the final JAS differs from the
    last step at the last layer only. Where the model's fast plan can start it at one of
    its blocks (see ``captum_neuronpath/_core/plan.py``) and a pass runs all nodes at
    once, each pass starts at the block of the layer that changed, ``h``, from the block
    input that the previous pass recorded; the blocks before it run once for the whole
    search. The gradients of the path's earlier layers reach it in one of two ways:

    - *Tangents* (up to :attr:`tangent_max_tokens` tokens per example, from
      :attr:`tangent_min_layers` path layers on): per token of the set,
      ``sum_{l < t-1} dF/dw[l][p_l] = <dF/dh, tau>``
      with ``tau`` the forward-mode tangent of ``h`` when each earlier path neuron's
      substituted value at that token has tangent 1. Before step ``t`` the block between
      the previous step's ``h`` and this one runs in forward mode once per token
      (:func:`advance_block_input`), which carries ``h`` and the tangents one block on, so
      each pass runs backward to ``h`` only and no graph of earlier blocks is kept.
    - *The kept graph* (larger token sets, shorter paths): each pass backpropagates through
      the previous pass's autograd graph of the earlier blocks, down to their substituted values.

    The numbers are those of independent passes. The steps come in order, one per layer.
    """

    tangents = True  # False: the kept graph for every token set (to compare the two)
    #: Path layers from which the tangents pay: carrying them costs one forward-mode run per
    #: block, about what a few backward passes through it cost, while the kept graph costs a
    #: block one backward pass per later step (measured on the performance page).
    tangent_min_layers = 9
    #: Tokens per example up to which the tangents pay: each token of the set carries its own
    #: tangent, one forward-mode run per block each (measured on the performance page).
    tangent_max_tokens = 2

    def __init__(self, forward_func: Callable, layers: Sequence[Module], prepared: Prepared, rule: Quadrature,
                 internal_batch_size: Optional[int]) -> None:  # fmt: skip
        self.forward_func, self.layers, self.prepared = forward_func, layers, prepared
        self.rule, self.internal_batch_size = rule, internal_batch_size
        #: Whether the steps carry tangents (else they keep the graph, or do not restart at all).
        self.carries = len(layers) >= self.tangent_min_layers and carries_tangents(prepared, rule, internal_batch_size)
        self._resume: Optional[Resume] = Resume(carry=self.carries)
        #: The input of the first path layer's block at the nodes, detached, once a pass recorded it.
        self.first_block_input: Optional[Tensor] = None

    def candidate_scores(self, layer_index: int, prefix: Tensor) -> Tensor:
        """:func:`candidate_scores` of step ``layer_index``."""
        resume = self._next_pass(layer_index - 1 if layer_index else None, keep=layer_index, path=prefix)
        return candidate_scores(self.forward_func, self.layers, self.prepared, layer_index, prefix, self.rule,
                                self.internal_batch_size, resume)  # fmt: skip

    def joint_score(self, path: Tensor) -> Tuple[Tensor, Dict[int, Tensor], Tensor]:
        """:func:`joint_score` of the path the steps found; ends the search.

        The gradients are every layer's, or with tangents the last layer's only.
        """
        resume = self._next_pass(path.shape[1] - 1, keep=None, path=path)
        self._resume = None  # the search ends: what it kept goes with the last pass
        return joint_score(self.forward_func, self.layers, self.prepared, path, self.rule, self.internal_batch_size,
                           resume)  # fmt: skip

    def _next_pass(self, start: Optional[int], keep: Optional[int], path: Tensor) -> Optional[Resume]:
        resume = self._resume
        if resume is not None:
            if start == 0 and resume.block_input is not None:
                self.first_block_input = resume.block_input.detach()
            if resume.carry and start is not None and start > 0:  # from the previous pass's start to this one's
                advance_block_input(self.layers, self.prepared, self.rule, path, start - 1, resume)
            resume.start, resume.keep = start, keep
        return resume


def carries_tangents(
    prepared: Prepared, rule: Optional[Quadrature] = None, internal_batch_size: Optional[int] = None
) -> bool:
    """Whether passes over ``prepared`` may start at a block and carry tangents (see :class:`GreedySearch`).

    With ``rule``, also whether ``internal_batch_size`` lets a pass run all nodes at once.
    """
    plan = prepared.clean.plan
    tokens = max(1 if p is None or isinstance(p, Tensor) else len(p) for p in prepared.clean.positions)
    whole = rule is None or internal_batch_size is None or internal_batch_size // prepared.batch_size >= rule.n_steps
    few = tokens <= GreedySearch.tangent_max_tokens
    return GreedySearch.tangents and few and whole and plan is not None and plan.blocks is not None


def select_examples(prepared: Prepared, index: Tensor) -> Prepared:
    """``prepared`` for the batch whose row ``j`` is example ``index[j]``, e.g. ``arange(B).repeat(n)`` for
    ``n`` copies of the batch."""
    clean, batch_size = prepared.clean, prepared.batch_size

    def rows(value: Any) -> Any:  # Captum's convention: tensors batch first, other values shared
        if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch_size:
            return value[index.to(value.device)]
        if isinstance(value, list) and len(value) == batch_size:
            return [value[i] for i in index.tolist()]
        return value

    args = prepared.additional_forward_args
    return replace(
        prepared,
        inputs=tuple(x[index.to(x.device)] for x in prepared.inputs),
        additional_forward_args=None if args is None else tuple(map(rows, args)),
        target=rows(prepared.target),
        clean=replace(
            clean,
            activations=[a[index.to(a.device)] for a in clean.activations],
            positions=[p[index.to(p.device)] if isinstance(p, Tensor) else p for p in clean.positions],
            output=clean.output[index.to(clean.output.device)],
        ),
    )


def warn_if_output_independent(prepared: Prepared) -> None:
    """The one warning for a forward whose output depends on none of the sites."""
    if prepared.output_independent:
        warnings.warn(
            "the output of forward_func does not depend on any of the layers' neurons (their gradient is "
            "zero at every site for every example), so every score and JAS is 0. Likely causes: an "
            "untrained head initialised to zero (e.g. torchvision's vit_b_16() with random weights), "
            "or a saturated output (a softmax probability of exactly 0 or 1)",
            stacklevel=5,  # the caller of attribute(), past Captum's log_usage wrapper
        )


def _integrated_gradients(
    forward_func: Callable,
    layers: Sequence[Module],
    prepared: Prepared,
    scaled: Dict[int, Tensor],
    rule: Quadrature,
    internal_batch_size: Optional[int],
    resume: Optional[Resume] = None,
) -> Tuple[Dict[int, Tensor], Optional[Tensor]]:
    """``sum_k s_k dF/dw`` at the token set, ``(B, T_sel, C)``, per layer in ``scaled``, and the carried sum.

    ``scaled`` maps a layer index to a boolean mask, ``(B, 1, C)``, of the channels
    multiplied by ``alpha``. The nodes run in chunks of at most ``internal_batch_size``
    rows (examples times nodes); the sum does not depend on the chunking. The carried sum
    is ``None``, or where ``resume`` carries tangents, the set sums ``(B, T_sel)`` of the
    layers before ``resume.start``, which the first result then leaves out.
    """
    batch_size = prepared.batch_size
    nodes_per_pass = rule.n_steps if internal_batch_size is None else max(1, internal_batch_size // batch_size)
    alphas, step_sizes = prepared.nodes(rule)
    if nodes_per_pass < rule.n_steps:  # keeping graphs across passes would defeat the memory bound
        resume = None
    totals: Dict[int, Optional[Tensor]] = {}  # None: no gradient arrived
    carried = None
    for start in range(0, rule.n_steps, nodes_per_pass):
        stop = min(start + nodes_per_pass, rule.n_steps)
        chunk, chunk_carried = _substituted_pass(
            forward_func, layers, prepared, scaled, alphas[start:stop], step_sizes[start:stop], resume
        )
        carried = _add(carried, chunk_carried)
        for index, gradient in chunk.items():
            totals[index] = _add(totals.get(index), gradient)
    absent = {i for i, total in totals.items() if total is None}
    reference = prepared.clean.activations
    integrated = {i: torch.zeros_like(reference[i]) if i in absent else totals[i] for i in sorted(totals)}
    hits = [gradient.ne(0).any() for gradient in [*integrated.values(), *([] if carried is None else [carried])]]
    reached = torch.stack(hits).tolist()  # one sync
    unreached = [i for i, hit in zip(integrated, reached) if not hit]
    if not any(reached):
        prepared.output_independent = True
    elif unreached:
        index = unreached[0]
        why = "no gradient flows back to them" if index in absent else "their gradient is zero for every example"
        cause = _unread_token(prepared.clean, index) or (
            "This happens when a later substitution overwrites them, e.g. whole block outputs at every token, "
            "or the residual stream at the readout token. Use sites inside the residual branches, such as "
            "cnp.mlp_layers(model)"
        )
        raise ValueError(
            f"the substituted values of {describe_layer(index, layers[index])} do not reach the output of "
            f"forward_func ({why}) while other layers' values do, so every attribution through them would be "
            f"0. {cause}"
        )
    return integrated, carried


def _add(total: Optional[Tensor], value: Optional[Tensor]) -> Optional[Tensor]:
    return value if total is None else total if value is None else total + value


def _unread_token(clean: CleanPass, index: int) -> Optional[str]:
    """Why layer ``index``'s values are lost where the cause is the token: the head reads other tokens."""
    readout = _models.readout_of_called(clean.called)
    positions = clean.positions[index]
    if readout is None or positions is None:
        return None
    read = set(token_positions(readout, torch.Size([1, clean.num_tokens[index], 1]), "the head"))
    given = set(positions.tolist() if isinstance(positions, Tensor) else positions)
    if given <= read:
        return None
    return (
        f"The likely cause is the token: this model's head reads token={readout!r}, and the token set "
        f"passed holds positions it does not read ({sorted(given - read)[:5]}), whose values after the "
        f"last substitution cannot reach the output; pass token=cnp.readout_token(model) ({readout!r})"
    )


def _substituted_pass(
    forward_func: Callable,
    layers: Sequence[Module],
    prepared: Prepared,
    scaled: Dict[int, Tensor],
    alphas: Tensor,
    step_sizes: Tensor,
    resume: Optional[Resume] = None,
) -> Tuple[Dict[int, Optional[Tensor]], Optional[Tensor]]:
    """One forward and backward pass over the nodes ``alphas``: ``sum_k s_k dF/dw`` per layer, and the carried sum.

    Row ``r`` of the expanded batch is example ``r % B`` at node ``r // B``, as Captum
    expands inputs for its integrated gradients. ``None`` where no gradient arrived.
    ``resume``: see :class:`GreedySearch`.
    """
    clean = prepared.clean
    n_nodes, batch_size = len(alphas), prepared.batch_size
    plan = clean.plan
    if plan is None or plan.blocks is None:
        resume = None
    resumed = resume is not None and resume.start is not None and resume.block_input is not None
    carry = resumed and resume.carry
    values = {}
    for index in sorted(scaled):
        if resumed and index < resume.start:  # substituted in a block that this pass does not run again
            if carry:
                continue  # its gradient arrives through the tangent
            if index in resume.values:
                values[index] = resume.values[index]
                continue
        values[index] = _scaled_values(clean.activations[index], scaled[index], alphas).requires_grad_()
    positions = {index: repeat_positions(clean.positions[index], n_nodes) for index in values}
    in_place = plan.in_place if plan is not None else frozenset()
    start_input = None  # carry: the leaf the pass starts from, where earlier layers' tangents reach it
    if carry and resume.tangent is not None:
        start_input = resume.block_input = resume.block_input.detach().requires_grad_()

    def substitute(index: int) -> Callable[[Tensor], Tensor]:
        def function(value: Tensor) -> Tensor:
            if value.shape[0] != values[index].shape[0]:
                raise ValueError(
                    f"{describe_layer(index, layers[index])} changed its output between the clean and the "
                    "substituted forward passes; layers must output one tensor with the batch first"
                )
            return write_tokens(value, positions[index], values[index], index in in_place)

        return function

    forwards = plan.pass_forwards(n_nodes, batch_size, min(values)) if plan is not None else None
    if resume is not None:
        forwards.update(plan.resume_forwards(resume, batch_size, forwards))
    expanded_inputs = tuple(torch.cat([x] * n_nodes, dim=0) for x in prepared.inputs)
    with torch.enable_grad(), site_hooks(layers, {index: substitute(index) for index in values}, forwards):
        try:
            output = _run_forward(
                forward_func,
                expanded_inputs,
                _expand_target(prepared.target, n_nodes),
                _expand_additional_forward_args(prepared.additional_forward_args, n_nodes),
            )
            # The clean pass checked that the selected output is one score per example.
            sources = list(values.values()) + ([] if start_input is None else [start_input])
            keep = resume is not None and not resume.carry  # the next pass backpropagates through this graph again
            grads = torch.autograd.grad(output.sum(), sources, allow_unused=True, retain_graph=keep)
        except torch.OutOfMemoryError as error:
            rows = n_nodes * batch_size
            raise torch.OutOfMemoryError(
                f"out of memory in a substituted pass over {rows} rows ({n_nodes} quadrature nodes x {batch_size} "
                f"examples; the model's error is above): pass internal_batch_size={max(batch_size, rows // 2)} or "
                "less to run fewer rows per pass (the numbers do not change), or attribute fewer examples at once"
            ) from error
    if resume is not None and not resume.carry:
        resume.values = values
    weights = step_sizes.view(-1, 1, 1, 1)
    carried = None
    if start_input is not None:  # <dF/dh, tau> per row, summed over the nodes like the gradients
        grad_h = grads[-1] if grads[-1] is not None else torch.zeros_like(start_input)
        tangent = resume.tangent.to(prepared.dtype)  # (rows, T_sel, ...): one tangent per token
        dot = (grad_h.to(prepared.dtype).unsqueeze(1) * tangent).flatten(2).sum(2)
        carried = (dot.view(n_nodes, batch_size, -1) * weights.view(-1, 1, 1)).sum(0)
    return {
        index: None if grad is None else (grad.view(n_nodes, batch_size, *grad.shape[1:]) * weights).sum(0)
        for index, grad in zip(values, grads)
    }, carried
