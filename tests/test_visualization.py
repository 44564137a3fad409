import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import captum_neuronpath as cnp
from captum_neuronpath import visualization as vis
from captum_neuronpath.experiments import paper_table
from captum_neuronpath.metrics import PruningCurve, class_similarity, neuron_frequency

from helpers import layers_of, small_vit


@pytest.fixture(autouse=True)
def no_show(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("visualization must never call show()")

    monkeypatch.setattr(plt, "show", refuse)
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def result():
    model = small_vit(depth=3, seed=9)
    return cnp.NeuronPath(lambda x: model(x).softmax(-1), layers_of(model)).attribute(
        torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)), target=1
    )


def test_chosen_scores_are_the_scores_of_the_path(result):
    scores = result.chosen_scores()
    assert scores.shape == (3, 3)
    assert torch.equal(scores, result.layer_scores.max(-1).values)


def test_path_diagram_overlays_every_path(result):
    fig, ax = vis.visualize_path(result, labels=["a", "b", "c"], num_neurons=64, use_pyplot=False)
    assert len(ax.get_lines()) == 3 + 1  # three paths and the legend's note on marker area
    for line, path in zip(ax.get_lines(), result.path):
        assert np.array_equal(line.get_ydata(), path.numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()][:3] == ["a", "b", "c"]
    assert ax.get_ylim()[1] >= 64


def test_single_path_writes_neuron_and_score(result):
    fig, ax = vis.visualize_path(result.path[0], result.chosen_scores()[0], use_pyplot=False)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 3 and all(t.startswith("#") and "score" in t for t in texts)


def test_named_paths_draw_into_given_axes():
    fig, axes = plt.subplots(1, 2)
    returned = vis.visualize_path({"x": [1, 2], "y": [3, 4]}, plt_fig_axis=(fig, axes[1]))
    assert returned == (fig, axes[1]) and len(axes[1].get_lines()) == 2 and not axes[0].get_lines()


def test_use_pyplot_false_does_not_register_a_figure(result):
    before = plt.get_fignums()
    vis.visualize_layer_scores(result.layer_scores[0], use_pyplot=False)
    assert plt.get_fignums() == before
    vis.visualize_layer_scores(result.layer_scores[0])
    assert len(plt.get_fignums()) == len(before) + 1


def test_layer_scores_mark_the_chosen_neurons_and_margins(result):
    fig, ax = vis.visualize_layer_scores(result.layer_scores[1], result.path[1], use_pyplot=False)
    margins = [t.get_text() for t in ax.texts if t.get_text().startswith("margin")]
    assert len(margins) == 3
    top2 = result.layer_scores[1].topk(2, dim=-1).values
    expected = ((top2[:, 0] - top2[:, 1]) / top2[:, 0].abs()).tolist()
    assert [float(m.split()[-1]) for m in margins] == pytest.approx(expected, rel=0.05)


def test_frequency_heatmap_and_dominant_labels():
    frequency = torch.zeros(2, 10)
    frequency[0, 3], frequency[1, 7] = 0.9, 0.5
    fig, ax = vis.visualize_neuron_frequency(frequency, top=5, use_pyplot=False)
    assert np.array_equal(ax.get_images()[0].get_array(), frequency.double().numpy())
    assert sorted(t.get_text() for t in ax.texts) == ["#3 (0.90)", "#7 (0.50)"]  # only non-zero cells


def test_similarity_matrix_and_nearest_classes():
    paths = torch.tensor([[0, 1], [0, 1], [2, 2], [0, 2]])
    similarity = class_similarity(neuron_frequency(paths, torch.tensor([0, 1, 2, 2]), num_channels=3))
    fig, ax = vis.visualize_class_similarity(similarity, ["cat", "dog", "car"], use_pyplot=False)
    assert len(ax.texts) == 9 and ax.texts[0].get_text() == "1.00"
    fig, ax = vis.visualize_nearest_classes(similarity, 0, ["cat", "dog", "car"], k=2, use_pyplot=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["dog", "car"]  # identical paths first


def test_pruning_curve_and_deviation_bars(digits_vit, expected):
    curves = {"A": PruningCurve([0, 1], [90.0, 50.0]), "B": PruningCurve([0, 1], [90.0, 70.0])}
    fig, ax = vis.visualize_pruning_curve(curves, use_pyplot=False)
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[90.0, 50.0], [90.0, 70.0]]
    _, inputs = expected
    table = paper_table(digits_vit, inputs["images"][:4], inputs["labels"][:4], methods=["Activation", "Random"],
                        n_steps=4, n_bootstrap=10, progress=False)  # fmt: skip
    fig, ax = vis.visualize_accuracy_deviation(table, use_pyplot=False)
    assert len(ax.patches) == 4  # two methods x (removal, enhancement)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Activation", "Random"]
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders without error


def test_path_saliency_overlay_draws_into_given_axes():
    fig, axes = plt.subplots(1, 2)
    saliency = torch.zeros(3, 8, 8)
    saliency[:, 2, 5] = 1.0
    returned = vis.visualize_path_saliency(saliency, torch.rand(3, 8, 8), title="layer 0", plt_fig_axis=(fig, axes[0]))
    assert returned == (fig, axes[0]) and axes[0].get_title() == "layer 0" and not axes[1].images
    heat = axes[0].images[-1].get_array()
    assert heat.shape == (8, 8) and float(heat[2, 5]) == float(heat.max())
