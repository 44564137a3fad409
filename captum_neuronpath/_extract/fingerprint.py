"""SHA-256 fingerprints of the model and of each input's bytes, so a resumed run never mixes two of either
(unlike a file's size and time, they hold for a file rewritten in place or copied without its times)."""

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


def input_identity(inputs: Inputs, index: int) -> Dict[str, object]:
    """What a record says of input ``index``: its file, label and fingerprint (of the bytes it is made of)."""
    return {
        "file": None if inputs.files is None else inputs.files[index],
        "label": int(inputs.labels[index]),
        "fingerprint": "sha256:" + hashlib.sha256(inputs.source(index)).hexdigest(),
    }
