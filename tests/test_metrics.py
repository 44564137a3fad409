"""Metric arithmetic on hand-made cases: a model whose output is its neuron layer."""

import pytest
import torch
from torch import nn

from captum_neuronpath.metrics import (
    accuracy_deviation,
    bootstrap_interval,
    class_similarity,
    correct_predictions,
    most_similar_classes,
    neuron_frequency,
    pruning_curve,
)

LOGITS = torch.tensor([[5.0, 1, 0], [0, 4, 1], [1, 0, 3], [2, 1, 0]])
LABELS = torch.tensor([0, 1, 2, 1])  # clean predictions 0, 1, 2, 0: 75% correct
PATHS = torch.tensor([[0], [2], [2], [0]])
LAYER = nn.Identity()
LAYERS = [LAYER]


def model(x):
    return LAYER(x)


@pytest.mark.parametrize("data", [(LOGITS, LABELS), [(LOGITS[:2], LABELS[:2]), (LOGITS[2:], LABELS[2:])]], ids=["tensors", "loader"])
def test_removal_and_enhancement_deviation(data):
    removal = accuracy_deviation(model, LAYERS, data, PATHS, mode="remove", token=None, batch_size=3)
    # Removing the path logit: rows 0 and 2 flip to wrong, row 3 flips to right.
    assert (removal.clean_accuracy, removal.intervened_accuracy, removal.deviation, removal.n) == (75.0, 50.0, -25.0, 4)
    assert removal.low <= removal.deviation <= removal.high
    enhancement = accuracy_deviation(model, LAYERS, data, PATHS, mode="enhance", token=None)
    # Doubling: row 3's wrong logit grows, the rest keep their prediction.
    assert (enhancement.intervened_accuracy, enhancement.deviation) == (75.0, 0.0)


def test_correct_predictions_clean_and_intervened():
    assert correct_predictions(model, (LOGITS, LABELS)).tolist() == [True, True, True, False]
    removed = correct_predictions(model, (LOGITS, LABELS), LAYERS, PATHS, mode="remove", token=None)
    assert removed.tolist() == [False, True, False, True]


def test_paths_must_cover_the_data():
    with pytest.raises(ValueError, match="paths"):
        correct_predictions(model, (LOGITS, LABELS), LAYERS, PATHS[:3], mode="remove", token=None)


def test_pruning_curve_ends():
    curve = pruning_curve(model, LAYERS, (LOGITS, LABELS), PATHS, fractions=[0.0, 1.0], token=None)
    # Keeping only the path logit: rows 0 and 2 stay right, rows 1 and 3 are wrong.
    assert curve.fractions == [0.0, 1.0] and curve.accuracy == [75.0, 50.0]


def test_bootstrap_interval():
    assert bootstrap_interval(torch.full((10,), 3.0)) == (3.0, 3.0)
    values = torch.tensor([-100.0, 0.0, -100.0, 100.0])
    low, high = bootstrap_interval(values, n_bootstrap=2000, seed=1)
    assert -100 <= low < -25 < high <= 100
    assert bootstrap_interval(values, n_bootstrap=2000, seed=1) == (low, high)


def test_neuron_frequency_counts_per_class():
    paths = torch.tensor([[0, 1], [0, 2], [1, 2], [2, 2]])
    labels = torch.tensor([0, 0, 1, 1])
    frequency = neuron_frequency(paths, labels, num_channels=3, num_classes=3)
    assert frequency.shape == (3, 2, 3)
    assert frequency[0].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]
    assert frequency[1].tolist() == [[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]
    assert frequency[2].sum() == 0  # no examples of class 2


def test_neuron_frequency_counts_every_top_k_neuron():
    paths = torch.tensor([[[0, 1]], [[1, 2]]])
    frequency = neuron_frequency(paths, torch.tensor([0, 0]), num_channels=3)
    assert frequency[0, 0].tolist() == [0.5, 1.0, 0.5]


def test_class_similarity_and_nearest_classes():
    frequency = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]], [[2.0, 0.0]]])
    similarity = class_similarity(frequency)
    assert torch.allclose(similarity.diagonal(), torch.ones(4))
    assert similarity[0, 1] == 0 and torch.isclose(similarity[0, 2], torch.tensor(0.5**0.5))
    assert torch.isclose(similarity[0, 3], torch.tensor(1.0))
    assert most_similar_classes(similarity, k=2)[0].tolist() == [3, 2]
    assert most_similar_classes(similarity, k=1)[:, 0].tolist() == [3, 2, 0, 0]
