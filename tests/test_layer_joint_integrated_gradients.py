import pytest
import torch

import captum_neuronpath as cnp

from helpers import SmallMLP, brute_force_layer_scores, layers_of, random_selector, small_vit, softmax_forward


@pytest.fixture(scope="module")
def vit64():
    return small_vit(depth=3, seed=2).double()


@pytest.fixture(scope="module")
def models64(vit64):
    return {"class-token": vit64, "avg-pool": small_vit(depth=3, seed=2, global_pool="avg").double()}



def _inputs(batch_size=2, seed=0):
    return torch.randn(batch_size, 3, 16, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("layer_index", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize(
    "model,token,method",
    [("class-token", 0, "riemann_left"), ("avg-pool", slice(1, None), "gausslegendre"), ("class-token", [2, 0], "riemann_trapezoid")],
)
def test_matches_brute_force(models64, model, layer_index, k, token, method):
    vit64 = models64[model]
    x, target = _inputs(), torch.tensor([1, 4])
    layers = layers_of(vit64)
    prefix = random_selector(2, layer_index, 64, k, seed=layer_index)
    ljig = cnp.LayerJointIntegratedGradients(softmax_forward(vit64), layers, token=token)
    ours = ljig.attribute(x, layer_index=layer_index, path_prefix=prefix, target=target, n_steps=6, method=method)
    reference = brute_force_layer_scores(softmax_forward(vit64), layers, x, target, prefix, layer_index, token=token, n_steps=6, method=method)
    assert ours.shape == (2, 64)
    assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-13)


def test_first_layer_scores_are_complete(vit64):
    # With no prefix, sum_c score_0(c) = F(clean) - F(layer 0 zeroed at the token).
    x, target = _inputs(), torch.tensor([3, 0])
    layers = layers_of(vit64)
    ljig = cnp.LayerJointIntegratedGradients(softmax_forward(vit64), layers)
    scores = ljig.attribute(x, layer_index=0, target=target, n_steps=24, method="gausslegendre")

    def zero_token(module, args, out):
        out = out.clone()
        out[:, 0] = 0
        return out

    with torch.no_grad():
        clean = softmax_forward(vit64)(x)[torch.arange(2), target]
        handle = layers[0].register_forward_hook(zero_token)
        try:
            ablated = softmax_forward(vit64)(x)[torch.arange(2), target]
        finally:
            handle.remove()
    assert torch.allclose(scores.sum(-1), clean - ablated, rtol=1e-7, atol=1e-12)


def test_flat_layers_with_token_none():
    model = SmallMLP().double().eval()
    x = torch.randn(3, 6, dtype=torch.float64)
    ljig = cnp.LayerJointIntegratedGradients(model, model.layers, token=None)
    ours = ljig.attribute(x, layer_index=1, path_prefix=[4], target=[0, 1, 2], n_steps=5)
    prefix = torch.tensor([[[4]]] * 3)
    reference = brute_force_layer_scores(model, model.layers, x, torch.tensor([0, 1, 2]), prefix, 1, token=None, n_steps=5)
    assert ours.shape == (3, 7)
    assert torch.allclose(ours, reference, rtol=1e-9)


def test_shared_prefix_equals_tensor_prefix(vit64):
    x = _inputs()
    ljig = cnp.LayerJointIntegratedGradients(softmax_forward(vit64), layers_of(vit64))
    shared = ljig.attribute(x, layer_index=2, path_prefix=[5, 6], target=1)
    tensor = ljig.attribute(x, layer_index=2, path_prefix=torch.tensor([[5, 6], [5, 6]]), target=1)
    assert torch.equal(shared, tensor)
