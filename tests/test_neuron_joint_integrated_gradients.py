import pytest
import torch

import captum_neuronpath as cnp

from helpers import SmallMLP, brute_force_jas, layers_of, random_selector, small_vit, softmax_forward

METHODS = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]


@pytest.fixture(scope="module")
def vit64():
    return small_vit(depth=3, seed=1).double()


@pytest.fixture(scope="module")
def models64(vit64):
    # The readout decides which tokens reach the output in the last block.
    return {"class-token": vit64, "avg-pool": small_vit(depth=3, seed=1, global_pool="avg").double()}


def _inputs(batch_size=3, seed=0):
    return torch.randn(batch_size, 3, 16, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)



@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "model,token", [("class-token", 0), ("class-token", [0, 5, 9]), ("avg-pool", slice(1, None)), ("avg-pool", [2, 0])]
)
@pytest.mark.parametrize("k", [1, 3])
def test_matches_brute_force(models64, model, method, token, k):
    vit64 = models64[model]
    x, target = _inputs(), torch.tensor([0, 3, 1])
    layers = layers_of(vit64)
    selector = random_selector(3, len(layers), 64, k, seed=k)
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(vit64), layers, token=token)
    ours = jig.attribute(x, neuron_selector=selector if k > 1 else selector[..., 0], target=target, n_steps=7, method=method)
    reference = brute_force_jas(softmax_forward(vit64), layers, x, target, selector, token=token, n_steps=7, method=method)
    assert ours.shape == (3,)
    assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-12)


def test_token_none_on_a_model_with_flat_layers():
    model = SmallMLP().double().eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    selector = torch.tensor([[1, 2], [0, 6], [7, 0], [3, 3]])
    jig = cnp.NeuronJointIntegratedGradients(model, model.layers, token=None)
    ours = jig.attribute(x, neuron_selector=selector, target=2, n_steps=5, method="gausslegendre")
    reference = brute_force_jas(model, model.layers, x, torch.tensor([2] * 4), selector[..., None], token=None, n_steps=5, method="gausslegendre")
    assert torch.allclose(ours, reference, rtol=1e-9)


def test_shared_selector_equals_expanded_tensor(vit64):
    x = _inputs()
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(vit64), layers_of(vit64))
    shared = jig.attribute(x, neuron_selector=[4, 9, 60], target=2)
    expanded = jig.attribute(x, neuron_selector=torch.tensor([[4, 9, 60]] * 3), target=2)
    assert torch.equal(shared, expanded)


def test_repeated_neuron_counts_once(vit64):
    # A neuron set is a set: listing a channel K times is the same set.
    x = _inputs()
    layers = layers_of(vit64)[:1]
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(vit64), layers)
    once = jig.attribute(x, neuron_selector=torch.tensor([[[7]]] * 3), target=1)
    repeated = jig.attribute(x, neuron_selector=torch.tensor([[[7, 7, 7]]] * 3), target=1)
    assert torch.equal(once, repeated)


def test_single_neuron_is_complete(vit64):
    # One neuron: JAS = w * integral of dF/dw = F(clean) - F(neuron zeroed at the token).
    x, target = _inputs(), torch.tensor([2, 0, 4])
    layer = layers_of(vit64)[1]
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(vit64), [layer])
    jas = jig.attribute(x, neuron_selector=[11], target=target, n_steps=24, method="gausslegendre")

    def zero_neuron(module, args, out):
        out = out.clone()
        out[:, 0, 11] = 0
        return out

    with torch.no_grad():
        clean = softmax_forward(vit64)(x)[torch.arange(3), target]
        handle = layer.register_forward_hook(zero_neuron)
        try:
            ablated = softmax_forward(vit64)(x)[torch.arange(3), target]
        finally:
            handle.remove()
    assert torch.allclose(jas, clean - ablated, rtol=1e-8, atol=1e-12)


def test_internal_batch_size_does_not_change_the_result(vit64):
    x, target = _inputs(), [0, 1, 2]
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(vit64), layers_of(vit64))
    full = jig.attribute(x, neuron_selector=[1, 2, 3], target=target, n_steps=10)
    for size in (3, 7, 12, 1000):
        chunked = jig.attribute(x, neuron_selector=[1, 2, 3], target=target, n_steps=10, internal_batch_size=size)
        assert torch.allclose(full, chunked, rtol=1e-12, atol=1e-15)


def test_converges_to_the_path_integral(vit64):
    # Riemann sums approach the Gauss-Legendre value as the node count grows.
    x = _inputs()
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(vit64), layers_of(vit64))
    exact = jig.attribute(x, neuron_selector=[3, 8, 13], target=0, n_steps=32, method="gausslegendre")
    errors = [
        (jig.attribute(x, neuron_selector=[3, 8, 13], target=0, n_steps=n, method="riemann_middle") - exact).abs().max()
        for n in (4, 16, 64)
    ]
    assert errors[0] > errors[1] > errors[2]


def test_attention_sites_match_brute_force(vit64):
    x, target = _inputs(), torch.tensor([1, 2, 3])
    layers = cnp.vit_attention_layers(vit64)
    selector = random_selector(3, len(layers), 32, 2, seed=5)
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(vit64), layers)
    ours = jig.attribute(x, neuron_selector=selector, target=target, n_steps=5, method="gausslegendre")
    reference = brute_force_jas(softmax_forward(vit64), layers, x, target, selector, n_steps=5, method="gausslegendre")
    assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-13)
    path = cnp.NeuronPath(softmax_forward(vit64), layers).attribute(x, target=target, n_steps=5, method="gausslegendre")
    assert path.path.shape == (3, 3) and path.layer_scores.shape == (3, 3, 32)
