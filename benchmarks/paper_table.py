"""The paper's Table 1 (JAS, removal and enhancement accuracy deviation) on any model.

Offline default: the digits ViT (trained once, then cached) on its 397 test images.

    python benchmarks/paper_table.py                                   # digits ViT
    python benchmarks/paper_table.py --captum-methods LayerIntegratedGradients,LayerConductance
    python benchmarks/paper_table.py --model timm:vit_base_patch16_224 --pretrained \\
        --data imagenet_val_subset.safetensors                         # your own
"""

import argparse
import json
import sys
import time
from pathlib import Path

import captum_neuronpath as cnp
from captum_neuronpath import digits
from captum_neuronpath._demo import captum_methods_argument
from captum_neuronpath._loading import load_model, load_safetensors_data
from captum_neuronpath.experiments import METHODS, paper_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="timm:NAME, torchvision:NAME or package.module:callable (default: digits ViT)")
    parser.add_argument("--checkpoint", type=Path, help="weights for a timm or torchvision model")
    parser.add_argument("--pretrained", action="store_true", help="download the model's pretrained weights")
    parser.add_argument("--data", type=Path, help=".safetensors with images (N, C, H, W) and labels (N,)")
    parser.add_argument("--max-examples", type=int, help="use only the first N images")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--captum-methods", type=captum_methods_argument, default=[], metavar="NAMES",
                        help="further rows: Captum layer methods, comma-separated, e.g. LayerConductance")  # fmt: skip
    parser.add_argument("--n-steps", type=int, default=cnp.PAPER_QUADRATURE["n_steps"])
    parser.add_argument("--method", default=cnp.PAPER_QUADRATURE["method"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the table and every path as JSON")
    args = parser.parse_args()

    if args.model is None:
        model = digits.digits_vit(log=lambda line: print(line, file=sys.stderr))
    else:
        model = load_model(args.model, args.checkpoint, args.pretrained)
    if args.data is None:
        _, (images, labels) = digits.digits_split()
    else:
        images, labels = load_safetensors_data(args.data)
    if args.max_examples is not None:
        images, labels = images[: args.max_examples], labels[: args.max_examples]

    start = time.perf_counter()
    table = paper_table(
        model, images, labels, methods=[*args.methods, *args.captum_methods], n_steps=args.n_steps, method=args.method,
        batch_size=args.batch_size, n_bootstrap=args.n_bootstrap, seed=args.seed,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    print(f"{args.model or 'digits ViT'} on {len(images)} images, n_steps={args.n_steps}, method={args.method}, "
          f"95% bootstrap intervals ({elapsed:.0f} s):\n")  # fmt: skip
    print(table.to_markdown())
    if args.out is not None:
        args.out.write_text(json.dumps(table.to_json()))


if __name__ == "__main__":
    main()
