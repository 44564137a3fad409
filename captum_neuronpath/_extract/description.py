"""What ``FILE.meta.json`` says about the paths: the layers and their widths, the token, the class names
(these do not change the records, so a resumed run may add or correct them: ``--class-names``); and the
model's fingerprint, which a resume compares.
"""

import functools
import hashlib
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._cli.loading import Inputs
from captum_neuronpath._utils.hooks import site_hooks
from captum_neuronpath._utils.sites import ModuleInput, module_of
from captum_neuronpath._utils.tokens import TokenType


def describe_paths(
    model: Module, layers: List[Module], token: Optional[TokenType], inputs: Inputs, class_names: Optional[Path]
) -> Dict[str, object]:
    """``layers`` (module ``name`` and ``width`` of each), ``token`` and ``class_names`` (from the file, one a
    line, else an image folder's class folders; ``None``: the indices)."""
    names = {id(module): name for name, module in model.named_modules()}

    def name_of(layer: Module) -> Optional[str]:
        name = names.get(id(module_of(layer)))
        return f"input:{name}" if name is not None and isinstance(layer, ModuleInput) else name

    widths = _layer_widths(model, layers, inputs)
    return {
        "layers": [{"name": name_of(layer), "width": width} for layer, width in zip(layers, widths)],
        "token": _token_text(token),
        "class_names": _class_names(class_names, inputs),
    }


def model_fingerprint(model: Module) -> str:
    """``sha256:HEX`` of the names, dtypes, shapes and bytes of ``model``'s parameters and buffers, so that a
    resumed run never mixes two models."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _layer_widths(model: Module, layers: List[Module], inputs: Inputs) -> List[int]:
    """Each layer's number of channels (the last axis of its value), from one forward pass on one input."""
    widths: Dict[int, int] = {}

    def record(position: int, value: Tensor) -> None:  # returns None: the value is left as it is
        widths.setdefault(position, value.shape[-1])

    _, batch, keywords = inputs.example(next(model.parameters()).device)
    recorders = {position: functools.partial(record, position) for position in range(len(layers))}
    with torch.no_grad(), site_hooks(layers, recorders):
        model(batch, **keywords)
    return [int(widths[position]) for position in range(len(layers))]


def _token_text(token: Optional[TokenType]) -> object:
    """The readout token as ``--token`` writes it: an int, ``"A:B"``, or ``"last"`` for each sequence's last token."""
    if token is None:
        return "last"
    if isinstance(token, slice):
        return f"{'' if token.start is None else token.start}:{'' if token.stop is None else token.stop}"
    if isinstance(token, int):
        return token
    return [int(t) for t in token]


def _class_names(file: Optional[Path], inputs: Inputs) -> Optional[List[str]]:
    if file is None:
        classes = getattr(inputs.dataset, "classes", None)  # an image folder's class folders
        return None if classes is None else [str(name) for name in classes]
    if not file.is_file():
        raise ValueError(f"--class-names {file} does not exist or is not a file")
    try:
        names = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"--class-names {file} is not UTF-8 text: {error}") from None
    while names and not names[-1].strip():
        names.pop()
    used = int(inputs.labels.max()) + 1 if len(inputs.labels) else 0
    if len(names) < used:
        raise ValueError(
            f"--class-names {file} holds {len(names)} names (one a line) but the labels use {used} classes "
            f"(0 to {used - 1})"
        )
    return names
