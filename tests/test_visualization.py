import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.text import Text

import captum_neuronpath as cnp
from captum_neuronpath import visualization as vis
from captum_neuronpath.experiments import paper_table
from captum_neuronpath.metrics import PruningCurve, class_similarity, neuron_frequency, rank_agreement

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


def test_path_diagram_overlays_every_path(result):
    fig, ax = vis.visualize_path(result, labels=["a", "b", "c"], num_neurons=64, use_pyplot=False)
    assert len(ax.get_lines()) == 3
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["a", "b", "c", "marker area: greedy score", "black label: shared neuron"]
    for line, path in zip(ax.get_lines(), result.path):
        assert np.array_equal(line.get_ydata(), path.numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()][:3] == ["a", "b", "c"]
    assert ax.get_ylim()[1] >= 64
    # The marker areas follow each step's score of its choice.
    chosen = result.layer_scores.gather(2, result.path.unsqueeze(-1)).squeeze(-1).abs()
    areas = [c.get_sizes() for c in ax.collections]
    assert np.argmax(np.concatenate(areas)) == int(chosen.flatten().argmax())


def test_single_path_writes_neuron_and_score(result):
    scores = result.chosen_scores()[0]
    fig, ax = vis.visualize_path(result.path[0], scores, use_pyplot=False)
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"#{n}\nscore {float(v):.3g}" for n, v in zip(result.path[0].tolist(), scores)]


def _label_boxes(fig, ax):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    # The text's own box, without the leader line an annotation's extent includes.
    return {t.get_text(): Text.get_window_extent(t, renderer) for t in ax.texts}


def test_path_labels_name_shared_neurons_once_and_never_overlap():
    paths = {"A": [65, 94, 67], "B": [143, 234, 24], "C": [65, 237, 67], "D": [51, 236, 230]}
    fig, ax = vis.visualize_path({k: torch.tensor(v) for k, v in paths.items()}, num_neurons=256, use_pyplot=False)
    texts = [t.get_text() for t in ax.texts]
    # One label per distinct neuron and layer: 65 and 67 are shared by A and C.
    assert sorted(texts) == sorted(f"#{n}" for n in [65, 143, 51, 94, 234, 237, 236, 67, 24, 230])
    shared = [t for t in ax.texts if t.get_text() in ("#65", "#67")]
    assert all(t.get_color() == "black" for t in shared)
    assert all(t.get_color() != "black" for t in ax.texts if t not in shared)
    boxes = list(_label_boxes(fig, ax).values())
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    assert not overlaps  # 234, 236 and 237 sit within 3 neurons of each other
    # Markers of paths through one neuron sit side by side, not on top of each other.
    a, c = ax.get_lines()[0], ax.get_lines()[2]
    assert a.get_ydata()[0] == c.get_ydata()[0] and a.get_xdata()[0] != c.get_xdata()[0]


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
    assert "margin: (best - second best) / |best|" in [t.get_text() for t in ax.get_legend().get_texts()]
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


def test_pruning_curve():
    curves = {"A": PruningCurve([0, 1], [90.0, 50.0]), "B": PruningCurve([0, 1], [90.0, 70.0])}
    fig, ax = vis.visualize_pruning_curve(curves, use_pyplot=False)
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[90.0, 50.0], [90.0, 70.0]]


def test_effect_bars_come_from_plain_data():
    effects = {"A": {"removal": (-1.0, -2.0, 0.5), "more (x3)": (2.0, 1.0, 3.0)}, "B": {"removal": (0.5, 0.0, 1.0)}}
    fig, ax = vis.visualize_effects(effects, ylabel="points", use_pyplot=False)
    assert [p.get_height() for p in ax.patches] == [-1.0, 0.5, 2.0]  # series by series
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["removal", "more (x3)"]
    assert ax.get_ylabel() == "points"
    caps = sorted(y for line in ax.get_lines() if line.get_marker() == "_" for y in line.get_ydata())  # intervals
    assert caps == sorted([-2.0, 0.5, 0.0, 1.0, 1.0, 3.0])


def test_effects_of_a_table_label_the_factor(digits_vit, expected):
    _, inputs = expected
    table = paper_table(digits_vit, inputs["images"][:4], inputs["labels"][:4], methods=["Activation", "Random"],
                        n_steps=4, factor=3.0, n_bootstrap=10, show_progress=False)  # fmt: skip
    effects = table.effects("accuracy")
    assert list(effects) == ["Activation", "Random"]
    assert list(effects["Random"]) == ["removal (path set to 0)", "enhancement (path x3)"]
    assert effects["Random"]["enhancement (path x3)"] == tuple(table.rows[1].enhancement[:3])
    assert table.effects("paired") == {}  # no Neuron Path row to compare with
    fig, ax = vis.visualize_effects(table.effects("score"), use_pyplot=False)
    assert len(ax.patches) == 4 and "enhancement (path x3)" in [t.get_text() for t in ax.get_legend().get_texts()]
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders without error


def test_agreement_figures():
    greedy = torch.randn(6, 3, 40, generator=torch.Generator().manual_seed(1))
    agreement = {"same": rank_agreement(greedy, greedy), "reversed": rank_agreement(greedy, -greedy)}
    fig, ax = vis.visualize_rank_agreement(agreement, use_pyplot=False)
    medians = [container.lines[0].get_ydata().tolist() for container in ax.containers]
    assert medians == [[1.0] * 3, [-1.0] * 3]
    fig, ax = vis.visualize_top_neuron_ranks(agreement, num_neurons=40, use_pyplot=False)
    same, reversed_, chance = ax.get_lines()
    assert set(same.get_xdata()) == {1.0} and set(reversed_.get_xdata()) == {40.0}
    assert chance.get_ydata()[-1] == 1.0 and "chance" in chance.get_label()
    with pytest.raises(ValueError, match=r"field must be one of \('second_top_in_first', 'first_top_in_second'\), got 'spearman'"):
        vis.visualize_top_neuron_ranks(agreement, field="spearman", use_pyplot=False)


def test_visualization_does_not_import_the_experiment_runner():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(vis))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert "captum_neuronpath.experiments" not in imported
    assert imported.count("captum_neuronpath.metrics") == 1


def test_path_saliency_overlay_draws_into_given_axes():
    fig, axes = plt.subplots(1, 2)
    saliency = torch.zeros(3, 8, 8)
    saliency[:, 2, 5] = 1.0
    returned = vis.visualize_path_saliency(saliency, torch.rand(3, 8, 8), title="layer 0", plt_fig_axis=(fig, axes[0]))
    assert returned == (fig, axes[0]) and axes[0].get_title() == "layer 0" and not axes[1].images
    heat = axes[0].images[-1].get_array()
    assert heat.shape == (8, 8) and float(heat[2, 5]) == float(heat.max())
