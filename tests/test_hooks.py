"""Hooks, replaced forwards and call observers: where they act, and that every one is gone on every exit."""

import pytest
import torch
from torch import nn

import captum_neuronpath as cnp
from captum_neuronpath._utils.hooks import describe_layer, site_hooks

from helpers import all_hooks, assert_unchanged, layers_of, small_vit, snapshot

X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()


def test_a_function_returning_none_keeps_the_value_and_a_tensor_replaces_it():
    model, x = _model(), torch.randn(5, 3)
    expected = model(x)
    seen = []
    with site_hooks([model[1], cnp.ModuleInput(model[2])], {0: seen.append, 1: seen.append}):
        assert torch.equal(model(x), expected)
    assert torch.equal(seen[0], seen[1]) and seen[0].shape == (5, 4)  # the ReLU's output is the linear's input
    with site_hooks([cnp.ModuleInput(model[2])], {0: lambda value: value * 0}):
        torch.testing.assert_close(model(x), model[2].bias.expand(5, 2))


def test_only_the_sites_given_a_function_are_hooked():
    model = _model()
    with site_hooks([model[0], model[1]], {1: lambda value: None}):
        assert len(model[0]._forward_hooks) == 0 and len(model[1]._forward_hooks) == 1
    assert all_hooks(model) == 0


def test_forwards_are_replaced_within_the_block_and_restored_after():
    model, x = _model(), torch.randn(5, 3)
    own = lambda value: torch.zeros(len(value), 4)  # noqa: E731
    model[2].forward = own  # a forward the model already had of its own stays
    with site_hooks([], {}, forwards={model[0]: lambda value: torch.ones(len(value), 4), model[2]: torch.tanh}):
        assert torch.equal(model(x), torch.tanh(torch.ones(5, 4)))
    assert "forward" not in vars(model[0]) and model[2].forward is own


def test_observe_sees_every_module_called_before_it_runs():
    model = _model()
    order = []
    with site_hooks([model[1]], {0: lambda value: order.append("site")}, observe=order.append):
        model(torch.randn(1, 3))
    assert order == [model, model[0], model[1], "site", model[2]]
    model(torch.randn(1, 3))  # the global observer is gone
    assert len(order) == 5 and all_hooks(model) == 0


def test_every_hook_and_forward_is_removed_when_the_block_raises():
    model = _model()
    with pytest.raises(RuntimeError, match="boom"):
        with site_hooks(
            [model[1], cnp.ModuleInput(model[2])],
            {0: lambda value: None, 1: lambda value: None},
            forwards={model[0]: lambda value: value},
            observe=lambda module: None,
        ):
            raise RuntimeError("boom")
    assert all_hooks(model) == 0 and "forward" not in vars(model[0])


class _Pair(nn.Module):
    def forward(self, x):
        return x, x


def test_a_site_must_carry_a_single_tensor_and_the_error_names_it():
    pair = _Pair()
    with pytest.raises(TypeError, match=r"layers\[0\] \(_Pair\) must output a single tensor, got tuple"):
        with site_hooks([pair], {0: lambda value: None}):
            pair(torch.ones(1))
    linear = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"layers\[3\] \(the input of Linear\) must receive a tensor"):
        with site_hooks([None, None, None, cnp.ModuleInput(linear)], {3: lambda value: None}):
            linear(input=torch.ones(2))  # a keyword, not a positional input
    assert all_hooks(pair) == all_hooks(linear) == 0


def test_describe_layer_names_the_index_and_the_type():
    linear = nn.Linear(2, 2)
    assert describe_layer(2, linear) == "layers[2] (Linear)"
    assert describe_layer(0, cnp.ModuleInput(linear)) == "layers[0] (the input of Linear)"


def test_error_inside_the_substituted_forward_removes_every_hook():
    vit = small_vit(depth=2, seed=6)
    calls = []

    def flaky(x):
        calls.append(len(x))
        if len(calls) == 3:  # clean pass, first greedy step, then fail mid-way
            raise RuntimeError("boom")
        return vit(x).softmax(-1)

    before = snapshot(vit)
    with pytest.raises(RuntimeError, match="boom"):
        cnp.NeuronPath(flaky, layers_of(vit)).attribute(X, target=0)
    assert_unchanged(vit, before)
