import sys

import pytest
import torch
from safetensors.torch import save_file

from captum_neuronpath._cli.loading import load_callable, load_model, load_safetensors_data

from conftest import DATA


def test_timm_by_name_with_random_weights():
    model = load_model("timm:vit_tiny_patch16_224")
    assert not model.training and len(model.blocks) == 12


def test_timm_checkpoint_is_loaded(tmp_path):
    source = load_model("timm:vit_tiny_patch16_224")
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "weights.safetensors")
    for name in ("weights.pt", "weights.safetensors"):
        loaded = load_model("timm:vit_tiny_patch16_224", checkpoint=tmp_path / name)
        assert torch.equal(loaded.head.weight, source.head.weight)


def test_torchvision_and_callable_models():
    assert load_model("torchvision:vit_b_16").encoder.layers[0].mlp[1].__class__.__name__ == "GELU"
    model = load_model("captum_neuronpath.digits:build_digits_vit")
    assert len(model.blocks) == 6 and not model.training


def test_callable_model_takes_a_checkpoint_but_not_pretrained(tmp_path):
    torch.manual_seed(1)
    source = load_model("captum_neuronpath.digits:build_digits_vit")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "weights.safetensors")
    torch.manual_seed(2)
    loaded = load_model("captum_neuronpath.digits:build_digits_vit", checkpoint=tmp_path / "weights.safetensors")
    assert torch.equal(loaded.head.weight, source.head.weight)
    with pytest.raises(ValueError, match="pretrained"):
        load_model("captum_neuronpath.digits:build_digits_vit", pretrained=True)


@pytest.mark.parametrize("spec", ["no_colon", ":name", "module:", "captum_neuronpath:no_such_name", "captum_neuronpath:__version__"])
def test_bad_callable_specs_are_explained(spec):
    with pytest.raises((ValueError, TypeError), match="transform"):
        load_callable(spec, "transform")


@pytest.mark.parametrize("spec", ["vit_tiny", "timm:", "no_such_module_xyz:make", "timm:vit_tiny_patch16", "torchvision:vit_x"])
def test_bad_model_specs_are_explained(spec):
    with pytest.raises(ValueError, match="model"):
        load_model(spec)


def test_unknown_timm_and_torchvision_names_suggest_close_ones():
    with pytest.raises(ValueError, match="timm has no model named 'vit_tiny_patch16_22'; did you mean vit_tiny_patch16_224"):
        load_model("timm:vit_tiny_patch16_22")
    with pytest.raises(ValueError, match="torchvision has no model named 'vit_b_61'; did you mean vit_b_16"):
        load_model("torchvision:vit_b_61")


def test_a_callable_is_found_in_the_current_directory(tmp_path, monkeypatch):
    """As with python -m, whatever started the process (the neuronpath script has no cwd on sys.path)."""
    (tmp_path / "my_cwd_models.py").write_text(
        "from captum_neuronpath.digits import build_digits_vit\n\ndef make():\n    return build_digits_vit(depth=1)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_cwd_models", raising=False)
    assert len(load_model("my_cwd_models:make").blocks) == 1
    assert sys.path[0] == str(tmp_path)
    sys.modules.pop("my_cwd_models", None)


def test_a_checkpoint_that_does_not_fit_or_cannot_be_read_is_explained(tmp_path):
    save_file({"head.weight": torch.zeros(3, 3)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=r"other.safetensors does not fit model 'timm:vit_tiny_patch16_224': tensors 151 missing \(cls_token, .*head.weight \(3, 3\) for \(1000, 192\)"):
        load_model("timm:vit_tiny_patch16_224", checkpoint=tmp_path / "other.safetensors")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint .*garbage.pt cannot be read"):
        load_model("timm:vit_tiny_patch16_224", checkpoint=tmp_path / "garbage.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint .*missing.pt does not exist"):
        load_model("timm:vit_tiny_patch16_224", checkpoint=tmp_path / "missing.pt")


def test_safetensors_data(tmp_path):
    images, labels = load_safetensors_data(DATA / "expected_d6_inputs.safetensors")
    assert images.shape == (15, 3, 32, 32) and labels.dtype == torch.long
    save_file({"images": torch.zeros(2, 3, 4, 4)}, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="labels"):
        load_safetensors_data(tmp_path / "bad.safetensors")
    save_file({"images": torch.zeros(2, 3, 4, 4), "labels": torch.tensor([0.0, 1.5])}, tmp_path / "fraction.safetensors")
    with pytest.raises(ValueError, match="labels must be class indices"):
        load_safetensors_data(tmp_path / "fraction.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="garbage.safetensors is not a readable safetensors file"):
        load_safetensors_data(tmp_path / "garbage.safetensors")
