"""The ``neuronpath`` command line (also ``python -m captum_neuronpath``)."""

import argparse
from pathlib import Path
from typing import List, Optional

from captum_neuronpath import extract
from captum_neuronpath._demo import captum_methods_argument, run_demo
from captum_neuronpath._utils.quadrature import PAPER_QUADRATURE


def demo(args: argparse.Namespace) -> None:
    run_demo(
        args.out, args.cache_dir, args.epochs, args.max_examples, args.n_steps, args.method, args.batch_size,
        args.n_bootstrap, args.seed, args.captum_methods,
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuronpath", description="Influential neuron paths in Vision Transformers.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="the paper's experiments on the embedded digits ViT, offline")
    run.add_argument("--out", type=Path, default=Path("neuronpath-demo"), help="folder for results.json and figures/")
    run.add_argument("--cache-dir", type=Path, default=None, help="where the trained weights are cached")
    run.add_argument("--epochs", type=int, default=40, help="training epochs of the digits ViT")
    run.add_argument("--max-examples", type=int, default=None, help="use only the first N test images")
    run.add_argument("--n-steps", type=int, default=PAPER_QUADRATURE["n_steps"], help="quadrature nodes (paper: 20)")
    run.add_argument("--method", default=PAPER_QUADRATURE["method"], help="quadrature method (paper: riemann_left)")
    run.add_argument("--batch-size", type=int, default=64, help="images per attribution call")
    run.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    run.add_argument("--seed", type=int, default=0, help="seed of the random null and the bootstrap")
    run.add_argument("--captum-methods", type=captum_methods_argument, default=[], metavar="NAMES",
                     help="further rows: Captum layer methods, comma-separated (e.g. "
                     "LayerIntegratedGradients,LayerConductance), compared with the greedy scores too")  # fmt: skip
    run.set_defaults(handler=demo)
    extract.add_parser(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.handler(args)
    return 0
