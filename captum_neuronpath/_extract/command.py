"""The ``neuronpath extract`` job: set up, explain every input, merge; resumable (docs/command_line.md)."""

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import torch
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._cli.errors import CommandLineError, Interrupted, RunFailure, describe
from captum_neuronpath._cli.extract import default_workers
from captum_neuronpath._cli.loading import Inputs, UnreadableImage, load_inputs, load_model
from captum_neuronpath._extract import store
from captum_neuronpath._extract.description import describe_paths, model_fingerprint
from captum_neuronpath._extract.distributed import on_rank_zero, process_group, resolve_device
from captum_neuronpath._extract.explain import Job, explain_all
from captum_neuronpath._extract.sites import call_order, check_call_order, select_layers, token_from_spec
from captum_neuronpath._models import mlp_layers, readout_token


def run(args: argparse.Namespace) -> None:
    """The ``extract`` command: a mistake raises :class:`CommandLineError` before anything is written, a
    failure during the run :class:`RunFailure` or ``OSError``, a stop signal :class:`Interrupted`."""
    device = resolve_device(args.device)
    with process_group(device) as (rank, world_size), contextlib.ExitStack() as held:
        try:
            job = setup(args, device, rank)
        except (ValueError, TypeError, OSError) as error:
            raise CommandLineError(str(error)) from error
        try:
            on_rank_zero(rank, world_size, lambda: _take_output(held, args, job))
        except (ValueError, TypeError) as error:
            raise CommandLineError(str(error)) from error
        _explain_and_merge(args, job, device, rank, world_size)


def _take_output(held: contextlib.ExitStack, args: argparse.Namespace, job: Job) -> None:
    """Rank 0: lock ``--out`` while ``held`` lasts, then start it afresh or check that it continues this run."""
    held.enter_context(store.output_lock(args.out))
    description = describe_paths(job.model, job.layers, job.token, job.inputs, args.class_names)
    fingerprints = {"model": model_fingerprint(job.model)}
    store.prepare_output(args.out, job.settings, fingerprints, description, args.overwrite, args.allow_version_change)
    if not store.read_records(args.out)[0]:
        return
    num_inputs = len(job.inputs)
    kept, changed, tried_again = store.drop_changed_records(
        args.out, job.inputs.identity, num_inputs, job.settings["batch_size"], args.skip_unreadable
    )
    print(
        f"{args.out}: resuming with {kept} of {num_inputs} inputs done"
        + (f"; {changed} changed or vanished since" if changed else "")
        + (f"; {tried_again} unreadable before, tried again" if tried_again else "")
        + f"; {num_inputs - kept} to compute", file=sys.stderr, flush=True,
    )  # fmt: skip


def _explain_and_merge(args: argparse.Namespace, job: Job, device: torch.device, rank: int, world_size: int) -> None:
    """Explain the unfinished inputs; rank 0 merges the shards and reports the throughput."""
    done = {index for index, _ in store.read_records(args.out)[0]}
    started = time.perf_counter()
    try:
        explain_all(job, args.out if world_size == 1 else store.shard_path(args.out, rank), done, rank, world_size)
    except KeyboardInterrupt as interrupt:
        raise Interrupted(
            f"interrupted after {store.count_records(args.out)} of {len(job.inputs)} inputs; run the same command "
            "again to resume",
            getattr(interrupt, "signum", signal.SIGINT),
        ) from None
    except UnreadableImage as error:  # a ValueError too: first
        raise RunFailure(
            f"{error}; records so far are kept: fix or remove the file and run the same command again, "
            "or pass --skip-unreadable"
        ) from error
    except (ValueError, TypeError) as error:  # the engine refuses the sites or the token set
        raise CommandLineError(f"{error}; check --layers and --token") from error
    except OSError as error:
        raise RunFailure(
            f"{describe(error)}; records so far are kept: run the same command again once this is fixed"
        ) from error
    if world_size > 1:
        torch.distributed.barrier()
    if rank == 0:
        total = store.merge_records(args.out)
        unreadable = sum("error" in json.loads(line) for _, line in store.read_records(args.out)[0])
        elapsed = time.perf_counter() - started
        new = total - len(done)
        rate = new / max(elapsed, 1e-9)
        threads = torch.get_num_threads()
        store.record_run(args.out, {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "num_inputs": len(job.inputs), "new_inputs": new,
            "seconds": round(elapsed, 3), "images_per_second": round(rate, 3), "processes": world_size,
            "threads_per_process": threads, "device": str(device),
            "internal_batch_size": job.rows_per_pass,  # None: every pass ran all nodes at once
        })  # fmt: skip
        skipped = f" ({unreadable} unreadable: error records)" if unreadable else ""
        print(f"{args.out}: {total} of {len(job.inputs)} inputs done{skipped}; {new} new in {elapsed:.1f} s "
              f"({rate:.2f} {'sequences' if job.inputs.text else 'images'}/s over {world_size} process(es), "
              f"{threads} thread(s) each)", file=sys.stderr, flush=True)  # fmt: skip


def setup(args: argparse.Namespace, device: torch.device, rank: int) -> Job:
    """Load the model and the inputs; check that the model takes the inputs and knows their labels."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a model with random weights is the same in every process and every resume
        model = load_model(args.model, args.checkpoint, args.pretrained).to(device)
    inputs = load_inputs(args.data, args.transform, model)
    layers, names = select_layers(model, args.layers) if args.layers else (_family(args, mlp_layers, model), None)
    if inputs.text:
        if args.token is not None:
            raise ValueError("--token applies to images; each token sequence is explained at its last token")
        token = None
    else:
        token = token_from_spec(args.token) if args.token else _family(args, readout_token, model)
    with call_order(layers) as order:
        num_classes = _probe(args, model, inputs, device)
    if names is not None:
        check_call_order(args.layers, names, order)
    if args.target == "label":
        _check_labels(args.data, inputs.labels, num_classes)
    random_weights = args.checkpoint is None and not args.pretrained
    if rank == 0 and random_weights and args.model.startswith(("timm:", "torchvision:")):
        print(f"note: {args.model} has random weights; pass --pretrained or --checkpoint", file=sys.stderr)
    workers = args.workers if args.workers is not None else default_workers() if inputs.files is not None else 0
    return Job(model, device, layers, token, inputs, settings_of(args, device), args.skip_unreadable, workers)


def _family(args: argparse.Namespace, find: Callable[[Module], object], model: Module) -> object:
    """``find(model)`` (the family's sites or readout token), or an error that names the options to pass."""
    try:
        return find(model)
    except TypeError as error:
        raise ValueError(f"--model {args.model}: {error} (here: --layers PATTERN and --token SPEC)") from error


def _probe(args: argparse.Namespace, model: Module, inputs: Inputs, device: torch.device) -> int:
    """One forward pass on the first readable image or the longest token sequence: the number of classes
    (the vocabulary size), or the model's own error, reported."""
    example = inputs.example(device)
    if example is None:
        raise ValueError(f"--data {args.data} holds no inputs{' that can be read' if len(inputs) else ''}")
    index, batch, keywords = example
    if inputs.text:
        what = f"the token sequences of --data {args.data} (the longest, input {index}, {batch.shape[1]} tokens)"
        returns = "be a causal language model returning logits (batch, positions, vocabulary) for token sequences"
    else:
        what = f"the inputs of --data {args.data} (the first has shape {tuple(batch.shape)})"
        returns = "return class scores (batch, classes)"
    try:
        with torch.no_grad():
            output = model(batch, **keywords)
    except Exception as error:  # whatever the model raises, its own message says why
        raise ValueError(
            f"--model {args.model} cannot take {what}; the model says: {type(error).__name__}: {error}"
        ) from error
    scores = getattr(output, "logits", None) if inputs.text else output
    if not isinstance(scores, Tensor) or scores.dim() != (3 if inputs.text else 2):
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(output).__name__
        raise ValueError(f"--model {args.model} must {returns}, got {shape}")
    classes = scores.shape[-1]
    for index, (ids, _) in enumerate(inputs.dataset if inputs.text else ()):
        if int(ids.max()) >= classes:
            raise ValueError(
                f"--data {args.data}: input {index} holds token id {int(ids.max())}, outside the model's "
                f"vocabulary of {classes} (0 to {classes - 1})"
            )
    return classes


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


def settings_of(args: argparse.Namespace, device: torch.device) -> Dict[str, object]:
    """What determines the records: compared with ``FILE.meta.json`` before resuming. ``batch_size`` fixes
    which inputs share a batch, hence the last bits of jas."""
    settings = {key: getattr(args, key) for key in _SETTINGS}
    settings.update(checkpoint=None if args.checkpoint is None else str(args.checkpoint.resolve()))
    settings.update(data=str(args.data.resolve()), device=device.type)
    return settings


# In the order FILE.meta.json lists them; checkpoint and data are written as resolved paths, then the device.
_SETTINGS = (
    "model", "checkpoint", "pretrained", "data", "transform", "layers", "token", "n_steps", "method", "top_k",
    "target", "layer_scores", "precision", "batch_size",
)  # fmt: skip
