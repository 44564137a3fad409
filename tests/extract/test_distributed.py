"""`neuronpath extract` under torchrun: whole batches per rank, shards, kill -9 and resume with any number of processes."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from captum_neuronpath._cli import main
from captum_neuronpath._extract.distributed import assigned_batches
from captum_neuronpath._extract.store import shard_path

from extract.runs import BIN, FAST, NUM_INPUTS, SLOW, TEXT, env, read_lines


def test_shards_of_a_killed_distributed_run_resume_in_one_process(data, reference, tmp_path, capsys):
    """Rank 0 finished batch 0, rank 1 batches 1 and 3 and was cut short in batch 5."""
    out = tmp_path / "paths.jsonl"
    shutil.copy(f"{reference}.meta.json", f"{out}.meta.json")
    lines = read_lines(reference)
    shard_path(out, 0).write_text("\n".join(lines[0:2]) + "\n")
    shard_path(out, 1).write_text("\n".join(lines[2:4] + lines[6:8]) + "\n" + lines[10][:-3])
    assert main(["extract", "--data", str(data), "--out", str(out), *FAST]) == 0
    assert "6 new" in capsys.readouterr().err
    assert read_lines(out) == lines
    assert not shard_path(out, 0).exists() and not shard_path(out, 1).exists()


def _children(pid: int) -> list:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_torchrun_killed_and_resumed_equals_one_process(data, reference, tmp_path):
    """Two processes split the batches into shards; kill -9 all of them, resume, merge."""
    out = tmp_path / "paths.jsonl"
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "captum_neuronpath"]
    command = [*torchrun, "extract", "--data", str(data), "--out", str(out), *SLOW]
    shards = [shard_path(out, 0), shard_path(out, 1)]

    def finished() -> int:
        return sum(shard.read_bytes().count(b"\n") for shard in shards if shard.exists())

    agent = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and finished() < 2:
        time.sleep(0.01)
    workers = _children(agent.pid)  # torchrun starts them in sessions of their own
    for pid in [agent.pid, *workers]:
        os.kill(pid, signal.SIGKILL)
    agent.wait()
    while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    partial = finished()
    assert len(workers) == 2 and 2 <= partial < NUM_INPUTS and not out.exists()

    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "over 2 process(es)" in done.stderr and "6/6" in done.stderr  # rank 0 had half of the inputs
    assert f"{NUM_INPUTS - partial} new" in done.stderr
    assert read_lines(out) == read_lines(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paths.jsonl", "paths.jsonl.meta.json"]


def test_each_rank_gets_whole_batches_and_together_every_index_once():
    for num_inputs, batch_size, world_size in [(12, 2, 2), (13, 4, 3), (5, 8, 2), (7, 1, 4)]:
        done = {1, 2}
        batches = [assigned_batches(num_inputs, batch_size, r, world_size, done) for r in range(world_size)]
        indices = sorted(i for rank in batches for batch in rank for i in batch)
        assert indices == sorted(set(range(num_inputs)) - done)
        for rank, rank_batches in enumerate(batches):
            for batch in rank_batches:
                assert len({i // batch_size for i in batch}) == 1 and batch[0] // batch_size % world_size == rank


def test_text_under_torchrun_equals_one_process(text_data, text_reference, tmp_path):
    """Two processes, one batch each, merged into the file one process writes."""
    out = tmp_path / "paths.jsonl"
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "captum_neuronpath"]
    command = [*torchrun, "extract", "--data", str(text_data), "--out", str(out), *TEXT]
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "over 2 process(es)" in done.stderr and "sequences/s" in done.stderr
    assert read_lines(out) == read_lines(text_reference)
