"""The substitution mechanism of SPEC section 3.

``clean_pass`` records each layer's activation at the token set from one unmodified
forward pass. ``SubstitutedGradients`` runs the forward pass at the quadrature nodes
with chosen channels replaced by ``alpha`` times their clean value and returns, for
every substituted layer, ``sum_k s_k dF/dw`` at the token set from a single backward
pass. All hooks live inside ``_substituted`` and are removed on every exit path.
"""

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_tensor_into_tuples,
    _run_forward,
)
from captum._utils.gradient import _forward_layer_distributed_eval
from captum.attr._utils.batching import _batch_attribution
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._utils.tokens import TokenType, read_tokens, token_positions, write_tokens
from captum_neuronpath._utils.validation import (
    Quadrature,
    check_forward_output,
    check_inputs,
    describe_layer,
    format_target,
    warn_if_training,
)


class CleanPass(NamedTuple):
    """What one unmodified forward pass gives."""

    activations: List[Tensor]  # per layer, (B, T_sel, C), detached
    positions: List[Optional[List[int]]]  # per layer, the resolved token set
    output: Tensor  # forward_func's output, before target selection


class Prepared(NamedTuple):
    """Validated ``attribute()`` arguments and the clean pass they lead to."""

    inputs: Tuple[Tensor, ...]
    additional_forward_args: Any
    target: Any
    clean: CleanPass
    dtype: torch.dtype  # the dtype results are returned in


def clean_pass(
    forward_func: Callable,
    layers: Sequence[Module],
    token: TokenType,
    inputs: Tuple[Tensor, ...],
    additional_forward_args: Any,
) -> CleanPass:
    with torch.no_grad():
        try:
            saved, output = _forward_layer_distributed_eval(
                forward_func,
                inputs,
                list(layers),
                additional_forward_args=additional_forward_args,
                forward_hook_with_return=True,
            )
        except AssertionError:  # Captum's way of saying no hooked layer ran
            saved = {}
            output = None
    for i, layer in enumerate(layers):
        if layer not in saved:
            raise ValueError(
                f"{describe_layer(i, layer)} never ran in the forward pass of forward_func; "
                "pass modules that the model calls (e.g. cnp.vit_mlp_layers(model))"
            )
    output = check_forward_output(output, inputs[0].shape[0])
    activations, positions = [], []
    for i, layer in enumerate(layers):
        per_device = saved[layer]
        if len(per_device) != 1:
            raise ValueError(f"{describe_layer(i, layer)} ran on several devices; DataParallel is not supported")
        layer_outputs = next(iter(per_device.values()))
        if len(layer_outputs) != 1 or not isinstance(layer_outputs[0], Tensor):
            raise TypeError(f"{describe_layer(i, layer)} must output a single tensor")
        layer_output = layer_outputs[0]
        pos = token_positions(token, layer_output.shape, describe_layer(i, layer))
        positions.append(pos)
        activations.append(read_tokens(layer_output, pos).detach())
    return CleanPass(activations, positions, output)


@contextmanager
def _substituted(
    layers: Sequence[Module],
    positions: Sequence[Optional[List[int]]],
    values: Dict[int, Tensor],
) -> Iterator[None]:
    """Within the block, layer ``l`` outputs ``values[l]`` at its token set."""

    def hook_for(index: int) -> Callable:
        def hook(module: Module, args: Any, output: Tensor) -> Tensor:
            value = values[index]
            if not isinstance(output, Tensor) or output.shape[0] != value.shape[0]:
                raise ValueError(
                    f"{describe_layer(index, module)} changed its output between the clean and the "
                    "substituted forward passes; layers must output one tensor with the batch first"
                )
            return write_tokens(output, positions[index], value)

        return hook

    handles = []
    try:
        for index in values:
            handles.append(layers[index].register_forward_hook(hook_for(index)))
        yield
    finally:
        for handle in handles:
            handle.remove()


class SubstitutedGradients:
    """Integrated gradients of ``F`` with respect to substituted layer values.

    ``scaled`` maps a layer index to a boolean mask, ``(B, 1, C)`` or ``(B, T_sel, C)``,
    of the channels multiplied by ``alpha``; the layer's other channels keep their clean
    value, and layers absent from ``scaled`` run normally. ``integrate`` returns, for
    each layer in ``scaled``, ``sum_k s_k dF/dw`` of shape ``(B, T_sel, C)``.
    """

    def __init__(self, forward_func: Callable, layers: Sequence[Module]) -> None:
        self.forward_func = forward_func
        self.layers = layers

    def integrate(
        self, prepared: Prepared, scaled: Dict[int, Tensor], rule: Quadrature, internal_batch_size: Optional[int]
    ) -> Dict[int, Tensor]:
        kwargs = dict(prepared=prepared, scaled=scaled, method=rule.method)
        if internal_batch_size is None:
            step_sizes_and_alphas = (rule.step_sizes, rule.alphas)
            integrated = self._attribute(n_steps=rule.n_steps, step_sizes_and_alphas=step_sizes_and_alphas, **kwargs)
        else:
            batch_size = prepared.inputs[0].shape[0]
            integrated = _batch_attribution(self, batch_size, internal_batch_size, rule.n_steps, **kwargs)
        for index, gradient in zip(sorted(scaled), integrated):
            if not torch.any(gradient):
                raise _unreachable(index, self.layers[index], "their gradient is zero for every example")
        return dict(zip(sorted(scaled), integrated))

    def _attribute(
        self,
        prepared: Prepared,
        scaled: Dict[int, Tensor],
        method: str,  # unused: Captum's _batch_attribution passes it along
        n_steps: int,
        step_sizes_and_alphas: Tuple[List[float], List[float]],
    ) -> Tuple[Tensor, ...]:
        """One chunk of nodes: ``sum_k s_k dF/dw`` over ``step_sizes_and_alphas``."""
        inputs, clean = prepared.inputs, prepared.clean
        step_sizes, alphas = step_sizes_and_alphas
        batch_size = inputs[0].shape[0]
        reference = clean.activations[0]
        # Row r of the expanded batch is example r % B at node r // B (Captum's "repeat").
        alpha = torch.tensor(alphas, dtype=reference.dtype, device=reference.device)
        alpha = alpha.repeat_interleave(batch_size).view(-1, 1, 1)
        values = {}
        for index in sorted(scaled):
            clean_value = clean.activations[index].repeat(n_steps, 1, 1)
            mask = scaled[index].repeat(n_steps, 1, 1)
            values[index] = torch.where(mask, alpha * clean_value, clean_value).requires_grad_()
        expanded_inputs = tuple(torch.cat([x] * n_steps, dim=0) for x in inputs)
        with torch.enable_grad(), _substituted(self.layers, clean.positions, values):
            output = _run_forward(
                self.forward_func,
                expanded_inputs,
                _expand_target(prepared.target, n_steps),
                _expand_additional_forward_args(prepared.additional_forward_args, n_steps),
            )
            # The clean pass checked that the selected output is one score per example.
            grads = torch.autograd.grad(output.sum(), list(values.values()), allow_unused=True)
        weights = torch.tensor(step_sizes, dtype=reference.dtype, device=reference.device).view(-1, 1, 1, 1)
        integrated = []
        for index, grad in zip(values, grads):
            if grad is None:
                raise _unreachable(index, self.layers[index], "no gradient flows back to them")
            integrated.append((grad.view(n_steps, batch_size, *grad.shape[1:]) * weights).sum(0))
        return tuple(integrated)


def prepare(
    forward_func: Callable,
    layers: Sequence[Module],
    token: TokenType,
    inputs: Any,
    target: Any,
    additional_forward_args: Any,
) -> Prepared:
    """Format and check the arguments every ``attribute()`` shares, then run the clean pass."""
    if not isinstance(inputs, (Tensor, tuple)):  # Captum's formatting would only assert
        raise TypeError(f"inputs must be a tensor or a tuple of tensors, got {type(inputs).__name__}")
    inputs = _format_tensor_into_tuples(inputs)
    check_inputs(inputs)
    warn_if_training(forward_func, layers)
    additional_forward_args = _format_additional_forward_args(additional_forward_args)
    clean = clean_pass(forward_func, layers, token, inputs, additional_forward_args)
    target = format_target(target, clean.output)
    dtype = inputs[0].dtype if inputs[0].is_floating_point() else clean.activations[0].dtype
    return Prepared(inputs, additional_forward_args, target, clean, dtype)


def _unreachable(index: int, layer: Module, why: str) -> ValueError:
    return ValueError(
        f"the substituted values of {describe_layer(index, layer)} do not reach the output of "
        f"forward_func ({why}), so every attribution through them would be 0. This happens when a "
        "later substitution overwrites them, e.g. whole block outputs at every token, or the "
        "residual stream at the readout token. Use sites inside the residual branches, such as "
        "cnp.vit_mlp_layers(model)"
    )


def repeat_prepared(prepared: Prepared, times: int) -> Prepared:
    """``prepared`` for ``times`` copies of the batch: row ``j * B + b`` is example ``b``."""
    clean = prepared.clean
    return Prepared(
        inputs=tuple(torch.cat([x] * times) for x in prepared.inputs),
        additional_forward_args=_expand_additional_forward_args(prepared.additional_forward_args, times),
        target=_expand_target(prepared.target, times),
        clean=CleanPass(
            [a.repeat(times, 1, 1) for a in clean.activations],
            clean.positions,
            clean.output.repeat(times, *[1] * (clean.output.dim() - 1)),
        ),
        dtype=prepared.dtype,
    )
