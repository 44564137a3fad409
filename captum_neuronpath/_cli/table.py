"""``neuronpath table``: the paper's Table 1 (JAS, removal and enhancement accuracy deviation) on any model.

Offline default: the digits ViT (trained once, then cached) on its test images.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from captum_neuronpath._cli.arguments import paper_experiment_arguments, positive_int, subcommand
from captum_neuronpath._cli.errors import CommandLineError
from captum_neuronpath.experiments import METHODS, paper_table

EPILOG = """\
examples:
  neuronpath table                                           # the digits ViT, offline
  neuronpath table --captum-methods LayerIntegratedGradients,LayerConductance
  neuronpath table --model timm:vit_base_patch16_224 --pretrained --data imagenet_val_subset.safetensors
"""


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subcommand(
        commands, "table", help="the paper's Table 1 on any model and labelled image set",
        description="The paper's Table 1 (JAS, removal and enhancement accuracy deviation) on any model.",
        epilog=EPILOG,
    )  # fmt: skip
    parser.add_argument("--model", help="timm:NAME, torchvision:NAME or package.module:callable (default: digits ViT)")
    parser.add_argument("--checkpoint", type=Path, metavar="WEIGHTS", help="weights to load into --model")
    parser.add_argument("--pretrained", action="store_true", help="timm's or torchvision's pretrained weights")
    parser.add_argument(
        "--data", type=Path,
        help=".safetensors with images (N, C, H, W) and labels (N,) (default: the digits test split)",
    )  # fmt: skip
    parser.add_argument("--max-examples", type=positive_int, help="use only the first N images")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="NAME",
                        help=f"rows of the table, among {', '.join(METHODS)}")  # fmt: skip
    paper_experiment_arguments(parser, batch_size=32)
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the table and every path as JSON")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from captum_neuronpath import digits
    from captum_neuronpath._cli.loading import load_model, load_safetensors_data

    if args.model is None and (args.checkpoint is not None or args.pretrained):
        raise CommandLineError("--checkpoint and --pretrained need --model")
    try:
        if args.model is None:
            model = digits.digits_vit(log=lambda line: print(line, file=sys.stderr))
        else:
            model = load_model(args.model, args.checkpoint, args.pretrained)
        images, labels = digits.digits_split()[1] if args.data is None else load_safetensors_data(args.data)
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise CommandLineError(str(error)) from error
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
