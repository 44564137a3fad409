"""Factories that `neuronpath extract` imports by name in tests/test_extract.py.

The command runs in subprocesses with ``PYTHONPATH=tests``, so these are
``extract_models:tiny_vit`` and friends on its command line.
"""

import time

import torch
from timm.models.vision_transformer import VisionTransformer
from torchvision import transforms

# What timm's resolve_data_config reads: the image folder is resized to the model's 16 x 16.
DATA_CONFIG = dict(input_size=(3, 16, 16), interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)
OPTIONS = dict(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=4)


def _seeded(cls) -> VisionTransformer:
    torch.manual_seed(7)
    model = cls(**OPTIONS)
    model.pretrained_cfg = dict(DATA_CONFIG)
    return model


def tiny_vit() -> VisionTransformer:
    """A 2-block ViT on 16 x 16 images with 32 neurons per block, the same weights every call."""
    return _seeded(VisionTransformer)


def slow_tiny_vit() -> VisionTransformer:
    """:func:`tiny_vit` (same weights, same class, so the same computation) with a slow forward
    pass, so a test can kill the command mid-run."""
    model = _seeded(VisionTransformer)
    model.patch_embed.register_forward_pre_hook(lambda module, args: time.sleep(0.05))
    return model


def resize_16():
    """A --transform factory: any image to a normalised 3 x 16 x 16 tensor."""
    return transforms.Compose(
        [transforms.Resize((16, 16)), transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
    )


def tiny_gpt2():
    """A 2-block GPT-2 language model over 23 tokens with 64 neurons per block, the same weights every call."""
    import transformers

    torch.manual_seed(7)
    config = transformers.GPT2Config(
        vocab_size=23, n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config)


def timm_vit_32():
    """A timm ViT created with img_size=32, whose pretrained config still says 224 x 224."""
    import timm

    torch.manual_seed(7)
    return timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0,
        num_classes=4,
    )  # fmt: skip


class _Reordered(torch.nn.Module):
    """Two hidden layers registered in the opposite order to the one the forward runs them."""

    def __init__(self):
        super().__init__()
        self.second, self.first = torch.nn.Linear(8, 4), torch.nn.Linear(768, 8)

    def forward(self, images):
        return self.second(self.first(images.flatten(1)))


def reordered():
    torch.manual_seed(7)
    return _Reordered()


def with_an_unused_layer():
    """:func:`reordered` with a module that the forward never calls."""
    model = reordered()
    model.unused = torch.nn.Linear(4, 4)
    return model


def memory_bound_tiny_vit(rows: int = 4):
    """:func:`tiny_vit` on a device that holds ``rows`` rows: a larger pass raises ``torch.OutOfMemoryError``
    (a wrapper, so its sites are ``model.blocks.*.mlp.act``)."""
    from helpers import MemoryBound

    return MemoryBound(tiny_vit(), rows)


def one_row_tiny_vit():
    """:func:`tiny_vit` on a device that holds one row only."""
    return memory_bound_tiny_vit(rows=1)
