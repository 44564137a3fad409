"""Agreement of single-layer methods with the greedy candidate scores, on the digits ViT.

The test suite's fixture weights (``tests/data/digits_vit_d6.safetensors``), the first
test images, the library's default quadrature for the greedy scores and the Captum methods
alike; medians over every image and layer, then the Spearman correlation per layer.

    python benchmarks/agreement.py
    python benchmarks/agreement.py --images 50
"""

import argparse
from pathlib import Path

from captum.attr import LayerConductance, LayerGradientXActivation, LayerIntegratedGradients
from safetensors.torch import load_file

from captum_neuronpath import digits
from captum_neuronpath.experiments import method_agreement

WEIGHTS = Path(__file__).resolve().parents[1] / "tests" / "data" / "digits_vit_d6.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=150, help="test images, from the first")
    args = parser.parse_args()
    model = digits.build_digits_vit()
    model.load_state_dict(load_file(WEIGHTS))
    model.eval()
    _, (images, labels) = digits.digits_split()
    images, labels = images[: args.images], labels[: args.images]
    methods = [LayerIntegratedGradients, LayerConductance, LayerGradientXActivation, "Activation"]
    found = method_agreement(model, images, labels, methods, n_steps=3, method="gausslegendre")
    print(f"{len(images)} digits test images, n_steps=3 gausslegendre\n")
    print(found.to_markdown())
    print("\nmedian Spearman correlation per layer:")
    for name, result in found.agreement.items():
        per_layer = [float(rho[~rho.isnan()].median()) for rho in result.spearman.T]
        print(f"  {name}: " + " ".join(f"{value:+.2f}" for value in per_layer))
    ranks = found.agreement["LayerIntegratedGradients"].second_top_in_first
    print("\nLayerIntegratedGradients' top neuron, greedy rank per layer (median):",
          " ".join(f"{int(r.median())}" for r in ranks.T))  # fmt: skip
    width = found.layer_scores.shape[-1]
    last, bottom = (100 * float(share.double().mean()) for share in (ranks == width - 1, ranks >= 0.9 * (width - 1)))
    print(f"  the greedy step's last candidate in {last:.0f}% of (image, layer) pairs, bottom tenth in {bottom:.0f}%")


if __name__ == "__main__":
    main()
