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


def _family(inner: str, names: List[str], readout: Callable[[Module], Union[int, slice]]) -> VisionFamily:
    """The family of the classes named (where this transformers has them), its network ``model.<inner>``."""
    return VisionFamily(
        # CLIPVisionModel holds its vision_model below transformers 5 and is it from 5 on
        classes=tuple(getattr(transformers, name) for name in names if hasattr(transformers, name)),
        inner=inner,
        # transformers >= 5, < 5, CLIP
        blocks=lambda network: attribute_at(network, "layers", "encoder.layer", "encoder.layers"),
        mlp=_mlp_site,
        attention=lambda block: attribute_at(block, "self_attn.out_proj", "attention.o_proj", "attention.output.dense"),
        readout=readout,
    )


FAMILIES = (
    _family("vit", ["ViTForImageClassification", "ViTModel"], lambda model: 0),
    _family(  # the distilled model averages its class and distillation heads
        "deit",
        ["DeiTForImageClassificationWithTeacher", "DeiTForImageClassification", "DeiTModel"],
        lambda model: slice(0, 2) if type(model).__name__.endswith("WithTeacher") else 0,
    ),
    _family(  # the pooler averages the patch tokens
        "beit",
        ["BeitForImageClassification", "BeitModel"],
        lambda model: slice(1, None) if model.config.use_mean_pooling else 0,
    ),
    _family(  # the classifier reads the class token and the mean of the patch tokens
        "dinov2",
        ["Dinov2ForImageClassification", "Dinov2Model"],
        lambda model: slice(0, None) if type(model).__name__.endswith("ForImageClassification") else 0,
    ),
    _family(  # the pooled output is the class token's
        "vision_model", ["CLIPVisionModel", "CLIPVisionModelWithProjection", "CLIPModel"], lambda model: 0
    ),
)
