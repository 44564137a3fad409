"""vit_mlp_layers / vit_readout_token on each supported family, small random models."""

import pytest
import timm
import torch
import torchvision
import transformers
from timm.models.deit import VisionTransformerDistilled
from torch import nn

import captum_neuronpath as cnp

from helpers import small_vit

SMALL = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=5)


def _locate(forward, model, token, target=1):
    torch.manual_seed(0)
    res = cnp.NeuronPath(forward, cnp.vit_mlp_layers(model), token=token).attribute(torch.randn(2, 3, 16, 16), target=target)
    assert res.path.shape == (2, len(cnp.vit_mlp_layers(model)))
    assert torch.isfinite(res.jas).all()
    return res


@pytest.mark.parametrize(
    "options,token",
    [
        (dict(), 0),
        (dict(global_pool="avg", fc_norm=True), slice(1, None)),  # MAE fine-tuning
        (dict(class_token=False, global_pool="avg"), slice(0, None)),
        (dict(reg_tokens=4, global_pool="avg"), slice(5, None)),
        (dict(reg_tokens=4), 0),
        (dict(global_pool="map"), slice(1, None)),
    ],
    ids=["class-token", "mae-avg", "no-class-token", "registers-avg", "registers-token", "map"],
)
def test_timm_vision_transformer(options, token):
    model = small_vit(depth=2, **options)
    layers = cnp.vit_mlp_layers(model)
    assert layers == [block.mlp.act for block in model.blocks]
    assert cnp.vit_readout_token(model) == token
    res = _locate(lambda x: model(x).softmax(-1), model, token)
    assert res.layer_scores.shape[-1] == 64  # mlp_ratio 2 x embed_dim 32 hidden units


def test_timm_create_model_vit_and_deit():
    vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, depth=2, num_classes=5).eval()
    assert len(cnp.vit_mlp_layers(vit)) == 2 and cnp.vit_readout_token(vit) == 0
    deit = timm.create_model("deit_tiny_patch16_224", img_size=16, patch_size=4, depth=2, num_classes=5).eval()
    assert cnp.vit_readout_token(deit) == 0
    _locate(lambda x: deit(x).softmax(-1), deit, 0)


def test_deit_with_distillation_token_reads_both_tokens():
    torch.manual_seed(0)
    model = VisionTransformerDistilled(**SMALL).eval()
    assert cnp.vit_readout_token(model) == slice(0, 2)
    _locate(lambda x: model(x).softmax(-1), model, slice(0, 2))


def test_timm_without_pooling_asks_for_a_token():
    model = small_vit(depth=1, global_pool="")
    with pytest.raises(TypeError, match="token"):
        cnp.vit_readout_token(model)


def test_torchvision_vision_transformer():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=48, num_classes=5
    ).eval()
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero: a constant output
    layers = cnp.vit_mlp_layers(model)
    assert layers == [block.mlp[1] for block in model.encoder.layers]
    assert all(isinstance(layer, nn.GELU) for layer in layers)
    assert cnp.vit_readout_token(model) == 0
    res = _locate(lambda x: model(x).softmax(-1), model, 0)
    assert res.layer_scores.shape[-1] == 48


def _hf_config(**extra):
    return transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=40, **extra
    )


def test_hugging_face_vit_for_image_classification():
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(_hf_config(num_labels=5)).eval()
    assert len(cnp.vit_mlp_layers(model)) == 2 and cnp.vit_readout_token(model) == 0
    res = _locate(lambda x: model(pixel_values=x).logits.softmax(-1), model, 0)
    assert res.layer_scores.shape[-1] == 40


def test_hugging_face_vit_model():
    torch.manual_seed(0)
    model = transformers.ViTModel(_hf_config()).eval()
    assert cnp.vit_readout_token(model) == 0
    _locate(lambda x: model(pixel_values=x).pooler_output.sum(-1), model, 0, target=None)


@pytest.mark.parametrize("function", [cnp.vit_mlp_layers, cnp.vit_readout_token])
def test_unsupported_model_says_what_to_pass(function):
    with pytest.raises(TypeError, match="pass (layers|token)"):
        function(nn.Sequential(nn.Linear(3, 3)))


def test_attention_layers_of_each_family():
    timm_vit = small_vit(depth=2)
    assert cnp.vit_attention_layers(timm_vit) == [block.attn.proj for block in timm_vit.blocks]
    torch.manual_seed(0)
    tv = torchvision.models.VisionTransformer(
        image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=48, num_classes=5
    ).eval()
    assert cnp.vit_attention_layers(tv) == [block.dropout for block in tv.encoder.layers]
    hf = transformers.ViTForImageClassification(_hf_config(num_labels=5)).eval()
    layers = cnp.vit_attention_layers(hf)
    assert len(layers) == 2 and all(isinstance(layer, nn.Linear) and layer.out_features == 32 for layer in layers)
    with pytest.raises(TypeError, match="pass layers"):
        cnp.vit_attention_layers(nn.Linear(2, 2))


def _attention_output(model, x):
    """What each torchvision block's attention returns, recorded without our hooks."""
    outputs = []
    handles = [b.self_attention.register_forward_hook(lambda m, a, out: outputs.append(out[0])) for b in model.encoder.layers]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return outputs


def test_torchvision_attention_site_outputs_the_attention():
    torch.manual_seed(0)
    tv = torchvision.models.VisionTransformer(
        image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=48, num_classes=5
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    site_outputs = []
    handles = [layer.register_forward_hook(lambda m, a, out: site_outputs.append(out)) for layer in cnp.vit_attention_layers(tv)]
    attention = _attention_output(tv, x)
    for h in handles:
        h.remove()
    assert len(site_outputs) == len(attention) == 2
    assert all(torch.equal(a, b) for a, b in zip(site_outputs, attention))


def test_generic_names_agree_with_the_vit_functions_on_each_vision_family():
    torch.manual_seed(0)
    models = [
        small_vit(depth=2),
        small_vit(depth=2, global_pool="avg"),
        VisionTransformerDistilled(**SMALL).eval(),
        torchvision.models.VisionTransformer(
            image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=48, num_classes=5
        ).eval(),
        transformers.ViTForImageClassification(_hf_config(num_labels=5)).eval(),
    ]
    for model in models:
        assert cnp.mlp_layers(model) == cnp.vit_mlp_layers(model)
        assert cnp.readout_token(model) == cnp.vit_readout_token(model)
