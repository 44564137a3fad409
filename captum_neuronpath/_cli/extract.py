"""``neuronpath extract``: its arguments; the job itself is :mod:`captum_neuronpath._extract`."""

import argparse
import os
from pathlib import Path

from captum.attr._utils.approximation_methods import SUPPORTED_METHODS

from captum_neuronpath._cli.arguments import device, non_negative_int, positive_int, subcommand

EPILOG = """\
Running the same command again resumes (after a crash, kill -9, a stop signal or a full disk): the
final FILE equals an uninterrupted run's on the data as it is now, inputs that changed since computed
again. Changed settings, another model or other library versions are refused (--overwrite,
--allow-version-change). The first image that cannot be read stops the run, naming it, unless
--skip-unreadable; FILE.lock refuses a second command on the same FILE; a pass that runs out of memory
is retried with half the rows per pass. The command-line page of the documentation says more of each.

exit statuses:
  0 done; 1 a failure during the run (an unreadable input, a full disk, a read-only file system), one
  line naming the file and the cause; 2 a mistake in the command line or in what it names, one line;
  128 + N on the stop signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), after dropping the batch in
  flight. --debug or NEURONPATH_DEBUG=1 adds the traceback.

several processes (one machine):
  torchrun --nproc_per_node 4 -m captum_neuronpath extract --model timm:vit_base_patch16_224 \\
      --pretrained --data imagenet/val --out paths.jsonl --device cuda

several machines (run on each; DATA and FILE on a file system all of them share):
  torchrun --nnodes 2 --nproc_per_node 8 --rdzv_id paths --rdzv_backend c10d \\
      --rdzv_endpoint HOST:29500 -m captum_neuronpath extract ... --out /shared/paths.jsonl

  Each process takes every WORLD_SIZE-th batch and writes FILE.rankR; rank 0 merges the shards into
  FILE. A killed distributed run resumes with any number of processes.
"""


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subcommand(
        commands, "extract", epilog=EPILOG,
        help="neuron paths of every image or token sequence of a data set, to a resumable JSON Lines file",
        description="Locate the neuron path of every input of DATA and write one JSON line per input to FILE.",
    )  # fmt: skip
    add = parser.add_argument
    add("--model", required=True, help="timm:NAME, torchvision:NAME or package.module:callable")
    add("--data", required=True, type=Path, help="an ImageFolder directory, a .safetensors file of images, "
        "or a .jsonl file of token sequences")  # fmt: skip
    add("--out", required=True, type=Path, metavar="FILE", help="the JSON Lines output")
    add("--checkpoint", type=Path, metavar="WEIGHTS", help="weights to load: safetensors or a torch state dict")
    add("--pretrained", action="store_true", help="timm's or torchvision's pretrained weights")
    add("--transform", metavar="CALLABLE", help="package.module:callable returning the image folder's transform "
        "(default: timm's data config for the model as built)")  # fmt: skip
    add("--n-steps", type=positive_int, default=3, metavar="N", help="quadrature nodes (paper: 20)")
    add("--method", default="gausslegendre", choices=SUPPORTED_METHODS, metavar="M",
        help=f"Captum quadrature, one of {', '.join(SUPPORTED_METHODS)} (paper: riemann_left)")  # fmt: skip
    add("--batch-size", type=positive_int, default=8, metavar="B", help="inputs per attribution call")
    add("--top-k", type=positive_int, default=1, metavar="K", help="neurons kept per layer")
    add("--device", type=device, metavar="D", help="torch device (default: cuda if available, else cpu)")
    add("--target", choices=("label", "predicted"), default="label", help="explain the label or the prediction")
    add("--layers", metavar="PATTERN", help="the neuron sites: module names as model.named_modules() gives them, "
        "* for one name component (e.g. 'blocks.*.mlp.act'; 'input:blocks.*.mlp.fc2' for each module's input) "
        "(default: the model family's MLP neurons)")  # fmt: skip
    add("--token", type=token_spec, metavar="SPEC", help="the token set of image models: cls, an integer position, "
        "A:B or all (default: the token the model family's head reads)")  # fmt: skip
    add("--layer-scores", type=positive_int, metavar="N", help="also write the N best candidates of each layer")
    add("--precision", choices=("float32", "bfloat16"), default="float32", help="what the model's layers run in: "
        "bfloat16 under torch.autocast on the device (the library's own sums, JAS and scores stay "
        "float32)")  # fmt: skip
    add("--workers", type=non_negative_int, metavar="N", help="worker processes that read and decode the images of "
        f"an image folder (0: the main process; default: one per spare core, at most 4, here {default_workers()}; "
        "0 for tensor and text data)")  # fmt: skip
    add("--skip-unreadable", action="store_true", help="record an error for an input that cannot be read and go on")
    add("--allow-version-change", action="store_true", help="resume a FILE written under other library versions")
    add("--class-names", type=Path, metavar="NAMES", help="a text file of class names, one a line, for FILE.meta.json")
    add("--overwrite", action="store_true", help="discard an existing FILE and start afresh")
    parser.set_defaults(handler=run)
    return parser


def default_workers() -> int:
    """One worker per spare core of this process's share of the machine, at most 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(4, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1))


def token_spec(text: str) -> str:
    """A ``--token`` SPEC, checked; the job reads it with :func:`~captum_neuronpath._extract.sites.token_from_spec`."""
    from captum_neuronpath._extract.sites import token_from_spec

    try:
        token_from_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def run(args: argparse.Namespace) -> None:
    from captum_neuronpath._extract.command import run as run_extract

    run_extract(args)
