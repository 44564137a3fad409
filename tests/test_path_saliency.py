import pytest
import torch

import captum_neuronpath as cnp

from helpers import assert_unchanged, layers_of, small_vit, snapshot


@pytest.fixture(scope="module")
def vit64():
    return small_vit(depth=3, seed=10).double()


X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
PATH = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])


def _path_activation(model, x, path, token=0):
    """g(x): the sum of each example's path activations at the token, computed directly."""
    outputs = []
    handles = [layer.register_forward_hook(lambda m, a, out: outputs.append(out)) for layer in layers_of(model)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return sum(out[torch.arange(len(x)), token, path[:, l]] for l, out in enumerate(outputs))


def test_maps_have_the_input_shape_and_are_complete(vit64):
    saliency = cnp.PathSaliency(vit64, layers_of(vit64))
    maps, delta = saliency.attribute(X, PATH, n_steps=32, return_convergence_delta=True)
    assert maps.shape == X.shape and maps.dtype == torch.float64
    expected = _path_activation(vit64, X, PATH) - _path_activation(vit64, torch.zeros_like(X), PATH)
    assert torch.allclose(maps.sum((1, 2, 3)), expected, rtol=1e-5, atol=1e-8)
    assert delta.abs().max() < 1e-5 * expected.abs().max()


def test_baselines_and_internal_batching(vit64):
    saliency = cnp.PathSaliency(vit64, layers_of(vit64))
    baseline = torch.full_like(X, 0.5)
    full = saliency.attribute(X, PATH, baselines=baseline, n_steps=16)
    chunked = saliency.attribute(X, PATH, baselines=baseline, n_steps=16, internal_batch_size=7)
    assert torch.allclose(full, chunked, rtol=1e-9, atol=1e-12)
    expected = _path_activation(vit64, X, PATH) - _path_activation(vit64, baseline, PATH)
    assert torch.allclose(full.sum((1, 2, 3)), expected, rtol=1e-4, atol=1e-8)


def test_per_layer_maps_add_up_to_the_path_map(vit64):
    layers = layers_of(vit64)
    whole = cnp.PathSaliency(vit64, layers).attribute(X, PATH, n_steps=8)
    parts = sum(cnp.PathSaliency(vit64, [layer]).attribute(X, PATH[:, l : l + 1], n_steps=8) for l, layer in enumerate(layers))
    assert torch.allclose(whole, parts, rtol=1e-9, atol=1e-12)  # integrated gradients are linear in g


def test_path_from_the_locator_and_hygiene(vit64):
    before = snapshot(vit64)
    res = cnp.NeuronPath(lambda x: vit64(x).softmax(-1), layers_of(vit64)).attribute(X, target=0, n_steps=4, method="gausslegendre")
    maps = cnp.PathSaliency(vit64, layers_of(vit64)).attribute(X, res.path, n_steps=4)
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0
    with pytest.raises(IndexError, match=r"path holds neuron 99 for layer 2, which has channels 0\.\.63"):
        cnp.PathSaliency(vit64, layers_of(vit64)).attribute(X, [1, 2, 99])
    assert_unchanged(vit64, before)


def test_token_ids_are_explained_through_the_embedding_layer():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(11, 8)
    act = torch.nn.Tanh()
    body = torch.nn.Sequential(torch.nn.Linear(8, 6), act, torch.nn.Linear(6, 3))
    model = torch.nn.Sequential(embed, body).double().eval()
    ids = torch.randint(1, 11, (2, 5))
    with pytest.raises(TypeError, match=r"integers \(token ids\?\), which cannot be interpolated.*input_layer=model\.get_input_embeddings\(\)"):
        cnp.PathSaliency(model, [act], token=-1).attribute(ids, path=[4])
    saliency = cnp.PathSaliency(model, [act], token=-1, input_layer=embed)
    maps, delta = saliency.attribute(ids, path=[4], n_steps=64, return_convergence_delta=True)
    assert maps.shape == (2, 5, 8)
    # Complete against the embeddings: the map adds up to f(ids) - f(baseline ids 0).
    explained = cnp.path_activation(model, [act], [4], token=-1)
    gap = explained(ids) - explained(torch.zeros_like(ids))
    torch.testing.assert_close(maps.sum((1, 2)), gap, rtol=1e-4, atol=1e-8)
    assert delta.abs().max() < 1e-4
