"""One batch of inputs to its records, and this process's share of the data set to its file.

A right-padded token sequence is explained at its own last real token, so its record equals the one it
would get alone. A stop signal drops the batch in flight, never while its records are being written.
"""

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from captum_neuronpath._cli.errors import STOP_SIGNALS, RunFailure, deferred_stops
from captum_neuronpath._cli.loading import Inputs, UnreadableImage
from captum_neuronpath._core.neuron_path import NeuronPath
from captum_neuronpath._extract.distributed import assigned_batches
from captum_neuronpath._extract.store import append_records
from captum_neuronpath._models import last_token
from captum_neuronpath._utils.joint import top_channels
from captum_neuronpath._utils.tokens import TokenType


@dataclass
class Job:
    """What every batch needs: the model on its device, the sites and ``token`` (``None`` for token sequences),
    the inputs and the settings."""

    model: Module
    device: torch.device
    layers: List[Module]
    token: Optional[TokenType]
    inputs: Inputs
    settings: Dict[str, object]
    skip_unreadable: bool = False
    workers: int = 0  # data loader worker processes
    rows_per_pass: Optional[int] = None  # the internal batch size, once a pass ran out of memory


def probabilities(model: Module, inputs: Tensor, attention_mask: Optional[Tensor] = None) -> Tensor:
    """The class probabilities of images, or each token sequence's next-token probabilities at its last real
    token; the softmax in float32 where the logits are bfloat16 or float16 (CPU autocast leaves it low)."""
    if attention_mask is None:
        logits = model(inputs)
    else:
        logits = model(inputs, attention_mask=attention_mask).logits
        logits = logits[torch.arange(len(inputs), device=logits.device), last_token(attention_mask)]
    return logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(-1)


def explain_all(job: Job, records_file: Path, done: Set[int], rank: int, world_size: int) -> None:
    """Explain this rank's unfinished inputs batch by batch, appending their records to ``records_file``; an
    unreadable input raises :class:`UnreadableImage`, or with ``job.skip_unreadable`` gets an error record."""
    num_inputs, batch_size = len(job.inputs), job.settings["batch_size"]
    batches = assigned_batches(num_inputs, batch_size, rank, world_size, done)
    share = sum(map(len, assigned_batches(num_inputs, batch_size, rank, world_size, set())))
    bar = tqdm(
        total=share, initial=share - sum(map(len, batches)), unit="seq" if job.inputs.text else "img", file=sys.stderr,
        desc="extract" if world_size == 1 else f"extract (rank 0 of {world_size})", disable=rank != 0,
        dynamic_ncols=True,
    )  # fmt: skip
    loader = DataLoader(
        _Readable(job.inputs.dataset), batch_sampler=batches, collate_fn=list, num_workers=job.workers,
        pin_memory=job.device.type == "cuda", worker_init_fn=_quiet_worker,
    )  # fmt: skip
    with bar, open(records_file, "ab", buffering=0) as handle:
        for indices, items in zip(batches, loader):
            records = {index: {"index": index, **job.inputs.identity(index)} for index in indices}
            readable = {index: item for index, item in zip(indices, items) if not isinstance(item, UnreadableImage)}
            for index, item in zip(indices, items):
                if isinstance(item, UnreadableImage):
                    if not job.skip_unreadable:
                        raise item
                    records[index]["error"] = f"cannot be read: {item.reason}"
            if readable:
                inputs, labels, *mask = job.inputs.collate(list(readable.values()))
                inputs, labels, *mask = (t.to(job.device, non_blocking=True) for t in (inputs, labels, *mask))
                for index, record in zip(readable, explain_batch(job, inputs, labels, *mask)):
                    records[index].update(record)
            with deferred_stops():
                append_records(records_file, handle.fileno(), list(records.values()))
            bar.update(len(indices))


def _quiet_worker(worker_id: int) -> None:
    """A data loader worker leaves stop signals sent to the whole process group to the command, which
    handles them between batches, and prints nothing of its own: its read errors reach the command as
    exceptions, and what else it could print (a broken pipe as the command exits) is noise."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    sys.stderr = open(os.devnull, "w")


class _Readable(Dataset):
    """``dataset``'s items, or the :class:`UnreadableImage` an item raised."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except UnreadableImage as error:
            return error


def explain_batch(job: Job, inputs: Tensor, labels: Tensor, *extra: Tensor) -> List[Dict[str, object]]:
    """The record fields of one batch (images, or token ids and their attention mask, the one ``extra``); the
    predictions and probabilities come from the locator's clean pass."""
    settings = job.settings
    token = last_token(*extra) if extra else job.token
    clean = []  # the output of the first no-grad call on the whole batch: the locator's clean pass

    def forward(batch: Tensor, *args) -> Tensor:
        output = probabilities(job.model, batch, *args)
        if not clean and not torch.is_grad_enabled() and len(batch) == len(inputs):
            clean.append(output.detach())
        return output

    with torch.autocast(job.device.type, dtype=torch.bfloat16, enabled=settings["precision"] == "bfloat16"):
        if settings["target"] == "label":
            targets = labels
        else:
            with torch.no_grad():
                targets = probabilities(job.model, inputs, *extra).argmax(-1)
        locator = NeuronPath(forward, job.layers, token=token)
        result = _attribute_within_memory(job, locator, inputs, targets, extra)
    clean_probabilities = clean[0].float()
    fields = {
        "label": labels.tolist(),
        "target": targets.tolist(),
        "prediction": clean_probabilities.argmax(-1).tolist(),
        "probability": clean_probabilities.gather(1, targets[:, None])[:, 0].tolist(),
        "path": result.path.tolist(),
        "jas": result.jas.tolist(),
    }
    if settings["layer_scores"]:
        # NaN pads narrower layers: it ranks last, and ties go to the lowest index, as in the locator.
        scores = result.layer_scores.nan_to_num(nan=-torch.inf)
        candidates = top_channels(scores, settings["layer_scores"])
        fields["layer_candidates"] = candidates.tolist()
        fields["layer_scores"] = scores.gather(-1, candidates).tolist()
    return [dict(zip(fields, values)) for values in zip(*fields.values())]


def _attribute_within_memory(job: Job, locator: NeuronPath, inputs: Tensor, targets: Tensor, extra: tuple):
    """``locator.attribute`` on the batch, halving the rows per pass (kept in ``job.rows_per_pass``) whenever a
    pass runs out of memory."""
    settings = job.settings
    batch_size = len(inputs)
    while True:
        try:
            return locator.attribute(
                inputs, target=targets, additional_forward_args=extra or None, n_steps=settings["n_steps"],
                method=settings["method"], top_k=settings["top_k"], internal_batch_size=job.rows_per_pass,
            )  # fmt: skip
        except torch.OutOfMemoryError as error:
            rows = job.rows_per_pass or batch_size * settings["n_steps"]
            if rows <= batch_size:  # one node per pass already
                raise RunFailure(
                    f"out of memory on {job.device} even at one quadrature node per pass ({batch_size} rows); "
                    "pass a smaller --batch-size"
                ) from error
            torch.cuda.empty_cache()  # nothing to do unless CUDA is in use
            if job.rows_per_pass is None:
                print(f"note: out of memory on {job.device} with {rows} rows per pass; running fewer rows per pass "
                      "(internal_batch_size, recorded in the meta file)", file=sys.stderr, flush=True)  # fmt: skip
            job.rows_per_pass = max(batch_size, rows // 2)
