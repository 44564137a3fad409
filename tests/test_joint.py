"""The joint attribution arithmetic on small random tensors, against sums written out by hand."""

import torch

from captum_neuronpath._utils.joint import (
    best_channel,
    channel_masks,
    extended_set_scores,
    joint_attribution_score,
    set_sum,
    stack_padded,
    top_channels,
)

B, T, C = 3, 4, 6


def values(seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(B, T, C, generator=generator, dtype=torch.float64) for _ in range(3)]


def test_set_sum_adds_each_examples_channels_of_every_layer():
    activations = values(0)
    indices = torch.tensor([[[0, 5], [2, 3]], [[1, 1], [4, 0]], [[5, 2], [0, 1]]])  # (B, 2 layers, K=2)
    total = set_sum(activations, channel_masks(indices, activations), activations[0][..., 0])
    for b in range(B):
        expected = sum(activations[layer][b, :, c] for layer in range(2) for c in set(indices[b, layer].tolist()))
        assert torch.allclose(total[b], expected)


def test_an_empty_set_sums_to_zero():
    activations = values(1)
    empty = channel_masks(torch.empty(B, 0, 1, dtype=torch.long), activations)
    assert torch.equal(set_sum(activations, empty, activations[0][..., 0]), torch.zeros(B, T, dtype=torch.float64))


def test_the_jas_is_the_product_of_the_two_sums_summed_over_tokens():
    activation_sum, gradient_sum = values(2)[:2]
    assert torch.allclose(
        joint_attribution_score(activation_sum[..., 0], gradient_sum[..., 0]),
        torch.stack([(activation_sum[b, :, 0] * gradient_sum[b, :, 0]).sum() for b in range(B)]),
    )


def test_extended_set_scores_are_the_jas_of_the_set_with_each_channel_added():
    activations, gradients = values(3), values(4)
    prefix = torch.tensor([[[1], [4]], [[0], [0]], [[5], [2]]])  # layers 0 and 1; layer 2 is extended
    masks = channel_masks(prefix, activations)
    reference = activations[0][..., 0]
    scores = extended_set_scores(
        set_sum(activations, masks, reference), set_sum(gradients, masks, reference), activations[2], gradients[2]
    )
    assert scores.shape == (B, C)
    for c in range(C):
        extended = channel_masks(torch.cat([prefix, torch.full((B, 1, 1), c)], dim=1), activations)
        jas = joint_attribution_score(
            set_sum(activations, extended, reference), set_sum(gradients, extended, reference)
        )
        assert torch.allclose(scores[:, c], jas)


def test_padding_is_nan_and_never_the_best_channel():
    padded = stack_padded([torch.tensor([[0.1, 0.9, 0.3]]), torch.tensor([[-2.0, -1.0]])])
    assert padded.shape == (1, 2, 3) and padded[0, 1, 2].isnan() and not padded[0, 0].isnan().any()
    assert best_channel(padded).tolist() == [[1, 1]]


def test_ties_go_to_the_lowest_index():
    scores = torch.tensor([[0.5, 0.7, 0.7, 0.1, 0.7]])
    assert best_channel(scores).tolist() == [1]
    assert top_channels(scores, 3).tolist() == [[1, 2, 4]]
