"""Token sets: which positions of a layer's ``(B, T, C)`` output carry the neurons.

A token set is an ``int`` (one token), a ``slice`` or a sequence of ints (several
tokens), ``None`` for layers whose output is ``(B, C)``, or a ``(B,)`` integer tensor:
one position per example (the last real token of each padded sequence, say). Every
activation or gradient read at a token set has shape ``(B, T_sel, C)``; ``None`` and
per-example positions read as ``T_sel = 1``.

Resolved against a layer's output, a token set becomes a :data:`Positions`: ``None``,
a list of non-negative positions shared by the batch, or a ``(B,)`` LongTensor.
"""

from typing import List, Sequence, Union

import torch
from torch import Tensor

TokenType = Union[int, slice, Sequence[int], Tensor, None]
Positions = Union[None, List[int], Tensor]


def check_token(token: TokenType) -> TokenType:
    """Validate the type of ``token`` once, when an attribution object is built."""
    if token is None:
        return token
    if isinstance(token, slice):
        bounds = (token.start, token.stop, token.step)
        if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds):
            raise TypeError(f"token as a slice must have int or None bounds, got {token!r}")
        if token.step == 0:
            raise ValueError("token as a slice must not have step 0")
        return token
    if isinstance(token, bool):
        raise TypeError("token must be an int, a slice, a sequence of ints, a (B,) tensor or None, got a bool")
    if isinstance(token, int):
        return token
    if isinstance(token, Tensor):
        if token.dtype.is_floating_point or token.dtype.is_complex or token.dtype == torch.bool or token.dim() > 1:
            raise TypeError(
                "token as a tensor must hold integer positions, one per example, shape (B,); "
                f"got dtype {token.dtype} and shape {tuple(token.shape)}"
            )
        if token.dim() == 0:
            return int(token)
        if token.numel() == 0:
            raise ValueError("token as a tensor must hold one position per example, got an empty tensor")
        return token.detach().long()
    if isinstance(token, Sequence) and not isinstance(token, str):
        positions = list(token)
        if not positions:
            raise ValueError("token must name at least one position, got an empty sequence")
        if not all(isinstance(p, int) and not isinstance(p, bool) for p in positions):
            raise TypeError(f"token as a sequence must hold only ints, got {token!r}")
        if len(set(positions)) != len(positions):
            raise ValueError(f"token must not repeat a position, got {token!r}")
        return tuple(positions)
    raise TypeError(
        f"token must be an int, a slice, a sequence of ints, a (B,) tensor or None, got {type(token).__name__}"
    )


def expand_per_example(value: Tensor, batch_size: int, name: str) -> Tensor:
    """``value`` (one row per example) for a batch of ``batch_size`` rows.

    A batch that is a whole multiple of ``value``'s is taken to be Captum's expansion of
    the examples (``NoiseTunnel``, ``captum.metrics``): each row is repeated in place
    (``repeat_interleave``), as Captum repeats the inputs.
    """
    rows = value.shape[0]
    if rows == batch_size:
        return value
    if rows and batch_size % rows == 0:
        return value.repeat_interleave(batch_size // rows, dim=0)
    raise ValueError(
        f"{name} holds {rows} examples' values but the batch has {batch_size} examples; pass one per example "
        f"(or a batch that repeats each example the same number of times, as Captum's NoiseTunnel does)"
    )


def token_positions(token: TokenType, output_shape: torch.Size, where: str) -> Positions:
    """Resolve ``token`` against a layer output's shape; ``None`` means the whole ``(B, C)``.

    ``where`` names the layer in error messages.
    """
    if token is None:
        if len(output_shape) != 2:
            raise ValueError(
                f"token=None needs a layer output of shape (B, C), but {where} outputs shape "
                f"{tuple(output_shape)}; pass token as an int, slice or sequence of positions"
            )
        return None
    if len(output_shape) == 4:
        raise ValueError(
            f"{where} outputs a convolutional feature map of shape {tuple(output_shape)}, which is not "
            "supported: a neuron is a channel of a (B, T, C) or (B, C) output. Wrap the layer so that it "
            "returns (B, H*W, C) (x.flatten(2).transpose(1, 2)) and pass the spatial positions as the token set"
        )
    shown = "a (B,) tensor" if isinstance(token, Tensor) else repr(token)
    if len(output_shape) != 3:
        raise ValueError(
            f"token={shown} needs a layer output of shape (B, T, C), but {where} outputs shape "
            f"{tuple(output_shape)}" + ("; pass token=None" if len(output_shape) == 2 else "")
        )
    num_tokens = output_shape[1]
    if isinstance(token, Tensor):
        positions = expand_per_example(token, output_shape[0], "token")
        low, high = int(positions.min()), int(positions.max())
        if low < -num_tokens or high >= num_tokens:
            bad = low if low < -num_tokens else high
            raise IndexError(f"token position {bad} is out of range for the {num_tokens} tokens of {where}")
        return positions % num_tokens
    if isinstance(token, slice):
        positions = list(range(num_tokens))[token]
        if not positions:
            raise IndexError(f"token={token!r} selects no position of the {num_tokens} tokens of {where}")
        return positions
    positions = [token] if isinstance(token, int) else list(token)
    for p in positions:
        if not -num_tokens <= p < num_tokens:
            raise IndexError(f"token position {p} is out of range for the {num_tokens} tokens of {where}")
    resolved = [p % num_tokens for p in positions]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"token={token!r} names the same position twice for {where}")
    return resolved


def repeat_positions(positions: Positions, times: int) -> Positions:
    """``positions`` for ``times`` copies of the batch stacked one after another (``repeat``)."""
    return positions.repeat(times) if isinstance(positions, Tensor) else positions


def read_tokens(output: Tensor, positions: Positions) -> Tensor:
    """The output at the token set, as ``(B, T_sel, C)``."""
    if positions is None:
        return output.unsqueeze(1)
    if isinstance(positions, Tensor):
        rows = torch.arange(output.shape[0], device=output.device)
        return output[rows, positions.to(output.device)].unsqueeze(1)
    return output[:, positions]


def write_tokens(output: Tensor, positions: Positions, values: Tensor) -> Tensor:
    """A copy of ``output`` whose token set holds ``values`` (``(B, T_sel, C)``).

    The copy keeps the autograd link to ``values`` only, so gradients reaching the
    token set flow to ``values`` and not to what computed ``output`` there.
    """
    if positions is None:
        return values[:, 0].to(output.dtype)
    replaced = output.clone()
    if isinstance(positions, Tensor):
        rows = torch.arange(output.shape[0], device=output.device)
        replaced[rows, positions.to(output.device)] = values[:, 0].to(output.dtype)
    else:
        replaced[:, positions] = values.to(output.dtype)
    return replaced
