"""The ``neuronpath`` command line (also ``python -m captum_neuronpath``).

A mistake in a command line, or in what it names (a model, a data file, an output that
another run holds), is reported in one line on stderr with exit status 2, without a
traceback; ``--debug`` or the environment variable ``NEURONPATH_DEBUG=1`` adds the
traceback, for bug reports. Ctrl-C ends a command with exit status 130.
"""

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional

from captum.attr._utils.approximation_methods import SUPPORTED_METHODS

from captum_neuronpath import _extract, _report
from captum_neuronpath._demo import captum_methods_argument, run_demo
from captum_neuronpath._extract.command import positive_int
from captum_neuronpath._loading import CommandLineError
from captum_neuronpath._utils.quadrature import PAPER_QUADRATURE

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def demo(args: argparse.Namespace) -> None:
    if args.out.exists() and not args.out.is_dir():
        raise CommandLineError(f"--out {args.out} exists and is not a folder")
    run_demo(
        args.out, args.cache_dir, args.epochs, args.max_examples, args.n_steps, args.method, args.batch_size,
        args.n_bootstrap, args.seed, args.captum_methods,
    )  # fmt: skip


def _seed(text: str) -> int:
    """An argparse type: a seed torch accepts, 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer below 2**63, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuronpath", description="Influential neuron paths in Vision Transformers.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="the paper's experiments on the embedded digits ViT, offline")
    run.add_argument("--out", type=Path, default=Path("neuronpath-demo"), help="folder for results.json and figures/")
    run.add_argument("--cache-dir", type=Path, default=None, help="where the trained weights are cached")
    run.add_argument("--epochs", type=positive_int, default=40, help="training epochs of the digits ViT")
    run.add_argument("--max-examples", type=positive_int, default=None, help="use only the first N test images")
    run.add_argument(
        "--n-steps", type=positive_int, default=PAPER_QUADRATURE["n_steps"], help="quadrature nodes (paper: 20)"
    )
    run.add_argument(
        "--method", default=PAPER_QUADRATURE["method"], choices=SUPPORTED_METHODS, metavar="M",
        help=f"Captum quadrature, one of {', '.join(SUPPORTED_METHODS)} (paper: riemann_left)",
    )  # fmt: skip
    run.add_argument("--batch-size", type=positive_int, default=64, help="images per attribution call")
    run.add_argument("--n-bootstrap", type=positive_int, default=1000, help="bootstrap resamples per interval")
    run.add_argument("--seed", type=_seed, default=0, help="seed of the random null and the bootstrap")
    run.add_argument("--captum-methods", type=captum_methods_argument, default=[], metavar="NAMES",
                     help="further rows: Captum layer methods, comma-separated (e.g. "
                     "LayerIntegratedGradients,LayerConductance), compared with the greedy scores too")  # fmt: skip
    run.set_defaults(handler=demo)
    _extract.add_parser(commands)
    _report.add_parser(commands)
    for command in commands.choices.values():
        command.add_argument(
            "--debug", action="store_true", help="print the traceback of an error (also NEURONPATH_DEBUG=1)"
        )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("NEURONPATH_DEBUG", "") not in ("", "0")
    try:
        args.handler(args)
    except (CommandLineError, OSError) as error:
        if debug:
            traceback.print_exc()
        print(f"neuronpath {args.command}: error: {error}", file=sys.stderr, flush=True)
        return USAGE_ERROR
    except KeyboardInterrupt as interrupt:
        if debug:
            traceback.print_exc()
        print(f"neuronpath {args.command}: {interrupt or 'interrupted'}", file=sys.stderr, flush=True)
        return INTERRUPTED
    return 0
