"""Fingerprints of the model and of each input, so a resumed run never mixes two of either.

The model's fingerprint is a SHA-256 of every parameter and buffer (name, dtype, shape
and bytes, in ``state_dict`` order): any change of weights, even to one bit, changes it,
and a resume with another model is refused.

Each record carries its input's fingerprint: a SHA-256 of the bytes the input is made of
(an image file's bytes, a tensor's dtype, shape and bytes, a token sequence's ids). A
resumed run compares it, with the record's file and label, to the input now at the
record's index, and computes again the records whose input changed or vanished. Hashing
an image file costs far less than decoding it (see the performance page), and unlike a
file's size and modification time it also holds when a file is rewritten in place or
copied without its times.
"""

import hashlib
from typing import Dict

import torch
from torch.nn import Module

from captum_neuronpath._cli.loading import Inputs


def model_fingerprint(model: Module) -> str:
    """``sha256:HEX`` of the names, dtypes, shapes and bytes of ``model``'s parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def input_fingerprint(inputs: Inputs, index: int) -> str:
    """``sha256:HEX`` of the bytes input ``index`` is made of."""
    return "sha256:" + hashlib.sha256(inputs.source(index)).hexdigest()


def input_identity(inputs: Inputs, index: int) -> Dict[str, object]:
    """What a record says of input ``index``: its file, label and fingerprint."""
    return {
        "file": None if inputs.files is None else inputs.files[index],
        "label": int(inputs.labels[index]),
        "fingerprint": input_fingerprint(inputs, index),
    }
