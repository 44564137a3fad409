"""Test helpers: small models, an independent brute-force JAS, and model-state snapshots.

The brute-force code shares nothing with the package: it runs one forward and one
backward pass per quadrature node with hand-written hooks, and adds the terms up.
"""

from typing import Dict, List, Optional, Sequence

import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from timm.models.vision_transformer import VisionTransformer
from torch import nn


def small_vit(depth: int = 3, seed: int = 0, **kwargs) -> VisionTransformer:
    torch.manual_seed(seed)
    options = dict(img_size=16, patch_size=4, embed_dim=32, depth=depth, num_heads=2, mlp_ratio=2.0, num_classes=5)
    options.update(kwargs)
    return VisionTransformer(**options).eval()


class SmallMLP(nn.Module):
    """A residual model whose neuron layers output ``(B, C)`` (10 and 7 wide), for ``token=None``."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Linear(6, 8)
        self.fc1, self.act1, self.proj1 = nn.Linear(8, 10), nn.Tanh(), nn.Linear(10, 8)
        self.fc2, self.act2, self.proj2 = nn.Linear(8, 7), nn.GELU(), nn.Linear(7, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        residual = self.embed(x * scale)
        residual = residual + self.proj1(self.act1(self.fc1(residual)))
        residual = residual + self.proj2(self.act2(self.fc2(residual)))
        return self.head(residual)

    @property
    def layers(self) -> List[nn.Module]:
        return [self.act1, self.act2]


def _positions(token, num_tokens: int) -> Optional[List[int]]:
    if token is None:
        return None
    if isinstance(token, int):
        return [token % num_tokens]
    if isinstance(token, slice):
        return list(range(num_tokens))[token]
    return [t % num_tokens for t in token]


def _clean(forward, layers, x, token):
    outputs = {}
    handles = [
        layer.register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out.detach()))
        for i, layer in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            forward(x)
    finally:
        for h in handles:
            h.remove()
    clean, positions = [], []
    for i in range(len(layers)):
        out = outputs[i]
        pos = _positions(token, out.shape[1]) if out.dim() == 3 else None
        positions.append(pos)
        clean.append(out.unsqueeze(1) if pos is None else out[:, pos])
    return clean, positions


def _integrated_gradients(forward, layers, x, target, clean, positions, scaled: Dict[int, torch.Tensor], n_steps, method):
    """sum_k s_k dF/dw for the layers in ``scaled`` (index -> (B, C) 0/1 mask), node by node."""
    step_sizes, alphas = (f(n_steps) for f in approximation_parameters(method))
    totals = {l: torch.zeros_like(clean[l]) for l in scaled}
    for step_size, alpha in zip(step_sizes, alphas):
        leaves = {}
        for l, mask in scaled.items():
            factor = 1 + (alpha - 1) * mask[:, None, :]
            leaves[l] = (clean[l] * factor).detach().requires_grad_(True)

        def hook_for(l):
            def hook(module, args, out):
                if positions[l] is None:
                    return leaves[l][:, 0]
                out = out.clone()
                out[:, positions[l]] = leaves[l]
                return out

            return hook

        handles = [layers[l].register_forward_hook(hook_for(l)) for l in scaled]
        try:
            output = forward(x)
            score = output if target is None else output[torch.arange(len(x)), target]
            grads = torch.autograd.grad(score.sum(), [leaves[l] for l in scaled])
        finally:
            for h in handles:
                h.remove()
        for l, g in zip(scaled, grads):
            totals[l] += step_size * g
    return totals


def _mask(indices: torch.Tensor, num_channels: int) -> torch.Tensor:
    """(B, K) channel indices -> (B, C) 0/1 mask."""
    mask = torch.zeros(indices.shape[0], num_channels, dtype=torch.float64)
    for b in range(indices.shape[0]):
        mask[b, indices[b]] = 1.0
    return mask


def brute_force_jas(forward, layers, x, target, selector: torch.Tensor, token=0, n_steps=20, method="riemann_left"):
    """JAS of the (B, L, K) neuron set (the paper's eq. 2-3, product of two sums), one node at a time."""
    clean, positions = _clean(forward, layers, x, token)
    masks = {l: _mask(selector[:, l], clean[l].shape[-1]).to(clean[l]) for l in range(len(layers))}
    grads = _integrated_gradients(forward, layers, x, target, clean, positions, masks, n_steps, method)
    act_sum = sum((clean[l] * masks[l][:, None]).sum(-1) for l in masks)
    grad_sum = sum((grads[l] * masks[l][:, None]).sum(-1) for l in masks)
    return (act_sum * grad_sum).sum(-1)


def brute_force_layer_scores(forward, layers, x, target, prefix: torch.Tensor, layer_index: int, token=0, n_steps=20, method="riemann_left"):
    """score_t(c) of one greedy step (the authors' Algorithm 1) for the (B, t, K) prefix, one node at a time."""
    clean, positions = _clean(forward, layers, x, token)
    masks = {l: _mask(prefix[:, l], clean[l].shape[-1]).to(clean[l]) for l in range(layer_index)}
    scaled = dict(masks)
    scaled[layer_index] = torch.ones(x.shape[0], clean[layer_index].shape[-1]).to(clean[layer_index])
    grads = _integrated_gradients(forward, layers, x, target, clean, positions, scaled, n_steps, method)
    candidate = clean[layer_index]
    prefix_act = torch.zeros(candidate.shape[:2]).to(candidate)
    prefix_grad = torch.zeros(candidate.shape[:2]).to(candidate)
    for l, mask in masks.items():
        prefix_act += (clean[l] * mask[:, None]).sum(-1)
        prefix_grad += (grads[l] * mask[:, None]).sum(-1)
    return ((candidate + prefix_act[..., None]) * (grads[layer_index] + prefix_grad[..., None])).sum(1)


def all_hooks(model: nn.Module) -> int:
    """Number of hooks of any kind on the model's modules and globally."""
    count = 0
    for m in model.modules():
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            count += len(getattr(m, name, {}))
    g = torch.nn.modules.module
    for name in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        count += len(getattr(g, name, {}))
    return count


def snapshot(model: nn.Module) -> dict:
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grads": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "hooks": all_hooks(model),
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["hooks"] == 0 and before["hooks"] == 0
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    for k, v in before["params"].items():
        assert torch.equal(after["params"][k], v), k
    for k, g in before["grads"].items():
        assert (after["grads"][k] is None) == (g is None), k


def random_selector(batch_size: int, num_layers: int, num_channels: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if num_layers == 0:
        return torch.empty(batch_size, 0, k, dtype=torch.long)
    return torch.stack(
        [torch.stack([torch.randperm(num_channels, generator=g)[:k] for _ in range(num_layers)]) for _ in range(batch_size)]
    )


def layers_of(model) -> Sequence[nn.Module]:
    return [block.mlp.act for block in model.blocks]


def softmax_forward(model):
    """The paper's explained function: the softmax probabilities of ``model``."""
    return lambda x: model(x).softmax(-1)


class InputOf:
    """The input of ``module`` as a brute-force site: the oracle's forward hooks become
    forward pre-hooks on ``module`` that read, or replace, its first argument. Pass it
    among the oracle's ``layers`` (e.g. a gated MLP's down projection)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def register_forward_hook(self, hook):
        def pre_hook(module, args):
            replaced = hook(module, args, args[0])
            return None if replaced is None else (replaced, *args[1:])

        return self.module.register_forward_pre_hook(pre_hook)


def inputs_of(modules: Sequence[nn.Module]) -> List[InputOf]:
    return [InputOf(module) for module in modules]


class FlattenedOutputOf:
    """The ``(B, ..., C)`` output of ``module`` as a brute-force site over ``(B, T, C)``: the
    oracle's hooks see the middle axes flattened in row-major order, as the library reads them."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def register_forward_hook(self, hook):
        def flattened(module, args, out):
            replaced = hook(module, args, out.flatten(1, -2))
            return None if replaced is None else replaced.reshape(out.shape)

        return self.module.register_forward_hook(flattened)


def oracle_sites(layers: Sequence[nn.Module], x, forward) -> List:
    """The brute-force oracle's sites for the library's ``layers``: module outputs as they are,
    ``ModuleInput`` sites as :class:`InputOf`, ``(B, H, W, C)`` outputs flattened."""
    shapes = {}
    handles = [
        layer.register_forward_hook(lambda m, a, out, i=i: shapes.__setitem__(i, out.dim()))
        for i, layer in enumerate(layers)
        if not hasattr(layer, "module")
    ]
    try:
        with torch.no_grad():
            forward(x)
    finally:
        for handle in handles:
            handle.remove()
    sites = []
    for i, layer in enumerate(layers):
        if hasattr(layer, "module"):  # a ModuleInput
            sites.append(InputOf(layer.module))
        else:
            sites.append(FlattenedOutputOf(layer) if shapes[i] > 3 else layer)
    return sites


class MemoryBound(nn.Module):
    """``model`` on a device that holds at most ``rows`` rows: a larger batch raises
    ``torch.OutOfMemoryError``, as CUDA does when a pass does not fit."""

    def __init__(self, model: nn.Module, rows: int) -> None:
        super().__init__()
        self.model, self.rows = model, rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.rows:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated: {x.shape[0]} rows > {self.rows})")
        return self.model(x)
