"""Models, labelled image sets and user callables named on the command line.

Every mistake in what a command line names (a model that does not exist, a checkpoint
that does not fit, a data file that cannot be read) is raised as :class:`ValueError`,
:class:`TypeError` or :class:`OSError` with a message naming the argument, chained to
the original error; the commands report it in one line.
"""

import difflib
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import Dataset, TensorDataset


class CommandLineError(Exception):
    """A mistake in a command line or in what it names: reported in one line, without traceback."""


class UnreadableImage(ValueError):
    """An image of an image folder that cannot be decoded, named by its file."""


def load_callable(spec: str, what: str) -> Callable:
    """The object ``callable`` of the module ``package.module`` named by ``package.module:callable``.

    Modules are found in the current directory too, as with ``python -m``. ``what`` names
    the argument in error messages (``"model"``, ``"transform"``).
    """
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"{what} must be package.module:callable, got {spec!r}")
    _import_from_current_directory()
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what} {spec!r}: cannot import {name} from {module_name} ({error})") from error
    if not callable(found):
        raise TypeError(f"{what} {spec!r} must name a callable, got {type(found).__name__}")
    return found


def _import_from_current_directory() -> None:
    """Put the current directory first on ``sys.path`` unless it is there already, as ``python -m`` does."""
    here = os.getcwd()
    if not any(entry in ("", ".", here) for entry in sys.path):
        sys.path.insert(0, here)


def load_model(spec: str, checkpoint: Optional[Path] = None, pretrained: bool = False) -> Module:
    """A model from ``timm:NAME``, ``torchvision:NAME`` or ``package.module:callable``, in eval mode.

    ``checkpoint`` (safetensors, or a state dict loaded with ``weights_only=True``) is
    loaded into the model; ``pretrained`` downloads timm's or torchvision's weights.
    """
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
    problems = []
    for what, keys in (
        ("missing", [k for k in expected if k not in state]),
        ("unexpected", [k for k in state if k not in expected]),
    ):
        if keys:
            problems.append(f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    shapes = [
        f"{key} {tuple(state[key].shape)} for {tuple(expected[key].shape)}"
        for key in expected
        if key in state and hasattr(state[key], "shape") and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    if shapes:
        problems.append(f"{len(shapes)} of another shape ({', '.join(shapes[:3])}{', ...' if len(shapes) > 3 else ''})")
    if problems:
        raise ValueError(f"checkpoint {checkpoint} does not fit model {spec!r}: tensors {'; '.join(problems)}")


def _unknown_model(spec: str, name: str, known: List[str], library: str) -> None:
    """Refuse a model name that ``library`` does not know, suggesting close ones."""
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"model {spec!r}: {library} has no model named {name!r}{hint}")


def load_state_dict(path: Path) -> dict:
    """The state dict in ``path``: safetensors, or a torch file loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist or is not a file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as error:  # each format has errors of its own; say which file, keep the cause
        raise ValueError(f"checkpoint {path} cannot be read: {type(error).__name__}: {error}") from error
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_safetensors_data(path: Path) -> Tuple[Tensor, Tensor]:
    """``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)`` from a safetensors file."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(Path(path))
    except OSError:
        raise
    except Exception as error:  # safetensors' own error for a malformed file
        raise ValueError(f"data file {path} is not a readable safetensors file: {error}") from error
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
    """A labelled image set: ``dataset[i]`` is ``(image, label)``; ``files[i]`` the image's file."""

    dataset: Dataset
    labels: Tensor  # (N,) int64, read without loading any image
    files: Optional[List[str]]  # relative to the image folder; None for a tensor file

    def __len__(self) -> int:
        return len(self.dataset)


def load_inputs(data: Path, transform: Optional[str], model: Module) -> Inputs:
    """An ImageFolder directory or a safetensors file of ``images`` and ``labels``.

    Folder images are preprocessed by ``transform`` (``package.module:callable`` returning
    the transform) or else by timm's data configuration for ``model``. An image that
    cannot be decoded raises :class:`UnreadableImage` naming its file when it is read.
    """
    if not data.exists():
        raise FileNotFoundError(f"data {data} does not exist")
    if data.is_dir():
        from timm.data import create_transform, resolve_data_config
        from torchvision.datasets import ImageFolder

        if transform:
            preprocess = load_callable(transform, "transform")()
        else:
            preprocess = create_transform(**resolve_data_config({}, model=model))
        folder = ImageFolder(str(data), transform=preprocess, loader=_read_image)
        files = [Path(file).relative_to(data).as_posix() for file, _ in folder.samples]
        return Inputs(folder, torch.tensor(folder.targets, dtype=torch.long), files)
    if data.suffix == ".safetensors":
        if transform:
            raise ValueError("--transform applies to an image folder, not to a .safetensors file")
        images, labels = load_safetensors_data(data)
        return Inputs(TensorDataset(images, labels), labels, None)
    raise ValueError(f"data must be an ImageFolder directory or a .safetensors file, got {data}")


def _read_image(path: str):
    """An image file as an RGB PIL image; a file PIL cannot decode is an :class:`UnreadableImage`."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImage(f"image {path} cannot be read: {error}") from error
