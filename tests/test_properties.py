"""Properties over random small timm ViTs, token sets and batch sizes (hypothesis).

Batch invariance of the locator, and agreement of the joint attribution score with the
independent brute-force computation in tests/helpers.py. Models are float64, so a
difference is a bug and not rounding.
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import captum_neuronpath as cnp

from helpers import brute_force_jas, layers_of, small_vit, softmax_forward

NUM_TOKENS = 5  # an 8 x 8 image in 4 x 4 patches, and the class token
NUM_CLASSES = 3


@st.composite
def vits(draw):
    """A float64 timm ViT of random shape, and a token set that reaches its head from every block."""
    num_heads = draw(st.sampled_from([1, 2, 4]))
    embed_dim = num_heads * draw(st.sampled_from([2, 4]))
    mlp_ratio = draw(st.sampled_from([1.0, 2.0, 3.0]))
    pool = draw(st.sampled_from(["token", "avg"]))
    model = small_vit(
        depth=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**16)), img_size=8, embed_dim=embed_dim,
        num_heads=num_heads, mlp_ratio=mlp_ratio, num_classes=NUM_CLASSES, global_pool=pool,
    ).double()  # fmt: skip
    # In the last block only the tokens the head reads reach the output, so the set holds one of them.
    readout = 0 if pool == "token" else draw(st.integers(1, NUM_TOKENS - 1))
    others = draw(st.lists(st.integers(0, NUM_TOKENS - 1), max_size=3, unique=True))
    token = draw(
        st.sampled_from(
            [readout, sorted({readout, *others}), slice(0, NUM_TOKENS) if pool == "token" else slice(1, None)]
        )
    )
    return model, token


@st.composite
def batches(draw):
    """Random images and targets: ``(x, target)`` with 1 to 4 examples."""
    batch_size = draw(st.integers(1, 4))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(batch_size, 3, 8, 8, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator)



@settings(max_examples=20, deadline=None)
@given(
    vit=vits(),
    batch=batches(),
    top_k=st.integers(1, 2),
    n_steps=st.integers(2, 5),
    method=st.sampled_from(["riemann_left", "gausslegendre"]),
)
def test_batched_equals_one_example_at_a_time(vit, batch, top_k, n_steps, method):
    model, token = vit
    x, target = batch
    locator = cnp.NeuronPath(softmax_forward(model), layers_of(model), token=token)
    batched = locator.attribute(x, target=target, n_steps=n_steps, method=method, top_k=top_k)
    for i in range(len(x)):
        single = locator.attribute(x[i : i + 1], target=target[i : i + 1], n_steps=n_steps, method=method, top_k=top_k)
        assert torch.equal(single.path[0], batched.path[i])
        assert torch.allclose(single.jas[0], batched.jas[i], rtol=1e-9, atol=1e-15)


@settings(max_examples=20, deadline=None)
@given(
    vit=vits(),
    batch=batches(),
    k=st.integers(1, 3),
    n_steps=st.integers(2, 5),
    method=st.sampled_from(["riemann_left", "riemann_trapezoid", "gausslegendre"]),
    selector_seed=st.integers(0, 2**16),
)
def test_joint_attribution_matches_brute_force(vit, batch, k, n_steps, method, selector_seed):
    model, token = vit
    x, target = batch
    layers = layers_of(model)
    width = model.blocks[0].mlp.fc1.out_features
    k = min(k, width)  # the narrowest models have 2 neurons per layer
    generator = torch.Generator().manual_seed(selector_seed)
    selector = torch.stack([torch.randperm(width, generator=generator)[:k] for _ in range(len(x) * len(layers))])
    selector = selector.reshape(len(x), len(layers), k)
    jig = cnp.NeuronJointIntegratedGradients(softmax_forward(model), layers, token=token)
    ours = jig.attribute(x, neuron_selector=selector, target=target, n_steps=n_steps, method=method)
    reference = brute_force_jas(softmax_forward(model), layers, x, target, selector, token=token, n_steps=n_steps, method=method)
    assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-15)
