"""Interventions on path neurons (SPEC section 7): remove, enhance, prune."""

from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._utils.tokens import TokenType, check_token, read_tokens, token_positions, write_tokens
from captum_neuronpath._utils.validation import check_layers, describe_layer, format_neuron_indices

MODES = ("remove", "enhance", "prune")


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

    - ``"remove"``: the path's channels are set to 0;
    - ``"enhance"``: they are multiplied by ``factor``;
    - ``"prune"``: they are kept and a fraction ``p`` of each layer's *other* channels is
      set to 0, drawn at random (seeded by ``seed``) per example and layer.

    Args:

        layers (list[torch.nn.Module]): The neuron layers the path runs through.
        path (Tensor or sequence of int): One example's path per row, ``(B, L)`` or
                    ``(B, L, K)`` (a batch in the block must then have ``B`` rows), or
                    ``L`` ints shared by any batch.
        mode (str, optional): ``"remove"``, ``"enhance"`` or ``"prune"``.
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
    if mode == "prune":
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"p must be a fraction in [0, 1] for mode='prune', got {p!r}")
    shared = not isinstance(path, Tensor)
    if isinstance(path, Tensor) and path.dim() not in (2, 3):
        raise ValueError(
            f"path must have shape (B, L) or (B, L, K), or be a sequence of L ints; got {tuple(path.shape)}"
        )
    multipliers: Dict[Tuple[int, int], Tensor] = {}

    def multiplier(index: int, output_shape: torch.Size, reference: Tensor) -> Tensor:
        """``(B, 1, C)`` factors for layer ``index``, cached per batch size."""
        batch_size, num_channels = output_shape[0], output_shape[-1]
        key = (index, batch_size)
        if key not in multipliers:
            rows = batch_size if shared else path.shape[0]
            if not shared and rows != batch_size:
                raise ValueError(
                    f"path holds {rows} examples' paths but the batch run inside intervene() has {batch_size}; "
                    "run the matching batch, or pass a path shared by the batch (a sequence of L ints)"
                )
            indices = _layer_indices(path, index, len(layers), rows, num_channels)
            selected = torch.zeros(rows, num_channels, dtype=torch.bool).scatter_(1, indices, True)
            if mode == "remove":
                factors = (~selected).double()
            elif mode == "enhance":
                factors = torch.where(selected, float(factor), 1.0).double()
            else:
                factors = (~_pruned(selected, p, seed, index)).double()
            multipliers[key] = factors.unsqueeze(1)
        return multipliers[key].to(device=reference.device, dtype=reference.dtype)

    def hook_for(index: int) -> Any:
        def hook(module: Module, args: Any, output: Tensor) -> Tensor:
            positions = token_positions(token, output.shape, describe_layer(index, module))
            values = read_tokens(output, positions)
            return write_tokens(output, positions, values * multiplier(index, output.shape, values))

        return hook

    handles = []
    try:
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(hook_for(index)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _layer_indices(path: Any, index: int, num_layers: int, rows: int, num_channels: int) -> Tensor:
    """``(rows, K)`` channel indices of layer ``index`` on the CPU, validated."""
    # Only this layer's width is known here, so the other layers are checked when they run.
    indices = format_neuron_indices(path, "path", rows, [2**62] * num_layers, torch.device("cpu"))
    layer = indices[:, index]
    if layer.numel() and layer.max() >= num_channels:
        raise IndexError(
            f"path holds neuron {int(layer.max())} for layer {index}, which has channels 0..{num_channels - 1}"
        )
    return layer


def _pruned(selected: Tensor, p: float, seed: int, index: int) -> Tensor:
    """A mask of ``round(p * (C - K))`` unselected channels per row, seeded per layer."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    # Selected channels draw 2.0, so they rank after every unselected one.
    draws = torch.rand(selected.shape, generator=generator).masked_fill(selected, 2.0)
    rank = draws.argsort(dim=1).argsort(dim=1)
    counts = torch.round(p * (~selected).sum(1, keepdim=True))
    return rank < counts
