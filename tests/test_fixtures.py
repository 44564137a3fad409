"""The authors' reference outputs on the digits ViT, with the paper preset."""

import pytest
import torch

import captum_neuronpath as cnp

from conftest import case_images
from helpers import softmax_forward

PRESET = cnp.PAPER_QUADRATURE



@pytest.fixture(scope="module")
def located(digits_vit, expected):
    cases, inputs = expected
    locator = cnp.NeuronPath(softmax_forward(digits_vit), cnp.vit_mlp_layers(digits_vit), token=0)
    return [(case, locator.attribute(case_images(case, inputs), target=case["target"], **PRESET)) for case in cases["cases"]]


def test_fixture_settings_are_the_paper_preset(expected):
    cases, _ = expected
    assert (cases["n_steps"], cases["method"]) == (20, "riemann_left")
    assert len(cases["cases"]) >= 3


def test_neuron_paths_reproduce_exactly(located):
    for case, res in located:
        assert res.path.tolist() == case["neuron_path"], f"class {case['target']}"


def test_neuron_path_jas_within_1e4_relative(located):
    for case, res in located:
        expected = torch.tensor(case["neuron_path_jas"])
        assert torch.allclose(res.jas, expected, rtol=1e-4, atol=0), (res.jas, expected)


def test_selection_margins_match(located):
    # (best - second) / |best| of each greedy step, recomputed from layer_scores.
    for case, res in located:
        top2 = res.layer_scores.topk(2, dim=-1).values
        margin = (top2[..., 0] - top2[..., 1]) / top2[..., 0].abs()
        assert torch.allclose(margin, torch.tensor(case["selection_margin"]), rtol=1e-2, atol=1e-5)


def test_activation_path_jas(digits_vit, expected):
    # One of these values is -4e-7, a cancellation at float32 noise level, so the
    # comparison runs in float64, where every value agrees to 1e-4 relative.
    cases, inputs = expected
    model = digits_vit.double()
    try:
        jig = cnp.NeuronJointIntegratedGradients(softmax_forward(model), cnp.vit_mlp_layers(model), token=0)
        for case in cases["cases"]:
            jas = jig.attribute(
                case_images(case, inputs).double(),
                neuron_selector=torch.tensor(case["activation_path"]),
                target=case["target"],
                **PRESET,
            )
            expected_jas = torch.tensor(case["activation_path_jas"], dtype=torch.float64)
            assert torch.allclose(jas, expected_jas, rtol=1e-4, atol=0), (jas, expected_jas)
    finally:
        digits_vit.float()

