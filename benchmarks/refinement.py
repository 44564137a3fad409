"""Gain and cost of refining greedy paths by coordinate ascent on their JAS.

On the digits ViT's 397 test images (default quadrature), for each setting: mean JAS of
the refined paths relative to the greedy ones, the share of paths that changed, and the
time of the whole ``attribute()`` call relative to the greedy search alone (so 1.0x would
be a free refinement), all measured in this run. The last row tries a swap for every
example at every layer, whatever its prediction (``neuron_path.TRIAL_MARGIN`` unbounded),
to show what the margin gives up. The greedy search and the refinements
are timed in interleaved rounds and each ratio is the median over the rounds.

    python benchmarks/refinement.py
    python benchmarks/refinement.py --rounds 3
    python benchmarks/refinement.py --seed 1    # another digits ViT (trained once, cached)
"""

import argparse
import os
import statistics
import time

import torch

import captum_neuronpath as cnp
from captum_neuronpath import digits, metrics
from captum_neuronpath._core import neuron_path

SETTINGS = [(1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (2, 2)]  # (refine_candidates, refine_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--seed", type=int, default=0, help="the digits ViT's training seed")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = digits.digits_vit(seed=args.seed, log=print)
    _, (images, labels) = digits.digits_split()
    locator = cnp.NeuronPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model))

    def run(**kwargs):
        start = time.perf_counter()
        results = [locator.attribute(x, target=y, **kwargs) for x, y in zip(images.split(100), labels.split(100))]
        path = torch.cat([r.path for r in results])
        return path, torch.cat([r.jas for r in results]), time.perf_counter() - start

    def every_example(**kwargs):  # a trial for every example at every layer, whatever its prediction
        neuron_path.TRIAL_MARGIN = 1e30
        try:
            return run(**kwargs)
        finally:
            neuron_path.TRIAL_MARGIN = margin

    margin = neuron_path.TRIAL_MARGIN
    settings = {"greedy": (run, {})}
    settings.update({(k, s): (run, dict(refine_candidates=k, refine_steps=s)) for k, s in SETTINGS})
    settings["every"] = (every_example, dict(refine_candidates=1, refine_steps=1))
    outcomes, times = {}, {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, (function, kwargs) in settings.items():
            path, jas, seconds = function(**kwargs)
            outcomes[name] = (path, jas)
            times[name].append(seconds)
    greedy_path, greedy_jas = outcomes["greedy"]
    accuracy = metrics.accuracy(model, (images, labels))
    print(f"digits ViT (seed {args.seed}, test accuracy {accuracy:.3f}), {len(images)} test images, "
          f"n_steps=3 gausslegendre; greedy: mean JAS "
          f"{greedy_jas.mean():.4f}, {statistics.median(times['greedy']):.1f} s; load average "
          f"{os.getloadavg()[0]:.1f}; medians of {args.rounds} interleaved rounds\n")  # fmt: skip
    print("| refine_candidates | refine_steps | mean JAS gain | paths changed | never below greedy | time vs greedy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in [*SETTINGS, "every"]:
        path, jas = outcomes[name]
        gain = 100 * (float(jas.mean()) / float(greedy_jas.mean()) - 1)
        changed = 100 * float((path != greedy_path).any(-1).double().mean())
        ratio = statistics.median(a / b for a, b in zip(times[name], times["greedy"]))
        label = "1, every example tried | 1" if name == "every" else f"{name[0]} | {name[1]}"
        print(f"| {label} | +{gain:.1f}% | {changed:.0f}% | {bool((jas >= greedy_jas).all())} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
