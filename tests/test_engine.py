"""The engine's functions on their own: the clean pass, one greedy step, the JAS, the hooks."""

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

import captum_neuronpath as cnp
from captum_neuronpath._core.engine import (
    GreedySearch,
    candidate_scores,
    clean_pass,
    joint_score,
    prepare,
    select_examples,
)
from captum_neuronpath._utils.hooks import site_hooks
from captum_neuronpath._utils.quadrature import quadrature

from helpers import (
    MemoryBound,
    all_hooks,
    brute_force_jas,
    brute_force_layer_scores,
    layers_of,
    random_selector,
    small_vit,
    softmax_forward,
)

X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
TARGET = torch.tensor([0, 3, 1])


@pytest.fixture
def vit():
    return small_vit(depth=3, seed=2).double()


def test_clean_pass_reads_each_layer_at_the_token_set(vit):
    recorded = []
    handles = [layer.register_forward_hook(lambda m, a, out: recorded.append(out)) for layer in layers_of(vit)]
    vit(X)
    for handle in handles:
        handle.remove()
    clean = clean_pass(vit, layers_of(vit), [0, 2], (X,), None)
    for activation, output in zip(clean.activations, recorded):
        assert torch.equal(activation, output[:, [0, 2]])
    assert clean.positions == [[0, 2]] * 3 and clean.output.shape == (3, 5)
    assert all_hooks(vit) == 0


def test_candidate_scores_and_joint_score_match_brute_force(vit):
    forward, layers = softmax_forward(vit), layers_of(vit)
    prepared = prepare(forward, layers, 0, X, TARGET, None)
    rule = quadrature(5, "gausslegendre")
    prefix = random_selector(3, 2, 64, 1, seed=4)
    scores = candidate_scores(forward, layers, prepared, 2, prefix, rule, None)
    expected = brute_force_layer_scores(forward, layers, X, TARGET, prefix, 2, n_steps=5, method="gausslegendre")
    torch.testing.assert_close(scores, expected, rtol=1e-9, atol=1e-12)
    selector = random_selector(3, 3, 64, 2, seed=5)
    jas = joint_score(forward, layers, prepared, selector, rule, internal_batch_size=4)[0]
    expected = brute_force_jas(forward, layers, X, TARGET, selector, n_steps=5, method="gausslegendre")
    torch.testing.assert_close(jas, expected, rtol=1e-9, atol=1e-12)


def test_selected_examples_score_like_the_originals(vit):
    forward, layers = softmax_forward(vit), layers_of(vit)
    prepared = prepare(forward, layers, 0, X, TARGET, None)
    rule = quadrature(3, "gausslegendre")
    selector = random_selector(3, 3, 64, 1, seed=6)
    once = joint_score(forward, layers, prepared, selector, rule, None)[0]
    twice = joint_score(forward, layers, select_examples(prepared, torch.arange(3).repeat(2)), selector.repeat(2, 1, 1),
                        rule, None)[0]  # fmt: skip
    torch.testing.assert_close(twice, once.repeat(2), rtol=1e-12, atol=1e-15)
    rows = torch.tensor([2, 0, 2])  # a subset, reordered, with a repeat
    some = joint_score(forward, layers, select_examples(prepared, rows), selector[rows], rule, None)[0]
    torch.testing.assert_close(some, once[rows], rtol=1e-12, atol=1e-15)


def test_site_hooks_replace_outputs_and_module_inputs_and_always_clean_up():
    linear = nn.Linear(4, 2)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), linear)
    x = torch.randn(5, 3)
    seen = {}
    sites = [model[1], cnp.ModuleInput(linear)]
    with site_hooks(sites, {0: lambda v: v * 0, 1: lambda v: seen.setdefault("input", v)}):
        out = model(x)
    assert torch.equal(seen["input"], torch.zeros(5, 4))  # the ReLU output was replaced before the input was read
    torch.testing.assert_close(out, linear.bias.expand(5, 2))
    with pytest.raises(RuntimeError, match="boom"):
        with site_hooks(sites, {0: lambda v: None}):
            raise RuntimeError("boom")
    assert all_hooks(model) == 0


def test_module_input_site_scores_the_input_of_its_module():
    torch.manual_seed(0)
    down = nn.Linear(6, 4)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), down, nn.Linear(4, 2))
    x = torch.randn(4, 3, dtype=torch.float64)
    model = model.double().eval()
    fwd = lambda inputs: model(inputs).softmax(-1)  # noqa: E731
    by_input = cnp.NeuronJointIntegratedGradients(fwd, [cnp.ModuleInput(down)], token=None)
    by_output = cnp.NeuronJointIntegratedGradients(fwd, [model[1]], token=None)
    # The tanh output is the down projection's input: the same neurons, read two ways.
    torch.testing.assert_close(
        by_input.attribute(x, neuron_selector=[4], target=1), by_output.attribute(x, neuron_selector=[4], target=1)
    )


def test_output_independent_of_every_site_gives_zeros_and_one_warning():
    vit = small_vit(depth=2, seed=3)
    nn.init.zeros_(vit.head.weight)
    nn.init.zeros_(vit.head.bias)
    x = torch.randn(2, 3, 16, 16)
    with pytest.warns(UserWarning, match="does not depend on any of the layers") as record:
        result = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(x, target=1)
    assert len([w for w in record if "does not depend" in str(w.message)]) == 1
    assert torch.equal(result.jas, torch.zeros(2)) and torch.equal(result.layer_scores, torch.zeros(2, 2, 64))


def test_torchvision_vit_with_its_zero_initialised_head_warns_and_scores_zero():
    # torchvision starts the head at zero, so an untrained model's output depends on no neuron.
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32).eval()
    locator = cnp.NeuronPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model), token=0)
    with pytest.warns(UserWarning, match="untrained head initialised to zero"):
        result = locator.attribute(torch.randn(2, 3, 32, 32), target=torch.tensor([3, 7]))
    assert torch.equal(result.jas, torch.zeros(2)) and not result.layer_scores.any()


def test_greedy_search_gives_each_passes_own_numbers(vit):
    layers, forward = layers_of(vit), softmax_forward(vit)
    prepared = prepare(forward, layers, 0, X, TARGET, None)
    assert prepared.clean.plan is not None and prepared.clean.plan.blocks is not None  # it can restart
    rule = quadrature(5, "gausslegendre")
    search = GreedySearch(forward, layers, prepared, rule, None)
    path = torch.empty(3, 0, 1, dtype=torch.long)
    for t in range(3):
        scores = search.candidate_scores(t, path)
        alone = candidate_scores(forward, layers, prepare(forward, layers, 0, X, TARGET, None), t, path, rule, None)
        torch.testing.assert_close(scores, alone, rtol=1e-9, atol=1e-15)
        path = torch.cat([path, scores.argmax(-1).view(-1, 1, 1)], dim=1)
    jas = search.joint_score(path)[0]
    torch.testing.assert_close(jas, joint_score(forward, layers, prepared, path, rule, None)[0], rtol=1e-9, atol=0)


def test_out_of_memory_in_a_pass_names_internal_batch_size_and_the_rows(vit):
    vit = vit.float()
    bounded = MemoryBound(vit, rows=8)  # 4 examples x 4 nodes do not fit, 2 nodes per pass do
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    locator = cnp.NeuronPath(softmax_forward(bounded), layers_of(vit))
    expected = r"16 rows \(4 quadrature nodes x 4 examples.*internal_batch_size=8"
    with pytest.raises(torch.OutOfMemoryError, match=expected) as caught:
        locator.attribute(x, target=0, n_steps=4)
    assert "simulated" in str(caught.value.__cause__)  # the model's own error is kept
    fitted = locator.attribute(x, target=0, n_steps=4, internal_batch_size=8)
    reference = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(x, target=0, n_steps=4)
    assert torch.equal(fitted.path, reference.path)
    torch.testing.assert_close(fitted.jas, reference.jas, rtol=1e-5, atol=0)


def test_results_are_computed_in_float32_under_bfloat16_autocast(vit):
    vit = vit.float()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prepared = prepare(softmax_forward(vit), layers_of(vit), 0, x, TARGET[:1].repeat(3), None)
        result = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(x, target=0)
    assert prepared.dtype == torch.float32
    assert all(a.dtype == torch.float32 for a in prepared.clean.activations)
    assert result.jas.dtype == result.layer_scores.dtype == torch.float32
    full = cnp.NeuronJointIntegratedGradients(softmax_forward(vit), layers_of(vit)).attribute(x, result.path, 0)
    torch.testing.assert_close(result.jas, full, rtol=0.05, atol=1e-7)  # the model's bfloat16 rounding only
