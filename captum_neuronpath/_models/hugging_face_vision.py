"""Hugging Face vision transformers: ViT, DeiT (with its distillation token), BEiT, DINOv2 and
CLIP's vision tower. Imported only once transformers is.
"""

from functools import partial
from typing import Callable, List, Optional, Union

import transformers
from torch.nn import Module

from captum_neuronpath._models.family import VisionFamily, attribute_at
from captum_neuronpath._utils.sites import ModuleInput


def _blocks(network: Module) -> Optional[List[Module]]:
    for path in ("layers", "encoder.layer", "encoder.layers"):  # transformers >= 5, < 5, CLIP
        found = attribute_at(network, path)
        if isinstance(found, Module):
            return list(found)
    return None


def _mlp_site(block: Module) -> Module:
    mlp = getattr(block, "mlp", None)
    if mlp is None:  # transformers < 5
        return block.intermediate.intermediate_act_fn
    if hasattr(mlp, "down_proj"):  # a gated MLP (DINOv2's SwiGLU): the gating product
        return ModuleInput(mlp.down_proj)
    return mlp.activation_fn


def _attention_site(block: Module) -> Module:
    if hasattr(block, "self_attn"):  # CLIP
        return block.self_attn.out_proj
    attention = block.attention
    return attention.o_proj if hasattr(attention, "o_proj") else attention.output.dense


def _network(attribute: str, names: List[str], model: object) -> Optional[Module]:
    """The network (``model.<attribute>``, else the model) in a model of one of the classes named."""
    classes = tuple(getattr(transformers, name) for name in names if hasattr(transformers, name))
    # CLIPVisionModel holds its vision_model below transformers 5 and is it from 5 on
    return getattr(model, attribute, model) if isinstance(model, classes) else None


def _family(attribute: str, names: List[str], readout: Callable[[Module], Union[int, slice]]) -> VisionFamily:
    return VisionFamily(
        network=partial(_network, attribute, names),
        mlp_sites=lambda network: [_mlp_site(block) for block in _blocks(network)],
        attention_sites=lambda network: [_attention_site(block) for block in _blocks(network)],
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
