"""Models, labelled image sets and user callables named on the command line."""

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import Dataset, TensorDataset


def load_callable(spec: str, what: str) -> Callable:
    """The object ``callable`` of the module ``package.module`` named by ``package.module:callable``.

    ``what`` names the argument in error messages (``"model"``, ``"transform"``).
    """
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"{what} must be package.module:callable, got {spec!r}")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what} {spec!r}: cannot import {name} from {module_name} ({error})") from None
    if not callable(found):
        raise TypeError(f"{what} {spec!r} must name a callable, got {type(found).__name__}")
    return found


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

        model = timm.create_model(name, pretrained=pretrained)
    elif family == "torchvision":
        import torchvision

        model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)
    else:
        if pretrained:
            raise ValueError(f"pretrained weights exist only for timm:NAME and torchvision:NAME models, not {spec!r}")
        model = load_callable(spec, "model")()
        if not isinstance(model, Module):
            raise TypeError(f"model {spec!r} must return a torch.nn.Module, got {type(model).__name__}")
    if checkpoint is not None:
        model.load_state_dict(load_state_dict(checkpoint))
    return model.eval()


def load_state_dict(path: Path) -> dict:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_safetensors_data(path: Path) -> Tuple[Tensor, Tensor]:
    """``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)`` from a safetensors file."""
    from safetensors.torch import load_file

    tensors = load_file(Path(path))
    missing = {"images", "labels"} - set(tensors)
    if missing:
        raise ValueError(f"data file {path} must hold 'images' and 'labels'; it lacks {sorted(missing)}")
    images, labels = tensors["images"], tensors["labels"]
    if images.dim() != 4 or labels.dim() != 1 or len(images) != len(labels):
        raise ValueError(
            f"data file {path} must hold images (N, C, H, W) and labels (N,), "
            f"got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    return images.float(), labels.long()


@dataclass
class Inputs:
    """A labelled image set: ``dataset[i]`` is ``(image, label)``; ``files[i]`` the image's file."""

    dataset: Dataset
    files: Optional[List[str]]  # relative to the image folder; None for a tensor file

    def __len__(self) -> int:
        return len(self.dataset)


def load_inputs(data: Path, transform: Optional[str], model: Module) -> Inputs:
    """An ImageFolder directory or a safetensors file of ``images`` and ``labels``.

    Folder images are preprocessed by ``transform`` (``package.module:callable`` returning
    the transform) or else by timm's data configuration for ``model``.
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
        folder = ImageFolder(str(data), transform=preprocess)
        return Inputs(folder, [Path(file).relative_to(data).as_posix() for file, _ in folder.samples])
    if data.suffix == ".safetensors":
        if transform:
            raise ValueError("--transform applies to an image folder, not to a .safetensors file")
        images, labels = load_safetensors_data(data)
        return Inputs(TensorDataset(images, labels), None)
    raise ValueError(f"data must be an ImageFolder directory or a .safetensors file, got {data}")
