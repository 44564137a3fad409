"""The output of ``neuronpath extract``: ``FILE``, ``FILE.meta.json`` and the shards ``FILE.rankR``.

``FILE`` holds one JSON line per finished input. Records are appended, flushed and
fsync'd after every batch; a last line without its newline is a write cut short by a
crash and is not a record, so a resumed run drops it and computes that input again.
Each process of a distributed run appends to its own shard ``FILE.rankR``; merging
gathers ``FILE`` and every shard into ``FILE``, each index once and in index order, with
an atomic rename. ``FILE.meta.json`` holds the settings that determine the records and
the library versions; a resumed run must have the same settings.
"""

import json
import os
import platform
import re
from pathlib import Path
from typing import Dict, List, Tuple

import torch

import captum_neuronpath
from captum_neuronpath._utils.files import write_atomically


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
