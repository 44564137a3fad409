"""vit_mlp_layers / vit_readout_token on each supported family, small random models."""

import subprocess
import sys

import pytest
import timm
import timm.models.beit
import timm.models.eva
import timm.models.swin_transformer
import torch
import torchvision
import transformers
from timm.models.deit import VisionTransformerDistilled
from torch import nn

import captum_neuronpath as cnp

from helpers import brute_force_jas, oracle_sites, small_vit

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


# --- Every family: its sites and readout, and a path's JAS against the brute force ---------------


def _timm_gated(mlp_layer):
    return lambda: small_vit(depth=2, seed=3, mlp_layer=mlp_layer)


def _eva02():
    torch.manual_seed(3)
    return timm.models.eva.Eva(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=5,
                               swiglu_mlp=True, scale_mlp=True, use_rot_pos_emb=True, ref_feat_shape=(4, 4))  # fmt: skip


def _beit():
    torch.manual_seed(3)
    return timm.models.beit.Beit(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=5,
                                 use_abs_pos_emb=False, use_rel_pos_bias=True)  # fmt: skip


def _timm_swin():
    torch.manual_seed(3)
    return timm.models.swin_transformer.SwinTransformer(img_size=16, patch_size=2, window_size=4, embed_dim=16,
                                                        depths=(1, 2), num_heads=(1, 2), num_classes=5)  # fmt: skip


def _torchvision_swin():
    torch.manual_seed(3)
    return torchvision.models.swin_transformer.SwinTransformer(
        patch_size=[2, 2], embed_dim=16, depths=[1, 2], num_heads=[1, 2], window_size=[4, 4], num_classes=5
    )


_HF_SMALL = dict(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=48)  # fmt: skip


def _hf(cls, config, **extra):
    def make():
        torch.manual_seed(3)
        return getattr(transformers, cls)(getattr(transformers, config)(**_HF_SMALL, **extra))

    return make


def _logits(model):
    return lambda x: model(x).softmax(-1)


def _hf_logits(model):
    return lambda x: model(pixel_values=x).logits.softmax(-1)


def _hf_pooled(model):
    return lambda x: model(pixel_values=x).pooler_output.tanh().sum(-1)


def _clip_model():
    torch.manual_seed(3)
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48)
    return transformers.CLIPModel(transformers.CLIPConfig(vision_config=dict(_HF_SMALL), text_config=text))


def _clip_image_features(model):
    def forward(x):
        features = model.get_image_features(pixel_values=x)
        features = features if isinstance(features, torch.Tensor) else features.pooler_output
        return features.tanh().sum(-1)

    return forward


# name: (make, forward, expected sites (model -> modules, or the ModuleInputs' modules), readout)
FAMILY_CASES = {
    "timm-swiglu-packed": (_timm_gated(timm.layers.SwiGLUPacked), _logits,
                           lambda m: [b.mlp.fc2 for b in m.blocks], 0),
    "timm-swiglu": (_timm_gated(timm.layers.SwiGLU), _logits, lambda m: [b.mlp.fc2 for b in m.blocks], 0),
    "timm-glu": (_timm_gated(timm.layers.GluMlp), _logits, lambda m: [b.mlp.fc2 for b in m.blocks], 0),
    "timm-map-pool": (lambda: small_vit(depth=2, seed=3, global_pool="map"), _logits,
                      lambda m: [b.mlp.act for b in m.blocks], slice(1, None)),
    "timm-registers": (lambda: small_vit(depth=2, seed=3, reg_tokens=2), _logits,
                       lambda m: [b.mlp.act for b in m.blocks], 0),
    "timm-eva02": (_eva02, _logits, lambda m: [b.mlp.norm for b in m.blocks], slice(1, None)),  # sub-norm: before it
    "timm-beit": (_beit, _logits, lambda m: [b.mlp.act for b in m.blocks], slice(1, None)),
    "timm-swin": (_timm_swin, _logits, lambda m: [b.mlp.act for b in m.layers[-1].blocks], slice(None)),
    "torchvision-swin": (_torchvision_swin, _logits, lambda m: [b.mlp[1] for b in m.features[-1]], slice(None)),
    "timm-avg-no-class-token": (lambda: small_vit(depth=2, seed=3, class_token=False, global_pool="avg"), _logits,
                                lambda m: [b.mlp.act for b in m.blocks], slice(0, None)),
    "hf-vit": (_hf("ViTForImageClassification", "ViTConfig", num_labels=5), _hf_logits,
               lambda m: [b.mlp.activation_fn for b in m.vit.layers], 0),
    "hf-clip-model": (_clip_model, _clip_image_features,
                      lambda m: [b.mlp.activation_fn for b in m.vision_model.encoder.layers], 0),
    "hf-clip-vision": (_hf("CLIPVisionModel", "CLIPVisionConfig"), _hf_pooled,
                       lambda m: [b.mlp.activation_fn for b in getattr(m, "vision_model", m).encoder.layers], 0),
    "hf-dinov2": (_hf("Dinov2Model", "Dinov2Config"), _hf_pooled,
                  lambda m: [b.mlp.activation_fn for b in m.encoder.layer], 0),
    "hf-dinov2-classifier-swiglu": (_hf("Dinov2ForImageClassification", "Dinov2Config", num_labels=5,
                                        use_swiglu_ffn=True), _hf_logits,
                                    lambda m: [b.mlp.down_proj for b in m.dinov2.encoder.layer], slice(0, None)),
    "hf-deit": (_hf("DeiTForImageClassification", "DeiTConfig", num_labels=5), _hf_logits,
                lambda m: [b.mlp.activation_fn for b in m.deit.layers], 0),
    "hf-deit-distilled": (_hf("DeiTForImageClassificationWithTeacher", "DeiTConfig", num_labels=5), _hf_logits,
                          lambda m: [b.mlp.activation_fn for b in m.deit.layers], slice(0, 2)),
    "hf-beit": (_hf("BeitForImageClassification", "BeitConfig", num_labels=5), _hf_logits,
                lambda m: [b.mlp.activation_fn for b in m.beit.layers], slice(1, None)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FAMILY_CASES))
def test_each_family_has_its_sites_and_readout_and_the_brute_force_jas(case):
    make, forward_of, expected, readout = FAMILY_CASES[case]
    model = make().double().eval()
    forward = forward_of(model)
    layers = cnp.mlp_layers(model)
    assert [cnp_module(layer) for layer in layers] == expected(model)
    assert cnp.readout_token(model) == cnp.vit_readout_token(model) == readout
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    target = None if forward_of in (_hf_pooled, _clip_image_features) else torch.tensor([1, 3])
    result = cnp.NeuronPath(forward, layers, token=readout).attribute(x, target=target, n_steps=4)
    reference = brute_force_jas(forward, oracle_sites(layers, x, forward), x, target, result.path.unsqueeze(-1),
                                token=readout, n_steps=4, method="gausslegendre")  # fmt: skip
    torch.testing.assert_close(result.jas, reference, rtol=1e-6, atol=1e-12)
    assert (reference != 0).all()


def cnp_module(layer):
    return layer.module if isinstance(layer, cnp.ModuleInput) else layer


def test_a_token_the_head_does_not_read_is_named_as_the_cause():
    model = _beit().double().eval()  # its head averages the patch tokens: token 0 is not read
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"likely cause is the token.*token=slice\(1, None, None\)"):
        cnp.NeuronPath(_logits(model), cnp.mlp_layers(model), token=0).attribute(x, target=1, n_steps=2)


def test_import_loads_no_model_library():
    code = "import captum_neuronpath, sys; print(sorted(m for m in ('timm', 'torchvision', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
