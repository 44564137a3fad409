"""Gain and cost of refining greedy paths by coordinate ascent on their JAS.

On the digits ViT's 397 test images (default quadrature), for each setting: mean JAS of
the refined paths relative to the greedy ones, the share of paths that changed, and the
time relative to the greedy search, all measured in this run.

    python benchmarks/refinement.py
"""

import time

import torch

import captum_neuronpath as cnp
from captum_neuronpath import digits


def main() -> None:
    torch.manual_seed(0)
    model = digits.digits_vit()
    _, (images, labels) = digits.digits_split()
    locator = cnp.NeuronPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model))

    def run(**kwargs):
        start = time.perf_counter()
        results = [locator.attribute(x, target=y, **kwargs) for x, y in zip(images.split(100), labels.split(100))]
        path = torch.cat([r.path for r in results])
        return path, torch.cat([r.jas for r in results]), time.perf_counter() - start

    greedy_path, greedy_jas, greedy_seconds = run()
    print(f"digits ViT, {len(images)} test images, n_steps=3 gausslegendre; greedy: mean JAS "
          f"{greedy_jas.mean():.4f}, {greedy_seconds:.1f} s\n")  # fmt: skip
    print("| refine_candidates | refine_steps | mean JAS gain | paths changed | never below greedy | time vs greedy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for candidates, steps in [(4, 1), (8, 1), (8, 2), (16, 1)]:
        path, jas, seconds = run(refine_steps=steps, refine_candidates=candidates)
        gain = 100 * (float(jas.mean()) / float(greedy_jas.mean()) - 1)
        changed = 100 * float((path != greedy_path).any(-1).double().mean())
        print(f"| {candidates} | {steps} | +{gain:.1f}% | {changed:.0f}% | {bool((jas >= greedy_jas).all())} "
              f"| {seconds / greedy_seconds:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
