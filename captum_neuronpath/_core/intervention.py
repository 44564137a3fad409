"""Interventions on path neurons, as in the paper's evaluation: remove, enhance, prune."""

from contextlib import contextmanager
from functools import partial
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._utils.hooks import describe_layer, site_hooks
from captum_neuronpath._utils.tokens import (
    TokenType,
    check_token,
    expand_per_example,
    read_tokens,
    token_positions,
    write_tokens,
)
from captum_neuronpath._utils.validation import check_int, check_layers, format_neuron_indices

MODES = ("remove", "enhance", "prune")
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed accepts


@contextmanager
def intervene(
    layers: Sequence[Module],
    path: Union[Tensor, Sequence[int]],
    mode: str = "remove",
    token: TokenType = 0,
    factor: float = 2.0,
    p: Optional[float] = None,
    seed: int = 0,
) -> Iterator[None]:
    r"""
    Within the ``with`` block, the model runs with its path neurons intervened on at the
    token set; on exit (errors included) every hook is removed and the model is exactly
    as it was.

    Args:

        layers (list[torch.nn.Module]): The neuron layers the path runs through.
        path (Tensor or sequence of int): One example's path per row, ``(B, L)`` or
                    ``(B, L, K)`` (a batch in the block must then have ``B`` rows, or a
                    whole multiple of ``B`` that repeats each example in place, as
                    Captum's ``NoiseTunnel`` does), or ``L`` ints shared by any batch.
        mode (str, optional): ``"remove"`` sets the path's channels to 0, ``"enhance"``
                    multiplies them by ``factor``, ``"prune"`` keeps them and sets a
                    fraction ``p`` of each layer's *other* channels to 0, drawn at random
                    (seeded by ``seed``) per example and layer.
                    Default: ``"remove"``
        token (int, slice, sequence of int or None, optional): The token set.
                    Default: ``0``
        factor (float, optional): The multiplier of ``"enhance"``.
                    Default: ``2.0``
        p (float, optional): The fraction of other channels ``"prune"`` zeroes, in
                    ``[0, 1]``; required for ``"prune"``.
                    Default: ``None``
        seed (int, optional): Seed of the pruned channels.
                    Default: ``0``

    Examples::

        >>> import timm, torch, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=3, num_classes=10).eval()
        >>> images = torch.randn(2, 3, 32, 32)
        >>> with cnp.intervene(cnp.vit_mlp_layers(model), [5, 17, 2], mode="remove"):
        ...     logits = model(images)
        >>> logits.shape
        torch.Size([2, 10])
    """
    layers = check_layers(layers)
    token = check_token(token)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise TypeError(f"factor must be a number, got {type(factor).__name__}")
    if mode == "prune" and p is None:
        raise ValueError("p is required for mode='prune': the fraction in [0, 1] of the other channels to zero")
    if p is not None:
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise TypeError(f"p must be a number, the fraction in [0, 1] that mode='prune' zeroes; got {p!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"p must be a fraction in [0, 1] for mode='prune', got {p!r}")
    check_int(seed, "seed", *SEED_RANGE)
    if isinstance(path, Tensor) and path.dim() not in (2, 3):
        raise ValueError(
            f"path must have shape (B, L) or (B, L, K), or be a sequence of L ints; got shape {tuple(path.shape)}"
        )
    # Widths are known only when a layer runs: each layer's indices are checked then.
    rows = len(path) if isinstance(path, Tensor) else 1  # L ints are shared by any batch
    indices = format_neuron_indices(path, "path", rows, [2**62] * len(layers), torch.device("cpu"))
    multipliers: Dict[Tuple[int, int], Tensor] = {}

    def multiplier(index: int, values: Tensor) -> Tensor:
        """``(rows, 1, C)`` factors for layer ``index``, cached per batch size."""
        rows, num_channels = values.shape[0], values.shape[-1]
        if (index, rows) not in multipliers:
            layer_indices = expand_per_example(indices[:, index], rows, "path")
            if layer_indices.max() >= num_channels:
                raise IndexError(
                    f"path holds neuron {int(layer_indices.max())} for {describe_layer(index, layers[index])}, "
                    f"which has {num_channels} channels (0..{num_channels - 1})"
                )
            selected = torch.zeros(rows, num_channels, dtype=torch.bool).scatter_(1, layer_indices, True)
            if mode == "remove":
                factors = (~selected).double()
            elif mode == "enhance":
                factors = torch.where(selected, float(factor), 1.0).double()
            else:
                factors = (~_pruned(selected, p, seed, index)).double()
            multipliers[(index, rows)] = factors.unsqueeze(1)
        return multipliers[(index, rows)].to(device=values.device, dtype=values.dtype)

    def intervention(index: int, output: Tensor) -> Tensor:
        positions = token_positions(token, output.shape, describe_layer(index, layers[index]))
        values = read_tokens(output, positions)
        return write_tokens(output, positions, values * multiplier(index, values))

    with site_hooks(layers, {index: partial(intervention, index) for index in range(len(layers))}):
        yield


def _pruned(selected: Tensor, p: float, seed: int, index: int) -> Tensor:
    """A mask of ``round(p * (C - K))`` unselected channels per row, seeded per layer."""
    # Reduced modulo 2**64, as torch reads a negative seed, so every seed of SEED_RANGE works.
    generator = torch.Generator().manual_seed((seed * 1_000_003 + index) % 2**64)
    # Selected channels draw 2.0, so they rank after every unselected one.
    draws = torch.rand(selected.shape, generator=generator).masked_fill(selected, 2.0)
    rank = draws.argsort(dim=1).argsort(dim=1)
    counts = torch.round(p * (~selected).sum(1, keepdim=True))
    return rank < counts
