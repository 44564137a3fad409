"""Fingerprints of the model and the data, so a resumed run never mixes two of either.

The model's fingerprint is a SHA-256 of every parameter and buffer (name, dtype, shape
and bytes, in ``state_dict`` order): any change of weights, even to one bit, changes it.
Hashing reads each tensor once, a small cost next to one neuron path (hundreds of
forward and backward passes).

The data's fingerprint is, for a ``.safetensors`` file, a SHA-256 of its bytes (the file
is read in full for the images anyway). For an image folder it is a SHA-256 of the
sorted list of the images the folder yields with each one's size and modification time
(nanoseconds): re-reading every image would cost as much as a pass over the data set;
the listing changes when an image is added, removed, renamed, moved to another class or
rewritten, the same test ``make`` and ``rsync`` rely on. It misses only a rewrite that
keeps both the size and the modification time, which takes a deliberate ``touch``.
Copying a folder without preserving times (``cp -r`` rather than ``cp -a``) changes it.
"""

import hashlib
import os
from pathlib import Path
from typing import List, Optional

import torch
from torch.nn import Module

CHUNK = 1 << 20


def model_fingerprint(model: Module) -> str:
    """``sha256:HEX`` of the names, dtypes, shapes and bytes of ``model``'s parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def data_fingerprint(data: Path, files: Optional[List[str]]) -> str:
    """``sha256:HEX`` of a data file's bytes, or of an image folder's ``files`` with sizes and times."""
    digest = hashlib.sha256()
    if files is None:
        with open(data, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
        return "sha256:" + digest.hexdigest()
    for file in sorted(files):
        status = os.stat(data / file)
        digest.update(f"{file}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return "sha256:" + digest.hexdigest()
