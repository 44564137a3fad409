"""``neuronpath extract``: the neuron path of every image of a data set, as JSON Lines.

Each input gets one line of ``FILE`` (``--out``), in index order::

    {"index": 0, "file": "cat/001.png", "label": 3, "target": 3, "prediction": 3,
     "probability": 0.91, "path": [17, 250, 3, ...], "jas": 0.41}

``path`` is the located neuron of each MLP layer (a list of ``top_k`` neurons per layer
when ``--top-k`` > 1), ``jas`` its joint attribution score, ``target`` the class explained
(the label, or the model's prediction with ``--target predicted``), ``probability`` the
model's softmax probability of the target, ``file`` the image's path inside the image
folder (``null`` for a safetensors file). With ``--layer-scores N`` a record also holds,
per layer, the N best candidates of the greedy step (``layer_candidates``) and their
scores (``layer_scores``), best first. ``FILE.meta.json`` holds the run's settings and
the library versions.

Crash safety and resuming: records are appended, flushed and fsync'd after every batch.
Running the same command again resumes: finished inputs are skipped and a last line cut
short by a crash is discarded, so after any number of ``kill -9`` and resumes ``FILE``
equals an uninterrupted run's. Inputs are explained in fixed batches (batch ``b`` holds
indices ``b * batch_size`` up to ``(b + 1) * batch_size``) whatever the number of
processes, so every input is computed with the same batch companions in every run.
Settings that change the records (everything but ``--overwrite``) must match
``FILE.meta.json``; otherwise the command refuses to touch ``FILE``.

Several processes or machines: under ``torchrun`` every process takes every
``WORLD_SIZE``-th batch and writes its own shard ``FILE.rankR`` next to ``FILE``; when
all are done, rank 0 merges the shards into ``FILE`` (identical to a single-process run).
A resumed run first merges whatever shards a killed run left, so it may use any number
of processes. Processes on CPU talk over gloo; on CUDA over nccl, one GPU per process.
"""

import argparse
import json
import os
import platform
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import torch
import torch.distributed as dist
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS
from torch import Tensor
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

import captum_neuronpath
from captum_neuronpath._core.neuron_path import NeuronPath
from captum_neuronpath._loading import load_callable, load_model, load_safetensors_data
from captum_neuronpath._models import vit_mlp_layers, vit_readout_token
from captum_neuronpath._utils.files import write_atomically

EPILOG = """\
resuming:
  Run the same command again: finished inputs are skipped, a line cut short by a crash is
  dropped, and the final FILE equals an uninterrupted run's. Changed settings are refused;
  pass --overwrite to start again or choose another --out.

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

# Ranks wait for the slowest one at the final barrier; a resumed rank may have much more
# left to do than the others, so the default 30 minutes is far too short.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass
class Inputs:
    """A labelled image set: ``dataset[i]`` is ``(image, label)``; ``files[i]`` the image's file."""

    dataset: Dataset
    files: Optional[List[str]]  # relative to the image folder; None for a tensor file

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass
class Job:
    """What every batch needs: the model on its device, its locator, the inputs and the settings."""

    model: Module
    device: torch.device
    locator: NeuronPath
    inputs: Inputs
    settings: Dict[str, object]


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``extract`` subcommand to ``commands`` (the ``neuronpath`` subparsers)."""
    parser = commands.add_parser(
        "extract",
        help="neuron paths of every image of a data set, to a resumable JSON Lines file",
        description="Locate the neuron path of every input of DATA and write one JSON line per input to FILE.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="timm:NAME, torchvision:NAME or package.module:callable")
    parser.add_argument("--data", required=True, type=Path, help="an ImageFolder directory or a .safetensors file")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="the JSON Lines output")
    parser.add_argument(
        "--checkpoint", type=Path, metavar="WEIGHTS", help="weights to load: safetensors or a torch state dict"
    )
    parser.add_argument("--pretrained", action="store_true", help="timm's or torchvision's pretrained weights")
    parser.add_argument(
        "--transform", metavar="CALLABLE", help="package.module:callable returning the image folder's transform"
    )
    parser.add_argument(
        "--n-steps", type=_positive_int, default=3, metavar="N", help="quadrature nodes (default 3; paper: 20)"
    )
    parser.add_argument(
        "--method", default="gausslegendre", choices=SUPPORTED_METHODS, metavar="M",
        help=f"Captum quadrature, one of {', '.join(SUPPORTED_METHODS)} (default gausslegendre; paper: riemann_left)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=_positive_int, default=8, metavar="B", help="images per attribution call")
    parser.add_argument("--top-k", type=_positive_int, default=1, metavar="K", help="neurons kept per layer")
    parser.add_argument(
        "--device", type=_device, metavar="D", help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--target", choices=("label", "predicted"), default="label", help="explain the label or the prediction"
    )
    parser.add_argument(
        "--layer-scores", type=_positive_int, metavar="N", help="also write the N best candidates of each layer"
    )
    parser.add_argument("--overwrite", action="store_true", help="discard an existing FILE and start again")
    parser.set_defaults(handler=run)
    return parser


def _positive_int(text: str) -> int:
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
    """The ``extract`` command: set up (refusing bad settings with a message), explain, merge."""
    device = resolve_device(args.device)
    with process_group(device) as (rank, world_size):
        try:
            job = setup(args, device, rank, world_size)
        except (ValueError, TypeError, OSError) as error:
            raise SystemExit(f"neuronpath extract: error: {error}") from None
        done = {index for index, _ in read_records(args.out)[0]}
        started = time.perf_counter()
        records_file = args.out if world_size == 1 else shard_path(args.out, rank)
        explain_all(job, records_file, done, rank, world_size)
        if world_size > 1:
            barrier(device)
        if rank == 0:
            total = merge_records(args.out)
            elapsed = time.perf_counter() - started
            new = total - len(done)
            print(
                f"{args.out}: {total} of {len(job.inputs)} inputs done; {new} new in {elapsed:.1f} s "
                f"({new / max(elapsed, 1e-9):.2f} images/s over {world_size} process(es))",
                file=sys.stderr,
                flush=True,
            )


def setup(args: argparse.Namespace, device: torch.device, rank: int, world_size: int) -> Job:
    """Load the model and the inputs, and check (rank 0: prepare) the output files."""
    if args.checkpoint is not None and args.pretrained:
        raise ValueError("pass --checkpoint or --pretrained, not both")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a model with random weights is the same in every process and every resume
        model = load_model(args.model, args.checkpoint, args.pretrained).to(device)
    locator = NeuronPath(lambda x: model(x).softmax(-1), vit_mlp_layers(model), token=vit_readout_token(model))
    inputs = load_inputs(args.data, args.transform, model)
    settings = settings_of(args, device, len(inputs))
    on_rank_zero(rank, world_size, lambda: prepare_output(args.out, settings, args.overwrite))
    random_weights = args.checkpoint is None and not args.pretrained
    if rank == 0 and random_weights and args.model.partition(":")[0] in ("timm", "torchvision"):
        print(f"note: {args.model} has random weights; pass --pretrained or --checkpoint", file=sys.stderr)
    return Job(model, device, locator, inputs, settings)


def resolve_device(device: Optional[torch.device]) -> torch.device:
    """``device``, or CUDA when there is one; a CUDA device without index is ``cuda:LOCAL_RANK``."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[Tuple[int, int]]:
    """``(rank, world_size)``: ``(0, 1)`` alone, or torchrun's, with the process group up meanwhile."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield 0, 1
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield dist.get_rank(), world_size
    finally:
        dist.destroy_process_group()


def barrier(device: torch.device) -> None:
    """Wait for every process."""
    if device.type == "cuda":
        dist.barrier(device_ids=[device.index])
    else:
        dist.barrier()


def on_rank_zero(rank: int, world_size: int, action: Callable[[], None]) -> None:
    """Run ``action`` on rank 0 only; every rank returns when it is done or raises its error."""
    error: Optional[Exception] = None
    if rank == 0:
        try:
            action()
        except (ValueError, TypeError, OSError) as caught:
            error = caught
    if world_size > 1:
        shared = [error]
        dist.broadcast_object_list(shared, src=0)
        error = shared[0]
    if error is not None:
        raise error


def load_inputs(data: Path, transform: Optional[str], model: Module) -> Inputs:
    """An ImageFolder directory or a safetensors file of ``images`` and ``labels``.

    Folder images are preprocessed by ``transform`` (``package.module:callable`` returning
    the transform) or else by timm's data configuration for ``model``.
    """
    if not data.exists():
        raise FileNotFoundError(f"data {data} does not exist")
    if data.is_dir():
        from timm.data import create_transform, resolve_data_config
        from torchvision.datasets import ImageFolder

        if transform:
            preprocess = load_callable(transform, "transform")()
        else:
            preprocess = create_transform(**resolve_data_config({}, model=model))
        folder = ImageFolder(str(data), transform=preprocess)
        return Inputs(folder, [Path(file).relative_to(data).as_posix() for file, _ in folder.samples])
    if data.suffix == ".safetensors":
        if transform:
            raise ValueError("--transform applies to an image folder, not to a .safetensors file")
        images, labels = load_safetensors_data(data)
        return Inputs(TensorDataset(images, labels), None)
    raise ValueError(f"data must be an ImageFolder directory or a .safetensors file, got {data}")


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


def library_versions() -> Dict[str, str]:
    """The versions that produced the records, for ``FILE.meta.json``."""
    import captum
    import timm

    return {
        "captum_neuronpath": captum_neuronpath.__version__,
        "torch": torch.__version__,
        "captum": captum.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def meta_path(out: Path) -> Path:
    """``FILE.meta.json``: the settings and versions of the run that writes ``out``."""
    return out.with_name(out.name + ".meta.json")


def shard_path(out: Path, rank: int) -> Path:
    """``FILE.rankR``: the records one process of a distributed run appends to."""
    return out.with_name(f"{out.name}.rank{rank}")


def shard_paths(out: Path) -> List[Path]:
    """Every rank's shard of ``out`` on disk, whatever the number of processes that wrote them."""
    pattern = re.compile(re.escape(out.name) + r"\.rank\d+")
    if not out.parent.is_dir():
        return []
    return sorted(path for path in out.parent.iterdir() if pattern.fullmatch(path.name))


def prepare_output(out: Path, settings: Dict[str, object], overwrite: bool) -> None:
    """Start ``out`` afresh or check that it holds a run of the same ``settings``; merge leftover shards."""
    meta = meta_path(out)
    existing = [path for path in (out, meta, *shard_paths(out)) if path.exists()]
    if overwrite:
        for path in existing:
            path.unlink()
    elif meta.exists():
        recorded = _read_meta_settings(meta)
        if recorded != settings:
            changes = ", ".join(
                f"{key} {recorded.get(key)!r} -> {settings.get(key)!r}"
                for key in sorted(set(recorded) | set(settings))
                if recorded.get(key) != settings.get(key)
            )
            raise ValueError(
                f"{out} holds a run with other settings ({changes}); pass --overwrite to start again, "
                "or choose another --out"
            )
    elif existing:
        raise ValueError(
            f"{out} exists but {meta.name} does not, so its settings are unknown; "
            "pass --overwrite to start again, or choose another --out"
        )
    if not meta.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        meta_record = {"command": "neuronpath extract", "settings": settings, "versions": library_versions()}
        write_atomically(meta, (json.dumps(meta_record, indent=2) + "\n").encode())
    merge_records(out)


def _read_meta_settings(meta: Path) -> Dict[str, object]:
    """The ``settings`` recorded in ``meta``."""
    try:
        return json.loads(meta.read_text())["settings"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{meta} is not a settings file; pass --overwrite to start again") from None


def read_records(path: Path) -> Tuple[List[Tuple[int, str]], int]:
    """The records of a JSON Lines file as ``(index, line)`` pairs, and the bytes they span.

    A last line without its newline is a write cut short by a crash, not a record.
    """
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:complete].decode().splitlines(), start=1):
        try:
            index = json.loads(line)["index"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{path} line {number} is not a record; pass --overwrite to start again") from None
        records.append((index, line))
    return records, complete


def merge_records(out: Path) -> int:
    """Gather ``out`` and every shard into ``out``, each index once and in index order.

    Rewrites ``out`` atomically, and only when it is not already so (shards to take in,
    records out of order, or a torn last line); then deletes the shards. Returns the
    number of records.
    """
    shards = shard_paths(out)
    records, complete = read_records(out)
    tidy = not shards and complete == (out.stat().st_size if out.exists() else 0)
    tidy = tidy and all(a[0] < b[0] for a, b in zip(records, records[1:]))
    for shard in shards:
        records += read_records(shard)[0]
    unique: Dict[int, str] = {}
    for index, line in records:
        unique.setdefault(index, line)  # a merge cut short may leave an index in out and in a shard
    if not tidy:
        write_atomically(out, "".join(unique[index] + "\n" for index in sorted(unique)).encode())
    for shard in shards:
        shard.unlink()
    return len(unique)


def append_records(handle, records: List[Dict[str, object]]) -> None:
    """Append one line per record and make it durable before the next batch starts."""
    handle.write("".join(json.dumps(record) + "\n" for record in records).encode())
    handle.flush()
    os.fsync(handle.fileno())


def assigned_batches(num_inputs: int, batch_size: int, rank: int, world_size: int, done: Set[int]) -> List[List[int]]:
    """The unfinished indices of this rank's batches: batch ``b`` goes to rank ``b % world_size``."""
    batches = []
    for start in range(rank * batch_size, num_inputs, world_size * batch_size):
        todo = [index for index in range(start, min(start + batch_size, num_inputs)) if index not in done]
        if todo:
            batches.append(todo)
    return batches


def explain_all(job: Job, records_file: Path, done: Set[int], rank: int, world_size: int) -> None:
    """Explain this rank's unfinished inputs batch by batch, appending their records to ``records_file``."""
    num_inputs, batch_size = len(job.inputs), job.settings["batch_size"]
    batches = assigned_batches(num_inputs, batch_size, rank, world_size, done)
    share = sum(len(batch) for batch in assigned_batches(num_inputs, batch_size, rank, world_size, set()))
    todo = sum(len(batch) for batch in batches)
    bar = tqdm(
        total=share,
        initial=share - todo,
        unit="img",
        desc="extract" if world_size == 1 else f"extract (rank 0 of {world_size})",
        file=sys.stderr,
        disable=rank != 0,
        dynamic_ncols=True,
    )
    loader = DataLoader(job.inputs.dataset, batch_sampler=batches)
    files = job.inputs.files
    with bar, open(records_file, "ab") as handle:
        for indices, (images, labels) in zip(batches, loader):
            fields = explain_batch(job, images.to(job.device), labels.to(job.device))
            records = [
                {"index": index, "file": None if files is None else files[index], **record}
                for index, record in zip(indices, fields)
            ]
            append_records(handle, records)
            bar.update(len(indices))


def explain_batch(job: Job, images: Tensor, labels: Tensor) -> List[Dict[str, object]]:
    """The record fields of one batch: label, target, prediction, probability, path, jas (and candidates)."""
    settings = job.settings
    with torch.no_grad():
        probabilities = job.model(images).softmax(-1)
    predictions = probabilities.argmax(-1)
    targets = labels if settings["target"] == "label" else predictions
    result = job.locator.attribute(
        images, target=targets, n_steps=settings["n_steps"], method=settings["method"], top_k=settings["top_k"]
    )
    fields = {
        "label": labels.tolist(),
        "target": targets.tolist(),
        "prediction": predictions.tolist(),
        "probability": probabilities.gather(1, targets[:, None])[:, 0].tolist(),
        "path": result.path.tolist(),
        "jas": result.jas.tolist(),
    }
    if settings["layer_scores"]:
        # NaN pads narrower layers; it sorts last, and a stable sort breaks ties like the locator.
        ranked = torch.sort(result.layer_scores.nan_to_num(nan=-torch.inf), dim=-1, descending=True, stable=True)
        fields["layer_candidates"] = ranked.indices[..., : settings["layer_scores"]].tolist()
        fields["layer_scores"] = ranked.values[..., : settings["layer_scores"]].tolist()
    return [dict(zip(fields, values)) for values in zip(*fields.values())]
