"""timm's Vision Transformers: ``VisionTransformer`` (ViT, DeiT, MAE, DINOv2, register tokens,
gated MLPs), ``Beit``, ``Eva`` (EVA-02) and ``SwinTransformer``; the fast plan's layout of a
``VisionTransformer``. Imported only once timm is.
"""

from typing import Callable, Optional, Union

import torch.nn.functional as F
from timm.layers import Attention, GluMlp, Mlp, SwiGLU
from timm.models.beit import Beit
from timm.models.eva import Eva
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn
from torch.nn import Module

from captum_neuronpath._core.plan import BlockParts, Layout
from captum_neuronpath._models.family import VisionFamily, exact_block_parts
from captum_neuronpath._utils.sites import ModuleInput


def _mlp_site(block: Module) -> Module:
    """A block's MLP neurons: the activation of a plain MLP, the gating product of a gated one."""
    mlp = getattr(block, "mlp", None)
    if isinstance(mlp, (GluMlp, SwiGLU)):  # SwiGLUPacked is a GluMlp
        # the hidden unit is the gating product as it enters fc2, before any sub-norm
        return ModuleInput(mlp.fc2 if isinstance(mlp.norm, nn.Identity) else mlp.norm)
    if isinstance(mlp, Mlp):
        return mlp.act
    raise TypeError(
        f"{type(block).__name__}.mlp is a {type(mlp).__name__}, whose hidden units this library does not know "
        "(it knows timm's Mlp, GluMlp, SwiGLUPacked and SwiGLU); pass layers yourself, e.g. "
        "[cnp.ModuleInput(block.mlp.fc2) for block in model.blocks] for the input of each block's last linear layer"
    )


def _readout(model: Module) -> Union[int, slice]:
    if getattr(model, "dist_token", None) is not None:
        return slice(0, 2)  # the class and distillation heads are averaged
    attention_pool = getattr(model, "attn_pool", None) is not None
    pool = "map" if attention_pool else model.global_pool
    if pool == "token":
        return 0
    if not pool:
        raise TypeError(f"{type(model).__name__} has global_pool='' and no head readout; pass token yourself instead")
    # a ViT pools the prefix tokens only with pool_include_prefix; Eva's attention pool reads every token
    include_prefix = getattr(model, "pool_include_prefix", attention_pool)
    return slice(0 if include_prefix else model.num_prefix_tokens, None)


def _vit_layout(model: Module) -> Optional[Layout]:
    if type(model) is not VisionTransformer:  # subclasses may run their blocks differently
        return None
    last = model.blocks[-1]
    class_token = model.attn_pool is None and model.global_pool == "token"
    exact = class_token and type(last) is Block and type(last.attn) is Attention
    readout = (last, [last.mlp, last.attn.proj], lambda r: _readout_forward(last, r)) if exact else None
    return Layout(
        root=model,
        blocks=model.blocks,
        start=model.patch_embed,
        parts=_block_parts,
        readout=readout,
        checkpointing=getattr(model, "grad_checkpointing", False),
    )


def _parts(block: Block, mlp: Mlp) -> BlockParts:
    return BlockParts(
        act=mlp.act,
        attend=lambda x: x + block.drop_path1(block.ls1(block.attn(block.norm1(x)))),
        expand=lambda y: mlp.fc1(block.norm2(y)),
        contract=lambda a: mlp.drop2(mlp.fc2(mlp.norm(mlp.drop1(a)))),
        add=lambda y, branch: y + block.drop_path2(block.ls2(branch)),
    )


_block_parts = exact_block_parts(Block, Mlp, _parts)


def _readout_forward(block: Block, r: int) -> Callable:
    """timm's ``Block.forward`` with the queries and everything after them at the first ``r`` tokens."""
    attention = block.attn
    original = type(block).forward

    def forward(x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            return original(block, x, attn_mask=attn_mask, is_causal=is_causal)
        normed = block.norm1(x)
        batch, tokens, _ = normed.shape
        qkv = attention.qkv(normed).reshape(batch, tokens, 3, attention.num_heads, attention.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attention.q_norm(q[:, :, :r]), attention.k_norm(k)
        if attention.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = attention.attn_drop((q * attention.scale @ k.transpose(-2, -1)).softmax(dim=-1)) @ v
        out = attention.norm(out.transpose(1, 2).reshape(batch, r, attention.attn_dim))
        gate = getattr(attention, "gate", None)
        if gate is not None:
            out = out * gate(normed[:, :r]).sigmoid()
        out = attention.proj_drop(attention.proj(out))
        y = x[:, :r] + block.drop_path1(block.ls1(out))
        return y + block.drop_path2(block.ls2(block.mlp(block.norm2(y))))

    return forward


FAMILIES = (
    VisionFamily(
        classes=(VisionTransformer, Eva, Beit),
        blocks=lambda model: model.blocks,
        mlp=_mlp_site,
        attention=lambda block: block.attn.proj,
        readout=_readout,
        layout=_vit_layout,
    ),
    VisionFamily(
        classes=(SwinTransformer,),
        blocks=lambda model: model.layers[-1].blocks,  # the last stage's
        mlp=_mlp_site,
        readout=lambda model: slice(None),  # the head averages every position
    ),
)
