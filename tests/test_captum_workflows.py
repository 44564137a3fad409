"""Captum's batch-expanding workflows with per-example paths, against one example at a time.

``NoiseTunnel``, ``sensitivity_max`` and ``infidelity`` repeat each example in place and
pass the other keywords through; per-example paths must follow that expansion.
"""

import torch
from captum.attr import NoiseTunnel
from captum.metrics import infidelity, sensitivity_max

import captum_neuronpath as cnp

from helpers import layers_of, small_vit, softmax_forward

X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
TARGET = torch.tensor([0, 2, 4])


def _model():
    return small_vit(depth=2, seed=4).double()


def _paths(model):
    return cnp.NeuronPath(softmax_forward(model), layers_of(model)).attribute(X, target=TARGET).path


def _one_at_a_time(function, *per_example):
    return torch.cat([function(*(value[i : i + 1] for value in per_example)) for i in range(len(X))])


def test_noise_tunnel_over_path_saliency_follows_the_expansion():
    model = _model()
    saliency, paths = cnp.PathSaliency(model, layers_of(model)), _paths(model)
    tunnel = NoiseTunnel(saliency)
    # No noise: every sample is the example itself, so the tunnel's mean is the plain map.
    batched = tunnel.attribute(X, nt_type="smoothgrad", nt_samples=4, stdevs=0.0, path=paths, n_steps=8)
    alone = _one_at_a_time(lambda x, p: saliency.attribute(x, path=p, n_steps=8), X, paths)
    torch.testing.assert_close(batched, alone)
    noisy = tunnel.attribute(X, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, path=paths, n_steps=8)
    assert noisy.shape == X.shape and not torch.allclose(noisy, batched)


def test_noise_tunnel_over_the_joint_score_and_candidate_scores():
    model = _model()
    fwd, layers, paths = softmax_forward(model), layers_of(model), _paths(model)
    jig = cnp.NeuronJointIntegratedGradients(fwd, layers)
    batched = NoiseTunnel(jig).attribute(X, nt_samples=2, stdevs=0.0, neuron_selector=paths, target=TARGET)
    torch.testing.assert_close(batched, jig.attribute(X, neuron_selector=paths, target=TARGET))
    ljig = cnp.LayerJointIntegratedGradients(fwd, layers)
    batched = NoiseTunnel(ljig).attribute(
        X, nt_samples=2, stdevs=0.0, layer_index=1, path_prefix=paths[:, :1], target=TARGET
    )
    torch.testing.assert_close(batched, ljig.attribute(X, layer_index=1, path_prefix=paths[:, :1], target=TARGET))


def test_sensitivity_max_with_per_example_paths_equals_a_loop():
    model = _model()
    saliency, paths = cnp.PathSaliency(model, layers_of(model)), _paths(model)

    def shift(inputs, radius):  # deterministic, so the batch and the loop see the same perturbations
        return inputs + radius

    batched = sensitivity_max(saliency.attribute, X, perturb_func=shift, n_perturb_samples=3, path=paths, n_steps=8)
    alone = _one_at_a_time(
        lambda x, p: sensitivity_max(saliency.attribute, x, perturb_func=shift, n_perturb_samples=3, path=p, n_steps=8),
        X,
        paths,
    )
    torch.testing.assert_close(batched, alone)
    assert (batched > 0).all()


def test_infidelity_of_path_saliency_against_the_path_activation():
    model = _model()
    layers, paths = layers_of(model), _paths(model)
    saliency = cnp.PathSaliency(model, layers)
    maps = saliency.attribute(X, path=paths, n_steps=16)
    explained = cnp.path_activation(model, layers, paths)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(4, *X.shape[1:], generator=generator, dtype=X.dtype) * 0.01

    def perturb(inputs):  # the same perturbations for every example, batch or loop
        per_sample = noise.repeat(len(inputs) // len(noise), 1, 1, 1)
        return per_sample, inputs - per_sample

    batched = infidelity(explained, perturb, X, maps, n_perturb_samples=4)
    alone = torch.cat(
        [
            infidelity(cnp.path_activation(model, layers, paths[i : i + 1]), perturb, X[i : i + 1], maps[i : i + 1], n_perturb_samples=4)
            for i in range(len(X))
        ]
    )
    torch.testing.assert_close(batched, alone)


def test_path_saliency_is_complete_for_the_path_activation():
    model = _model()
    layers, paths = layers_of(model), _paths(model)
    maps = cnp.PathSaliency(model, layers).attribute(X, path=paths, n_steps=64)
    explained = cnp.path_activation(model, layers, paths)
    gap = explained(X) - explained(torch.zeros_like(X))
    torch.testing.assert_close(maps.sum((1, 2, 3)), gap, rtol=1e-3, atol=1e-6)


def test_per_example_token_positions_follow_the_expansion():
    model = small_vit(depth=2, seed=4, global_pool="avg").double()  # every token reaches the head
    layers = layers_of(model)
    token = torch.tensor([1, 5, 9])
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(model), layers, token=token)
    batched = NoiseTunnel(jig).attribute(X, nt_samples=2, stdevs=0.0, neuron_selector=[1, 2], target=TARGET)
    alone = torch.cat(
        [
            cnp.NeuronJointIntegratedGradients(softmax_forward(model), layers, token=int(token[i])).attribute(
                X[i : i + 1], neuron_selector=[1, 2], target=TARGET[i : i + 1]
            )
            for i in range(len(X))
        ]
    )
    torch.testing.assert_close(batched, alone)
