"""Bad arguments raise errors that name them, and the model is left exactly as found."""

import pytest
import torch
from torch import nn

import captum_neuronpath as cnp

from helpers import all_hooks, assert_unchanged, layers_of, small_vit, snapshot, softmax_forward


@pytest.fixture
def vit():
    return small_vit(depth=2, seed=6)



X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _returns_none(model):
    def forward(x):
        model(x)  # the layers run, but nothing comes back
        return None

    return forward


def _intervened(model, path):
    with cnp.intervene(layers_of(model), path, mode="remove"):
        model(X)

# (name, call(model) -> None, exception type, text the message must hold)
CASES = [
    ("empty layers", lambda m: cnp.NeuronPath(softmax_forward(m), []), ValueError, "layers"),
    ("single module", lambda m: cnp.NeuronPath(softmax_forward(m), m.blocks[0].mlp.act), TypeError, "layers"),
    ("foreign object", lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), ["blocks.0"]), TypeError, "layers[0]"),
    ("duplicate layer", lambda m: cnp.NeuronPath(softmax_forward(m), [m.blocks[0].mlp.act] * 2), ValueError, "layers[1]"),
    ("layer never runs", lambda m: cnp.NeuronPath(softmax_forward(m), [nn.GELU().eval()]).attribute(X, target=0), ValueError, "never ran"),
    ("neuron too large", lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, neuron_selector=[1, 64], target=0), IndexError, "neuron_selector"),
    ("neuron negative", lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, neuron_selector=[-1, 3], target=0), IndexError, "neuron_selector"),
    ("selector shape", lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, neuron_selector=torch.zeros(2, 3, dtype=torch.long), target=0), ValueError, "neuron_selector"),
    ("selector batch", lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, neuron_selector=torch.zeros(3, 2, dtype=torch.long), target=0), ValueError, "neuron_selector"),
    ("selector float", lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, neuron_selector=torch.zeros(2, 2), target=0), TypeError, "neuron_selector"),
    ("prefix shape", lambda m: cnp.LayerJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, layer_index=1, path_prefix=[1, 2], target=0), ValueError, "path_prefix"),
    ("prefix missing", lambda m: cnp.LayerJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, layer_index=1, target=0), ValueError, "path_prefix"),
    ("prefix range", lambda m: cnp.LayerJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, layer_index=1, path_prefix=[99], target=0), IndexError, "path_prefix"),
    ("layer index", lambda m: cnp.LayerJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, layer_index=2, path_prefix=[1, 2], target=0), IndexError, "layer_index"),
    ("n_steps zero", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=0, n_steps=0), ValueError, "n_steps"),
    ("n_steps one riemann", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=0, n_steps=1, method="riemann_left"), ValueError, "n_steps"),
    ("n_steps float", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=0, n_steps=2.5), TypeError, "n_steps"),
    ("unknown method", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=0, method="simpson"), ValueError, "method"),
    ("target range", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=5), IndexError, "target"),
    ("target tensor range", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=torch.tensor([0, 9])), IndexError, "target"),
    ("target list length", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=[0, 1, 2]), ValueError, "target"),
    ("target float tensor", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=torch.tensor([0.0, 1.0])), TypeError, "target"),
    ("target missing", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X), ValueError, "target"),
    ("internal_batch_size", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=0, internal_batch_size=0), ValueError, "internal_batch_size"),
    ("top_k zero", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=0, top_k=0), ValueError, "top_k"),
    ("top_k too large", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=0, top_k=65), ValueError, "top_k"),
    ("non-finite inputs", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X * float("nan"), target=0), ValueError, "inputs"),
    ("forward returns tuple", lambda m: cnp.NeuronPath(lambda x: (m(x),), layers_of(m)).attribute(X, target=0), TypeError, "forward_func"),
    (
        "substitution overwritten",
        lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), list(m.blocks), token=slice(None)).attribute(X, neuron_selector=[0, 0], target=0),
        ValueError,
        "do not reach",
    ),
    (
        "patch tokens of the last block under a class-token head",
        lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m), token=slice(1, None)).attribute(X, target=0),
        ValueError,
        "layers[1]",
    ),
    ("selector list of floats", lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, neuron_selector=[1.5, 2.0], target=0), TypeError, "neuron_selector"),
    ("selector bool tensor", lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, neuron_selector=torch.ones(2, 2, dtype=torch.bool), target=0), TypeError, "neuron_selector"),
    ("selector None", lambda m: cnp.NeuronJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, neuron_selector=None, target=0), TypeError, "neuron_selector"),
    ("prefix floats", lambda m: cnp.LayerJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, layer_index=1, path_prefix=[0.5], target=0), TypeError, "path_prefix"),
    ("layer index float", lambda m: cnp.LayerJointIntegratedGradients(softmax_forward(m), layers_of(m)).attribute(X, layer_index=1.0, path_prefix=[1], target=0), TypeError, "layer_index"),
    ("top_k float", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute(X, target=0, top_k=2.0), TypeError, "top_k"),
    ("intervene path floats", lambda m: _intervened(m, [1.5, 2.0]), TypeError, "path"),
    ("forward returns None", lambda m: cnp.NeuronPath(_returns_none(m), layers_of(m)).attribute(X, target=0), TypeError, "forward_func"),
    ("forward returns ndarray", lambda m: cnp.NeuronJointIntegratedGradients(lambda x: m(x).detach().numpy(), layers_of(m)).attribute(X, neuron_selector=[1, 2], target=0), TypeError, "forward_func"),
    ("inputs list", lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)).attribute([X], target=0), TypeError, "inputs"),
    ("random seed float", lambda m: cnp.RandomPath(softmax_forward(m), layers_of(m), seed=1.5), TypeError, "seed"),
]


@pytest.mark.parametrize("call,error,text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_is_named_and_model_is_untouched(vit, call, error, text):
    before = snapshot(vit)
    with pytest.raises(error) as info:
        call(vit)
    assert text in str(info.value)
    assert_unchanged(vit, before)


def test_success_leaves_the_model_untouched(vit):
    for p in vit.blocks[0].parameters():
        p.requires_grad_(False)  # a partly frozen model stays partly frozen
    before = snapshot(vit)
    cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(X, target=[0, 1], top_k=2, internal_batch_size=7)
    assert_unchanged(vit, before)
    assert all(p.grad is None for p in vit.parameters())


def test_training_mode_warns_and_stays(vit):
    vit.train()
    before = snapshot(vit)
    with pytest.warns(UserWarning, match="training mode"):
        cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(X, target=0)
    assert vit.training
    assert_unchanged(vit, before)


# --- The model's own errors, and mistakes only a forward pass can show --------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda m: cnp.NeuronPath(softmax_forward(m), layers_of(m)),
        lambda m: cnp.ActivationPath(softmax_forward(m), layers_of(m)),
        lambda m: cnp.PathSaliency(m, layers_of(m)),
    ],
    ids=["NeuronPath", "ActivationPath", "PathSaliency"],
)
def test_the_models_own_assertion_passes_through_unchanged(vit, make):
    wrong_size = torch.randn(2, 3, 20, 20)  # timm asserts the input height
    before = snapshot(vit)
    kwargs = dict(path=[1, 2]) if isinstance(make(vit), cnp.PathSaliency) else dict(target=0)
    with pytest.raises(AssertionError, match="Input height") as info:
        make(vit).attribute(wrong_size, **kwargs)
    assert "never ran" not in str(info.value)
    assert_unchanged(vit, before)


def test_an_assertion_in_the_users_forward_is_not_relabelled(vit):
    def forward(x):
        assert x.shape[0] > 5, "need more than 5 images"
        return vit(x).softmax(-1)

    with pytest.raises(AssertionError, match="need more than 5 images"):
        cnp.NeuronPath(forward, layers_of(vit)).attribute(X, target=0)


def test_float_inputs_in_another_dtype_name_both_dtypes_and_keep_the_models_error(vit):
    images = X.to(torch.float64)
    with pytest.raises(TypeError, match="torch.float64") as info:
        cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(images, target=0)
    assert isinstance(info.value.__cause__, RuntimeError)  # the model's own message stays in the chain
    assert "torch.float32" in str(info.value)


def test_float32_inputs_to_a_float64_model_behind_a_function_name_both_dtypes(vit):
    model = vit.double()  # the sites (GELUs) have no parameters: the model's dtype comes from what ran
    with pytest.raises(TypeError, match=r"inputs tensor 0 has dtype torch.float32 but the model computes in torch.float64") as info:
        cnp.NeuronPath(softmax_forward(model), layers_of(model)).attribute(X.float(), target=0)
    assert isinstance(info.value.__cause__, RuntimeError)  # the model's own message stays in the chain


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_images_are_refused_before_any_pass_with_the_fix(vit, dtype):
    images = (X * 50).clamp(0, 255).to(dtype)
    calls = []
    hook = vit.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with pytest.raises(TypeError, match=rf"inputs tensor 0 holds integer images \(dtype {dtype}.*images.float\(\) / 255"):
            cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(images, target=0)
    finally:
        hook.remove()
    assert calls == []


def test_non_finite_inputs_name_the_example_index(vit):
    images = X.clone()
    images[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) in example 1 \(0-based\)"):
        cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(images, target=0)


def test_layers_listed_output_side_first_are_refused_with_the_order_seen(vit):
    with pytest.raises(ValueError, match=r"input side first.*\[1, 0\]"):
        cnp.NeuronPath(softmax_forward(vit), layers_of(vit)[::-1]).attribute(X, target=0)


class _TwoStages(nn.Module):
    """Stage outputs of 8 then 4 tokens, like a hierarchical (Swin-style) model."""

    def __init__(self):
        super().__init__()
        self.embed, self.act1, self.act2, self.head = nn.Linear(3, 6), nn.GELU(), nn.GELU(), nn.Linear(6, 2)

    def forward(self, x):
        h = self.act1(self.embed(x))  # (B, 8, 6)
        h = self.act2(h.view(h.shape[0], 4, 2, 6).mean(2))  # merged to (B, 4, 6)
        return self.head(h.mean(1))


def test_layers_with_different_token_counts_are_refused_before_any_attribution_pass():
    model = _TwoStages().eval()
    calls = []
    with pytest.raises(ValueError, match=r"different numbers of tokens.*layers\[0\] \(GELU\): 8.*layers\[1\] \(GELU\): 4"):
        cnp.NeuronPath(lambda x: calls.append(len(x)) or model(x), [model.act1, model.act2], token=slice(None)).attribute(
            torch.randn(2, 8, 3), target=0
        )
    assert calls == [2]  # the clean pass only


def test_a_module_run_twice_is_refused():
    act = nn.Tanh()
    model = nn.Sequential(nn.Linear(3, 3), act, act, nn.Linear(3, 2)).eval()
    with pytest.raises(ValueError, match="ran 2 times"):
        cnp.NeuronPath(model, [act], token=None).attribute(torch.randn(2, 3), target=0)


def test_baselines_of_the_wrong_shape_and_a_forward_that_is_not_callable_are_named(vit):
    with pytest.raises(ValueError, match="baselines"):
        cnp.InfluencePatternPath(softmax_forward(vit), layers_of(vit)).attribute(X, baselines=torch.zeros(3, 16, 16), target=0)
    with pytest.raises(TypeError, match="forward_func"):
        cnp.NeuronPath(vit.state_dict(), layers_of(vit))


@pytest.mark.parametrize(
    "kwargs,error,text",
    [
        (dict(path=[1, 2, 3]), ValueError, "L=2"),
        (dict(path=torch.zeros(2, 3, dtype=torch.long)), ValueError, "L=2"),
        (dict(path=[1, 2], seed=2**64), ValueError, "seed"),
        (dict(path=[1, 2], mode="prune", p="0.5"), TypeError, "p must be a number"),
        (dict(path=[1, -2]), IndexError, "path"),
    ],
    ids=["sequence length", "tensor layers", "seed range", "p not a number", "negative neuron"],
)
def test_intervene_checks_its_arguments_when_called(vit, kwargs, error, text):
    with pytest.raises(error, match=text):
        cnp.intervene(layers_of(vit), **kwargs).__enter__()
    assert all_hooks(vit) == 0


def test_intervene_names_the_layer_and_its_width_for_a_neuron_out_of_range(vit):
    with pytest.raises(IndexError, match=r"neuron 64 for layers\[1\] \(GELU\), which has 64 channels"):
        with cnp.intervene(layers_of(vit), [3, 64]):
            vit(X)
    assert all_hooks(vit) == 0
