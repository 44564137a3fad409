"""torchvision's Vision Transformers: ``VisionTransformer`` and ``SwinTransformer``; the fast
plan's layout of a ``VisionTransformer``. Imported only once torchvision is.
"""

from typing import Callable, Optional

from torch import Tensor
from torch.nn import Module
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import EncoderBlock, MLPBlock, VisionTransformer

from captum_neuronpath._core.plan import BlockParts, Layout
from captum_neuronpath._models.family import VisionFamily, exact_block_parts


def _layout(model: Module) -> Optional[Layout]:
    if type(model) is not VisionTransformer:
        return None
    blocks = model.encoder.layers
    last = blocks[-1]
    exact = type(last) is EncoderBlock and last.self_attention.batch_first
    readout = (last, [last.mlp, last.dropout], lambda r: _readout_forward(last, r)) if exact else None
    return Layout(root=model, blocks=blocks, start=blocks[0], parts=_block_parts, readout=readout)


def _parts(block: EncoderBlock, mlp: MLPBlock) -> BlockParts:
    return BlockParts(
        act=mlp[1],
        attend=lambda x: block.dropout(block.self_attention(*[block.ln_1(x)] * 3, need_weights=False)[0]) + x,
        expand=lambda y: mlp[0](block.ln_2(y)),
        contract=lambda a: mlp[4](mlp[3](mlp[2](a))),
        add=lambda y, branch: y + branch,
    )


_block_parts = exact_block_parts(EncoderBlock, MLPBlock, _parts)


def _readout_forward(block: EncoderBlock, r: int) -> Callable:
    """torchvision's ``EncoderBlock.forward`` with the queries and everything after them at the first ``r`` tokens."""

    def forward(input: Tensor) -> Tensor:
        x = block.ln_1(input)
        x, _ = block.self_attention(x[:, :r], x, x, need_weights=False)
        x = block.dropout(x) + input[:, :r]
        return x + block.mlp(block.ln_2(x))

    return forward


FAMILIES = (
    VisionFamily(
        classes=(VisionTransformer,),
        blocks=lambda model: model.encoder.layers,
        mlp=lambda block: block.mlp[1],
        # nn.MultiheadAttention applies its projection without calling the module: the dropout
        # right after it (the identity in evaluation mode) outputs the same values
        attention=lambda block: block.dropout,
        readout=lambda model: 0,
        layout=_layout,
    ),
    VisionFamily(
        classes=(SwinTransformer,),
        blocks=lambda model: model.features[-1],  # the last stage's
        mlp=lambda block: block.mlp[1],
        readout=lambda model: slice(None),  # the head averages every position
    ),
)
