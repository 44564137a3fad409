"""Model-family knowledge: which modules are a model's neurons and which tokens its head
reads. Vision Transformers live in :mod:`.vision`, language models in :mod:`.language`
(one table entry per family); the functions here serve both.
"""

from typing import List, Union

from torch.nn import Module

from captum_neuronpath._models import language, vision
from captum_neuronpath._models.language import last_token
from captum_neuronpath._models.vision import vit_attention_layers, vit_mlp_layers, vit_readout_token

__all__ = ["last_token", "mlp_layers", "readout_token", "vit_attention_layers", "vit_mlp_layers", "vit_readout_token"]


def _unsupported(model: object, what: str) -> TypeError:
    return TypeError(
        f"{type(model).__name__} is not of a supported model family ({vision._SUPPORTED}; {language.SUPPORTED}); "
        f"pass {what} yourself instead"
    )


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
    if vision.is_vision_transformer(model):
        return vit_mlp_layers(model)
    found = language.find_family(model)
    if found is None:
        raise _unsupported(model, "layers (a list of modules, e.g. each block's MLP activation)")
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
    if vision.is_vision_transformer(model):
        return vit_readout_token(model)
    found = language.find_family(model)
    if found is None:
        raise _unsupported(model, "token (the positions the head reads)")
    return language.readout(found[0], model)
