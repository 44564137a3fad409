import pytest
import torch

import captum_neuronpath as cnp

from conftest import case_images
from helpers import SmallMLP, layers_of, small_vit, softmax_forward


@pytest.fixture(scope="module")
def vit():
    return small_vit(depth=4, seed=3)



def _inputs(batch_size=4, seed=0, dtype=torch.float32):
    return torch.randn(batch_size, 3, 16, 16, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_result_shapes_and_types(vit):
    res = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(_inputs(), target=torch.tensor([0, 1, 2, 3]))
    assert isinstance(res, cnp.NeuronPathResult)
    assert res.path.shape == (4, 4) and res.path.dtype == torch.long
    assert res.jas.shape == (4,) and res.jas.dtype == torch.float32
    assert res.layer_scores.shape == (4, 4, 64)


def test_path_is_the_argmax_of_each_step_and_its_scores_match_ljig(vit):
    x, target = _inputs(), [4, 3, 2, 1]
    layers = layers_of(vit)
    res = cnp.NeuronPath(softmax_forward(vit), layers).attribute(x, target=target)
    assert torch.equal(res.path, res.layer_scores.argmax(-1))
    ljig = cnp.LayerJointIntegratedGradients(softmax_forward(vit), layers)
    for t in range(len(layers)):
        scores = ljig.attribute(x, layer_index=t, path_prefix=res.path[:, :t], target=target)
        assert torch.allclose(res.layer_scores[:, t], scores, rtol=1e-6, atol=1e-9)


def test_jas_is_the_joint_attribution_of_the_path(vit):
    x, target = _inputs(), torch.tensor([1, 1, 0, 2])
    res = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(x, target=target)
    jas = cnp.NeuronJointIntegratedGradients(softmax_forward(vit), layers_of(vit)).attribute(x, neuron_selector=res.path, target=target)
    assert torch.allclose(res.jas, jas, rtol=1e-6, atol=1e-10)


def test_batched_equals_one_at_a_time_on_the_fixture_model(digits_vit, expected):
    cases, inputs = expected
    images = torch.cat([case_images(c, inputs) for c in cases["cases"]])
    targets = torch.tensor([c["target"] for c in cases["cases"] for _ in c["dataset_indices"]])
    locator = cnp.NeuronPath(softmax_forward(digits_vit), cnp.vit_mlp_layers(digits_vit))
    batched = locator.attribute(images, target=targets)
    for i in range(len(images)):
        single = locator.attribute(images[i : i + 1], target=targets[i : i + 1])
        assert torch.equal(single.path[0], batched.path[i])
        assert torch.allclose(single.jas[0], batched.jas[i], rtol=1e-5)
        # float32: a batch of another size rounds differently, about 1e-7 of the scores' scale
        scale = batched.layer_scores[i].abs().max()
        assert torch.allclose(single.layer_scores[0], batched.layer_scores[i], rtol=1e-4, atol=1e-6 * scale)


def test_internal_batch_size_does_not_change_the_result(digits_vit, expected):
    cases, inputs = expected
    images = case_images(cases["cases"][1], inputs)
    locator = cnp.NeuronPath(softmax_forward(digits_vit), cnp.vit_mlp_layers(digits_vit))
    full = locator.attribute(images, target=cases["cases"][1]["target"])
    for size in (5, 23, 64):
        chunked = locator.attribute(images, target=cases["cases"][1]["target"], internal_batch_size=size)
        assert torch.equal(full.path, chunked.path)
        assert torch.allclose(full.jas, chunked.jas, rtol=1e-5)


def test_top_k_keeps_the_k_best_and_scores_them_jointly(vit):
    x, target = _inputs(), 2
    layers = layers_of(vit)
    res = cnp.NeuronPath(softmax_forward(vit), layers).attribute(x, target=target, top_k=3)
    assert res.path.shape == (4, 4, 3)
    assert torch.equal(res.path, res.layer_scores.topk(3, dim=-1).indices)
    assert torch.equal(res.path[:, 0, 0], cnp.NeuronPath(softmax_forward(vit), layers).attribute(x, target=target).path[:, 0])
    ljig = cnp.LayerJointIntegratedGradients(softmax_forward(vit), layers)
    assert torch.allclose(res.layer_scores[:, 2], ljig.attribute(x, layer_index=2, path_prefix=res.path[:, :2], target=target), rtol=1e-6, atol=1e-9)
    jas = cnp.NeuronJointIntegratedGradients(softmax_forward(vit), layers).attribute(x, neuron_selector=res.path, target=target)
    assert torch.allclose(res.jas, jas, rtol=1e-6, atol=1e-10)


def test_ties_go_to_the_lowest_index():
    model = small_vit(depth=2, seed=4)
    with torch.no_grad():  # first MLP silent: every layer-0 activation, so every score, is 0
        model.blocks[0].mlp.fc1.weight.zero_()
        model.blocks[0].mlp.fc1.bias.zero_()
    res = cnp.NeuronPath(softmax_forward(model), layers_of(model)).attribute(_inputs(2), target=0, top_k=3)
    assert torch.all(res.layer_scores[:, 0] == 0) and torch.any(res.layer_scores[:, 1] != 0)
    assert res.path[:, 0].tolist() == [[0, 1, 2]] * 2


def test_float64_inputs_give_float64_results():
    model = small_vit(depth=2, seed=5).double()
    res = cnp.NeuronPath(softmax_forward(model), layers_of(model)).attribute(_inputs(2, dtype=torch.float64), target=1)
    assert res.jas.dtype == torch.float64 and res.layer_scores.dtype == torch.float64


@pytest.mark.parametrize(
    "target",
    [3, torch.tensor(3), [3, 3, 3, 3], torch.tensor([3, 3, 3, 3]), (3,)],
    ids=["int", "scalar-tensor", "list", "tensor", "tuple"],
)
def test_every_captum_target_form_selects_the_same_output(vit, target):
    x = _inputs()
    reference = cnp.NeuronPath(lambda x: vit(x).softmax(-1)[:, 3], layers_of(vit)).attribute(x)
    res = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(x, target=target)
    assert torch.equal(res.path, reference.path)
    assert torch.allclose(res.jas, reference.jas, rtol=1e-6)


def test_additional_forward_args_are_expanded_with_the_batch():
    model = SmallMLP().eval()
    x, scale = torch.randn(3, 6), torch.tensor([[0.5], [1.0], [2.0]])
    with_args = cnp.NeuronPath(model, model.layers, token=None).attribute(x, target=1, additional_forward_args=(scale,))
    for i in range(3):
        factor = float(scale[i])
        baked = cnp.NeuronPath(lambda x: model(x * factor), model.layers, token=None).attribute(x[i : i + 1], target=1)
        assert torch.equal(with_args.path[i], baked.path[0])
        assert torch.allclose(with_args.jas[i], baked.jas[0], rtol=1e-5)


def test_tuple_inputs_are_passed_as_positional_arguments(vit):
    a, b = _inputs(2, seed=1), _inputs(2, seed=2)
    res = cnp.NeuronPath(lambda p, q: vit(p + q).softmax(-1), layers_of(vit)).attribute((a, b), target=0)
    ref = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(a + b, target=0)
    assert torch.equal(res.path, ref.path)


def test_layers_of_different_widths_pad_layer_scores_with_nan():
    model = SmallMLP().eval()
    res = cnp.NeuronPath(model, model.layers, token=None).attribute(torch.randn(2, 6), target=0)
    assert res.layer_scores.shape == (2, 2, 10)
    assert torch.isnan(res.layer_scores[:, 1, 7:]).all() and not torch.isnan(res.layer_scores[:, 1, :7]).any()
    assert (res.path[:, 1] < 7).all()


def test_show_progress_gives_the_same_result(vit, capsys):
    x = _inputs(2)
    quiet = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(x, target=0)
    shown = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(x, target=0, show_progress=True)
    assert torch.equal(quiet.path, shown.path)
    assert "NeuronPath" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(digits_vit, expected):
    cases, inputs = expected
    case = cases["cases"][0]
    images = case_images(case, inputs)
    cpu = cnp.NeuronPath(softmax_forward(digits_vit), cnp.vit_mlp_layers(digits_vit)).attribute(images, target=case["target"])
    model = digits_vit.cuda()
    try:
        gpu = cnp.NeuronPath(softmax_forward(model), cnp.vit_mlp_layers(model)).attribute(images.cuda(), target=torch.tensor(case["target"]))
    finally:
        digits_vit.cpu()
    assert gpu.path.device.type == "cuda" and gpu.jas.device.type == "cuda"
    assert gpu.path.tolist() == case["neuron_path"]
    assert torch.allclose(gpu.jas.cpu(), cpu.jas, rtol=1e-4)


def test_refinement_never_lowers_the_jas_and_reports_the_path_jas(digits_vit, expected):
    _, inputs = expected
    x, y = inputs["images"], inputs["labels"]
    locator = cnp.NeuronPath(softmax_forward(digits_vit), cnp.vit_mlp_layers(digits_vit))
    greedy = locator.attribute(x, target=y)
    refined = locator.attribute(x, target=y, refine_steps=1, refine_candidates=8)
    assert (refined.jas >= greedy.jas).all() and (refined.jas > greedy.jas).any()
    assert torch.equal(refined.layer_scores, greedy.layer_scores)
    changed = (refined.path != greedy.path).any(-1)
    assert torch.equal(changed, refined.jas > greedy.jas)  # a path changes only when its JAS rises
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(digits_vit), cnp.vit_mlp_layers(digits_vit))
    assert torch.allclose(jig.attribute(x, neuron_selector=refined.path, target=y), refined.jas, rtol=1e-5)


def test_refinement_with_one_candidate_never_lowers_the_jas(vit):
    x = _inputs(2)
    greedy = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(x, target=1)
    refined = cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(x, target=1, refine_steps=2, refine_candidates=1)
    assert (refined.jas >= greedy.jas).all()
    assert torch.equal((refined.path != greedy.path).any(-1), refined.jas > greedy.jas)


def test_predicted_swap_is_exact_for_a_layer_without_downstream_effect():
    # With the head reading only the last layer linearly, a swap there changes no gradient,
    # so the predicted JAS of every swap equals the exact one: the best prediction is the best swap.
    from captum_neuronpath._core.engine import joint_score, prepare
    from captum_neuronpath._core.neuron_path import _predicted_best_swaps
    from captum_neuronpath._utils.quadrature import quadrature

    model = SmallMLP().double().eval()
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    forward = lambda inputs: model(inputs)  # noqa: E731  # linear after the last site
    prepared = prepare(forward, model.layers, None, x, 1, None)
    rule = quadrature(3, "gausslegendre")
    path = torch.tensor([[[2], [3]]] * 3)
    _, gradients, gradient_sum = joint_score(forward, model.layers, prepared, path, rule, None)
    channels, predicted = _predicted_best_swaps(prepared.clean.activations, gradients, gradient_sum, path, 1, 1)
    exact = []
    for c in range(7):
        trial = path.clone()
        trial[:, 1, 0] = c
        exact.append(joint_score(forward, model.layers, prepared, trial, rule, None)[0])
    exact = torch.stack(exact, 1)
    exact[:, 3] = float("-inf")  # the current channel is not a candidate
    assert torch.equal(channels[:, 0], exact.argmax(1))
    torch.testing.assert_close(predicted, exact.max(1).values, rtol=1e-9, atol=0)


@pytest.mark.parametrize(
    "kwargs,text",
    [(dict(refine_steps=1, top_k=2), "refine_steps"), (dict(refine_steps=-1), "refine_steps"),
     (dict(refine_steps=1, refine_candidates=0), "refine_candidates"), (dict(refine_steps=1, refine_candidates=65), "refine_candidates")],
)  # fmt: skip
def test_refinement_arguments_are_checked(vit, kwargs, text):
    with pytest.raises(ValueError, match=text):
        cnp.NeuronPath(softmax_forward(vit), layers_of(vit)).attribute(_inputs(2), target=1, **kwargs)
