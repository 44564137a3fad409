"""Reduced precision (``torch.autocast``, bfloat16): the same paths, and what it costs.

Locates the paths of the digits ViT's first 200 test images in float32 and under
``torch.autocast(device, dtype=torch.bfloat16)``, at the library's default quadrature and
at the paper preset, and reports the share of identical whole paths, the agreement per
layer, the relative JAS difference (median and 90th percentile), the median relative
difference of the float32 paths' own JAS when scored under autocast (what the model's
bfloat16 passes alone move; no search can agree better than that) and the time of each. The
library computes its nodes, sums, JAS and scores in float32 whatever autocast is in force
(the concepts page's precision policy); only the model's layers run in bfloat16. The
explained function is the softmax of the logits taken in float32 (``model(x).float()``):
CPU autocast would leave it in bfloat16, which alone moves the JAS by several percent. Then it
times the paper preset on ViT-Ti/16 at 224 px (random weights, one image) in float32 and
in bfloat16, in interleaved rounds. Every number is measured in this run:

    python benchmarks/autocast.py [--device cuda] [--images 200] [--rounds 3]
"""

import argparse
import statistics
import time

import torch

import captum_neuronpath as cnp
from captum_neuronpath import digits


def _timed(function, device):
    start = time.perf_counter()
    result = function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def agreement(model, images, labels, device, quadrature, upcast=True):
    forward = (lambda x: model(x).float().softmax(-1)) if upcast else (lambda x: model(x).softmax(-1))
    locator = cnp.NeuronPath(forward, cnp.vit_mlp_layers(model))
    run = lambda: locator.attribute(images, target=labels, **quadrature)  # noqa: E731
    full, full_seconds = _timed(run, device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        low, low_seconds = _timed(run, device)
    assert low.jas.dtype == torch.float32
    same = (low.path == full.path).all(-1).double().mean()
    per_layer = (low.path == full.path).double().mean(0)
    relative = ((low.jas - full.jas) / full.jas.abs()).abs()
    # The floor: the float32 paths themselves, scored under autocast. No search is involved, so
    # this difference is the model's bfloat16 forward and backward passes alone.
    scorer = cnp.NeuronJointIntegratedGradients(locator.forward_func, locator.layers)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        fixed = scorer.attribute(images, full.path.unsqueeze(-1), target=labels, **quadrature)
    floor = ((fixed - full.jas) / full.jas.abs()).abs()
    return dict(same=float(same), per_layer=[float(v) for v in per_layer], median=float(relative.median()),
                p90=float(relative.quantile(0.9)), floor=float(floor.median()), float32_s=full_seconds,
                bfloat16_s=low_seconds)  # fmt: skip


def vit_ti_times(device, rounds):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224").to(device).eval()
    image = torch.randn(1, 3, 224, 224, device=device)
    target = int(model(image).argmax())
    locator = cnp.NeuronPath(lambda x: model(x).float().softmax(-1), cnp.vit_mlp_layers(model))
    run = lambda: locator.attribute(image, target=target, **cnp.PAPER_QUADRATURE)  # noqa: E731
    run()  # warm-up
    times = {"float32": [], "bfloat16": []}
    for _ in range(rounds):
        times["float32"].append(_timed(run, device)[1])
        with torch.autocast(device.type, dtype=torch.bfloat16):
            times["bfloat16"].append(_timed(run, device)[1])
    ratios = [b / f for f, b in zip(times["float32"], times["bfloat16"])]
    return statistics.median(times["float32"]), statistics.median(times["bfloat16"]), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the ViT-Ti/16 timing")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = digits.digits_vit().to(device)
    _, (images, labels) = digits.digits_split()
    images, labels = images[: args.images].to(device), labels[: args.images].to(device)
    print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads\n")
    print(f"digits ViT, {len(images)} test images, float32 against bfloat16 autocast:\n")
    print("| quadrature | identical paths | per layer | JAS rel. diff. median | 90th pct. "
          "| same paths' JAS rel. diff. median | float32 (s) | bfloat16 (s) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = [("default (3-node Gauss-Legendre)", {}, True), ("paper preset", dict(cnp.PAPER_QUADRATURE), True),
            ("paper preset, softmax left in bfloat16", dict(cnp.PAPER_QUADRATURE), False)]  # fmt: skip
    for name, quadrature, upcast in rows:
        r = agreement(model, images, labels, device, quadrature, upcast)
        layers = ", ".join(f"{100 * v:.1f}%" for v in r["per_layer"])
        print(f"| {name} | {100 * r['same']:.1f}% | {layers} | {r['median']:.1e} | {r['p90']:.1e} | {r['floor']:.1e} | "
              f"{r['float32_s']:.1f} | {r['bfloat16_s']:.1f} |")  # fmt: skip
    f32, bf16, ratio = vit_ti_times(device, args.rounds)
    print(f"\nViT-Ti/16 @224, paper preset, one image, median of {args.rounds} interleaved rounds: float32 "
          f"{f32:.2f} s, bfloat16 {bf16:.2f} s (bfloat16 / float32 = {ratio:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
