"""The model families' fast plans of the substituted pass give the generic path's results."""

import copy

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

import captum_neuronpath as cnp
from captum_neuronpath._core.engine import GreedySearch, prepare

from helpers import assert_unchanged, small_vit, snapshot, softmax_forward


def _torchvision_vit():
    torch.manual_seed(1)
    model = TorchvisionViT(image_size=16, patch_size=4, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32,
                           num_classes=5)  # fmt: skip
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero
    return model.double().eval()


def _timm_vit():
    return small_vit(depth=3, seed=7).double()


FAMILIES = {
    "timm-mlp": (_timm_vit, cnp.vit_mlp_layers),
    "timm-attention": (_timm_vit, cnp.vit_attention_layers),
    "torchvision-mlp": (_torchvision_vit, cnp.vit_mlp_layers),
    "torchvision-attention": (_torchvision_vit, cnp.vit_attention_layers),
}
X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
TARGET = torch.tensor([0, 4])


def _generic(attribution):
    """``attribution`` on the generic path: a copy with its family plan turned off."""
    generic = copy.copy(attribution)
    generic.family_plan = False
    return generic


CASES = [(family, {}) for family in FAMILIES] + [("timm-mlp", dict(cnp.PAPER_QUADRATURE))]


@pytest.mark.parametrize("family,quadrature", CASES, ids=[f"{f}-{'paper' if q else 'default'}" for f, q in CASES])
def test_shortcut_gives_the_generic_path_and_jas(family, quadrature):
    make, layers_of = FAMILIES[family]
    model = make()
    layers = layers_of(model)
    forward = softmax_forward(model)
    shortcut = prepare(forward, layers, 0, X, TARGET, None).clean.plan
    assert shortcut is not None and len(shortcut.forwards) == 1  # the readout-only last block applies
    before = snapshot(model)
    locator = cnp.NeuronPath(forward, layers)
    fast = locator.attribute(X, target=TARGET, **quadrature)
    generic = _generic(locator).attribute(X, target=TARGET, **quadrature)
    assert torch.equal(fast.path, generic.path)
    torch.testing.assert_close(fast.jas, generic.jas, rtol=1e-6, atol=0)
    torch.testing.assert_close(fast.layer_scores, generic.layer_scores, rtol=1e-6, atol=1e-12)
    assert_unchanged(model, before)
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_last_block_runs_its_mlp_for_the_class_token_only():
    model = _timm_vit()
    tokens = []
    handle = model.blocks[-1].mlp.fc1.register_forward_hook(lambda m, a, out: tokens.append(out.shape[1]))
    try:
        cnp.NeuronJointIntegratedGradients(softmax_forward(model), cnp.vit_mlp_layers(model)).attribute(
            X, neuron_selector=[1, 2, 3], target=TARGET
        )
        _generic(cnp.NeuronJointIntegratedGradients(softmax_forward(model), cnp.vit_mlp_layers(model))).attribute(
            X, neuron_selector=[1, 2, 3], target=TARGET
        )
    finally:
        handle.remove()
    assert tokens == [17, 1, 17, 17]  # clean pass, shortcut pass; clean pass, generic pass


@pytest.mark.parametrize(
    "make,token",
    [
        (lambda: small_vit(depth=2, seed=1, global_pool="avg").double(), slice(1, None)),  # the head averages
        (lambda: small_vit(depth=2, seed=1).double(), [0, 3]),  # a last-block site outside the readout
        (lambda: small_vit(depth=2, seed=1).double().train(), 0),  # training mode
    ],
    ids=["avg-pool", "token-set", "training"],
)
@pytest.mark.filterwarnings("ignore:the model is in training mode")
def test_no_readout_shortcut_where_it_would_change_the_result(make, token):
    model = make()
    clean = prepare(softmax_forward(model), cnp.vit_mlp_layers(model), token, X, TARGET, None).clean
    assert clean.plan is None or not clean.plan.forwards


def test_no_shortcut_when_another_model_runs_too():
    model = _timm_vit()
    assert prepare(softmax_forward(model), cnp.vit_mlp_layers(model), 0, X, TARGET, None).clean.plan is not None
    other = _timm_vit()
    outside = prepare(lambda x: model(x) + other(x), cnp.vit_mlp_layers(other), 0, X, TARGET, None)
    assert outside.clean.plan is None


def test_an_error_in_the_model_leaves_no_replaced_forward():
    model = _timm_vit()
    locator = cnp.NeuronPath(softmax_forward(model), cnp.vit_mlp_layers(model))
    prepared_shortcut = prepare(softmax_forward(model), cnp.vit_mlp_layers(model), 0, X, TARGET, None).clean.plan
    assert prepared_shortcut is not None and prepared_shortcut.forwards

    def boom(module, args, out):
        if out.shape[0] > X.shape[0]:  # the substituted pass only
            raise RuntimeError("boom")

    handle = model.blocks[0].mlp.fc2.register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            locator.attribute(X, target=TARGET)
    finally:
        handle.remove()
    assert all("forward" not in m.__dict__ for m in model.modules())


SHARED_CASES = {
    "span": (lambda m: cnp.vit_mlp_layers(m), slice(0, 3), {}),
    "scattered-tokens": (lambda m: cnp.vit_mlp_layers(m), [0, 2], {}),
    "per-example-token": (lambda m: cnp.vit_mlp_layers(m), torch.tensor([0, 5]), {}),
    "first-site-in-block-1": (lambda m: cnp.vit_mlp_layers(m)[1:], 0, {}),
    "two-nodes-per-pass": (lambda m: cnp.vit_mlp_layers(m), 0, dict(internal_batch_size=4)),
}


@pytest.mark.parametrize("family", ["timm", "torchvision"])
@pytest.mark.parametrize("case", list(SHARED_CASES))
def test_shared_work_gives_the_generic_path_and_jas(family, case):
    model = _timm_vit() if family == "timm" else _torchvision_vit()
    layers_of, token, options = SHARED_CASES[case]
    layers = layers_of(model)
    forward = softmax_forward(model)
    shortcut = prepare(forward, layers, token, X, TARGET, None).clean.plan
    assert shortcut is not None and shortcut.shared is not None
    locator = cnp.NeuronPath(forward, layers, token=token)
    fast = locator.attribute(X, target=TARGET, n_steps=5, **options)
    generic = _generic(locator).attribute(X, target=TARGET, n_steps=5, **options)
    assert torch.equal(fast.path, generic.path)
    torch.testing.assert_close(fast.jas, generic.jas, rtol=1e-6, atol=0)
    torch.testing.assert_close(fast.layer_scores, generic.layer_scores, rtol=1e-6, atol=1e-12)
    assert all("forward" not in m.__dict__ for m in model.modules())


def _rows_seen(model, modules, run):
    """``run()``, and the batch sizes each of ``modules`` (name -> module) saw, in call order."""
    seen = {name: [] for name in modules}
    handles = [
        module.register_forward_hook(lambda m, a, out, name=name: seen[name].append(out.shape[0]))
        for name, module in modules.items()
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_work_before_the_first_site_runs_once_per_example():
    model = _timm_vit()
    locator = cnp.NeuronJointIntegratedGradients(softmax_forward(model), cnp.vit_mlp_layers(model))
    block = model.blocks[0]
    modules = dict(embed=model.patch_embed, attention=block.attn, fc1=block.mlp.fc1, fc2=block.mlp.fc2,
                   next_block=model.blocks[1])  # fmt: skip
    seen = _rows_seen(model, modules, lambda: locator.attribute(X, neuron_selector=[1, 2, 3], target=TARGET))
    batch, rows = len(X), len(X) * 3  # three nodes by default
    # Clean pass, then the substituted pass: the nodes share everything up to the first
    # site; past it, the class token's MLP runs per node and the other tokens once.
    assert seen == dict(embed=[batch, batch], attention=[batch, batch], fc1=[batch, batch],
                        fc2=[batch, batch, rows], next_block=[batch, rows])  # fmt: skip


def test_a_forward_func_that_varies_per_row_keeps_the_generic_path():
    model = _timm_vit()
    offset = torch.linspace(0, 0.1, 2 * 3).view(-1, 1, 1, 1).double()  # a different input at every node

    def forward(x):
        return model(x + offset[: len(x)]).softmax(-1) if len(x) > len(X) else model(x).softmax(-1)

    locator = cnp.NeuronJointIntegratedGradients(forward, cnp.vit_mlp_layers(model))
    seen = _rows_seen(model, dict(attention=model.blocks[0].attn), lambda: locator.attribute(X, [1, 2, 3], TARGET))
    assert seen["attention"] == [len(X), len(X) * 3]
    fast = locator.attribute(X, [1, 2, 3], TARGET)
    generic = _generic(locator).attribute(X, [1, 2, 3], TARGET)
    torch.testing.assert_close(fast, generic, rtol=1e-6, atol=0)


def _block_halves(model, family):
    """name -> the norm that starts a block's attention (``attention i``) or its MLP (``mlp i``)."""
    blocks = model.blocks if family == "timm" else model.encoder.layers
    first, second = ("norm1", "norm2") if family == "timm" else ("ln_1", "ln_2")
    halves = {}
    for i, block in enumerate(blocks):
        halves[f"attention {i}"], halves[f"mlp {i}"] = getattr(block, first), getattr(block, second)
    return halves


@pytest.mark.parametrize("family", ["timm", "torchvision"])
def test_each_greedy_step_starts_at_the_block_that_changed(family, monkeypatch):
    monkeypatch.setattr(GreedySearch, "tangent_min_layers", 3)
    model = _timm_vit() if family == "timm" else _torchvision_vit()
    locator = cnp.NeuronPath(softmax_forward(model), cnp.vit_mlp_layers(model))
    halves = _block_halves(model, family)

    def runs():
        seen = _rows_seen(model, halves, lambda: locator.attribute(X, target=TARGET))
        return {name: len(calls) for name, calls in seen.items()}

    # The clean pass, then: step 0 runs every block, step 1 from block 0 (its layer 0 went from
    # the whole layer to one channel). With tangents, before step 2 block 0 and block 1's
    # attention run once in forward mode to carry the tangent on to block 1's MLP input, where
    # step 2 starts; before the final JAS, block 1's MLP and block 2's attention, and the
    # final JAS runs block 2's MLP only.
    assert runs() == {"attention 0": 1 + 2 + 1, "mlp 0": 1 + 2 + 1, "attention 1": 1 + 2 + 1,
                      "mlp 1": 1 + 3 + 1, "attention 2": 1 + 3 + 1, "mlp 2": 1 + 4}  # fmt: skip
    monkeypatch.setattr(GreedySearch, "tangents", False)  # the kept graph: step 2 and the JAS from blocks 1, 2
    whole_blocks = {"attention 0": 1 + 2, "mlp 0": 1 + 2, "attention 1": 1 + 3, "mlp 1": 1 + 3,
                    "attention 2": 1 + 4, "mlp 2": 1 + 4}  # fmt: skip
    assert runs() == whole_blocks
    monkeypatch.setattr(GreedySearch, "tangents", True)
    monkeypatch.setattr(GreedySearch, "tangent_min_layers", 4)  # a path this short keeps the graph too
    assert runs() == whole_blocks
    locator.family_plan = False
    assert runs() == {name: 1 + 4 for name in halves}


def test_passes_that_start_mid_model_embed_one_copy_of_the_batch(monkeypatch):
    monkeypatch.setattr(GreedySearch, "tangent_min_layers", 3)
    model = _timm_vit()
    locator = cnp.NeuronPath(softmax_forward(model), cnp.vit_mlp_layers(model))
    seen = _rows_seen(model, dict(embed=model.patch_embed), lambda: locator.attribute(X, target=TARGET))
    # The clean pass, then four passes: each embeds one copy of the images, whose later
    # blocks either repeat it per node (step 0 and step 1) or ignore it (they start mid-model).
    assert seen["embed"] == [len(X)] * 5


def _gated_timm_vit():
    import timm

    return small_vit(depth=3, seed=5, mlp_layer=timm.layers.SwiGLU).double()


TANGENT_MODELS = {
    "timm-mlp": (_timm_vit, cnp.vit_mlp_layers),
    "timm-attention": (_timm_vit, cnp.vit_attention_layers),
    "timm-swiglu": (_gated_timm_vit, cnp.vit_mlp_layers),  # the sites are the inputs of fc2
    "timm-every-other-block": (lambda: small_vit(depth=4, seed=2).double(), lambda m: cnp.vit_mlp_layers(m)[::2]),
    "torchvision-mlp": (_torchvision_vit, cnp.vit_mlp_layers),
    "torchvision-attention": (_torchvision_vit, cnp.vit_attention_layers),
}
TANGENT_OPTIONS = {
    "default": (0, {}),
    "paper": (0, dict(cnp.PAPER_QUADRATURE)),
    "top-2": (0, dict(top_k=2)),
    "per-example-token": (torch.tensor([0, 5]), {}),
    "token-set": ([0, 2], {}),  # one tangent per token
    "longer-token-set": ([0, 2, 3], {}),  # beyond tangent_max_tokens: the kept graph
    "refined-token-set": ([0, 2], dict(refine_steps=1, refine_candidates=2)),
    "two-nodes-per-pass": (0, dict(internal_batch_size=4)),  # chunked nodes: no restart
    "refined": (0, dict(refine_steps=1, refine_candidates=2)),
}


@pytest.mark.parametrize("option", list(TANGENT_OPTIONS))
@pytest.mark.parametrize("model_name", list(TANGENT_MODELS))
def test_greedy_steps_that_carry_tangents_give_the_generic_path_and_jas(model_name, option, monkeypatch):
    monkeypatch.setattr(GreedySearch, "tangent_min_layers", 1)  # these models are shallow
    monkeypatch.setattr(GreedySearch, "tangent_max_tokens", 2)
    make, layers_of = TANGENT_MODELS[model_name]
    token, options = TANGENT_OPTIONS[option]
    model = make()
    locator = cnp.NeuronPath(softmax_forward(model), layers_of(model), token=token)
    assert prepare(locator.forward_func, locator.layers, token, X, TARGET, None).clean.plan.blocks is not None
    fast = locator.attribute(X, target=TARGET, **options)
    generic = _generic(locator).attribute(X, target=TARGET, **options)
    assert torch.equal(fast.path, generic.path)
    torch.testing.assert_close(fast.jas, generic.jas, rtol=1e-6, atol=0)
    torch.testing.assert_close(fast.layer_scores, generic.layer_scores, rtol=1e-6, atol=1e-12)
    assert all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("token", [0, [0, 2], [0, 2, 3]], ids=["one-token", "token-set", "longer-token-set"])
@pytest.mark.parametrize("family", ["timm", "torchvision"])
def test_each_greedy_steps_backward_stops_at_the_block_that_changed(family, token, monkeypatch):
    monkeypatch.setattr(GreedySearch, "tangent_min_layers", 3)
    monkeypatch.setattr(GreedySearch, "tangent_max_tokens", 2)  # a token set carries one tangent per token
    model = _timm_vit() if family == "timm" else _torchvision_vit()
    halves = _block_halves(model, family)
    backward = {name: 0 for name in halves}

    def count(name):
        def hook(module, args, out):
            if out.requires_grad:
                out.register_hook(lambda grad: backward.__setitem__(name, backward[name] + 1))

        return hook

    def run():
        backward.update({name: 0 for name in backward})
        handles = [norm.register_forward_hook(count(name)) for name, norm in halves.items()]
        try:
            cnp.NeuronPath(softmax_forward(model), cnp.vit_mlp_layers(model), token=token).attribute(X, target=TARGET)
        finally:
            for handle in handles:
                handle.remove()
        return dict(backward)

    # Block 0's norms come before every substituted value. The passes start at block 0 (steps
    # 0 and 1), block 1's MLP input (step 2) and block 2's (the final JAS); each runs backward
    # through what it ran, with the earlier layers' gradients carried by the tangent.
    carried = {"attention 0": 0, "mlp 0": 0, "attention 1": 2, "mlp 1": 3, "attention 2": 3, "mlp 2": 4}
    kept = {"attention 0": 0, "mlp 0": 0, "attention 1": 4, "mlp 1": 4, "attention 2": 4, "mlp 2": 4}
    assert run() == (kept if token == [0, 2, 3] else carried)  # beyond tangent_max_tokens: the kept graph
    monkeypatch.setattr(GreedySearch, "tangents", False)  # the kept graph: every pass reaches block 1 again
    assert run() == kept
