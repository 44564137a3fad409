"""Models and labelled image sets named on the command line."""

import importlib
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.nn import Module


def load_model(spec: str, checkpoint: Optional[Path] = None, pretrained: bool = False) -> Module:
    """A model from ``timm:NAME``, ``torchvision:NAME`` or ``package.module:callable``, in eval mode.

    ``checkpoint`` (safetensors, or a state dict loaded with ``weights_only=True``) is
    loaded into a timm model; ``pretrained`` downloads timm's or torchvision's weights.
    """
    family, sep, name = spec.partition(":")
    if not sep or not name:
        raise ValueError(f"model must be timm:NAME, torchvision:NAME or package.module:callable, got {spec!r}")
    if family == "timm":
        import timm

        model = timm.create_model(name, pretrained=pretrained)
        if checkpoint is not None:
            model.load_state_dict(load_state_dict(checkpoint))
    elif family == "torchvision":
        import torchvision

        model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)
        if checkpoint is not None:
            model.load_state_dict(load_state_dict(checkpoint))
    else:
        try:
            factory = getattr(importlib.import_module(family), name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"model {spec!r}: cannot import {name} from {family} ({error})") from None
        model = factory()
        if not isinstance(model, Module):
            raise TypeError(f"model {spec!r} must return a torch.nn.Module, got {type(model).__name__}")
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
