"""Metric arithmetic on hand-made cases: a model whose output is its neuron layer."""

import pytest
import torch
from torch import nn

from captum_neuronpath.metrics import (
    accuracy,
    accuracy_deviation,
    bootstrap_interval,
    class_similarity,
    correct_predictions,
    explained_scores,
    most_similar_classes,
    neuron_frequency,
    paired_difference,
    pruning_curve,
    rank_agreement,
    score_change,
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


@pytest.mark.parametrize("function", [correct_predictions, explained_scores])
@pytest.mark.parametrize("paths", [PATHS[:3], torch.cat([PATHS, PATHS[:1]])], ids=["fewer", "more"])
def test_paths_must_cover_the_data(function, paths):
    with pytest.raises(ValueError, match=f"paths holds {len(paths)} paths but data holds"):
        function(model, (LOGITS, LABELS), LAYERS, paths, mode="remove", token=None)


def test_accuracy_in_eval_mode_through_a_readout_and_the_mode_restored():
    class Logits(nn.Module):
        def forward(self, x):
            # Class 2 wins in training mode, the logits' own argmax in eval mode.
            return {"logits": x + 10 * torch.eye(3)[2] * self.training}

    classifier = Logits().train()
    assert accuracy(classifier, (LOGITS, LABELS), batch_size=3, readout=lambda output: output["logits"]) == 0.75
    assert classifier.training
    assert accuracy(nn.Identity(), (LOGITS, LABELS)) == 0.75


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


def test_explained_scores_pick_the_label_or_the_scalar():
    assert explained_scores(model, (LOGITS, LABELS)).tolist() == [5.0, 4.0, 3.0, 1.0]
    removed = explained_scores(model, (LOGITS, LABELS), LAYERS, PATHS, mode="remove", token=None)
    assert removed.tolist() == [0.0, 4.0, 0.0, 1.0]  # rows 0 and 2 lose their label's logit
    assert explained_scores(lambda x: x[:, 0], (LOGITS, LABELS), batch_size=3).tolist() == [5.0, 0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="forward_func must return"):
        explained_scores(lambda x: x.unsqueeze(-1), (LOGITS, LABELS))


@pytest.mark.parametrize("mode, factor", [("remove", 2.0), ("enhance", 3.0)])
def test_score_change_is_the_mean_change_of_the_label_score(mode, factor):
    result = score_change(model, LAYERS, (LOGITS, LABELS), PATHS, mode=mode, token=None, factor=factor, batch_size=3)
    # Path logit per row: row 0 label 0 (5 -> 0 or 15), row 1 path 2 is not the label,
    # row 2 label 2 (3 -> 0 or 9), row 3 path 0 is not the label (1 stays 1).
    expected = [-5.0, 0.0, -3.0, 0.0] if mode == "remove" else [10.0, 0.0, 6.0, 0.0]
    assert result.change == pytest.approx(sum(expected) / 4)
    assert result.clean_score == pytest.approx(13.0 / 4) and result.n == 4
    assert result.intervened_score == pytest.approx(result.clean_score + result.change)
    assert result.low <= result.change <= result.high


def test_paired_difference_resamples_pairs():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # A constant shift has a zero-width paired interval, however spread the values are.
    assert paired_difference(values + 0.5, values) == (0.5, 0.5, 0.5, 4)
    noisy = paired_difference(torch.tensor([1.0, -1.0, 3.0, 0.0]), torch.zeros(4), n_bootstrap=500)
    assert noisy.low < noisy.difference == 0.75 < noisy.high
    with pytest.raises(ValueError, match="same examples"):
        paired_difference(values, values[:3])


def test_rank_agreement_of_identical_reversed_and_shuffled_scores():
    scores = torch.randn(3, 2, 50, generator=torch.Generator().manual_seed(0))
    same = rank_agreement(scores, scores)
    assert same.spearman.shape == (3, 2) and torch.allclose(same.spearman, torch.ones(3, 2, dtype=torch.float64))
    assert same.first_top_in_second.eq(0).all() and same.second_top_in_first.eq(0).all()
    # Any increasing transform keeps the ranks.
    assert torch.allclose(rank_agreement(scores, scores.exp() * 7).spearman, torch.ones(3, 2, dtype=torch.float64))
    reversed_ = rank_agreement(scores, -scores)
    assert torch.allclose(reversed_.spearman, -torch.ones(3, 2, dtype=torch.float64))
    assert reversed_.first_top_in_second.eq(49).all() and reversed_.second_top_in_first.eq(49).all()


def test_rank_agreement_against_a_hand_computed_case():
    first = torch.tensor([[[4.0, 3.0, 2.0, 1.0]]])
    second = torch.tensor([[[1.0, 4.0, 3.0, 2.0]]])
    result = rank_agreement(first, second)
    # Ranks (0 = smallest) 3,2,1,0 and 0,3,2,1: d = 3,-1,-1,-1, rho = 1 - 6*12/(4*15) = -0.2.
    assert result.spearman.item() == pytest.approx(-0.2)
    assert result.first_top_in_second.item() == 3  # neuron 0 is the second scoring's worst
    assert result.second_top_in_first.item() == 1  # neuron 1 is the first scoring's second


def test_rank_agreement_ties_and_padding():
    tied = rank_agreement(torch.tensor([[[1.0, 1.0, 2.0]]]), torch.tensor([[[0.0, 1.0, 2.0]]]))
    # Average ranks 0.5, 0.5, 2 against 0, 1, 2: covariance 1.5, variances 1.5 and 2.
    assert tied.spearman.item() == pytest.approx(1.5 / (1.5 * 2) ** 0.5)
    nan = float("nan")
    padded = rank_agreement(torch.tensor([[[1.0, 2.0, 3.0, nan]]]), torch.tensor([[[1.0, 2.0, 3.0, nan]]]))
    assert padded.spearman.item() == pytest.approx(1.0) and padded.first_top_in_second.item() == 0
    with pytest.raises(ValueError, match=r"\(B, L, C\)"):
        rank_agreement(torch.zeros(2, 3), torch.zeros(2, 3))
