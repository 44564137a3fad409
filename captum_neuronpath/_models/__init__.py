"""Model-family knowledge: which modules are a model's neurons, which tokens its head reads, and how its
blocks run; one module per model library, imported only once the library itself is (docs/model_families.md).
"""

import importlib
import sys
from typing import Dict, Iterator, List, Optional, Union

from torch.nn import Module

from captum_neuronpath._core.plan import Layout
from captum_neuronpath._models import language
from captum_neuronpath._models.family import VisionFamily
from captum_neuronpath._models.language import last_token

__all__ = ["last_token", "mlp_layers", "readout_token", "vit_attention_layers", "vit_mlp_layers", "vit_readout_token"]

#: library -> (its module here, the families it describes, for error messages)
_LIBRARIES = {
    "timm": ("timm_models", "timm VisionTransformer (ViT, DeiT, MAE, DINOv2, gated MLPs), Beit, Eva, SwinTransformer"),
    "torchvision": ("torchvision_models", "torchvision VisionTransformer, SwinTransformer"),
    "transformers": ("hugging_face_vision", "Hugging Face ViT, DeiT, BEiT, DINOv2, CLIP vision"),
}
_VISION = "; ".join(description for _, description in _LIBRARIES.values())
_VIT = "a supported Vision Transformer"
_LAYERS = "layers (a list of modules, e.g. each block's MLP activation)"
_TOKEN = "token (the positions the head reads)"


def _vision_families() -> Iterator[VisionFamily]:
    for library, (module, _) in _LIBRARIES.items():
        if library in sys.modules:
            yield from importlib.import_module(f"captum_neuronpath._models.{module}").FAMILIES


def _family(model: object, what: Optional[str] = None, vision_only: bool = False):
    """``(family, network)`` of a model, vision families first; else ``None``, or with ``what`` the error to
    pass it yourself."""
    families = list(_vision_families()) + ([] if vision_only else list(language.FAMILIES))
    for family in families:
        network = family.network(model)
        if network is not None:
            return family, network
    if what is None:
        return None
    if vision_only:
        raise _unsupported(model, what, _VISION, _VIT)
    raise _unsupported(model, what, f"{_VISION}; {language.SUPPORTED}")


def _unsupported(model: object, what: str, families: str, kind: str = "of a supported model family") -> TypeError:
    return TypeError(f"{type(model).__name__} is not {kind} ({families}); pass {what} yourself instead")


def vit_mlp_layers(model: Module) -> List[Module]:
    r"""
    The neuron sites of a Vision Transformer: the hidden units of each block's MLP (e.g.
    3072 per block in ViT-B), input side first: a plain MLP's activation output; a gated
    MLP's gating product as it enters the last linear layer, as a
    :class:`~captum_neuronpath.ModuleInput` site; for Swin, the blocks of the last stage.
    See :doc:`model_families` for each family's sites.

    Args:

        model (torch.nn.Module): A timm, torchvision or Hugging Face Vision Transformer
                    of a family on :doc:`model_families`, with or without its head.

    Returns:
        *list[torch.nn.Module]*: one site per block, to pass as ``layers``.

    Raises:
        TypeError: for any other model; pass the list of modules yourself instead.

    Examples::

        >>> import timm, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", depth=4)
        >>> len(cnp.vit_mlp_layers(model))
        4
        >>> from timm.layers import SwiGLUPacked
        >>> gated = timm.create_model("vit_tiny_patch16_224", depth=2, mlp_layer=SwiGLUPacked)
        >>> cnp.vit_mlp_layers(gated)[0].module is gated.blocks[0].mlp.fc2
        True
    """
    family, network = _family(model, _LAYERS, vision_only=True)
    return [family.mlp(block) for block in family.blocks(network)]


def vit_attention_layers(model: Module) -> List[Module]:
    r"""
    Each block's attention output projection, input side first: the other neuron sites of
    a Vision Transformer (``C`` = the embedding width per block), inside a residual branch
    like the MLP neurons. For torchvision, whose ``nn.MultiheadAttention`` applies its
    projection without calling the module, the site is the dropout right after attention.

    Args:

        model (torch.nn.Module): A model :func:`vit_mlp_layers` supports, except Swin
                    (whose attention runs per window, not per image).

    Returns:
        *list[torch.nn.Module]*: one module per block, to pass as ``layers``.

    Raises:
        TypeError: for Swin or any model :func:`vit_mlp_layers` refuses; pass the list
                    of modules yourself instead.

    Examples::

        >>> import timm, captum_neuronpath as cnp
        >>> vit = timm.create_model("vit_tiny_patch16_224", depth=2)
        >>> cnp.vit_attention_layers(vit)[1] is vit.blocks[1].attn.proj
        True
    """
    family, network = _family(model, vision_only=True) or (None, None)
    if family is None or family.attention is None:
        what = "layers (a list of modules, e.g. each block's attention output projection)"
        raise _unsupported(model, what, _VISION + "; not Swin, whose attention runs per window", _VIT)
    return [family.attention(block) for block in family.blocks(network)]


def vit_readout_token(model: Module) -> Union[int, slice]:
    r"""
    The token set a Vision Transformer's head reads: ``0`` (the class token) for
    class-token models, the pooled tokens for global-pool models, ``slice(None)`` (every
    position) for Swin; see :doc:`model_families` for each family's.

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
    return _family(model, _TOKEN, vision_only=True)[0].readout(model)


def mlp_layers(model: Module) -> List[Module]:
    r"""
    The MLP neuron sites of each block, input side first, for Vision Transformers (as
    :func:`vit_mlp_layers`) and language models: the hidden units of every block's MLP
    (e.g. 3072 per block in GPT-2 small or BERT-base). In a gated MLP (LLaMA, ...) they
    are ``act(gate_proj(x)) * up_proj(x)``, the input of the down projection, as a
    ``ModuleInput(block.mlp.down_proj)`` site. See :doc:`model_families`.

    Args:

        model (torch.nn.Module): A model of a family on :doc:`model_families`, with or
                    without its head (e.g. ``GPT2Model`` or ``GPT2LMHeadModel``).

    Returns:
        *list[torch.nn.Module]*: one site per block, to pass as ``layers``.

    Raises:
        TypeError: for any other model, listing the supported families; pass the list of
                    modules yourself instead.

    Examples::

        >>> import transformers, captum_neuronpath as cnp
        >>> gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2))
        >>> cnp.mlp_layers(gpt2) == [block.mlp.act for block in gpt2.transformer.h]
        True
        >>> llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        ...     hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2))
        >>> [site.module is block.mlp.down_proj for site, block in zip(cnp.mlp_layers(llama), llama.model.layers)]
        [True, True]
    """
    family, network = _family(model, _LAYERS)
    return [family.mlp(block) for block in family.blocks(network)]


def readout_token(model: Module) -> Union[int, slice]:
    r"""
    The token set a model's head reads: for Vision Transformers as
    :func:`vit_readout_token`; ``-1`` (the last position, which predicts the next token)
    for GPT-2 and gated-MLP language models; ``0`` (the ``[CLS]`` token) for BERT and
    RoBERTa with a sequence-level head or none.

    ``-1`` is each sequence's last token in unpadded and left-padded batches; for a
    right-padded batch, pass ``token=cnp.last_token(attention_mask)`` instead.

    Args:

        model (torch.nn.Module): A model :func:`mlp_layers` supports.

    Returns:
        *int* or *slice*: the ``token`` argument for the attribution classes.

    Raises:
        TypeError: for an unsupported model, or a head that predicts at every position
                    (masked language modelling, token classification, question
                    answering); pass ``token`` yourself instead.

    Examples::

        >>> import transformers, captum_neuronpath as cnp
        >>> cnp.readout_token(transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2)))
        -1
        >>> config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        ...                                  intermediate_size=64)
        >>> cnp.readout_token(transformers.BertForSequenceClassification(config))
        0
    """
    return _family(model, _TOKEN)[0].readout(model)


def layout_of(module: Module) -> Optional[Layout]:
    """The fast plan's layout of ``module`` where its family has one (for ``_core.plan.make_plan``)."""
    family, network = _family(module, vision_only=True) or (None, None)
    if family is None or family.layout is None or network is not module:
        return None
    return family.layout(module)


def readout_of_called(called: Dict[Module, int]):
    """The token set the head of the first module of a known family in ``called`` reads, else ``None``."""
    known = next((m for m in called if _family(m) is not None), None)
    try:
        return None if known is None else readout_token(known)
    except TypeError:
        return None
