"""Token sets: which positions of a layer's ``(B, T, C)`` output (or ``(B, ..., C)``, positions flattened
row-major) carry the neurons. A token set read is ``(B, T_sel, C)``; ``None`` (a ``(B, C)`` output) and
per-example positions (a ``(B,)`` tensor) read as ``T_sel = 1``. Resolved against an output, a token
set becomes :data:`Positions`: ``None``, a list of non-negative positions, or a ``(B,)`` LongTensor.
"""

import math
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

TokenType = Union[int, slice, Sequence[int], Tensor, None]
Positions = Union[None, List[int], Tensor]


_CHANNELS_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)  # batch and instance norms
_CHANNELS_LAST = (nn.Linear, nn.LayerNorm, getattr(nn, "RMSNorm", nn.LayerNorm))


def channel_axis(module: nn.Module, previous: Optional[nn.Module], is_input: bool) -> Optional[str]:
    """Where the channel of ``module``'s output (its input with ``is_input``) is: ``"last"``, ``"first"`` or
    ``None``; an elementwise module keeps the layout of ``previous``, the module that ran before it."""
    for candidate in (module,) if is_input else (module, previous):
        if isinstance(candidate, _CHANNELS_LAST):
            return "last"
        if isinstance(candidate, _CHANNELS_FIRST):
            return "first"
    return None


def is_int(value: Any) -> bool:
    """``value`` is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_token(token: TokenType) -> TokenType:
    """Validate the type of ``token`` once, when an attribution object is built."""
    if isinstance(token, Tensor):
        if token.dtype.is_floating_point or token.dtype.is_complex or token.dtype == torch.bool or token.dim() > 1:
            raise TypeError(
                "token as a tensor must hold integer positions, one per example, shape (B,); "
                f"got dtype {token.dtype} and shape {tuple(token.shape)}"
            )
        return int(token) if token.dim() == 0 else token.detach().long()
    if isinstance(token, slice):
        if not all(b is None or is_int(b) for b in (token.start, token.stop, token.step)):
            raise TypeError(f"token as a slice must have int or None bounds, got {token!r}")
        if token.step == 0:
            raise ValueError("token as a slice must not have step 0")
        return token
    if token is None or is_int(token):
        return token
    if not isinstance(token, Sequence) or isinstance(token, str):
        raise TypeError(
            f"token must be an int, a slice, a sequence of ints, a (B,) tensor or None, got {type(token).__name__}"
        )
    if not token:
        raise ValueError("token must name at least one position, got an empty sequence")
    if not all(is_int(p) for p in token):
        raise TypeError(f"token as a sequence must hold only ints, got {token!r}")
    return tuple(token)  # a repeated position is refused once resolved: -1 and T - 1 are one


def expand_per_example(value: Tensor, batch_size: int, name: str) -> Tensor:
    """``value`` (one row per example) for a batch of ``batch_size`` rows: in a whole multiple, Captum's
    expansion of the examples, each row is repeated in place as Captum repeats the inputs."""
    rows = value.shape[0]
    if rows and batch_size % rows == 0:
        return value.repeat_interleave(batch_size // rows, dim=0)
    raise ValueError(
        f"{name} holds {rows} examples' values but the batch has {batch_size} examples; pass one per example "
        f"(or a batch that repeats each example the same number of times, as Captum's NoiseTunnel does)"
    )


def token_positions(token: TokenType, output_shape: torch.Size, where: str, axis: Optional[str] = "last") -> Positions:
    """Resolve ``token`` against a layer output's shape; a 4-D or larger output must have ``axis`` (see
    :func:`channel_axis`) ``"last"``. ``where`` names the layer in error messages."""
    shown = "a (B,) tensor" if isinstance(token, Tensor) else repr(token)
    if (token is None) != (len(output_shape) == 2) or len(output_shape) < 2:  # None reads a (B, C) output
        shape = "(B, C)" if token is None else "(B, T, C)"
        fix = "token as an int, slice or sequence of positions" if token is None else "token=None"
        raise ValueError(
            f"token={shown} needs a layer output of shape {shape}, but {where} outputs shape "
            f"{tuple(output_shape)}" + (f"; pass {fix}" if token is None or len(output_shape) == 2 else "")
        )
    if token is None:
        return None
    if len(output_shape) > 3 and axis != "last":
        known = "a convolutional feature map (B, C, H, W)" if axis == "first" else "a feature map whose channel axis"
        raise ValueError(
            f"{where} outputs {known} of shape {tuple(output_shape)}"
            + ("" if axis == "first" else " cannot be told from the modules that compute it")
            + ": a neuron is a channel of a (B, T, C), (B, ..., C) with the channel last, or (B, C) output. For a "
            "(B, C, H, W) output, wrap the layer so that it returns (B, H*W, C) (x.flatten(2).transpose(1, 2)) "
            "or (B, H, W, C) (x.permute(0, 2, 3, 1)); a (B, H, W, C) output is read as it is once its module, "
            "or the module before it, is a linear layer or layer norm. Pass the positions as the token set"
        )
    num_tokens = math.prod(output_shape[1:-1])
    if isinstance(token, slice):
        positions = list(range(num_tokens))[token]
        if not positions:
            raise IndexError(f"token={token!r} selects no position of the {num_tokens} tokens of {where}")
        return positions
    per_example = isinstance(token, Tensor)
    positions = expand_per_example(token, output_shape[0], "token") if per_example else torch.tensor(token).view(-1)
    outside = positions[(positions < -num_tokens) | (positions >= num_tokens)]
    if len(outside):
        raise IndexError(f"token position {int(outside[0])} is out of range for the {num_tokens} tokens of {where}")
    if per_example:
        return positions % num_tokens
    resolved = (positions % num_tokens).tolist()
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"token={token!r} names the same position twice for {where}")
    return resolved


def repeat_positions(positions: Positions, times: int) -> Positions:
    """``positions`` for ``times`` copies of the batch stacked one after another (``repeat``)."""
    return positions.repeat(times) if isinstance(positions, Tensor) else positions


def span(positions: Positions) -> Optional[Tuple[int, int]]:
    """``(start, stop)`` where ``positions`` is a run of consecutive tokens, else ``None``."""
    if isinstance(positions, list) and positions == list(range(positions[0], positions[0] + len(positions))):
        return positions[0], positions[0] + len(positions)
    return None


def _at(output: Tensor, positions: Union[List[int], Tensor]) -> Tuple[Any, Any]:
    """The index of the token set in a ``(B, T, C)`` output, ``(B, T_sel)`` entries; a run of tokens as a slice."""
    if isinstance(positions, Tensor):
        return torch.arange(output.shape[0], device=output.device).unsqueeze(1), positions.to(output.device)[:, None]
    run = span(positions)
    return slice(None), positions if run is None else slice(*run)


def read_tokens(output: Tensor, positions: Positions) -> Tensor:
    """The output at the token set, as ``(B, T_sel, C)``, a copy; a ``(B, ..., C)`` output is read flattened."""
    if positions is None:
        return output.unsqueeze(1)
    if output.dim() > 3:
        output = output.flatten(1, -2)
    if isinstance(positions, Tensor):
        return output[_at(output, positions)]
    return output[:, positions]  # a list index copies (a slice would keep the whole output alive)


def write_tokens(output: Tensor, positions: Positions, values: Tensor, in_place: bool = False) -> Tensor:
    """``output`` (a copy, or itself with ``in_place``) whose token set holds ``values`` ``(B, T_sel, C)``, the
    gradient there flowing to ``values`` only."""
    values = values.to(output.dtype)
    if positions is None:
        return values[:, 0]
    if output.dim() > 3:  # (B, ..., C): the positions index the flattened middle axes
        return write_tokens(output.flatten(1, -2), positions, values).view(output.shape)
    replaced = output if in_place else output.clone()
    replaced[_at(output, positions)] = values  # a run is written through a view: no indexing
    return replaced
