"""Cost of the neuron-path locator, in units of one forward+backward pass at batch n_steps.

One *unit* is what one integrated-gradients pass costs: the model's forward pass over
``n_steps`` interpolated copies of one image and the backward pass of the explained score
to those inputs. The locator over ``L`` layers is timed on one image and divided by
``L`` units; exact greedy search runs ``L + 1`` passes, so the generic path sits near 1
unit per layer. The fast plans of the model families (shared work before the first site,
greedy steps that start at the block whose layer changed, readout-only last block,
in-place writes; see ``captum_neuronpath/_core/plan.py``) are timed in the same run
with the plan on and off (``family_plan = False``, the generic path), and so are the greedy
steps with and without tangents (``GreedySearch.tangents = False``: each step backpropagates
through the kept graph of the earlier blocks instead). The reference is a
straightforward implementation of the same search that, like the authors' code, takes one
backward pass per path layer at every greedy step (its cost grows with the square of the
depth). All of them find the same path; the script checks it. The library's default
quadrature (3 Gauss-Legendre nodes) is timed against the reference at the paper preset
(``--reference-rounds`` interleaved rounds for ViT-Ti/16, one for the sweeps).

Timings on a shared machine drift, so the unit and the locators are timed in interleaved
rounds (unit, locator, locator without shortcuts, unit, ...) and each ratio is the median
over the rounds of the ratio within a round. Within a round the unit is timed over
``L + 1`` consecutive passes, as long as the locator runs, so that both see the same
drift. Every number printed is measured in this
run, on this machine:

    python benchmarks/locator_cost.py                       # ViT-Ti/16 at 224 px + depth and width sweeps
    python benchmarks/locator_cost.py --quick               # small images, for a smoke run
    python benchmarks/locator_cost.py --only-vit-ti --rounds 7
    python benchmarks/locator_cost.py --token-sets 1,2,3,4   # per-token tangents against the kept graph
"""

import argparse
import os
import platform
import statistics
import time
from typing import Callable, Dict, List

import timm
import torch
from torch import Tensor, nn

import captum_neuronpath as cnp
from captum_neuronpath._core.engine import GreedySearch


def seconds(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def interleaved(functions: Dict[str, Callable[[], object]], rounds: int) -> Dict[str, List[float]]:
    """Each function timed once per round, in turn, after one warm-up round."""
    for function in functions.values():
        function()
    times: Dict[str, List[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            times[name].append(seconds(function))
    return times


def ratio(times: Dict[str, List[float]], numerator: str, denominator: str) -> float:
    """The median over rounds of numerator / denominator within each round."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator]))


def unit(model: nn.Module, image: Tensor, target: int, n_steps: int) -> None:
    """One forward+backward pass at batch n_steps: the integrated-gradients unit."""
    inputs = image.repeat(n_steps, 1, 1, 1).requires_grad_()
    score = model(inputs).softmax(-1)[:, target].sum()
    torch.autograd.grad(score, inputs)


def reference_locator(model: nn.Module, layers: List[nn.Module], image: Tensor, target: int, n_steps: int):
    """The same greedy search and final JAS, one backward pass per path layer per step (riemann_left, token 0)."""
    clean: Dict[int, Tensor] = {}
    handles = [
        layer.register_forward_hook(lambda m, a, out, i=i: clean.__setitem__(i, out[:, 0].detach()))
        for i, layer in enumerate(layers)
    ]
    with torch.no_grad():
        model(image)
    for handle in handles:
        handle.remove()
    alphas = torch.arange(n_steps, dtype=image.dtype).view(-1, 1) / n_steps
    path: List[int] = []
    for t in range(len(layers) + 1):  # the last round scores the whole path, as the authors' code does
        candidate = t if t < len(layers) else None
        values = {}
        for l in range(min(t + 1, len(layers))):
            scaled = clean[l].repeat(n_steps, 1)
            if l == candidate:
                scaled = alphas * scaled
            else:
                scaled[:, path[l]] = alphas[:, 0] * clean[l][0, path[l]]
            values[l] = scaled.requires_grad_()

        def hook_for(l: int) -> Callable:
            def hook(module: nn.Module, args: object, out: Tensor) -> Tensor:
                out = out.clone()
                out[:, 0] = values[l]
                return out

            return hook

        handles = [layers[l].register_forward_hook(hook_for(l)) for l in values]
        score = model(image.repeat(n_steps, 1, 1, 1)).softmax(-1)[:, target].sum()
        grads = {l: torch.autograd.grad(score, values[l], retain_graph=True)[0].mean(0) for l in values}
        for handle in handles:
            handle.remove()
        prefix = range(t if candidate is not None else len(layers))
        prefix_activation = sum(float(clean[l][0, path[l]]) for l in prefix)
        prefix_gradient = sum(grads[l][path[l]] for l in prefix)
        if candidate is None:
            return torch.tensor(path), float(prefix_activation * prefix_gradient)
        scores = (clean[t][0] + prefix_activation) * (grads[t] + prefix_gradient)
        path.append(int(scores.argmax()))
    raise AssertionError("unreachable")


def measure(name: str, model: nn.Module, image: Tensor, n_steps: int, rounds: int, reference: int) -> Dict:
    model.eval()
    target = int(model(image).argmax())
    layers = cnp.vit_mlp_layers(model)
    locator = cnp.NeuronPath(lambda x: model(x).softmax(-1), layers, token=0)
    preset = dict(target=target, n_steps=n_steps, method="riemann_left")
    result = locator.attribute(image, **preset)
    generic_locator = cnp.NeuronPath(lambda x: model(x).softmax(-1), layers, token=0)
    generic_locator.family_plan = False
    generic = generic_locator.attribute(image, **preset)
    assert torch.equal(result.path, generic.path), "the shortcuts changed the path"
    assert torch.allclose(result.jas, generic.jas, rtol=1e-4), "the shortcuts changed the JAS"

    def without_shortcuts() -> None:
        generic_locator.attribute(image, **preset)

    def without_tangents() -> object:
        GreedySearch.tangents = False
        try:
            return locator.attribute(image, **preset)
        finally:
            GreedySearch.tangents = True

    kept = without_tangents()
    assert torch.equal(result.path, kept.path) and torch.allclose(result.jas, kept.jas, rtol=1e-4), "tangents differ"

    num_layers = len(layers)
    repeats = num_layers + 1  # the unit timed over as many passes as the locator runs

    def units() -> None:
        for _ in range(repeats):
            unit(model, image, target, n_steps)

    times = interleaved(
        {
            "unit": units,
            "locator": lambda: locator.attribute(image, **preset),
            "kept_graph": without_tangents,
            "generic": without_shortcuts,
        },
        rounds,
    )
    row = dict(model=name, layers=num_layers, unit_s=statistics.median(times["unit"]) / repeats,
               locator_s=statistics.median(times["locator"]),
               units_per_layer=ratio(times, "locator", "unit") * repeats / num_layers,
               kept_graph_units_per_layer=ratio(times, "kept_graph", "unit") * repeats / num_layers,
               tangent_gain=ratio(times, "kept_graph", "locator"),
               generic_units_per_layer=ratio(times, "generic", "unit") * repeats / num_layers,
               shortcut_gain=ratio(times, "generic", "locator"))  # fmt: skip
    if reference:
        reference_path, reference_jas = reference_locator(model, layers, image, target, n_steps)
        assert torch.equal(reference_path, result.path[0]), "the reference found another path"
        assert abs(reference_jas - float(result.jas[0])) <= 1e-4 * abs(reference_jas) + 1e-9, "JAS differ"
        times = interleaved(
            {
                "unit": lambda: unit(model, image, target, n_steps),
                "reference": lambda: reference_locator(model, layers, image, target, n_steps),
                "locator": lambda: locator.attribute(image, **preset),
                "default": lambda: locator.attribute(image, target=target),
            },
            reference,
        )
        row.update(reference_units_per_layer=ratio(times, "reference", "unit") / num_layers,
                   speedup=ratio(times, "reference", "locator"),
                   default_speedup=ratio(times, "reference", "default"))  # fmt: skip
    return row


def measure_token_sets(model: nn.Module, image: Tensor, n_steps: int, rounds: int, sizes: List[int]) -> List[Dict]:
    """Greedy search over token sets of ``sizes`` tokens, with per-token tangents and with the kept graph."""
    model.eval()
    target = int(model(image).argmax())
    settings = {"paper preset": dict(n_steps=n_steps, method="riemann_left"), "default": {}}
    rows = []
    for size in sizes:
        locator = cnp.NeuronPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model), token=list(range(size)))
        row: Dict = dict(tokens=size)
        for name, quadrature in settings.items():

            def search(tangents: bool, quadrature: Dict = quadrature) -> object:
                limit = GreedySearch.tangent_max_tokens
                GreedySearch.tangents, GreedySearch.tangent_max_tokens = tangents, size  # tangents beyond the limit
                try:
                    return locator.attribute(image, target=target, **quadrature)
                finally:
                    GreedySearch.tangents, GreedySearch.tangent_max_tokens = True, limit

            carried, kept = search(True), search(False)
            assert torch.equal(carried.path, kept.path), "per-token tangents changed the path"
            times = interleaved({"tangents": lambda: search(True), "kept_graph": lambda: search(False)}, rounds)
            row[name] = ratio(times, "kept_graph", "tangents")
        rows.append(row)
    return rows


def vit(depth: int, width: int, img_size: int) -> nn.Module:
    torch.manual_seed(0)
    heads = max(1, width // 64)
    return timm.create_model("vit_tiny_patch16_224", img_size=img_size, depth=depth, embed_dim=width, num_heads=heads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="96 px images and fewer rounds")
    parser.add_argument("--only-vit-ti", action="store_true", help="skip the depth and width sweeps")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, 2 with --quick)")
    parser.add_argument("--reference-rounds", type=int, default=3,
                        help="interleaved rounds of the reference for ViT-Ti/16 (the sweeps: 1)")  # fmt: skip
    parser.add_argument("--n-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--token-sets", type=str, default=None, metavar="SIZES",
                        help="only time ViT-Ti/16's greedy search over token sets of these sizes (e.g. 1,2,3,4) "
                        "with per-token tangents against the kept graph")  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size, rounds = (96, 2) if args.quick else (224, 5)
    rounds = args.rounds or rounds
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    machine = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {machine}, {torch.get_num_threads()} threads, load average {load:.1f}, "
          f"n_steps={args.n_steps}, riemann_left, one image, medians of {rounds} interleaved rounds\n")  # fmt: skip
    if args.token_sets:
        sizes = [int(n) for n in args.token_sets.split(",")]
        print("| tokens per example | tangent speed-up, paper preset | tangent speed-up, default |")
        print("| --- | --- | --- |")
        for r in measure_token_sets(vit(12, 192, size), image, args.n_steps, rounds, sizes):
            print(f"| {r['tokens']} | {r['paper preset']:.2f}x | {r['default']:.2f}x |")
        print(f"\nGreedySearch.tangent_max_tokens = {GreedySearch.tangent_max_tokens}")
        return
    rows = [measure(f"ViT-Ti/16 @{size}", vit(12, 192, size), image, args.n_steps, rounds, args.reference_rounds)]
    if not args.only_vit_ti:
        for depth in (3, 6, 12, 24):
            rows.append(measure(f"depth {depth}, width 192 @96", vit(depth, 192, 96), image[..., :96, :96],
                                args.n_steps, rounds, reference=int(depth <= 12)))  # fmt: skip
        for width in (96, 384):
            rows.append(measure(f"depth 6, width {width} @96", vit(6, width, 96), image[..., :96, :96],
                                args.n_steps, rounds, reference=1))  # fmt: skip
    print("| model | L | unit (s) | locator (s) | units per layer | without tangents | tangent speed-up "
          "| without shortcuts | shortcut speed-up | images/s | reference units per layer | speed-up over reference "
          "| default quadrature over reference |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        reference = (f"{r['reference_units_per_layer']:.2f} | {r['speedup']:.1f}x | {r['default_speedup']:.1f}x"
                     if "speedup" in r else "- | - | -")  # fmt: skip
        print(f"| {r['model']} | {r['layers']} | {r['unit_s']:.3f} | {r['locator_s']:.2f} | "
              f"**{r['units_per_layer']:.2f}** | {r['kept_graph_units_per_layer']:.2f} | {r['tangent_gain']:.2f}x | "
              f"{r['generic_units_per_layer']:.2f} | {r['shortcut_gain']:.2f}x | "
              f"{1 / r['locator_s']:.3f} | {reference} |")  # fmt: skip
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")


if __name__ == "__main__":
    main()
