"""Model-family knowledge: which modules are a model's neurons, which tokens its head reads, and how its
blocks run; one module per model library, imported only once the library itself is (docs/model_families.md).
"""

import importlib
import sys
from typing import Dict, Iterator, List, Optional, Set, Union

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


def _vision_families() -> Iterator[VisionFamily]:
    for library, (module, _) in _LIBRARIES.items():
        if library in sys.modules:
            yield from importlib.import_module(f"captum_neuronpath._models.{module}").FAMILIES


def _vision(model: object):
    """``(family, network)`` of a vision model, or ``None``."""
    for family in _vision_families():
        network = family.network(model)
        if network is not None:
            return family, network
    return None


def _unsupported(model: object, what: str, families: str, kind: str = "of a supported model family") -> TypeError:
    return TypeError(f"{type(model).__name__} is not {kind} ({families}); pass {what} yourself instead")


def vit_mlp_layers(model: Module) -> List[Module]:
    r"""
    The neuron sites of a Vision Transformer: the hidden units of each block's MLP (e.g.
    3072 per block in ViT-B), input side first.

    - A plain MLP (``fc1``, activation, ``fc2``): its activation's output, the hidden
      units after GELU.
    - A gated MLP (timm ``SwiGLU``, ``SwiGLUPacked``, ``GluMlp``; DINOv2's SwiGLU): the
      gating product as it enters the last linear layer, before any sub-norm, as a
      :class:`~captum_neuronpath.ModuleInput` site.
    - Swin (timm and torchvision ``SwinTransformer``): the blocks of the last stage, the
      one the head reads (the stages have different numbers of positions, so one path
      cannot cross them). For another stage, pass its blocks yourself, e.g.
      ``[block.mlp.act for block in model.layers[1].blocks]`` (timm) or
      ``[block.mlp[1] for block in model.features[3]]`` (torchvision).

    Args:

        model (torch.nn.Module): A timm ``VisionTransformer`` (ViT, DeiT, MAE, DINOv2,
                    register tokens, any MLP above), ``Beit``, ``Eva`` or
                    ``SwinTransformer``; a torchvision ``VisionTransformer`` or
                    ``SwinTransformer``; a Hugging Face ViT, DeiT, BEiT, DINOv2 or CLIP
                    vision model (``CLIPModel``: its vision tower), with or without its head.

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
    found = _vision(model)
    if found is None:
        raise _unsupported(model, "layers (a list of modules, e.g. each block's MLP activation)", _VISION, _VIT)
    family, network = found
    return family.mlp_sites(network)


def vit_attention_layers(model: Module) -> List[Module]:
    r"""
    Each block's attention output projection, input side first: the other neuron sites of
    a Vision Transformer (``C`` = the embedding width per block). Like the MLP neurons they
    sit inside a residual branch, so substituting them leaves the residual stream intact.

    For torchvision, whose ``nn.MultiheadAttention`` applies its projection without calling
    the module, the site is the dropout right after attention (the identity in eval mode),
    which outputs the same values.

    Args:

        model (torch.nn.Module): A model :func:`vit_mlp_layers` supports, except Swin
                    (whose attention runs per window, not per image).

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
    found = _vision(model)
    if found is None or found[0].attention_sites is None:
        what = "layers (a list of modules, e.g. each block's attention output projection)"
        raise _unsupported(model, what, _VISION + "; not Swin, whose attention runs per window", _VIT)
    family, network = found
    return family.attention_sites(network)


def vit_readout_token(model: Module) -> Union[int, slice]:
    r"""
    The token set a Vision Transformer's head reads: ``0`` (the class token) for
    class-token models, ``slice(0, 2)`` for DeiT with a distillation token, the pooled
    tokens (``slice(num_prefix_tokens, None)`` unless the model pools the prefix tokens
    too) for global-pool models such as fine-tuned MAE, BEiT and EVA-02,
    ``slice(0, None)`` for DINOv2's classifier (the class token and the mean of the patch
    tokens) and ``slice(None)`` (every position) for Swin.

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
    found = _vision(model)
    if found is None:
        raise _unsupported(model, "token (the positions the head reads)", _VISION, _VIT)
    return found[0].readout(model)


def mlp_layers(model: Module) -> List[Module]:
    r"""
    The MLP neuron sites of each block, input side first, for Vision Transformers and
    language models: the hidden units of every block's MLP (e.g. 3072 per block in
    GPT-2 small or BERT-base).

    - Vision Transformers: as :func:`vit_mlp_layers`.
    - GPT-2: each block's ``mlp.act``; BERT and RoBERTa: each layer's
      ``intermediate.intermediate_act_fn``; any head on these backbones.
    - Gated MLPs (LLaMA, Mistral, Qwen2 and any model whose blocks ``layers[i]`` have
      ``mlp.gate_proj``, ``mlp.up_proj`` and ``mlp.down_proj``): the neurons are
      ``act(gate_proj(x)) * up_proj(x)``, the *input* of the down projection, so each
      site is a ``ModuleInput(block.mlp.down_proj)``, which the attribution classes read
      and substitute before the down projection runs.

    Args:

        model (torch.nn.Module): A model of one of the families above, with or without
                    its head (e.g. ``GPT2Model`` or ``GPT2LMHeadModel``).

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
    if _vision(model) is not None:
        return vit_mlp_layers(model)
    found = language.find_family(model)
    if found is None:
        what = "layers (a list of modules, e.g. each block's MLP activation)"
        raise _unsupported(model, what, f"{_VISION}; {language.SUPPORTED}")
    return language.neuron_sites(*found)


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
    if _vision(model) is not None:
        return vit_readout_token(model)
    found = language.find_family(model)
    if found is None:
        raise _unsupported(model, "token (the positions the head reads)", f"{_VISION}; {language.SUPPORTED}")
    return language.readout(found[0], model)


_without_layout: Set[type] = set()  # types whose family has no layout: skipped at once


def layout_of(module: Module) -> Optional[Layout]:
    """The fast plan's layout of ``module`` where its family has one (for ``_core.plan.make_plan``)."""
    if type(module) in _without_layout:
        return None
    for family in _vision_families():
        if family.layout is not None and family.network(module) is module:
            layout = family.layout(module)
            if layout is not None:
                return layout
    _without_layout.add(type(module))
    return None


def readout_of_called(called: Dict[Module, int]):
    """The token set the head of the first module of a known family in ``called`` reads, else ``None``."""
    for module in called:
        if _vision(module) is not None or language.find_family(module) is not None:
            try:
                return readout_token(module)
            except TypeError:
                return None
    return None
