"""Argument checks shared by every public class: ``TypeError``, ``ValueError`` or ``IndexError`` naming the
argument and what was expected."""

import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from captum._utils.common import _select_targets
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._utils.sites import module_of
from captum_neuronpath._utils.tokens import expand_per_example, is_int


def check_forward_func(forward_func: Any) -> None:
    if not callable(forward_func):
        raise TypeError(
            f"forward_func must be callable: the model or a function of its inputs, got {type(forward_func).__name__}"
        )


def check_layers(layers: Any) -> List[Module]:
    if not isinstance(layers, (list, tuple)):
        wrap = "; wrap a single module in a list: layers=[module]" if isinstance(layers, Module) else ""
        raise TypeError(
            f"layers must be a list of torch.nn.Module (input side first), got {type(layers).__name__}{wrap}"
        )
    if len(layers) == 0:
        raise ValueError("layers must hold at least one torch.nn.Module, got an empty list")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Module):
            raise TypeError(f"layers[{i}] must be a torch.nn.Module, got {type(layer).__name__}")
        first = next(j for j, other in enumerate(layers) if other is layer)
        if first < i:
            raise ValueError(f"layers[{i}] is the same module as layers[{first}]; list each layer once")
    return list(layers)


def check_int(value: Any, name: str, minimum: int, maximum: Optional[int] = None, error: type = ValueError) -> int:
    """``value``, an int in ``[minimum, maximum]``; ``error`` is raised where it is out of that range."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise error(f"{name} must be {bound}, got {value}")
    return value


def check_inputs(inputs: Tuple[Any, ...]) -> None:
    """Validate formatted inputs: tensors sharing a batch of one example or more."""
    if len(inputs) == 0:
        raise ValueError("inputs must hold at least one tensor")
    for i, inp in enumerate(inputs):
        if not isinstance(inp, Tensor):
            raise TypeError(f"inputs must be a tensor or a tuple of tensors; element {i} is {type(inp).__name__}")
        if inp.dim() == 0:
            raise ValueError("inputs must have a batch dimension first, got a 0-d tensor")
        if inp.shape[0] != inputs[0].shape[0]:
            raise ValueError(
                f"inputs tensors must share the batch size; tensor 0 has {inputs[0].shape[0]}, "
                f"tensor {i} has {inp.shape[0]}"
            )
        if inp.is_floating_point() and not torch.isfinite(inp).all():
            example = int((~torch.isfinite(inp)).reshape(len(inp), -1).any(1).nonzero()[0, 0])
            where = f"example {example}" + (f" of inputs tensor {i}" if len(inputs) > 1 else "")
            raise ValueError(f"inputs hold non-finite values (NaN or inf) in {where} (0-based)")
        if inp.dim() >= 3 and not (inp.is_floating_point() or inp.is_complex()):
            raise TypeError(
                f"inputs tensor {i} holds integer images (dtype {inp.dtype}, shape {tuple(inp.shape)}); convert them "
                "to the model's floating dtype and normalise them as it expects, e.g. images.float() / 255"
            )
    if inputs[0].shape[0] == 0:
        raise ValueError("inputs must hold at least one example, got a batch of 0")


def warn_if_training(forward_func: Callable, layers: Sequence[Module], stacklevel: int = 4) -> None:
    if any(isinstance(m, Module) and m.training for m in [forward_func, *map(module_of, layers)]):
        warnings.warn(
            "the model is in training mode, so dropout and similar layers make the attribution "
            "random; call model.eval() first",
            stacklevel=stacklevel,
        )


def check_forward_output(output: Any, batch_size: int) -> Tensor:
    if not isinstance(output, Tensor):
        raise TypeError(f"forward_func must return a tensor with one row per example, got {type(output).__name__}")
    if output.dim() == 0 or output.shape[0] != batch_size:
        raise ValueError(
            f"forward_func must return one row per example (batch size {batch_size}), "
            f"got output of shape {tuple(output.shape)}"
        )
    return output


def format_target(target: Any, output: Tensor) -> Any:
    """Check ``target`` (Captum's forms) against the clean forward output; it must select one score per
    example, and a tensor moves to the output's device."""
    batch_size = output.shape[0]
    if target is not None and output.dim() < 2:
        raise ValueError(
            f"target={target!r} selects a column, but forward_func returns shape {tuple(output.shape)}; "
            "pass target=None for a forward that returns one score per example"
        )
    if isinstance(target, Tensor):
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise TypeError(f"target as a tensor must hold integer class indices, got dtype {target.dtype}")
        if target.numel() not in (1, batch_size) or target.dim() > 1:
            raise ValueError(
                f"target as a tensor must hold one index or one per example ({batch_size}), "
                f"got shape {tuple(target.shape)}"
            )
        indices = target.reshape(-1).tolist()
        target = target.to(output.device)
    else:
        if isinstance(target, list) and len(target) != batch_size:
            raise ValueError(f"target as a list must have one entry per example ({batch_size}), got {len(target)}")
        items = target if isinstance(target, list) else [target]
        ints = all(is_int(t) for t in items)
        if not (ints or target is None or all(isinstance(t, tuple) for t in items)):
            raise TypeError(f"target must be an int, a tuple, a tensor, or a list of ints or of tuples; got {target!r}")
        indices = items if ints else []  # the class indices to check; _select_targets checks tuples
    for t in indices:
        if not -output.shape[1] <= t < output.shape[1]:
            raise IndexError(f"target {t} is out of range for a forward output with {output.shape[1]} columns")
    try:
        selected = _select_targets(output, target)
    except (AssertionError, IndexError) as error:
        raise ValueError(
            f"target={target!r} cannot select from an output of shape {tuple(output.shape)}: {error}"
        ) from None
    if selected.numel() != batch_size:
        fix = "(a class index or one per example)" if target is None else "that selects one output per example"
        raise ValueError(
            f"target={target!r} selects shape {tuple(selected.shape)} from the output of forward_func, "
            f"not one score per example; pass a target {fix}"
        )
    return target


def format_neuron_indices(
    indices: Any, name: str, batch_size: int, num_channels: Sequence[int], device: torch.device
) -> Tensor:
    """A ``(B, L)`` or ``(B, L, K)`` integer tensor, or ``L`` ints shared by the batch, as a ``(B, L, K)``
    LongTensor (rows expanded as :func:`expand_per_example` does), bounded by ``num_channels``."""
    num_layers = len(num_channels)
    if not isinstance(indices, Tensor):
        try:
            indices = torch.as_tensor(indices)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name} must be an integer tensor of shape (B, {num_layers}) or (B, {num_layers}, K), "
                f"or a sequence of {num_layers} ints, got {type(indices).__name__}"
            ) from None
        if indices.dim() == 1:
            indices = indices.reshape(1, -1).expand(batch_size, -1)
    if indices.numel() and (indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool):
        raise TypeError(f"{name} must hold integer neuron indices, got dtype {indices.dtype}")
    if indices.dim() == 2:
        indices = indices.unsqueeze(-1)
    if indices.dim() != 3 or indices.shape[1] != num_layers or indices.shape[2] < 1:
        raise ValueError(
            f"{name} must have shape (B, L) or (B, L, K) with L={num_layers} layers "
            f"(or be a sequence of {num_layers} ints), got shape {tuple(indices.shape)}"
        )
    indices = expand_per_example(indices, batch_size, name).to(device=device, dtype=torch.long)
    low, high = indices.transpose(0, 1).flatten(1).aminmax(dim=1)  # per layer; empty for no layers
    for layer, (lo, hi, size) in enumerate(zip(low.tolist(), high.tolist(), num_channels)):
        if lo < 0 or hi >= size:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{name} holds neuron {bad} for layer {layer}, which has channels 0..{size - 1}")
    return indices


def check_baselines(baselines: Any, inputs: Tuple[Any, ...]) -> None:
    """Captum's baseline forms (a number, or a tensor of the input's shape or of one example), checked against
    the tuple of ``inputs``."""
    formatted = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(formatted) != len(inputs):
        raise ValueError(f"baselines must give one baseline per input tensor ({len(inputs)}), got {len(formatted)}")
    for i, (baseline, inp) in enumerate(zip(formatted, inputs)):
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float, Tensor)):
            raise TypeError(f"baselines must be numbers or tensors, got {type(baseline).__name__} for input {i}")
        if isinstance(baseline, Tensor) and isinstance(inp, Tensor) and baseline.shape != inp.shape:
            if baseline.dim() != inp.dim() or baseline.shape[0] != 1 or baseline.shape[1:] != inp.shape[1:]:
                raise ValueError(
                    f"baselines for input {i} must have the input's shape {tuple(inp.shape)} or "
                    f"{(1,) + tuple(inp.shape[1:])}, or be a number; got shape {tuple(baseline.shape)}"
                )
