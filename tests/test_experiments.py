import json

import pytest
import torch
from captum.attr import LayerConductance, LayerDeepLift, LayerGradientXActivation, LayerIntegratedGradients

import captum_neuronpath as cnp
from captum_neuronpath.experiments import (
    METHODS,
    captum_layer_methods,
    method_agreement,
    paper_table,
)
from captum_neuronpath.metrics import explained_scores, rank_agreement


def test_paper_table_on_the_fixture_cases(digits_vit, expected):
    cases, inputs = expected
    table = paper_table(digits_vit, inputs["images"], inputs["labels"], batch_size=6, n_bootstrap=50, show_progress=False)
    assert [row.method for row in table.rows] == list(METHODS)
    # The located paths are the authors' (fixture cases in input order).
    order = inputs["dataset_indices"].tolist()
    for case in cases["cases"]:
        rows = [order.index(i) for i in case["dataset_indices"]]
        assert table.paths["Neuron Path"][rows].tolist() == case["neuron_path"]
        assert table.paths["Influence Pattern"][rows].tolist() == case["influence_pattern_path"]
        assert table.paths["Activation"][rows].tolist() == case["activation_path"]
    for row in table.rows:
        assert abs(row.jas - float(table.jas[row.method].double().mean())) < 1e-12
        assert row.jas_low <= row.jas <= row.jas_high
        assert row.removal.n == 15 and row.removal.low <= row.removal.deviation <= row.removal.high
        assert row.removal_score.low <= row.removal_score.change <= row.removal_score.high
        change = table.score_changes[row.method]["remove"]
        assert row.removal_score.change == pytest.approx(float(change.mean()))
    by_name = {row.method: row for row in table.rows}
    assert by_name["Neuron Path"].jas > by_name["Activation"].jas
    assert by_name["Neuron Path"].removal_vs_reference is None
    paired = by_name["Random"].removal_vs_reference
    expected_difference = table.score_changes["Random"]["remove"] - table.score_changes["Neuron Path"]["remove"]
    assert paired.difference == pytest.approx(float(expected_difference.mean())) and paired.n == 15
    assert table.layer_scores["Neuron Path"].shape == (15, 6, 256) and list(table.layer_scores) == ["Neuron Path"]
    markdown = table.to_markdown().splitlines()
    assert markdown[0].startswith("| Method | JAS |") and len(markdown) == 6 + 1 + 6
    assert markdown[7].startswith("| Method | Removal: score change |") and "minus Neuron Path" in markdown[7]
    assert markdown[7 + 2 + 2].startswith("| Neuron Path |") and markdown[11].endswith("| - | - |")
    data = json.loads(json.dumps(table.to_json()))
    assert data["rows"][2]["method"] == "Neuron Path" and len(data["paths"]["Random"]) == 15
    assert data["rows"][0]["removal_vs_reference"]["n"] == 15 and data["settings"]["factor"] == 2.0
    assert torch.equal(torch.tensor(data["paths"]["Neuron Path"]), table.paths["Neuron Path"])
    assert len(data["score_changes"]["Activation"]["enhance"]) == 15


@pytest.fixture(scope="module")
def few(expected):
    _, inputs = expected
    return inputs["images"][:5], inputs["labels"][:5]


def test_score_change_equals_the_mean_probability_drop_by_hand(digits_vit, few):
    images, labels = few
    table = paper_table(digits_vit, images, labels, methods=["Neuron Path"], n_steps=4, n_bootstrap=10, show_progress=False)
    layers = cnp.vit_mlp_layers(digits_vit)
    with torch.no_grad():
        clean = digits_vit(images).softmax(-1)[torch.arange(5), labels]
        with cnp.intervene(layers, table.paths["Neuron Path"], mode="remove", token=0):
            removed = digits_vit(images).softmax(-1)[torch.arange(5), labels]
        with cnp.intervene(layers, table.paths["Neuron Path"], mode="enhance", token=0, factor=2.0):
            enhanced = digits_vit(images).softmax(-1)[torch.arange(5), labels]
    row = table.rows[0]
    assert row.removal_score.change == pytest.approx(float((removed - clean).double().mean()), abs=1e-7)
    assert row.enhancement_score.change == pytest.approx(float((enhanced - clean).double().mean()), abs=1e-7)
    assert row.removal_score.clean_score == pytest.approx(float(clean.double().mean()), abs=1e-7)


def test_captum_class_rows_equal_layer_method_path(digits_vit, few):
    images, labels = few
    layers = cnp.vit_mlp_layers(digits_vit)

    def forward(x):
        return digits_vit(x).softmax(-1)

    instance = cnp.LayerMethodPath(LayerConductance, forward, layers)
    table = paper_table(digits_vit, images, labels, methods=["Neuron Path", LayerGradientXActivation, instance],
                        n_steps=4, n_bootstrap=10, show_progress=False)  # fmt: skip
    assert [row.method for row in table.rows] == ["Neuron Path", "LayerGradientXActivation", "LayerConductance"]
    direct = cnp.LayerMethodPath(LayerGradientXActivation, forward, layers).attribute(
        images, target=labels, n_steps=4, method="riemann_left"
    )
    assert torch.equal(table.paths["LayerGradientXActivation"], direct.path)
    assert torch.allclose(table.jas["LayerGradientXActivation"], direct.jas)
    removed = explained_scores(forward, (images, labels), layers, direct.path, mode="remove", token=0)
    clean = explained_scores(forward, (images, labels))
    assert table.rows[1].removal_score.change == pytest.approx(float((removed - clean).mean()))
    assert table.rows[2].removal_vs_reference is not None


@pytest.mark.parametrize(
    "methods, error, match",
    [
        (["Neuron Path", "Saliency"], ValueError, "methods entries must be one of"),
        ([torch.nn.Linear], TypeError, "Captum layer attribution class"),
        ([LayerDeepLift], TypeError, "built from the model itself"),
        ([42], TypeError, "methods entries"),
        ("Neuron Path", TypeError, "methods must be a non-empty sequence"),
        (["Random", "Random"], ValueError, "twice"),
    ],
)
def test_unknown_methods_are_refused(digits_vit, few, methods, error, match):
    images, labels = few
    with pytest.raises(error, match=match):
        paper_table(digits_vit, images, labels, methods=methods, n_steps=4, show_progress=False)


def test_a_layer_method_path_on_other_layers_is_refused(digits_vit, few):
    images, labels = few
    other = cnp.LayerMethodPath(LayerConductance, digits_vit, cnp.vit_mlp_layers(digits_vit)[:3])
    with pytest.raises(ValueError, match="table's layers"):
        paper_table(digits_vit, images, labels, methods=[other], n_steps=4, show_progress=False)


def test_agreement_compares_greedy_scores_with_the_ranked_attribution(digits_vit, few):
    images, labels = few
    layers = cnp.vit_mlp_layers(digits_vit)

    def forward(x):
        return digits_vit(x).softmax(-1)

    found = method_agreement(digits_vit, images, labels, [LayerIntegratedGradients, "Activation"], n_steps=4,
                             show_progress=False)  # fmt: skip
    greedy = cnp.NeuronPath(forward, layers).attribute(images, target=labels, n_steps=4, method="riemann_left")
    assert torch.allclose(found.layer_scores, greedy.layer_scores) and torch.equal(found.path, greedy.path)
    lig = cnp.LayerMethodPath(LayerIntegratedGradients, forward, layers)
    # The scores are those LayerMethodPath ranks by: its path is their argmax.
    assert torch.equal(found.top["LayerIntegratedGradients"],
                       lig.attribute(images, target=labels, n_steps=4, method="riemann_left").path)  # fmt: skip
    scores = lig.channel_scores(images, target=labels, n_steps=4, method="riemann_left")
    assert torch.allclose(found.scores["LayerIntegratedGradients"], scores)
    expected = rank_agreement(greedy.layer_scores, scores)
    assert torch.allclose(found.agreement["LayerIntegratedGradients"].spearman, expected.spearman)
    # Activation's scores are the clean activations at the class token.
    activation = cnp.ActivationPath(forward, layers).attribute(images, target=labels).path
    assert torch.equal(found.top["Activation"], activation)
    # Reusing a table's greedy scores gives the same agreement.
    again = method_agreement(digits_vit, images, labels, ["Activation"], n_steps=4, show_progress=False,
                             layer_scores=greedy.layer_scores)  # fmt: skip
    assert torch.equal(again.agreement["Activation"].spearman, found.agreement["Activation"].spearman)
    assert found.to_markdown().splitlines()[2].startswith("| LayerIntegratedGradients |")
    with pytest.raises(ValueError, match="per-neuron scores"):
        method_agreement(digits_vit, images, labels, ["Random"], n_steps=4, show_progress=False)


def test_captum_layer_methods_are_those_built_from_a_forward_function():
    names = captum_layer_methods()
    assert {"LayerIntegratedGradients", "LayerConductance", "InternalInfluence"} <= set(names)
    assert "LayerDeepLift" not in names and "LayerLRP" not in names and "LayerAttribution" not in names
