"""The embedded offline default: a small timm ViT trained on scikit-learn's bundled digits.

The images, split and architecture are those of the reference fixtures: pixel values / 16,
nearest-neighbour upsampled from 8x8 to 32x32, three channels, ``(x - 0.5) / 0.5``; a
``torch.randperm(1797)`` with seed 0 whose first 1400 indices train and the remaining 397
test; a 6-block ViT with 64-dimensional tokens and :data:`NUM_NEURONS` MLP neurons per
block. It is trained once and its weights cached, so later calls load them. Needs
scikit-learn (``pip install captum-neuronpath[demo]``).
"""

import os
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import Module

from captum_neuronpath import metrics
from captum_neuronpath._utils.files import cached_model

NUM_TRAIN = 1400
NUM_NEURONS = 256  # MLP neurons per block: embed_dim 64 times mlp_ratio 4


def load_digits_images() -> Tuple[Tensor, Tensor]:
    """All 1797 digits as ``(1797, 3, 32, 32)`` images in ``[-1, 1]`` and ``(1797,)`` labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits default needs scikit-learn: pip install 'captum-neuronpath[demo]'") from None
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    images = images.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # nearest 8x8 -> 32x32
    images = images.unsqueeze(1).repeat(1, 3, 1, 1)
    return (images - 0.5) / 0.5, torch.tensor(digits.target, dtype=torch.long)


def digits_split(seed: int = 0) -> Tuple[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor]]:
    """``((train_images, train_labels), (test_images, test_labels))``: 1400 and 397 digits."""
    images, labels = load_digits_images()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    train, test = order[:NUM_TRAIN], order[NUM_TRAIN:]
    return (images[train], labels[train]), (images[test], labels[test])


def build_digits_vit(depth: int = 6) -> Module:
    """The fixtures' architecture (a timm ``VisionTransformer``), randomly initialised."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=64, depth=depth,
        num_heads=4, mlp_ratio=4.0, qkv_bias=True, global_pool="token", class_token=True,
    )  # fmt: skip


def train_digits_vit(
    depth: int = 6, epochs: int = 40, seed: int = 0, log: Optional[Callable[[str], None]] = None
) -> Module:
    r"""
    Train the digits ViT from scratch on the 1400 training digits: AdamW with a one-cycle
    schedule, batches of 64, random shifts of up to one pixel. Deterministic on a given
    machine.

    Args:

        depth (int, optional): Number of blocks.
                    Default: ``6``
        epochs (int, optional): Passes over the training digits.
                    Default: ``40``
        seed (int, optional): Seed of the initialisation, batches and shifts.
                    Default: ``0``
        log (Callable, optional): Receives the test accuracy every 10 epochs.
                    Default: ``None``

    Returns:
        The trained model, in eval mode.
    """
    (images, labels), test = digits_split()
    torch.manual_seed(seed)
    model = build_digits_vit(depth)
    step = _one_cycle_adamw(model, total_steps=epochs * ((len(images) + 63) // 64), weight_decay=0.05)
    generator, size = torch.Generator().manual_seed(seed), images.shape[-1]
    for epoch in range(epochs):
        model.train()
        for batch in torch.randperm(len(images), generator=generator).split(64):
            # Random shifts of up to one pixel, the background (-1) filling in.
            padded = torch.nn.functional.pad(images[batch], (1,) * 4, value=-1.0)
            offsets = torch.randint(0, 3, (len(batch), 2), generator=generator).tolist()
            shifted = torch.stack([p[:, y : y + size, x : x + size] for p, (y, x) in zip(padded, offsets)])
            step(torch.nn.functional.cross_entropy(model(shifted), labels[batch]))
        if log is not None and (epoch + 1) % 10 == 0:
            log(f"epoch {epoch + 1}/{epochs}: test accuracy {metrics.accuracy(model, test):.3f}")
    return model.eval()


def _one_cycle_adamw(
    model: Module, total_steps: int, weight_decay: float, betas: Tuple[float, float] = (0.9, 0.999)
) -> Callable[[Tensor], None]:
    """An optimiser step on a loss: AdamW with a one-cycle schedule peaking at 3e-3 over ``total_steps``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=weight_decay, betas=betas)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=total_steps, pct_start=0.1)

    def step(loss: Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()

    return step


def default_cache_dir() -> Path:
    """``$CAPTUM_NEURONPATH_CACHE``, or ``~/.cache/captum_neuronpath``."""
    return Path(os.environ.get("CAPTUM_NEURONPATH_CACHE", Path.home() / ".cache" / "captum_neuronpath"))


def digits_vit(
    cache_dir: Optional[Path] = None,
    depth: int = 6,
    epochs: int = 40,
    seed: int = 0,
    log: Optional[Callable[[str], None]] = None,
) -> Module:
    r"""
    The digits ViT: loaded from the cache, or trained once and cached.

    Args:

        cache_dir (Path, optional): Where the weights live.
                    Default: :func:`default_cache_dir`
        depth, epochs, seed, log: As for :func:`train_digits_vit`.

    Returns:
        The model, in eval mode.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"digits_vit_d{depth}_e{epochs}_s{seed}.safetensors"
    build, train = lambda: build_digits_vit(depth), lambda: train_digits_vit(depth, epochs, seed, log)
    return cached_model(path, build, train, log, f"the digits ViT ({epochs} epochs)")
