"""Files that a killed run must never leave half written, and the cache of trained weights."""

import contextlib
import os
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.nn import Module


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` durably: a crash or a failed write leaves the old or the new file, never a mix."""
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from error
    with contextlib.suppress(OSError):  # the rename made durable, where the directory can be synced
        descriptor = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def cached_model(
    path: Path,
    build: Callable[[], Module],
    train: Callable[[], Module],
    log: Optional[Callable[[str], None]],
    description: str,
) -> Module:
    """The model whose weights are cached at ``path`` (trained and cached first if they are not), in eval mode."""
    from safetensors.torch import load_file, save

    if path.exists():
        model = build()
        model.load_state_dict(load_file(path))
        return model.eval()
    if log is not None:
        log(f"training {description} once; caching it at {path}")
    model = train().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Own contiguous copies: safetensors refuses tied weights (a GPT-2's) and strided views.
    state = {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}
    write_atomically(path, save(state))
    return model
