import pytest
import torch
from safetensors.torch import save_file

from captum_neuronpath._loading import load_callable, load_model, load_safetensors_data

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


@pytest.mark.parametrize("spec", ["vit_tiny", "timm:", "no_such_module_xyz:make"])
def test_bad_model_specs_are_explained(spec):
    with pytest.raises(ValueError, match="model"):
        load_model(spec)


def test_safetensors_data(tmp_path):
    images, labels = load_safetensors_data(DATA / "expected_d6_inputs.safetensors")
    assert images.shape == (15, 3, 32, 32) and labels.dtype == torch.long
    save_file({"images": torch.zeros(2, 3, 4, 4)}, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="labels"):
        load_safetensors_data(tmp_path / "bad.safetensors")
