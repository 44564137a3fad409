"""Which quadrature reaches the converged JAS at the lowest cost?

For each model, the neuron paths are located with the paper preset (20-node left Riemann
sum); then each path's JAS is computed with every candidate rule and compared with the
converged value (64-node Gauss-Legendre, in float64). The cost of a rule is its node
count: every pass of the locator runs all nodes at once. Printed per rule: the largest
and the median relative error over all images and models, and the share of images whose
path under that rule is the paper preset's path, and the converged rule's path.

    python benchmarks/quadrature.py
"""

import json
import statistics
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

import captum_neuronpath as cnp

DATA = Path(__file__).parent.parent / "tests" / "data"
RULES = [("riemann_left", 20), ("riemann_left", 10), ("riemann_middle", 4), ("riemann_trapezoid", 5),
         ("gausslegendre", 2), ("gausslegendre", 3), ("gausslegendre", 4), ("gausslegendre", 8)]  # fmt: skip
CONVERGED = ("gausslegendre", 64)


def models():
    """(name, model, images, targets): the fixture ViT on its 15 images, and random ViTs."""
    fixture = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, num_classes=10, embed_dim=64, depth=6, num_heads=4, qkv_bias=True
    )
    fixture.load_state_dict(load_file(DATA / "digits_vit_d6.safetensors"))
    inputs = load_file(DATA / "expected_d6_inputs.safetensors")
    yield "digits ViT (trained, fixture)", fixture.eval().double(), inputs["images"].double(), inputs["labels"]
    generator = torch.Generator().manual_seed(0)
    for depth in (2, 4, 8, 12):
        torch.manual_seed(depth)
        model = timm.models.vision_transformer.VisionTransformer(
            img_size=32, patch_size=8, num_classes=10, embed_dim=64, depth=depth, num_heads=4
        )
        images = torch.randn(8, 3, 32, 32, generator=generator, dtype=torch.float64)
        model = model.eval().double()
        yield f"random ViT, depth {depth}", model, images, model(images).argmax(-1)


def main() -> None:
    errors = {rule: [] for rule in RULES}
    same_path = {rule: [] for rule in RULES}
    same_as_converged = {rule: [] for rule in RULES}
    for name, model, images, targets in models():
        forward = lambda x, model=model: model(x).softmax(-1)  # noqa: E731
        layers = cnp.vit_mlp_layers(model)
        preset = cnp.NeuronPath(forward, layers).attribute(images, target=targets, n_steps=20, method="riemann_left")
        jig = cnp.NeuronJointIntegratedGradients(forward, layers)
        method, n = CONVERGED
        exact = jig.attribute(images, neuron_selector=preset.path, target=targets, n_steps=n, method=method)
        converged_path = (
            cnp.NeuronPath(forward, layers).attribute(images, target=targets, n_steps=n, method=method).path
        )
        for rule in RULES:
            method, n = rule
            jas = jig.attribute(images, neuron_selector=preset.path, target=targets, n_steps=n, method=method)
            relative = ((jas - exact).abs() / exact.abs()).tolist()
            errors[rule] += relative
            path = cnp.NeuronPath(forward, layers).attribute(images, target=targets, n_steps=n, method=method).path
            same_path[rule] += (path == preset.path).all(-1).tolist()
            same_as_converged[rule] += (path == converged_path).all(-1).tolist()
        print(f"{name}: {len(images)} images, converged JAS from {exact.abs().min():.2e} to {exact.abs().max():.2e}")
    print(
        "\n| rule | nodes (cost) | max relative error | median relative error | same path as the preset "
        "| same path as the converged rule |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    summary = {}
    for rule in RULES:
        method, n = rule
        worst, median = max(errors[rule]), statistics.median(errors[rule])
        agree = sum(same_path[rule]) / len(same_path[rule])
        converged = sum(same_as_converged[rule]) / len(same_as_converged[rule])
        summary[f"{method}:{n}"] = dict(max=worst, median=median, same_path=agree, same_as_converged=converged)
        cells = [method, str(n), f"{100 * worst:.4f}%", f"{100 * median:.4f}%", f"{100 * agree:.0f}%"]
        print("| " + " | ".join(cells + [f"{100 * converged:.0f}%"]) + " |")
    print("\n" + json.dumps(summary))


if __name__ == "__main__":
    main()
