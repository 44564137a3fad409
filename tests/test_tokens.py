"""Token sets: their forms, their positions in a layer output, and reading and writing them."""

import pytest
import torch
from torch import nn

import captum_neuronpath as cnp
from captum_neuronpath._utils.tokens import (
    channel_axis,
    check_token,
    expand_per_example,
    read_tokens,
    repeat_positions,
    span,
    token_positions,
    write_tokens,
)

from helpers import (
    FlattenedOutputOf,
    assert_unchanged,
    brute_force_jas,
    layers_of,
    small_vit,
    snapshot,
    softmax_forward,
)

SHAPE = torch.Size([2, 5, 3])  # (B, T, C)


def test_each_form_of_token_is_kept_in_one_canonical_form():
    assert check_token(None) is None and check_token(-1) == -1
    assert check_token(slice(1, None)) == slice(1, None)
    assert check_token([3, 0]) == (3, 0)
    assert check_token(torch.tensor(2)) == 2  # a 0-d tensor is one shared position
    per_example = check_token(torch.tensor([1, 4], dtype=torch.int32, requires_grad=False))
    assert per_example.dtype == torch.long and per_example.tolist() == [1, 4]


@pytest.mark.parametrize(
    "token,error,text",
    [
        (True, TypeError, "token must be an int"),
        ("cls", TypeError, "token must be an int"),
        (slice(0.5, None), TypeError, "int or None bounds"),
        (slice(0, 3, 0), ValueError, "step 0"),
        ([], ValueError, "at least one position"),
        ([0, True], TypeError, "only ints"),
        (torch.tensor([0.0, 1.0]), TypeError, "integer positions"),
        (torch.zeros(2, 2, dtype=torch.long), TypeError, r"shape \(B,\)"),
    ],
    ids=["bool", "str", "float slice bound", "slice step 0", "empty", "bool in sequence", "float tensor", "2-D tensor"],
)
def test_a_bad_token_is_refused_when_checked(token, error, text):
    with pytest.raises(error, match=text):
        check_token(token)


def test_positions_are_resolved_against_the_output():
    assert token_positions(-1, SHAPE, "here") == [4]
    assert token_positions(slice(1, None, 2), SHAPE, "here") == [1, 3]
    assert token_positions((0, -2), SHAPE, "here") == [0, 3]
    assert token_positions(None, torch.Size([2, 3]), "here") is None
    assert token_positions(5, torch.Size([2, 2, 3, 4]), "here") == [5]  # (B, H, W, C): positions flattened
    # a (B,) tensor: one position per example, repeated in place for an expanded batch
    assert token_positions(torch.tensor([-1, 2]), torch.Size([4, 5, 3]), "here").tolist() == [4, 4, 2, 2]


@pytest.mark.parametrize(
    "token,shape,error,text",
    [
        (5, SHAPE, IndexError, "token position 5 is out of range for the 5 tokens of here"),
        ((1, -6), SHAPE, IndexError, "token position -6"),
        (torch.tensor([0, 9]), SHAPE, IndexError, "token position 9"),
        ((4, -1), SHAPE, ValueError, "same position twice"),
        (slice(7, None), SHAPE, IndexError, "selects no position"),
        (torch.tensor([0, 1, 2]), SHAPE, ValueError, "token holds 3 examples' values but the batch has 2"),
        (None, SHAPE, ValueError, r"token=None needs a layer output of shape \(B, C\).*pass token as an int"),
        (0, torch.Size([2, 3]), ValueError, r"needs a layer output of shape \(B, T, C\).*pass token=None"),
    ],
    ids=["int", "sequence", "tensor", "repeated", "empty slice", "tensor rows", "None on tokens", "int on (B, C)"],
)
def test_a_token_that_does_not_fit_the_output_is_named(token, shape, error, text):
    with pytest.raises(error, match=text):
        token_positions(token, shape, "here")


@pytest.mark.parametrize(
    "axis,text", [("first", r"convolutional feature map \(B, C, H, W\)"), (None, "cannot be told from the modules")]
)
def test_a_feature_map_needs_its_channel_last(axis, text):
    with pytest.raises(ValueError, match=text):
        token_positions(0, torch.Size([2, 4, 3, 3]), "here", axis)


def test_the_channel_axis_comes_from_the_module_or_the_one_before_it():
    conv, linear, gelu = nn.Conv2d(3, 4, 1), nn.Linear(3, 4), nn.GELU()
    assert channel_axis(conv, None, False) == "first" and channel_axis(nn.BatchNorm2d(4), None, False) == "first"
    assert channel_axis(linear, conv, False) == "last" and channel_axis(nn.LayerNorm(4), None, False) == "last"
    assert channel_axis(gelu, conv, False) == "first" and channel_axis(gelu, linear, False) == "last"
    assert channel_axis(gelu, None, False) is None
    assert channel_axis(linear, conv, True) == "last" and channel_axis(gelu, conv, True) is None  # its own input


def test_expand_per_example_repeats_each_row_in_place():
    value = torch.tensor([3, 7])
    assert expand_per_example(value, 2, "path").tolist() == [3, 7]
    assert expand_per_example(value, 6, "path").tolist() == [3, 3, 3, 7, 7, 7]
    with pytest.raises(ValueError, match="path holds 2 examples' values but the batch has 3"):
        expand_per_example(value, 3, "path")


def test_runs_and_repeats_of_positions():
    assert span([2, 3, 4]) == (2, 5) and span([1, 3]) is None and span(torch.tensor([1, 2])) is None
    assert repeat_positions([0, 1], 3) == [0, 1] and repeat_positions(torch.tensor([1, 2]), 2).tolist() == [1, 2, 1, 2]


def test_read_tokens_copies_the_token_set():
    output = torch.arange(2 * 5 * 3.0).view(2, 5, 3)
    read = read_tokens(output, [1, 2])
    assert torch.equal(read, output[:, 1:3])
    output.zero_()  # the read is a copy: it does not keep, or follow, the whole output
    assert read.abs().sum() > 0
    output = torch.arange(2 * 5 * 3.0).view(2, 5, 3)
    assert torch.equal(read_tokens(output, torch.tensor([4, 0])), torch.stack([output[0, 4:5], output[1, 0:1]]))
    assert torch.equal(read_tokens(output[:, 0], None), output[:, :1])
    feature_map = output.view(2, 5, 1, 3)  # (B, H, W, C): positions index the flattened middle axes
    assert torch.equal(read_tokens(feature_map, [3]), output[:, 3:4])


@pytest.mark.parametrize(
    "positions,in_place",
    [([1, 3], False), ([1, 2], False), ([1, 2], True), ([4, 0], False)],
    ids=["list", "run", "run in place", "per example"],
)
def test_write_tokens_routes_the_gradient_at_the_token_set_to_the_values_only(positions, in_place):
    if positions == [4, 0]:
        positions = torch.tensor(positions)
    base = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    output = base * 1  # not a leaf, so that it may be written in place
    expected_output = output.detach().clone()
    values = torch.randn(2, 1 if isinstance(positions, torch.Tensor) else 2, 3, dtype=torch.float64, requires_grad=True)
    written = write_tokens(output, positions, values, in_place)
    assert (written is output) == in_place
    rows = torch.arange(2).unsqueeze(1)
    index = (rows, positions.unsqueeze(1)) if isinstance(positions, torch.Tensor) else (slice(None), positions)
    expected_output[index] = values.detach()
    assert torch.equal(written.detach(), expected_output)
    weights = torch.randn(2, 5, 3, dtype=torch.float64)
    (written * weights).sum().backward()
    blocked = torch.ones(2, 5, 3, dtype=torch.float64)
    blocked[index] = 0
    assert torch.equal(base.grad, weights * blocked)
    assert torch.equal(values.grad, weights[index])


def test_write_tokens_on_a_feature_map_and_a_pooled_output():
    feature_map = torch.zeros(2, 2, 2, 3)  # (B, H, W, C)
    written = write_tokens(feature_map, [3], torch.ones(2, 1, 3))
    assert written.shape == feature_map.shape and written[:, 1, 1].eq(1).all() and written.sum() == 6
    assert feature_map.sum() == 0  # a copy
    assert torch.equal(write_tokens(torch.zeros(2, 3), None, torch.ones(2, 1, 3)), torch.ones(2, 3))


# --- through the public classes -----------------------------------------------------------------------

X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))

CASES = [
    ("token type", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m), token="cls"), TypeError),
    ("token range", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m), token=17).attribute(X, target=0), IndexError),
    ("empty token slice", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m), token=slice(40, None)).attribute(X, target=0), IndexError),
    ("token None on tokens", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m), token=None).attribute(X, target=0), ValueError),
    ("token slice step zero", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m), token=slice(0, 3, 0)), ValueError),
    ("token slice float bound", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m), token=slice(0.5, None)), TypeError),
]  # fmt: skip


@pytest.mark.parametrize("call,error", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_token_is_named_and_model_is_untouched(call, error):
    vit = small_vit(depth=2, seed=6)
    before = snapshot(vit)
    with pytest.raises(error) as info:
        call(vit)
    assert "token" in str(info.value)
    assert_unchanged(vit, before)


def test_channels_first_feature_maps_are_refused_and_channels_last_ones_read_flattened():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    with pytest.raises(
        ValueError,
        match=r"convolutional feature map \(B, C, H, W\).*flatten\(2\).transpose\(1, 2\).*permute\(0, 2, 3, 1\)",
    ):
        cnp.NeuronPath(conv.eval(), [conv[1]]).attribute(torch.randn(2, 3, 16, 16), target=0)
    mlp = nn.Sequential(nn.Linear(3, 6), nn.GELU(), nn.Linear(6, 2))  # on (B, H, W, 3): channels last
    forward = lambda x: mlp(x).mean((1, 2)).softmax(-1)  # noqa: E731
    x = torch.randn(2, 4, 5, 3, dtype=torch.float64)
    mlp.double().eval()
    result = cnp.NeuronPath(forward, [mlp[1]], token=[0, 7, 19]).attribute(x, target=1, n_steps=4)
    reference = brute_force_jas(forward, [FlattenedOutputOf(mlp[1])], x, 1, result.path.unsqueeze(-1),
                                token=[0, 7, 19], n_steps=4, method="gausslegendre")  # fmt: skip
    torch.testing.assert_close(result.jas, reference, rtol=1e-6, atol=1e-12)
