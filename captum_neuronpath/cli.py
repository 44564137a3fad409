"""The ``neuronpath`` command line (also ``python -m captum_neuronpath``)."""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

from captum_neuronpath import digits
from captum_neuronpath.experiments import paper_table
from captum_neuronpath.metrics import class_similarity, most_similar_classes, neuron_frequency


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def demo(args: argparse.Namespace) -> Dict[str, object]:
    """Train or load the digits ViT, run the paper's table and class analyses on its test split."""
    torch.manual_seed(args.seed)
    model = digits.digits_vit(args.cache_dir, epochs=args.epochs, log=_log)
    _, (images, labels) = digits.digits_split()
    if args.max_examples is not None:
        images, labels = images[: args.max_examples], labels[: args.max_examples]
    test_accuracy = digits.accuracy(model, images, labels)
    print(f"digits ViT: test accuracy {test_accuracy:.3f} on {len(images)} images", flush=True)

    table = paper_table(
        model, images, labels, n_steps=args.n_steps, method=args.method, batch_size=args.batch_size,
        n_bootstrap=args.n_bootstrap, seed=args.seed,
    )  # fmt: skip
    markdown = table.to_markdown()
    print(f"\nPaper Table 1 analog (n_steps={args.n_steps}, method={args.method}, 95% bootstrap intervals):\n")
    print(markdown)

    frequency = neuron_frequency(table.paths["Neuron Path"], labels, num_channels=256, num_classes=10)
    similarity = class_similarity(frequency)
    nearest = most_similar_classes(similarity, k=1)[:, 0]
    print("\nInter-class: most similar class by neuron-path frequency")
    print("  " + ", ".join(f"{c}->{int(n)} ({float(similarity[c, n]):.2f})" for c, n in enumerate(nearest)))

    results = dict(
        table.to_json(),
        test_accuracy=test_accuracy,
        markdown=markdown,
        labels=labels.tolist(),
        intra_class_frequency=frequency.tolist(),
        inter_class_similarity=similarity.tolist(),
        most_similar_class=nearest.tolist(),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(results))
    partial.replace(path)
    print(f"\nwrote {path}")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuronpath", description="Influential neuron paths in Vision Transformers.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="the paper's experiments on the embedded digits ViT, offline")
    run.add_argument("--out", type=Path, default=Path("neuronpath-demo"), help="folder for results.json")
    run.add_argument("--cache-dir", type=Path, default=None, help="where the trained weights are cached")
    run.add_argument("--epochs", type=int, default=40, help="training epochs of the digits ViT")
    run.add_argument("--max-examples", type=int, default=None, help="use only the first N test images")
    run.add_argument("--n-steps", type=int, default=20, help="quadrature nodes (paper: 20)")
    run.add_argument("--method", default="riemann_left", help="Captum quadrature method (paper: riemann_left)")
    run.add_argument("--batch-size", type=int, default=64, help="images per attribution call")
    run.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    run.add_argument("--seed", type=int, default=0, help="seed of the random null and the bootstrap")
    run.set_defaults(handler=demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.handler(args)
    return 0
