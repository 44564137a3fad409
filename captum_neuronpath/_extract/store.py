"""The output of ``neuronpath extract``: ``FILE`` (one JSON line per finished input, appended and fsync'd
after every batch; a last line without its newline is a write cut short, not a record), the shards
``FILE.rankR``, ``FILE.meta.json`` and ``FILE.lock``.
"""

import contextlib
import glob
import importlib
import json
import os
import platform
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

from captum_neuronpath._utils.files import write_atomically

# The libraries whose versions a resume compares (python's is recorded, not compared).
COMPARED_VERSIONS = ("captum_neuronpath", "torch", "captum", "timm")


def meta_path(out: Path) -> Path:
    """``FILE.meta.json``: the settings and versions of the run that writes ``out``."""
    return out.with_name(out.name + ".meta.json")


def shard_path(out: Path, rank: int) -> Path:
    """``FILE.rankR``: the records one process of a distributed run appends to."""
    return out.with_name(f"{out.name}.rank{rank}")


def shard_paths(out: Path) -> List[Path]:
    """Every rank's shard of ``out`` on disk, whatever the number of processes that wrote them."""
    shards = out.parent.glob(glob.escape(out.name) + ".rank*")
    return sorted(path for path in shards if path.name[len(out.name) + len(".rank") :].isdigit())


def prepare_output(
    out: Path,
    settings: Dict[str, object],
    fingerprints: Dict[str, str],
    description: Dict[str, object],
    overwrite: bool = False,
    allow_version_change: bool = False,
) -> None:
    """Start ``out`` afresh (also when it holds no record yet) or check that it continues a run of the same
    settings, model and versions (other versions with ``allow_version_change``, kept in ``earlier_versions``);
    then write ``description`` (see :mod:`.description`) into ``FILE.meta.json``."""
    meta = meta_path(out)
    existing = [path for path in (out, meta, *shard_paths(out)) if path.exists()]
    has_records = any(b"\n" in path.read_bytes() for path in existing if path != meta)
    versions = {name: importlib.import_module(name).__version__ for name in COMPARED_VERSIONS}
    versions["python"] = platform.python_version()  # recorded, not compared
    if overwrite or (meta.exists() and not has_records):
        for path in existing:
            path.unlink()
    elif meta.exists():
        recorded = _read_meta(meta)
        keys = sorted({*recorded["settings"], *settings})
        problems = _changes("other settings", recorded["settings"], settings, keys)
        before = recorded.get("fingerprints", {})
        problems += _changes("the model changed, its parameters or buffers differ", before, fingerprints, ["model"])
        if problems:
            raise ValueError(
                f"{out} holds another run: {'; '.join(problems)}. Pass --overwrite to start afresh, "
                "or choose another --out"
            )
        changed = _changes("", recorded.get("versions", {}), versions, COMPARED_VERSIONS)
        if changed and not allow_version_change:
            raise ValueError(
                f"{out} was written under other versions {changed[0]}; pass --allow-version-change to resume "
                "anyway (the file then holds records of both), or --overwrite to start afresh"
            )
        if changed:
            recorded["earlier_versions"] = [*recorded.get("earlier_versions", []), recorded.get("versions")]
            recorded["versions"] = versions
    elif existing:
        raise ValueError(
            f"{out} exists but {meta.name} does not, so its settings are unknown; "
            "pass --overwrite to start afresh, or choose another --out"
        )
    if not meta.exists():  # output_lock made the folder
        fresh = {"settings": settings, "fingerprints": fingerprints, "versions": versions, "runs": []}
        recorded = {"command": "neuronpath extract", **fresh}
    write_meta(out, {**recorded, **description})
    merge_records(out)


def _changes(what: str, recorded: Dict[str, object], current: Dict[str, object], keys) -> List[str]:
    """``[" WHAT (key old -> new, ...)"]`` for the ``keys`` whose values differ, or ``[]``."""
    changes = ", ".join(
        f"{key} {recorded.get(key)!r} -> {current.get(key)!r}" for key in keys if recorded.get(key) != current.get(key)
    )
    return [f"{what} ({changes})".lstrip()] if changes else []


def drop_changed_records(
    out: Path,
    identity: Callable[[int], Dict[str, object]],
    num_inputs: int,
    batch_size: int,
    keep_errors: bool,
) -> Tuple[int, int, int]:
    """Keep the records of the whole batches (so that batches keep their composition) whose every input is as
    ``identity(index)`` says and, with ``keep_errors``, error records; rewrite ``out`` without the rest.
    Returns ``(kept, changed, tried_again)``."""
    records, _ = read_records(out)
    changed, tried_again, valid = 0, 0, set()
    for index, line in records:
        record = json.loads(line)
        if index >= num_inputs or any(record.get(key) != value for key, value in identity(index).items()):
            changed += 1
        elif "error" in record and not keep_errors:
            tried_again += 1
        else:
            valid.add(index)

    broken = {index // batch_size for index in range(num_inputs) if index not in valid}  # batches to redo whole
    kept = [(index, line) for index, line in records if index in valid and index // batch_size not in broken]
    if len(kept) < len(records):
        write_atomically(out, "".join(line + "\n" for _, line in kept).encode())
    return len(kept), changed, tried_again


def _read_meta(meta: Path) -> Dict[str, object]:
    """The contents of ``meta``, which hold at least the ``settings``."""
    try:
        recorded = json.loads(meta.read_text())
        if not isinstance(recorded, dict) or not isinstance(recorded["settings"], dict):
            raise TypeError
        return recorded
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{meta} is not a settings file; pass --overwrite to start afresh") from None


def write_meta(out: Path, meta_record: Dict[str, object]) -> None:
    """Replace ``FILE.meta.json`` atomically."""
    write_atomically(meta_path(out), (json.dumps(meta_record, indent=2) + "\n").encode())


def record_run(out: Path, run: Dict[str, object]) -> None:
    """Append ``run`` (inputs, seconds, images per second, processes) to the runs in ``FILE.meta.json``."""
    recorded = _read_meta(meta_path(out))
    recorded["runs"] = [*recorded.get("runs", []), run]
    write_meta(out, recorded)


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Meanwhile, an exclusive lock on ``FILE``: a POSIX lock on ``FILE.lock``, which names its holder; a
    :class:`ValueError` names the process that holds it.

    ``lockf``, unlike ``flock``, is not held by forked data loader workers, which may outlive a
    killed command by a moment. The file is removed on release while still locked, so a taker
    checks that the file it locked is still the one at the path.
    """
    import fcntl

    path = out.with_name(out.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+")
        try:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            handle.close()
            raise ValueError(
                f"--out {out} is being written by another neuronpath extract ({holder}; lock file {path}); wait "
                "for it to end or choose another --out"
            ) from None
        with contextlib.suppress(FileNotFoundError):  # its holder removed it between our open and our lock
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                break
        handle.close()
    handle.truncate(0)  # appends then start at 0
    handle.write(f"pid {os.getpid()} on host {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()


def read_records(path: Path) -> Tuple[List[Tuple[int, str]], int]:
    """The records of a JSON Lines file as ``(index, line)`` pairs, and the bytes they span."""
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
    """Gather ``out`` and every shard into ``out`` (rewritten atomically where it must be), each index once
    and in index order; delete the shards and return the number of records."""
    shards = shard_paths(out)
    records, complete = read_records(out)
    tidy = not shards and complete == (out.stat().st_size if out.exists() else 0)
    tidy = tidy and all(a[0] < b[0] for a, b in zip(records, records[1:]))
    for shard in shards:
        records += read_records(shard)[0]
    unique = dict(reversed(records))  # each index's first line: a merge cut short may leave one in out and a shard
    if not tidy:
        write_atomically(out, "".join(unique[index] + "\n" for index in sorted(unique)).encode())
    for shard in shards:
        shard.unlink()
    return len(unique)


def count_records(out: Path) -> int:
    """The number of inputs finished in ``out`` and its shards."""
    return len({index for path in (out, *shard_paths(out)) for index, _ in read_records(path)[0]})


def append_records(path: Path, descriptor: int, records: List[Dict[str, object]]) -> None:
    """Append one line per record to ``path`` (open unbuffered as ``descriptor``) durably; a write that
    fails is cut back to where the batch began, and the error names the file."""
    data = "".join(json.dumps(record) + "\n" for record in records).encode()
    start = os.fstat(descriptor).st_size
    try:
        written = 0
        while written < len(data):
            written += os.write(descriptor, data[written:])
        os.fsync(descriptor)
    except OSError as error:
        os.ftruncate(descriptor, start)
        raise OSError(error.errno, error.strerror, str(path)) from error
