"""Hugging Face vision transformers: ViT, DeiT (with its distillation token), BEiT, DINOv2 and
CLIP's vision tower. Imported only once transformers is.
"""

from typing import Callable, List, Union

import transformers
from torch.nn import Module

from captum_neuronpath._models.family import VisionFamily, attribute_at
from captum_neuronpath._utils.sites import ModuleInput


def _mlp_site(block: Module) -> Module:
    down = attribute_at(block, "mlp.down_proj")  # a gated MLP (DINOv2's SwiGLU): the gating product
    if down is not None:
        return ModuleInput(down)
    return attribute_at(block, "mlp.activation_fn", "intermediate.intermediate_act_fn")  # transformers >= 5, < 5


_BLOCKS = ("layers", "encoder.layer", "encoder.layers", "vision_model.encoder.layers")  # transformers >= 5, < 5, CLIP


def _family(names: List[str], readout: Callable[[Module], Union[int, slice]]) -> VisionFamily:
    """The family of the classes named (where this transformers has them). A model's network is its
    ``base_model``, the backbone under its head; CLIPModel is its own, its blocks those of its vision tower."""
    return VisionFamily(
        classes=tuple(getattr(transformers, name) for name in names if hasattr(transformers, name)),
        inner="base_model",
        blocks=lambda network: attribute_at(network, *_BLOCKS),
        mlp=_mlp_site,
        attention=lambda block: attribute_at(block, "self_attn.out_proj", "attention.o_proj", "attention.output.dense"),
        readout=readout,
    )


FAMILIES = (
    _family(["ViTForImageClassification", "ViTModel"], lambda model: 0),
    _family(  # the distilled model averages its class and distillation heads
        ["DeiTForImageClassificationWithTeacher", "DeiTForImageClassification", "DeiTModel"],
        lambda model: slice(0, 2) if type(model).__name__.endswith("WithTeacher") else 0,
    ),
    _family(  # the pooler averages the patch tokens
        ["BeitForImageClassification", "BeitModel"],
        lambda model: slice(1, None) if model.config.use_mean_pooling else 0,
    ),
    _family(  # the classifier reads the class token and the mean of the patch tokens
        ["Dinov2ForImageClassification", "Dinov2Model"],
        lambda model: slice(0, None) if type(model).__name__.endswith("ForImageClassification") else 0,
    ),
    # the pooled output is the class token's
    _family(["CLIPVisionModel", "CLIPVisionModelWithProjection", "CLIPModel"], lambda model: 0),
)
