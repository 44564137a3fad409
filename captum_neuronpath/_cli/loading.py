"""Models, labelled image sets, token sequences and user callables named on the command line; a mistake in
what it names is a :class:`ValueError`, :class:`TypeError` or :class:`OSError` naming the argument."""

import difflib
import functools
import hashlib
import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import Module
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, TensorDataset, default_collate


class UnreadableImage(ValueError):
    """An image of an image folder that cannot be decoded: ``file`` and ``reason``."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"image {file} cannot be read: {reason}")
        self.file, self.reason = file, reason

    def __reduce__(self):  # from a worker process of the data loader
        return UnreadableImage, (self.file, self.reason)


def load_callable(spec: str, what: str) -> Callable:
    """The callable named by ``package.module:callable`` (found in the current directory too); ``what`` names
    the argument in error messages."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"{what} must be package.module:callable, got {spec!r}")
    if not any(entry in ("", ".", os.getcwd()) for entry in sys.path):  # as python -m does
        sys.path.insert(0, os.getcwd())
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what} {spec!r}: cannot import {name} from {module_name} ({error})") from error
    if not callable(found):
        raise TypeError(f"{what} {spec!r} must name a callable, got {type(found).__name__}")
    return found


def load_model(spec: str, checkpoint: Optional[Path] = None, pretrained: bool = False) -> Module:
    """A model from ``timm:NAME``, ``torchvision:NAME`` or ``package.module:callable``, with ``checkpoint``
    (see :func:`load_state_dict`) or (not both) timm's or torchvision's ``pretrained`` weights, in eval mode."""
    if checkpoint is not None and pretrained:
        raise ValueError("pass --checkpoint or --pretrained, not both")
    family, sep, name = spec.partition(":")
    if not sep or not name:
        raise ValueError(f"model must be timm:NAME, torchvision:NAME or package.module:callable, got {spec!r}")
    if family == "timm":
        import timm

        if not (timm.is_model(name) or name.startswith(("hf-hub:", "hf_hub:", "local-dir:"))):
            _unknown_model(spec, name, timm.list_models(), "timm")
        model = timm.create_model(name, pretrained=pretrained)
    elif family == "torchvision":
        import torchvision

        if name not in torchvision.models.list_models():
            _unknown_model(spec, name, torchvision.models.list_models(), "torchvision")
        model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)
    else:
        if pretrained:
            raise ValueError(f"pretrained weights exist only for timm:NAME and torchvision:NAME models, not {spec!r}")
        model = load_callable(spec, "model")()
        if not isinstance(model, Module):
            raise TypeError(f"model {spec!r} must return a torch.nn.Module, got {type(model).__name__}")
    if checkpoint is not None:
        state = load_state_dict(checkpoint)
        _check_fit(spec, checkpoint, model, state)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"checkpoint {checkpoint} does not fit model {spec!r}: {error}") from error
    return model.eval()


def _check_fit(spec: str, checkpoint: Path, model: Module, state: dict) -> None:
    """Refuse a state dict with missing, unexpected or misshapen tensors, in a few words."""
    expected = model.state_dict()
    kinds = {
        "missing": [k for k in expected if k not in state],
        "unexpected": [k for k in state if k not in expected],
        "of another shape": [
            f"{key} {tuple(state[key].shape)} for {tuple(expected[key].shape)}"
            for key in expected
            if key in state and hasattr(state[key], "shape") and tuple(state[key].shape) != tuple(expected[key].shape)
        ],
    }
    problems = [f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                for what, keys in kinds.items() if keys]  # fmt: skip
    if problems:
        raise ValueError(f"checkpoint {checkpoint} does not fit model {spec!r}: tensors {'; '.join(problems)}")


def _unknown_model(spec: str, name: str, known: List[str], library: str) -> None:
    """Refuse a model name that ``library`` does not know, suggesting close ones."""
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"model {spec!r}: {library} has no model named {name!r}{hint}")


def load_state_dict(path: Path) -> dict:
    """The state dict in ``path``: safetensors, or a torch file loaded with ``weights_only=True``."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist or is not a file")
    torch_load = functools.partial(torch.load, map_location="cpu", weights_only=True)
    state = _read(load_file if path.suffix == ".safetensors" else torch_load, path, f"checkpoint {path} cannot be read")
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _read(read: Callable[[Path], object], path: Path, problem: str) -> object:
    """``read(path)``; an error of the file's format (each has its own) is a ValueError ``problem: cause``."""
    try:
        return read(path)
    except OSError:
        raise
    except Exception as error:
        raise ValueError(f"{problem}: {type(error).__name__}: {error}") from error


def load_safetensors_data(path: Path) -> Tuple[Tensor, Tensor]:
    """``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)`` from a safetensors file."""
    from safetensors.torch import load_file

    tensors = _read(load_file, Path(path), f"data file {path} is not a readable safetensors file")
    missing = {"images", "labels"} - set(tensors)
    if missing:
        raise ValueError(f"data file {path} must hold 'images' and 'labels'; it lacks {sorted(missing)}")
    images, labels = tensors["images"], tensors["labels"]
    if images.dim() != 4 or labels.dim() != 1 or len(images) != len(labels):
        raise ValueError(
            f"data file {path} must hold images (N, C, H, W) and labels (N,), "
            f"got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ValueError(f"data file {path}: labels must be class indices (integers), got fractional values")
    return images.float(), labels.long()


@dataclass
class Inputs:
    """A labelled data set: ``dataset[i]`` is ``(input, label)``; ``files[i]`` the image's file; ``source(i)``
    the bytes input ``i`` is made of; ``collate`` pads token sequences into ``(input_ids, labels, mask)``."""

    dataset: Dataset
    labels: Tensor  # (N,) int64, read without loading any image
    files: Optional[List[str]]  # relative to the image folder; None for a tensor or text file
    source: Callable[[int], bytes]
    collate: Callable = default_collate
    text: bool = False

    def __len__(self) -> int:
        return len(self.dataset)

    def identity(self, index: int) -> Dict[str, object]:
        """What a record says of input ``index``: its file, label and fingerprint, a SHA-256 of the bytes it is
        made of (unlike a file's size and time, it holds for a file rewritten in place or copied without its
        times), so that a resumed run never mixes two versions of an input."""
        return {
            "file": None if self.files is None else self.files[index],
            "label": int(self.labels[index]),
            "fingerprint": "sha256:" + hashlib.sha256(self.source(index)).hexdigest(),
        }

    def example(self, device: torch.device) -> Optional[Tuple[int, Tensor, Dict[str, Tensor]]]:
        """The longest token sequence or the first image that can be read (an unreadable one stops the run when
        its batch comes), as ``(index, batch of one, keyword arguments of the model)`` on ``device``; ``None``
        when there is none."""
        order = sorted(range(len(self)), key=lambda i: -len(self.dataset[i][0])) if self.text else range(len(self))
        for index in order:
            try:
                inputs, _, *mask = self.collate([self.dataset[index]])
            except UnreadableImage:
                continue
            return index, inputs.to(device), {"attention_mask": mask[0].to(device)} if mask else {}
        return None


def load_inputs(data: Path, transform: Optional[str], model: Module) -> Inputs:
    """An ImageFolder directory (preprocessed by ``transform``, else by timm's data configuration for the model
    as built), a safetensors file of ``images`` and ``labels``, or a ``.jsonl`` file of token sequences
    (right-padded with the model's ``config.pad_token_id``, or 0)."""
    if not data.exists():
        raise FileNotFoundError(f"data {data} does not exist")
    if data.is_dir():
        from timm.data import create_transform, resolve_data_config
        from torchvision.datasets import ImageFolder

        if transform:
            preprocess = load_callable(transform, "transform")()
        else:
            config = resolve_data_config({}, model=model)
            # A timm model built with another img_size keeps its pretrained config's: use the size as built.
            built = getattr(getattr(model, "patch_embed", None), "img_size", None)
            if built is not None:
                config["input_size"] = (config["input_size"][0], *built)
            preprocess = create_transform(**config)
        folder = ImageFolder(str(data), transform=preprocess, loader=read_image)
        files = [Path(file).relative_to(data).as_posix() for file, _ in folder.samples]
        labels = torch.tensor(folder.targets, dtype=torch.long)
        return Inputs(folder, labels, files, functools.partial(_file_bytes, folder))
    if data.suffix in (".safetensors", ".jsonl") and transform:
        raise ValueError(f"--transform applies to an image folder, not to a {data.suffix} file")
    if data.suffix == ".safetensors":
        images, labels = load_safetensors_data(data)
        return Inputs(TensorDataset(images, labels), labels, None, functools.partial(_tensor_bytes, images))
    if data.suffix == ".jsonl":
        sequences, targets = load_text_data(data)
        pad_id = getattr(getattr(model, "config", None), "pad_token_id", None)
        collate = functools.partial(_pad, pad_id if isinstance(pad_id, int) else 0)
        source = functools.partial(_tensor_bytes, sequences)
        return Inputs(list(zip(sequences, targets)), targets, None, source, collate, text=True)  # item i: (ids, target)
    raise ValueError(f"data must be an ImageFolder directory, a .safetensors file or a .jsonl file, got {data}")


def _file_bytes(folder, index: int) -> bytes:
    """Image ``index``'s file as bytes; ``b""`` for a file that is gone or cannot be read."""
    try:
        return Path(folder.samples[index][0]).read_bytes()
    except OSError:
        return b""


def _tensor_bytes(tensors: Sequence[Tensor], index: int) -> bytes:
    """Tensor ``index``'s dtype, shape and bytes."""
    tensor = tensors[index].contiguous()
    return f"{tensor.dtype}{tuple(tensor.shape)}".encode() + tensor.numpy().tobytes()


def load_text_data(path: Path) -> Tuple[List[Tensor], Tensor]:
    """The sequences and targets of a JSON Lines file of ``{"input_ids": [int, ...], "target": int}``."""
    sequences, targets = [], []
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"data file {path} line {number}"
        try:
            record = json.loads(raw)
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
            raise ValueError(f"{where} is not JSON: {error}") from error
        if not isinstance(record, dict):
            raise ValueError(f"{where} must be an object with input_ids and target, got {type(record).__name__}")
        missing = [key for key in ("input_ids", "target") if key not in record]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(repr(key) for key in missing)}")
        ids, target = record["input_ids"], record["target"]
        if not isinstance(ids, list) or not ids:
            raise ValueError(f"{where}: input_ids must be a non-empty list of token ids, got {json.dumps(ids)[:60]}")
        bad = [value for value in ids if not _is_token_id(value)]
        if bad:
            raise ValueError(f"{where}: input_ids must hold non-negative integers, got {json.dumps(bad[0])[:60]}")
        if not _is_token_id(target):
            raise ValueError(f"{where}: target must be a non-negative integer token id, got {json.dumps(target)[:60]}")
        sequences.append(torch.tensor(ids, dtype=torch.long))
        targets.append(target)
    return sequences, torch.tensor(targets, dtype=torch.long)


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _pad(pad_id: int, items: Sequence[Tuple[Tensor, Tensor]]) -> Tuple[Tensor, Tensor, Tensor]:
    """Collates ``(ids, target)`` items into ``(input_ids, targets, attention_mask)``, right-padded."""
    sequences = [ids for ids, _ in items]
    input_ids = pad_sequence(sequences, batch_first=True, padding_value=pad_id)
    mask = pad_sequence([torch.ones_like(ids) for ids in sequences], batch_first=True)
    return input_ids, torch.stack([target for _, target in items]), mask


def read_image(path: str):
    """An image file as an RGB PIL image; a file PIL cannot decode is an :class:`UnreadableImage`."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImage(path, str(error)) from error
