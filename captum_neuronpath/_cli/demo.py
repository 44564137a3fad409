"""``neuronpath demo``: its arguments; the experiments themselves are :func:`captum_neuronpath._demo.run_demo`."""

import argparse
from pathlib import Path

from captum_neuronpath._cli.arguments import paper_experiment_arguments, positive_int, subcommand
from captum_neuronpath._cli.errors import CommandLineError


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subcommand(commands, "demo", help="the paper's experiments on the embedded digits ViT, offline")
    parser.add_argument(
        "--out", type=Path, default=Path("neuronpath-demo"), help="folder for results.json and figures/"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None,
        help="where the trained weights are cached (default: $CAPTUM_NEURONPATH_CACHE or ~/.cache/captum_neuronpath)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=positive_int, default=40, help="training epochs of the digits ViT")
    parser.add_argument("--max-examples", type=positive_int, default=None, help="use only the first N test images")
    paper_experiment_arguments(parser, batch_size=64, captum_note=", compared with the greedy scores too")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from captum_neuronpath._demo import run_demo

    if args.out.exists() and not args.out.is_dir():
        raise CommandLineError(f"--out {args.out} exists and is not a folder")
    run_demo(
        args.out, args.cache_dir, args.epochs, args.max_examples, args.n_steps, args.method, args.batch_size,
        args.n_bootstrap, args.seed, args.captum_methods,
    )  # fmt: skip
