"""Vision Transformers: which modules are their neurons and which tokens their head reads.

Supported: timm ``VisionTransformer`` (ViT, DeiT with or without distillation token,
MAE-style global pooling, register tokens), torchvision ``VisionTransformer`` and
Hugging Face ``ViTModel`` / ``ViTForImageClassification``.
"""

import sys
from typing import List, Union

from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from torch.nn import Module
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionVisionTransformer

_SUPPORTED = (
    "timm VisionTransformer (ViT, DeiT, MAE/global-pool), torchvision VisionTransformer, "
    "Hugging Face ViTModel/ViTForImageClassification"
)


def _unsupported(model: object, what: str) -> TypeError:
    return TypeError(
        f"{type(model).__name__} is not a supported Vision Transformer ({_SUPPORTED}); pass {what} yourself instead"
    )


def _hugging_face_vit(model: object) -> Union[Module, None]:
    """The ``ViTModel`` inside ``model``, or ``None`` if it is not a Hugging Face ViT."""
    transformers = sys.modules.get("transformers")  # a Hugging Face model means it is imported
    if transformers is None:
        return None
    if isinstance(model, transformers.ViTForImageClassification):
        return model.vit
    if isinstance(model, transformers.ViTModel):
        return model
    return None


def _hugging_face_blocks(vit: Module) -> List[Module]:
    return list(vit.layers) if hasattr(vit, "layers") else list(vit.encoder.layer)  # transformers >= 5, < 5


def _hugging_face_mlp_activation(block: Module) -> Module:
    return block.mlp.activation_fn if hasattr(block, "mlp") else block.intermediate.intermediate_act_fn


def _hugging_face_attention_output(block: Module) -> Module:
    attention = block.attention
    return attention.o_proj if hasattr(attention, "o_proj") else attention.output.dense


def is_vision_transformer(model: object) -> bool:
    """Whether ``model`` is of a family the ``vit_*`` functions know."""
    return isinstance(model, (TimmVisionTransformer, TorchvisionVisionTransformer)) or (
        _hugging_face_vit(model) is not None
    )


def vit_mlp_layers(model: Module) -> List[Module]:
    r"""
    The neuron sites of a Vision Transformer: each block's MLP activation (the hidden
    units after GELU, e.g. 3072 per block in ViT-B), input side first.

    Args:

        model (torch.nn.Module): A timm ``VisionTransformer`` (ViT, DeiT, MAE), a
                    torchvision ``VisionTransformer``, or a Hugging Face ``ViTModel`` or
                    ``ViTForImageClassification``.

    Returns:
        *list[torch.nn.Module]*: one activation module per block, to pass as ``layers``.

    Raises:
        TypeError: for any other model; pass the list of modules yourself instead.

    Examples::

        >>> import timm, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", depth=4)
        >>> len(cnp.vit_mlp_layers(model))
        4
    """
    if isinstance(model, TimmVisionTransformer):
        layers = [getattr(block.mlp, "act", None) for block in model.blocks]
        if any(not isinstance(layer, Module) for layer in layers):
            raise _unsupported(model, "layers (this model's blocks have no mlp.act module)")
        return layers
    if isinstance(model, TorchvisionVisionTransformer):
        return [block.mlp[1] for block in model.encoder.layers]
    vit = _hugging_face_vit(model)
    if vit is not None:
        return [_hugging_face_mlp_activation(block) for block in _hugging_face_blocks(vit)]
    raise _unsupported(model, "layers (a list of modules, e.g. each block's MLP activation)")


def vit_attention_layers(model: Module) -> List[Module]:
    r"""
    Each block's attention output projection, input side first: the other neuron sites of
    a Vision Transformer (``C`` = the embedding width per block). Like the MLP neurons they
    sit inside a residual branch, so substituting them leaves the residual stream intact.

    For torchvision, whose ``nn.MultiheadAttention`` applies its projection without calling
    the module, the site is the dropout right after attention (the identity in eval mode),
    which outputs the same values.

    Args:

        model (torch.nn.Module): A model :func:`vit_mlp_layers` supports.

    Returns:
        *list[torch.nn.Module]*: one module per block, to pass as ``layers``.

    Raises:
        TypeError: for any other model; pass the list of modules yourself instead.

    Examples::

        >>> import timm, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", depth=4)
        >>> cnp.vit_attention_layers(model)[0] is model.blocks[0].attn.proj
        True
    """
    if isinstance(model, TimmVisionTransformer):
        return [block.attn.proj for block in model.blocks]
    if isinstance(model, TorchvisionVisionTransformer):
        return [block.dropout for block in model.encoder.layers]
    vit = _hugging_face_vit(model)
    if vit is not None:
        return [_hugging_face_attention_output(block) for block in _hugging_face_blocks(vit)]
    raise _unsupported(model, "layers (a list of modules, e.g. each block's attention output projection)")


def vit_readout_token(model: Module) -> Union[int, slice]:
    r"""
    The token set a Vision Transformer's head reads: ``0`` (the class token) for
    class-token models, ``slice(0, 2)`` for DeiT with a distillation token, and the
    pooled tokens (``slice(num_prefix_tokens, None)`` unless the model pools the prefix
    tokens too) for global-pool models such as fine-tuned MAE.

    Args:

        model (torch.nn.Module): A model :func:`vit_mlp_layers` supports.

    Returns:
        *int* or *slice*: the ``token`` argument for the attribution classes.

    Raises:
        TypeError: for an unsupported model, or a timm model without pooling
                    (``global_pool=''``); pass ``token`` yourself instead.

    Examples::

        >>> import timm, captum_neuronpath as cnp
        >>> cnp.vit_readout_token(timm.create_model("vit_tiny_patch16_224"))
        0
        >>> cnp.vit_readout_token(timm.create_model("vit_tiny_patch16_224", global_pool="avg"))
        slice(1, None, None)
    """
    if isinstance(model, TimmVisionTransformer):
        if getattr(model, "dist_token", None) is not None:
            return slice(0, 2)  # the class and distillation heads are averaged
        pool = "map" if model.attn_pool is not None else model.global_pool
        if pool == "token":
            return 0
        if not pool:
            raise TypeError(
                f"{type(model).__name__} has global_pool='' and no head readout; pass token yourself instead"
            )
        return slice(0 if model.pool_include_prefix else model.num_prefix_tokens, None)
    if isinstance(model, TorchvisionVisionTransformer) or _hugging_face_vit(model) is not None:
        return 0
    raise _unsupported(model, "token (the positions the head reads)")
