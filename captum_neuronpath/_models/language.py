"""Language models: where a Hugging Face transformer's MLP neurons are and which token its
head reads, one table entry per family.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.nn import Module, ModuleList

from captum_neuronpath._models.family import attribute_at
from captum_neuronpath._utils.sites import ModuleInput


@dataclass(frozen=True)
class Family:
    """How one family of language models lays out its blocks.

    A model belongs to the family when its backbone (``model.base_model`` for a Hugging
    Face model with a head, else the model) is an instance of a class named in
    ``backbones`` (transformers' classes); a family without ``backbones`` is recognised by its
    structure instead: every block has each module named in ``structure``.
    """

    name: str  # as listed in error messages
    blocks_at: str  # dotted path from the backbone to its blocks (a ModuleList)
    neuron: str  # dotted path from a block to the module whose output, or input, holds the neurons
    position: int  # the position a sequence-level head reads: 0 (first) or -1 (last)
    #: endings of head class names that predict at every position, besides _TOKEN_HEADS
    every_position_heads: Tuple[str, ...] = ()
    backbones: Tuple[str, ...] = ()
    structure: Tuple[str, ...] = ()
    neuron_is_input: bool = False  # the neurons are the module's input (a gated MLP's down projection)

    def network(self, model: object) -> Optional[Module]:
        """The backbone of ``model`` where it is of this family, else ``None``."""
        base = getattr(model, "base_model", None)  # a Hugging Face model without its head
        backbone = base if isinstance(base, Module) else model
        if self.backbones and {cls.__name__ for cls in type(backbone).__mro__}.isdisjoint(self.backbones):
            return None
        blocks = attribute_at(backbone, self.blocks_at)
        if not isinstance(blocks, ModuleList) or len(blocks) == 0:
            return None
        paths = self.structure or (self.neuron,)
        return backbone if all(isinstance(attribute_at(b, path), Module) for b in blocks for path in paths) else None

    def blocks(self, backbone: Module) -> ModuleList:
        return attribute_at(backbone, self.blocks_at)

    def mlp(self, block: Module) -> Module:
        """The block's neuron site."""
        module = attribute_at(block, self.neuron)
        return ModuleInput(module) if self.neuron_is_input else module

    def readout(self, model: Module) -> int:
        """The position ``model``'s head reads."""
        head = type(model).__name__
        if head.endswith(_TOKEN_HEADS + self.every_position_heads):
            raise TypeError(
                f"{head} predicts at every position; pass token yourself (e.g. the position of the masked "
                "token, or cnp.last_token(attention_mask) for the last one)"
            )
        return self.position


_TOKEN_HEADS = ("ForTokenClassification", "ForQuestionAnswering")  # in every family

FAMILIES = (
    Family(
        name="GPT-2 (GPT2Model, GPT2LMHeadModel, GPT2ForSequenceClassification, ...)",
        backbones=("GPT2Model",),
        blocks_at="h",
        neuron="mlp.act",
        position=-1,
    ),
    Family(
        name="BERT and RoBERTa (BertModel, BertForSequenceClassification, BertForMaskedLM, RobertaModel, ...)",
        backbones=("BertModel", "RobertaModel"),
        blocks_at="encoder.layer",
        neuron="intermediate.intermediate_act_fn",
        position=0,
        every_position_heads=("ForMaskedLM", "ForPreTraining", "LMHeadModel", "ForCausalLM"),
    ),
    Family(
        name=(
            "gated MLPs: LLaMA, Mistral, Qwen2 and any model whose blocks (model.layers) have "
            "mlp.gate_proj, mlp.up_proj and mlp.down_proj"
        ),
        structure=("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
        blocks_at="layers",
        neuron="mlp.down_proj",
        neuron_is_input=True,
        position=-1,
    ),
)

SUPPORTED = "; ".join(f"Hugging Face {family.name}" for family in FAMILIES)


def last_token(attention_mask: Tensor) -> Tensor:
    r"""
    Each sequence's last position that is not padding: the token a causal language model
    reads to predict what comes next, for right- and left-padded batches alike.

    Args:

        attention_mask (Tensor): ``(B, T)``, nonzero at real tokens and zero at padding,
                    as a Hugging Face tokenizer returns it.

    Returns:
        *Tensor*: LongTensor ``(B,)`` of positions in ``[0, T)``, on the mask's device; pass it
        as ``token`` to read each example at its own position.

    Raises:
        ValueError: if a row holds no token.

    Examples::

        >>> import torch, captum_neuronpath as cnp
        >>> cnp.last_token(torch.tensor([[1, 1, 1, 0, 0],     # right padding
        ...                              [0, 0, 1, 1, 1],     # left padding
        ...                              [1, 1, 1, 1, 1]]))
        tensor([2, 4, 4])
    """
    if not isinstance(attention_mask, Tensor):
        raise TypeError(f"attention_mask must be a tensor, got {type(attention_mask).__name__}")
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must have shape (B, T), got {tuple(attention_mask.shape)}")
    present = attention_mask != 0
    empty = (~present.any(-1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"attention_mask row {int(empty[0])} holds no token")
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return torch.where(present, positions, -1).amax(-1)
