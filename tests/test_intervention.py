import pytest
import torch

import captum_neuronpath as cnp

from helpers import assert_unchanged, layers_of, small_vit, snapshot


@pytest.fixture
def vit():
    return small_vit(depth=2, seed=8)


X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
PATH = torch.tensor([[1, 2], [3, 4], [5, 6]])


def _outputs(model, layers, x):
    """Each layer's output as the model runs (hooks registered after intervene's see its effect)."""
    captured = {}
    handles = [layer.register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(i, out.detach())) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return captured, logits


def test_remove_zeroes_the_path_at_the_token_only(vit):
    layers = layers_of(vit)
    with cnp.intervene(layers, PATH, mode="remove"):
        changed, _ = _outputs(vit, layers, X)
    # Compare with the clean output of the *same* upstream state: layer 0 sees clean inputs.
    clean, _ = _outputs(vit, layers, X)
    for b in range(3):
        assert changed[0][b, 0, PATH[b, 0]] == 0
    expected = clean[0].clone()
    expected[torch.arange(3), 0, PATH[:, 0]] = 0
    assert torch.equal(changed[0], expected)
    assert (changed[1][torch.arange(3), 0, PATH[:, 1]] == 0).all()


def test_enhance_multiplies_by_factor(vit):
    layers = layers_of(vit)
    clean, _ = _outputs(vit, layers, X)
    with cnp.intervene(layers, PATH, mode="enhance", factor=3.0):
        changed, _ = _outputs(vit, layers, X)
    expected = clean[0].clone()
    expected[torch.arange(3), 0, PATH[:, 0]] *= 3.0
    assert torch.allclose(changed[0], expected)


def test_prune_keeps_the_path_and_zeroes_a_seeded_fraction_of_the_rest(vit):
    layers = layers_of(vit)
    clean, _ = _outputs(vit, layers, X)
    with cnp.intervene(layers, PATH, mode="prune", p=0.5, seed=1):
        pruned, _ = _outputs(vit, layers, X)
    with cnp.intervene(layers, PATH, mode="prune", p=0.5, seed=1):
        again, _ = _outputs(vit, layers, X)
    with cnp.intervene(layers, PATH, mode="prune", p=0.5, seed=2):
        other, _ = _outputs(vit, layers, X)
    assert torch.equal(pruned[0], again[0]) and not torch.equal(pruned[0], other[0])
    zeroed = (pruned[0][:, 0] == 0) & (clean[0][:, 0] != 0)
    assert zeroed.sum(1).tolist() == [round(0.5 * 63)] * 3
    assert torch.equal(pruned[0][torch.arange(3), 0, PATH[:, 0]], clean[0][torch.arange(3), 0, PATH[:, 0]])
    assert torch.equal(pruned[0][:, 1:], clean[0][:, 1:])  # other tokens untouched


def test_shared_path_applies_to_any_batch(vit):
    layers = layers_of(vit)
    with cnp.intervene(layers, [7, 9], mode="remove"):
        changed, _ = _outputs(vit, layers, X[:2])
    assert (changed[0][:, 0, 7] == 0).all() and (changed[1][:, 0, 9] == 0).all()


def test_top_k_paths_intervene_on_every_neuron(vit):
    layers = layers_of(vit)
    path = torch.tensor([[[1, 2], [3, 4]]] * 3)
    with cnp.intervene(layers, path, mode="remove"):
        changed, _ = _outputs(vit, layers, X)
    assert (changed[0][:, 0, [1, 2]] == 0).all() and (changed[1][:, 0, [3, 4]] == 0).all()


def test_the_model_is_restored_on_exit_and_on_error(vit):
    before = snapshot(vit)
    _, clean_logits = _outputs(vit, layers_of(vit), X)
    with cnp.intervene(layers_of(vit), PATH, mode="enhance"):
        _, changed_logits = _outputs(vit, layers_of(vit), X)
    assert not torch.equal(changed_logits, clean_logits)
    with pytest.raises(RuntimeError, match="inside"):
        with cnp.intervene(layers_of(vit), PATH, mode="remove"):
            raise RuntimeError("inside")
    assert_unchanged(vit, before)
    assert torch.equal(_outputs(vit, layers_of(vit), X)[1], clean_logits)


@pytest.mark.parametrize(
    "kwargs,error,text",
    [
        (dict(mode="ablate"), ValueError, "mode"),
        (dict(mode="prune"), ValueError, "p is required"),
        (dict(mode="prune", p=1.5), ValueError, "p must be a fraction in [0, 1]"),
        (dict(mode="enhance", factor="2"), TypeError, "factor"),
        (dict(path=torch.zeros(3)), ValueError, "path"),
        (dict(path=torch.tensor([[1, 99]] * 3)), IndexError, "path"),
        (dict(path=torch.tensor([[1, 2]] * 2)), ValueError, "path"),
        (dict(token=40), IndexError, "token"),
    ],
)
def test_bad_arguments_are_named(vit, kwargs, error, text):
    before = snapshot(vit)
    args = dict(path=PATH, mode="remove")
    args.update(kwargs)
    with pytest.raises(error) as info:
        with cnp.intervene(layers_of(vit), args.pop("path"), **args):
            vit(X)
    assert text in str(info.value)
    assert_unchanged(vit, before)
