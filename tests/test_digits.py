import pytest
import torch
from safetensors.torch import load_file

from captum_neuronpath import digits, metrics

from conftest import DATA


def test_images_and_split_are_the_fixtures(expected):
    _, inputs = expected
    images, labels = digits.load_digits_images()
    assert images.shape == (1797, 3, 32, 32) and images.min() == -1 and images.max() == 1
    index = inputs["dataset_indices"]
    assert torch.equal(images[index], inputs["images"])
    assert torch.equal(labels[index], inputs["labels"])
    (train_images, _), (test_images, test_labels) = digits.digits_split()
    assert len(train_images) == 1400 and len(test_images) == 397
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    assert set(index.tolist()) <= set(order[1400:].tolist())  # the fixture cases are test images


def test_architecture_loads_the_fixture_weights(expected):
    model = digits.build_digits_vit()
    keys = model.load_state_dict(load_file(DATA / "digits_vit_d6.safetensors"))  # strict: every shape
    assert not keys.missing_keys and not keys.unexpected_keys
    _, inputs = expected
    # The fixture model classifies the fixture's test images as well as its recorded accuracy says.
    assert metrics.accuracy(model.eval(), (inputs["images"], inputs["labels"])) >= 0.8


def test_trained_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    lines = []
    first = digits.digits_vit(tmp_path, depth=1, epochs=1, log=lines.append)
    assert list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("*.partial"))
    assert not first.training

    def no_training(*args, **kwargs):
        raise AssertionError("the cached weights should have been loaded")

    monkeypatch.setattr(digits, "train_digits_vit", no_training)
    second = digits.digits_vit(tmp_path, depth=1, epochs=1)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_missing_scikit_learn_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"captum-neuronpath\[demo\]"):
        digits.load_digits_images()
