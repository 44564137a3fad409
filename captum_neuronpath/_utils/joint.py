"""The joint attribution arithmetic: the JAS of a neuron set and a greedy step's candidate scores.

A neuron set is held as one boolean channel mask per layer, ``(B, 1, C)``. The JAS is
a per-token product of two sums over the set, the clean activations and the
integrated gradients, summed over the token set.
"""

from typing import Dict, Mapping, Sequence, Union

import torch
from torch import Tensor


def channel_masks(indices: Tensor, activations: Sequence[Tensor]) -> Dict[int, Tensor]:
    """Masks of the channels in ``indices`` (``(B, L', K)``) for layers ``0 .. L'-1``."""
    masks = {}
    for layer in range(indices.shape[1]):
        mask = torch.zeros_like(activations[layer][:, :1], dtype=torch.bool)  # (B, 1, C)
        masks[layer] = mask.scatter_(2, indices[:, layer : layer + 1], True)
    return masks


def set_sum(
    values: Union[Sequence[Tensor], Mapping[int, Tensor]], masks: Dict[int, Tensor], reference: Tensor
) -> Tensor:
    """``sum over (l, c) in the set of values[l][:, t, c]``, ``(B, T_sel)`` like ``reference`` (0 for no set)."""
    zero = reference.new_zeros(reference.shape[:2])
    return sum(((values[layer] * mask).sum(-1) for layer, mask in masks.items()), zero)


def joint_attribution_score(activation_sum: Tensor, gradient_sum: Tensor) -> Tensor:
    """Eq. (2)-(3): the per-token product of the two set sums, summed over tokens (dimension 1).

    ``(B, T_sel)`` sums give ``(B,)``; ``(B, T_sel, C)`` sums (one set per channel) give ``(B, C)``.
    """
    return (activation_sum * gradient_sum).sum(1)


def extended_set_scores(set_activation: Tensor, set_gradient: Tensor, activation: Tensor, gradient: Tensor) -> Tensor:
    """The JAS of a neuron set (sums ``(B, T_sel)``) extended by each channel of one layer (values
    ``(B, T_sel, C)``), ``(B, C)``: channel ``c`` scores ``sum_t (A_t + a_tc) * (G_t + g_tc)``."""
    return joint_attribution_score(activation + set_activation.unsqueeze(-1), gradient + set_gradient.unsqueeze(-1))


def stack_padded(scores: Sequence[Tensor]) -> Tensor:
    """Stack per-layer ``(B, C_l)`` scores into ``(B, L, max C_l)``, NaN where a layer is narrower."""
    width = max(s.shape[1] for s in scores)
    padded = [torch.nn.functional.pad(s, (0, width - s.shape[1]), value=float("nan")) for s in scores]
    return torch.stack(padded, dim=1)


def top_channels(scores: Tensor, top_k: int) -> Tensor:
    """The ``top_k`` best channels (last dimension) of ``scores``, best first, never a ``NaN`` padding entry;
    ties go to the lowest index."""
    return torch.sort(scores.nan_to_num(float("-inf")), dim=-1, descending=True, stable=True).indices[..., :top_k]


def best_channel(scores: Tensor) -> Tensor:
    """The best channel (last dimension) of ``scores``, as :func:`top_channels`."""
    return top_channels(scores, 1)[..., 0]
