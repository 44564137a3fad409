"""Several processes under ``torchrun`` (over gloo whatever the device: they exchange only small objects
and barriers): the process group and who explains which batch, so that every input has the same batch
companions whatever the number of processes."""

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterator, List, Optional, Set, Tuple

import torch
import torch.distributed as dist


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
    # Ranks wait for the slowest one at the final barrier; a resumed rank may have much more
    # left to do than the others, so the default 30 minutes is far too short.
    dist.init_process_group("gloo", timeout=timedelta(days=7))
    try:
        yield dist.get_rank(), world_size
    finally:
        dist.destroy_process_group()


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


def assigned_batches(num_inputs: int, batch_size: int, rank: int, world_size: int, done: Set[int]) -> List[List[int]]:
    """The unfinished indices of this rank's batches: batch ``b`` goes to rank ``b % world_size``."""
    batches = []
    for start in range(rank * batch_size, num_inputs, world_size * batch_size):
        todo = [index for index in range(start, min(start + batch_size, num_inputs)) if index not in done]
        if todo:
            batches.append(todo)
    return batches
