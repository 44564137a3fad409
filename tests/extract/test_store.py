"""The output files of `neuronpath extract`: merging shards and torn lines, atomic writes."""

import json
import os

import pytest

from captum_neuronpath._extract.store import drop_changed_records, merge_records, read_records, shard_path
from captum_neuronpath._utils.files import write_atomically

from extract.runs import read_lines


def test_merge_keeps_each_index_once_in_order_and_drops_torn_tails(tmp_path):
    out = tmp_path / "paths.jsonl"
    out.write_text('{"index": 0}\n{"index": 3}\n{"ind')
    shard_path(out, 0).write_text('{"index": 3}\n{"index": 1}\n')
    shard_path(out, 5).write_text('{"index": 2}\n{"index": 4')
    assert merge_records(out) == 4
    assert read_lines(out) == [f'{{"index": {i}}}' for i in range(4)]
    assert list(tmp_path.iterdir()) == [out]
    out.write_text('{"index": 0}\nnot json\n{"index": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_records(out)


def test_atomic_writes_sync_the_file_and_then_its_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append("directory" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "file")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(tmp_path / "a.json", b"{}")
    assert synced == ["file", "directory"] and (tmp_path / "a.json").read_bytes() == b"{}"
    assert list(tmp_path.iterdir()) == [tmp_path / "a.json"]


def test_a_resume_keeps_only_whole_batches_of_unchanged_inputs(tmp_path):
    """Batch 1 lost a record (a write cut short), batch 2's input changed: both are dropped whole, in place."""
    out = tmp_path / "paths.jsonl"
    identities = {i: {"file": f"{i}.png", "label": 0, "fingerprint": f"sha256:{i}"} for i in range(6)}
    records = [{"index": i, **identities[i]} for i in (0, 1, 2, 4, 5)]
    records[3]["fingerprint"] = "sha256:old"  # input 4 changed since
    out.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert drop_changed_records(out, identities.__getitem__, 6, 2, keep_errors=False) == (2, 1, 0)
    assert [json.loads(line)["index"] for line in read_lines(out)] == [0, 1]
    error = {"index": 1, **identities[1], "error": "cannot be read: truncated"}
    out.write_text(json.dumps(records[0]) + "\n" + json.dumps(error) + "\n")
    assert drop_changed_records(out, identities.__getitem__, 6, 2, keep_errors=True) == (2, 0, 0)
    assert drop_changed_records(out, identities.__getitem__, 6, 2, keep_errors=False) == (0, 0, 1)
    assert read_lines(out) == []
    out.write_text(json.dumps(records[0]) + "\n" + json.dumps(records[1]) + "\n")
    assert drop_changed_records(out, identities.__getitem__, 1, 2, keep_errors=False) == (1, 1, 0)  # data shrank
