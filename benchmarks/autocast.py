"""Effect of reduced precision (torch.autocast, bfloat16) on JAS and paths.

Locates the paths of the digits ViT's first 200 test images in float32 and under
``torch.autocast(device, dtype=torch.bfloat16)``, and reports how many paths agree, the
relative JAS difference and the time of each, measured in this run. The inputs, the
substituted values and the results stay float32; autocast lowers the matrix products.

    python benchmarks/autocast.py [--device cuda]
"""

import argparse
import time

import torch

import captum_neuronpath as cnp
from captum_neuronpath import digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-steps", type=int, default=20)
    parser.add_argument("--method", default="riemann_left")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = digits.digits_vit().to(device)
    _, (images, labels) = digits.digits_split()
    images, labels = images[:200].to(device), labels[:200].to(device)
    locator = cnp.NeuronPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model))

    def run():
        start = time.perf_counter()
        result = locator.attribute(images, target=labels, n_steps=args.n_steps, method=args.method)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result, time.perf_counter() - start

    full, full_seconds = run()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        low, low_seconds = run()
    same = (low.path == full.path).all(-1).double().mean()
    per_layer = (low.path == full.path).double().mean(0)
    relative = ((low.jas.float() - full.jas) / full.jas.abs()).abs()
    print(f"digits ViT on {device}, {len(images)} images, n_steps={args.n_steps}, {args.method}")
    print(f"float32: {full_seconds:.1f} s; bfloat16 autocast: {low_seconds:.1f} s")
    print(f"identical paths: {100 * float(same):.0f}%; per layer: {[round(100 * float(v)) for v in per_layer]}%")
    print(f"JAS relative difference: median {float(relative.median()):.2e}, 90th percentile "
          f"{float(relative.quantile(0.9)):.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
