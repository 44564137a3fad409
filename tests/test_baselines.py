import pytest
import torch
from captum.attr import (
    InternalInfluence,
    LayerActivation,
    LayerConductance,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)

import captum_neuronpath as cnp

from conftest import case_images
from helpers import assert_unchanged, layers_of, small_vit, snapshot, softmax_forward


@pytest.fixture(scope="module")
def vit():
    return small_vit(depth=3, seed=7)


X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
TARGET = torch.tensor([0, 2, 4])


def test_activation_path_reproduces_the_fixtures(digits_vit, expected):
    cases, inputs = expected
    baseline = cnp.ActivationPath(softmax_forward(digits_vit), cnp.vit_mlp_layers(digits_vit))
    for case in cases["cases"]:
        res = baseline.attribute(case_images(case, inputs), target=case["target"])
        assert res.path.tolist() == case["activation_path"]
        assert res.layer_scores is None


def test_influence_pattern_path_reproduces_the_fixtures(digits_vit, expected):
    cases, inputs = expected
    baseline = cnp.InfluencePatternPath(softmax_forward(digits_vit), cnp.vit_mlp_layers(digits_vit))
    for case in cases["cases"]:
        res = baseline.attribute(case_images(case, inputs), target=case["target"], n_steps=20, method="riemann_left")
        assert res.path.tolist() == case["influence_pattern_path"]


@pytest.mark.parametrize("name", ["ActivationPath", "InfluencePatternPath", "RandomPath"])
def test_jas_is_the_joint_attribution_of_the_path(vit, name):
    res = getattr(cnp, name)(softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET, n_steps=8, method="gausslegendre")
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(vit), layers_of(vit))
    expected = jig.attribute(X, neuron_selector=res.path, target=TARGET, n_steps=8, method="gausslegendre")
    assert torch.allclose(res.jas, expected, rtol=1e-6, atol=1e-10)


def test_activation_path_is_the_largest_summed_activation(vit):
    captured = {}
    handles = [layer.register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(i, out)) for i, layer in enumerate(layers_of(vit))]
    with torch.no_grad():
        vit(X)
    for h in handles:
        h.remove()
    res = cnp.ActivationPath(softmax_forward(vit), layers_of(vit), token=[0, 3]).attribute(X, target=TARGET, top_k=2)
    for i, out in captured.items():
        assert torch.equal(res.path[:, i], out[:, [0, 3]].sum(1).topk(2, dim=-1).indices)


def test_layer_method_path_with_layer_activation_is_the_activation_path(vit):
    via_captum = cnp.LayerMethodPath(LayerActivation, softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET)
    direct = cnp.ActivationPath(softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET)
    assert torch.equal(via_captum.path, direct.path)


def test_layer_method_path_with_internal_influence_is_the_influence_pattern(vit):
    via_captum = cnp.LayerMethodPath(InternalInfluence, softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET, n_steps=7)
    direct = cnp.InfluencePatternPath(softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET, n_steps=7)
    assert torch.equal(via_captum.path, direct.path)
    assert torch.equal(via_captum.jas, direct.jas)


def test_influence_pattern_baselines_change_the_path(vit):
    zeros = cnp.InfluencePatternPath(softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET, n_steps=7)
    shifted = cnp.InfluencePatternPath(softmax_forward(vit), layers_of(vit)).attribute(X, baselines=X * 0.9, target=TARGET, n_steps=7)
    assert not torch.equal(zeros.path, shifted.path)


def test_influence_pattern_takes_its_siblings_positional_order_and_baselines_as_a_keyword(vit):
    locator = cnp.InfluencePatternPath(softmax_forward(vit), layers_of(vit))
    positional = locator.attribute(X, TARGET, None, 7, "riemann_left", None, 2)  # target ... top_k, as ActivationPath
    keywords = locator.attribute(X, target=TARGET, n_steps=7, method="riemann_left", top_k=2)
    assert torch.equal(positional.path, keywords.path) and torch.equal(positional.jas, keywords.jas)
    with pytest.raises(TypeError):  # baselines has no position
        locator.attribute(X, TARGET, None, 7, "riemann_left", None, 2, X * 0.9)


@pytest.mark.parametrize("layer_method", [LayerConductance, LayerIntegratedGradients, LayerGradientXActivation])
def test_layer_method_path_is_the_argmax_of_the_captum_attribution(vit, layer_method):
    res = cnp.LayerMethodPath(layer_method, softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET, n_steps=9)
    for i, layer in enumerate(layers_of(vit)):
        extra = {} if layer_method is LayerGradientXActivation else dict(n_steps=9, method="riemann_left")
        attribution = layer_method(softmax_forward(vit), layer).attribute(X, target=TARGET, **extra)
        assert torch.equal(res.path[:, i], attribution[:, 0].argmax(-1))


def test_layer_method_must_be_a_captum_layer_attribution(vit):
    with pytest.raises(TypeError, match="layer_method must be a Captum LayerAttribution class .*, got 'LayerConductance'"):
        cnp.LayerMethodPath("LayerConductance", softmax_forward(vit), layers_of(vit))


def test_random_path_is_seeded_distinct_and_in_range(vit):
    a = cnp.RandomPath(softmax_forward(vit), layers_of(vit), seed=3).attribute(X, target=TARGET, top_k=4)
    b = cnp.RandomPath(softmax_forward(vit), layers_of(vit), seed=3).attribute(X, target=TARGET, top_k=4)
    c = cnp.RandomPath(softmax_forward(vit), layers_of(vit), seed=4).attribute(X, target=TARGET, top_k=4)
    assert torch.equal(a.path, b.path) and not torch.equal(a.path, c.path)
    assert a.path.shape == (3, 3, 4) and a.path.min() >= 0 and a.path.max() < 64
    assert all(len(set(row.tolist())) == 4 for row in a.path.reshape(-1, 4))


def test_baselines_leave_the_model_untouched(vit):
    before = snapshot(vit)
    cnp.InfluencePatternPath(softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET, n_steps=4)
    cnp.LayerMethodPath(LayerConductance, softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET)
    assert_unchanged(vit, before)


def test_influence_pattern_refuses_token_ids_with_a_way_out():
    embed, act = torch.nn.Embedding(7, 4), torch.nn.Tanh()
    model = torch.nn.Sequential(embed, act, torch.nn.Linear(4, 3)).eval()
    with pytest.raises(TypeError, match="cannot be interpolated"):
        cnp.InfluencePatternPath(lambda ids: model(ids)[:, -1], [act], token=-1).attribute(
            torch.randint(0, 7, (2, 5)), target=0
        )


def test_baselines_without_a_captum_method_refuse_its_keywords(vit):
    with pytest.raises(TypeError, match=r"ActivationPath.attribute\(\) got unexpected keyword arguments \['baselines'\]"):
        cnp.ActivationPath(softmax_forward(vit), layers_of(vit)).attribute(X, target=TARGET, baselines=X * 0.9)


def test_random_path_channel_scores_are_its_seeded_draws(vit):
    null = cnp.RandomPath(softmax_forward(vit), layers_of(vit), seed=3)
    scores = null.channel_scores(X, target=TARGET)
    assert torch.equal(scores, null.channel_scores(X, target=TARGET))
    assert torch.equal(scores.argmax(-1), null.attribute(X, target=TARGET).path)
