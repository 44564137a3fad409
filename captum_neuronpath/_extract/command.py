"""The ``neuronpath extract`` command: its arguments, then set up, explain every input, merge.

Running the same command again resumes: finished inputs are skipped and a last line cut
short by a crash is discarded, so after any number of ``kill -9`` and resumes ``FILE``
equals an uninterrupted run's. Settings that change the records (everything but
``--overwrite``) must match ``FILE.meta.json``; otherwise the command refuses to touch
``FILE``. Under ``torchrun`` each process writes its own shard and rank 0 merges them into
the file one process writes; a resumed run may use any number of processes.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Dict

import torch
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._extract.description import describe_paths, record_description
from captum_neuronpath._extract.distributed import barrier, on_rank_zero, process_group, resolve_device
from captum_neuronpath._extract.explain import Job, explain_all, image_probabilities, next_token_probabilities
from captum_neuronpath._extract.fingerprint import data_fingerprint, model_fingerprint
from captum_neuronpath._extract.store import (
    OutputLock,
    count_records,
    merge_records,
    prepare_output,
    read_records,
    record_run,
    shard_path,
)
from captum_neuronpath._loading import CommandLineError, Inputs, UnreadableImage, load_inputs, load_model
from captum_neuronpath._models import mlp_layers, vit_mlp_layers, vit_readout_token

EPILOG = """\
resuming:
  Run the same command again (after a crash, kill -9 or Ctrl-C): finished inputs are
  skipped, a line cut short by a crash is dropped, and the final FILE equals an
  uninterrupted run's. Changed settings, another model (its weights' fingerprint) or other
  data (its fingerprint) are refused; pass --overwrite to start afresh or choose another
  --out. A run that wrote no record yet is simply started again.

one command per FILE:
  FILE.lock holds the pid and host of the command writing FILE; a second command on the
  same FILE is refused while the first runs.

errors:
  Mistakes are reported in one line (exit status 2); --debug or NEURONPATH_DEBUG=1 adds
  the traceback. Ctrl-C exits with status 130.

several processes (one machine):
  torchrun --nproc_per_node 4 -m captum_neuronpath extract --model timm:vit_base_patch16_224 \\
      --pretrained --data imagenet/val --out paths.jsonl --device cuda

several machines (run on each; DATA and FILE on a file system all of them share):
  torchrun --nnodes 2 --nproc_per_node 8 --rdzv_id paths --rdzv_backend c10d \\
      --rdzv_endpoint HOST:29500 -m captum_neuronpath extract ... --out /shared/paths.jsonl

  Each process takes every WORLD_SIZE-th batch and writes FILE.rankR; rank 0 merges the
  shards into FILE when all are done. CPU processes use gloo, CUDA ones nccl with the GPU
  cuda:LOCAL_RANK. A killed distributed run resumes with any number of processes.
"""


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``extract`` subcommand to ``commands`` (the ``neuronpath`` subparsers)."""
    parser = commands.add_parser(
        "extract",
        help="neuron paths of every image or token sequence of a data set, to a resumable JSON Lines file",
        description="Locate the neuron path of every input of DATA and write one JSON line per input to FILE.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="timm:NAME, torchvision:NAME or package.module:callable")
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="an ImageFolder directory, a .safetensors file of images, or a .jsonl file of token sequences",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="the JSON Lines output")
    parser.add_argument(
        "--checkpoint", type=Path, metavar="WEIGHTS", help="weights to load: safetensors or a torch state dict"
    )
    parser.add_argument("--pretrained", action="store_true", help="timm's or torchvision's pretrained weights")
    parser.add_argument(
        "--transform", metavar="CALLABLE", help="package.module:callable returning the image folder's transform"
    )
    parser.add_argument(
        "--n-steps", type=positive_int, default=3, metavar="N", help="quadrature nodes (default 3; paper: 20)"
    )
    parser.add_argument(
        "--method", default="gausslegendre", choices=SUPPORTED_METHODS, metavar="M",
        help=f"Captum quadrature, one of {', '.join(SUPPORTED_METHODS)} (default gausslegendre; paper: riemann_left)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="B", help="inputs per attribution call")
    parser.add_argument("--top-k", type=positive_int, default=1, metavar="K", help="neurons kept per layer")
    parser.add_argument(
        "--device", type=_device, metavar="D", help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--target", choices=("label", "predicted"), default="label", help="explain the label or the prediction"
    )
    parser.add_argument(
        "--layer-scores", type=positive_int, metavar="N", help="also write the N best candidates of each layer"
    )
    parser.add_argument("--overwrite", action="store_true", help="discard an existing FILE and start afresh")
    parser.add_argument(
        "--class-names", type=Path, metavar="NAMES", help="a text file of class names, one a line, for FILE.meta.json"
    )
    parser.set_defaults(handler=run)
    return parser


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _device(text: str) -> torch.device:
    """An argparse type: a torch device this machine has."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine")
    return device


def run(args: argparse.Namespace) -> None:
    """The ``extract`` command: set up and check everything, lock the output, explain, merge.

    Mistakes in the command line or in what it names raise :class:`CommandLineError`
    before anything is written; Ctrl-C raises :class:`KeyboardInterrupt` saying how far
    the run got.
    """
    device = resolve_device(args.device)
    with process_group(device) as (rank, world_size):
        try:
            job = setup(args, device, rank)
        except (ValueError, TypeError, OSError) as error:
            raise CommandLineError(str(error)) from error
        lock = OutputLock(args.out)
        try:
            try:
                on_rank_zero(rank, world_size, lambda: _take_output(lock, args, job))
            except (ValueError, TypeError, OSError) as error:
                raise CommandLineError(str(error)) from error
            _explain_and_merge(args, job, device, rank, world_size)
        finally:
            lock.release()


def _take_output(lock: OutputLock, args: argparse.Namespace, job: Job) -> None:
    """Rank 0: lock ``--out``, then start it afresh or check that it continues this run."""
    lock.acquire()
    description = describe_paths(job.model, job.layers, job.token, job.inputs, args.class_names)
    fingerprints = {"model": model_fingerprint(job.model), "data": data_fingerprint(args.data, job.inputs.files)}
    prepare_output(args.out, job.settings, fingerprints, args.overwrite)
    record_description(args.out, description)


def _explain_and_merge(args: argparse.Namespace, job: Job, device: torch.device, rank: int, world_size: int) -> None:
    """Explain the unfinished inputs; rank 0 merges the shards and reports the throughput."""
    done = {index for index, _ in read_records(args.out)[0]}
    started = time.perf_counter()
    records_file = args.out if world_size == 1 else shard_path(args.out, rank)
    try:
        explain_all(job, records_file, done, rank, world_size)
    except KeyboardInterrupt:
        finished = count_records(args.out)
        raise KeyboardInterrupt(
            f"interrupted after {finished} of {len(job.inputs)} inputs; run the same command again to resume"
        ) from None
    except UnreadableImage as error:
        raise CommandLineError(f"{error}; records so far are kept") from error
    if world_size > 1:
        barrier(device)
    if rank == 0:
        total = merge_records(args.out)
        elapsed = time.perf_counter() - started
        new = total - len(done)
        rate = new / max(elapsed, 1e-9)
        threads = torch.get_num_threads()
        unit = "sequences" if job.inputs.text else "images"
        record_run(
            args.out,
            {
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "new_inputs": new,
                "seconds": round(elapsed, 3),
                "images_per_second": round(rate, 3),
                "processes": world_size,
                "threads_per_process": threads,
                "device": str(device),
            },
        )
        print(
            f"{args.out}: {total} of {len(job.inputs)} inputs done; {new} new in {elapsed:.1f} s "
            f"({rate:.2f} {unit}/s over {world_size} process(es), {threads} thread(s) each)",
            file=sys.stderr,
            flush=True,
        )


def setup(args: argparse.Namespace, device: torch.device, rank: int) -> Job:
    """Load the model and the inputs; check that the model takes the inputs and knows their labels.

    Images are explained at a Vision Transformer's MLP layers and readout token; token
    sequences (a ``.jsonl`` file) at a causal language model's MLP layers, each at its
    last real token.
    """
    if args.checkpoint is not None and args.pretrained:
        raise ValueError("pass --checkpoint or --pretrained, not both")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a model with random weights is the same in every process and every resume
        model = load_model(args.model, args.checkpoint, args.pretrained).to(device)
    inputs = load_inputs(args.data, args.transform, model)
    if inputs.text:
        forward, layers, token = next_token_probabilities(model), mlp_layers(model), None
        num_classes = _probe_text(args, model, inputs, device)
    else:
        forward, layers, token = image_probabilities(model), vit_mlp_layers(model), vit_readout_token(model)
        num_classes = _probe(args, model, inputs, device)
    if args.target == "label":
        _check_labels(args.data, inputs.labels, num_classes)
    random_weights = args.checkpoint is None and not args.pretrained
    if rank == 0 and random_weights and args.model.partition(":")[0] in ("timm", "torchvision"):
        print(f"note: {args.model} has random weights; pass --pretrained or --checkpoint", file=sys.stderr)
    return Job(model, device, forward, layers, token, inputs, settings_of(args, device, len(inputs)))


def _probe(args: argparse.Namespace, model: Module, inputs: Inputs, device: torch.device) -> int:
    """One forward pass on the first input: the number of classes, or the model's own error, reported."""
    if len(inputs) == 0:
        raise ValueError(f"--data {args.data} holds no inputs")
    image = inputs.dataset[0][0][None].to(device)
    try:
        with torch.no_grad():
            output = model(image)
    except Exception as error:  # whatever the model raises, its own message says why
        raise ValueError(
            f"--model {args.model} cannot take the inputs of --data {args.data} (the first has shape "
            f"{tuple(image.shape)}); the model says: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(output, Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"--model {args.model} must return class scores (batch, classes), got {shape}")
    return output.shape[1]


def _probe_text(args: argparse.Namespace, model: Module, inputs: Inputs, device: torch.device) -> int:
    """One forward pass on the longest sequence: the vocabulary size, or the model's own error, reported."""
    if len(inputs) == 0:
        raise ValueError(f"--data {args.data} holds no inputs")
    lengths = [len(ids) for ids, _ in inputs.dataset]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    input_ids, _, mask = inputs.collate([inputs.dataset[longest]])
    try:
        with torch.no_grad():
            output = model(input_ids.to(device), attention_mask=mask.to(device))
    except Exception as error:  # whatever the model raises, its own message says why
        raise ValueError(
            f"--model {args.model} cannot take the token sequences of --data {args.data} (the longest, input "
            f"{longest}, has {lengths[longest]} tokens); the model says: {type(error).__name__}: {error}"
        ) from error
    logits = getattr(output, "logits", None)
    if not isinstance(logits, Tensor) or logits.dim() != 3:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(output).__name__
        raise ValueError(
            f"--model {args.model} must be a causal language model returning logits (batch, positions, "
            f"vocabulary) for token sequences, got {shape}"
        )
    vocabulary = logits.shape[-1]
    for index, (ids, _) in enumerate(inputs.dataset):
        if int(ids.max()) >= vocabulary:
            raise ValueError(
                f"--data {args.data}: input {index} holds token id {int(ids.max())}, outside the model's "
                f"vocabulary of {vocabulary} (0 to {vocabulary - 1})"
            )
    return vocabulary


def _check_labels(data: Path, labels: Tensor, num_classes: int) -> None:
    """Refuse labels that are not classes of the model (with ``--target label`` they are the targets)."""
    outside = ((labels < 0) | (labels >= num_classes)).nonzero()[:, 0]
    if len(outside):
        examples = ", ".join(f"label {int(labels[i])} at index {int(i)}" for i in outside[:3])
        raise ValueError(
            f"--data {data}: {len(outside)} of {len(labels)} labels are not classes of the model, which has "
            f"{num_classes} (0 to {num_classes - 1}): {examples}{', ...' if len(outside) > 3 else ''}; "
            "fix the labels or pass --target predicted"
        )


def settings_of(args: argparse.Namespace, device: torch.device, num_inputs: int) -> Dict[str, object]:
    """What determines the records: compared with ``FILE.meta.json`` before resuming."""
    return {
        "model": args.model,
        "checkpoint": None if args.checkpoint is None else str(args.checkpoint.resolve()),
        "pretrained": args.pretrained,
        "data": str(args.data.resolve()),
        "transform": args.transform,
        "num_inputs": num_inputs,
        "n_steps": args.n_steps,
        "method": args.method,
        "top_k": args.top_k,
        "target": args.target,
        "layer_scores": args.layer_scores,
        "batch_size": args.batch_size,  # fixes which inputs share a batch, hence the last bits of jas
        "device": device.type,
    }
