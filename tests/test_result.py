"""NeuronPathResult: each greedy step's score of the neuron it chose."""

import pytest
import torch

import captum_neuronpath as cnp

from helpers import layers_of, small_vit

LAYER_SCORES = torch.tensor([[[0.1, 0.4, 0.2], [0.3, 0.2, float("nan")]], [[0.5, 0.0, 0.9], [0.7, 0.6, 0.8]]])


def test_chosen_scores_read_the_path_at_every_layer():
    result = cnp.NeuronPathResult(torch.tensor([[1, 0], [0, 2]]), torch.zeros(2), LAYER_SCORES)
    assert torch.equal(result.chosen_scores(), torch.tensor([[0.4, 0.3], [0.5, 0.8]]))


def test_chosen_scores_of_a_top_k_path_are_its_first_neurons():
    path = torch.tensor([[[1, 2], [0, 1]], [[2, 0], [2, 0]]])  # (B, L, K=2), best first
    result = cnp.NeuronPathResult(path, torch.zeros(2), LAYER_SCORES)
    assert torch.equal(result.chosen_scores(), torch.tensor([[0.4, 0.3], [0.9, 0.8]]))


def test_a_greedy_search_chooses_each_layers_best_score():
    model = small_vit(depth=3, seed=9)
    result = cnp.NeuronPath(lambda x: model(x).softmax(-1), layers_of(model)).attribute(
        torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)), target=1
    )
    assert torch.equal(result.chosen_scores(), result.layer_scores.max(-1).values)


def test_a_baseline_result_has_no_scores_to_choose_from():
    result = cnp.NeuronPathResult(torch.tensor([[1, 0]]), torch.zeros(1))
    with pytest.raises(ValueError, match="this result has no layer_scores: only NeuronPath's greedy search"):
        result.chosen_scores()
