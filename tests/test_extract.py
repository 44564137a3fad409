"""`neuronpath extract`: records, resuming after kill -9 and torn lines, refusals, image folders, torchrun.

Every run uses one thread (torchrun's default; OMP_NUM_THREADS=1 for subprocesses, the
one_thread fixture in this process), so runs compared record for record do the same
floating-point arithmetic.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import captum_neuronpath as cnp
from captum_neuronpath._extract.distributed import assigned_batches
from captum_neuronpath._extract.store import merge_records, read_records, shard_path
from captum_neuronpath._loading import load_safetensors_data
from captum_neuronpath.cli import main

from conftest import DATA
from extract_models import tiny_vit

TESTS = Path(__file__).parent
BIN = Path(sys.executable).parent
NUM_INPUTS = 12
FAST = ["--model", "extract_models:tiny_vit", "--n-steps", "4", "--batch-size", "2", "--layer-scores", "3"]
SLOW = ["--model", "extract_models:slow_tiny_vit"] + FAST[2:]


def _env() -> dict:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def _extract(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "captum_neuronpath", "extract", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=_env())


def _lines(path: Path) -> list:
    return path.read_text().splitlines()


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs too: two threads on two busy cores are many times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    generator = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("data") / "images.safetensors"
    images = torch.randn(NUM_INPUTS, 3, 16, 16, generator=generator)
    save_file({"images": images, "labels": torch.randint(0, 4, (NUM_INPUTS,), generator=generator)}, path)
    return path


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """An uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("reference") / "paths.jsonl"
    done = _extract("--data", data, "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    assert "images/s" in done.stderr and "img/s" in done.stderr  # the summary and the progress bar
    return out


def test_records_hold_the_paths_of_the_api(data, reference):
    """Each input once, in order, with the path and JAS that NeuronPath gives the same batch."""
    records = [json.loads(line) for line in _lines(reference)]
    assert [r["index"] for r in records] == list(range(NUM_INPUTS))
    model = tiny_vit().eval()
    inputs = load_safetensors_data(data)
    locator = cnp.NeuronPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model), token=cnp.vit_readout_token(model))
    result = locator.attribute(inputs[0][:2], target=inputs[1][:2], n_steps=4, method="gausslegendre")
    for i, record in enumerate(records[:2]):
        assert record["label"] == record["target"] == int(inputs[1][i]) and record["file"] is None
        assert record["path"] == result.path[i].tolist()
        assert record["jas"] == pytest.approx(float(result.jas[i]), rel=1e-5)
        assert record["layer_candidates"][1][0] == record["path"][1]
        assert len(record["layer_scores"]) == 2 and len(record["layer_scores"][0]) == 3
        assert record["layer_scores"][0] == sorted(record["layer_scores"][0], reverse=True)
    meta = json.loads(Path(f"{reference}.meta.json").read_text())
    assert meta["settings"]["n_steps"] == 4 and meta["settings"]["num_inputs"] == NUM_INPUTS
    assert set(meta["versions"]) >= {"torch", "captum", "timm", "captum_neuronpath"}


def test_reproduces_the_authors_paths_on_the_fixture_model(tmp_path):
    """The paper preset through the command: the reference implementation's paths and JAS."""
    out = tmp_path / "paths.jsonl"
    model = ["--model", "captum_neuronpath.digits:build_digits_vit", "--checkpoint", str(DATA / "digits_vit_d6.safetensors")]
    preset = ["--n-steps", "20", "--method", "riemann_left"]
    main(["extract", *model, *preset, "--data", str(DATA / "expected_d6_inputs.safetensors"), "--out", str(out), "--batch-size", "8"])
    records = [json.loads(line) for line in _lines(out)]
    dataset_indices = load_file(DATA / "expected_d6_inputs.safetensors")["dataset_indices"].tolist()
    expected = json.loads((DATA / "expected_d6.json").read_text())
    checked = 0
    for case in expected["cases"]:
        for dataset_index, path, jas in zip(case["dataset_indices"], case["neuron_path"], case["neuron_path_jas"]):
            record = records[dataset_indices.index(dataset_index)]
            assert record["target"] == case["target"] and record["path"] == path
            assert record["jas"] == pytest.approx(jas, rel=1e-4)
            checked += 1
    assert checked == len(records) == 15


def test_kill_9_twice_then_resume_equals_an_uninterrupted_run(data, reference, tmp_path):
    out = tmp_path / "paths.jsonl"
    command = [sys.executable, "-m", "captum_neuronpath", "extract", "--data", str(data), "--out", str(out), *SLOW]
    seen = 0
    for _ in range(2):
        process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") <= seen):
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        seen = out.read_bytes().count(b"\n")
        assert 0 < seen < NUM_INPUTS  # killed mid-run, after at least one batch
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{NUM_INPUTS - seen} new" in done.stderr  # finished inputs were skipped
    assert _lines(out) == _lines(reference)


def test_a_torn_last_line_is_discarded_and_recomputed(data, reference, tmp_path):
    out = tmp_path / "paths.jsonl"
    shutil.copy(f"{reference}.meta.json", f"{out}.meta.json")
    lines = _lines(reference)
    out.write_text("\n".join(lines[:5]) + "\n" + lines[5][:40])  # the write of record 5 cut short
    main(["extract", "--data", str(data), "--out", str(out), *FAST])
    assert _lines(out) == lines


def test_shards_of_a_killed_distributed_run_resume_in_one_process(data, reference, tmp_path, capsys):
    """Rank 0 finished batch 0, rank 1 batches 1 and 3 and was cut short in batch 5."""
    out = tmp_path / "paths.jsonl"
    shutil.copy(f"{reference}.meta.json", f"{out}.meta.json")
    lines = _lines(reference)
    shard_path(out, 0).write_text("\n".join(lines[0:2]) + "\n")
    shard_path(out, 1).write_text("\n".join(lines[2:4] + lines[6:8]) + "\n" + lines[10][:-3])
    main(["extract", "--data", str(data), "--out", str(out), *FAST])
    assert "6 new" in capsys.readouterr().err
    assert _lines(out) == lines
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

    agent = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "over 2 process(es)" in done.stderr and "6/6" in done.stderr  # rank 0 had half of the inputs
    assert f"{NUM_INPUTS - partial} new" in done.stderr
    assert _lines(out) == _lines(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paths.jsonl", "paths.jsonl.meta.json"]


def test_changed_settings_are_refused_and_overwrite_starts_again(data, reference, tmp_path, capsys):
    out = tmp_path / "paths.jsonl"
    shutil.copy(reference, out)
    shutil.copy(f"{reference}.meta.json", f"{out}.meta.json")
    before = out.read_bytes()
    changed = ["--data", str(data), "--out", str(out), *FAST[:-1], "2"]  # --layer-scores 2
    with pytest.raises(SystemExit) as refused:
        main(["extract", *changed, "--n-steps", "5"])
    message = str(refused.value.code)
    assert "layer_scores 3 -> 2" in message and "n_steps 4 -> 5" in message
    assert "--overwrite" in message and "--out" in message
    assert out.read_bytes() == before

    main(["extract", *changed, "--n-steps", "5", "--overwrite", "--target", "predicted"])
    records = [json.loads(line) for line in _lines(out)]
    assert [r["index"] for r in records] == list(range(NUM_INPUTS))
    assert all(r["target"] == r["prediction"] and len(r["layer_scores"][0]) == 2 for r in records)
    assert json.loads(Path(f"{out}.meta.json").read_text())["settings"]["n_steps"] == 5


def test_a_file_without_settings_is_refused(data, tmp_path):
    out = tmp_path / "paths.jsonl"
    out.write_text('{"index": 0}\n')
    with pytest.raises(SystemExit, match="settings are unknown.*--overwrite"):
        main(["extract", "--data", str(data), "--out", str(out), *FAST])
    assert out.read_text() == '{"index": 0}\n'


def test_bad_command_lines_are_explained(data, tmp_path, capsys):
    out = str(tmp_path / "paths.jsonl")
    cases = [
        (["--model", "no_such_module_xyz:make", "--data", str(data)], "no_such_module_xyz"),
        (["--model", "extract_models:tiny_vit", "--data", str(tmp_path / "missing.safetensors")], "does not exist"),
        (["--model", "extract_models:tiny_vit", "--data", str(data), "--transform", "extract_models:resize_16"], "--transform"),
        (["--model", "torch.nn:Linear", "--data", str(data)], "Linear"),  # a factory that needs arguments
        (["--model", "torch.nn:GELU", "--data", str(data)], "not a supported Vision Transformer"),
        (["--model", "timm:vit_tiny_patch16_224", "--data", str(data), "--pretrained", "--checkpoint", out], "not both"),
    ]
    for args, text in cases:
        with pytest.raises(SystemExit) as error:
            main(["extract", "--out", out, *args])
        assert text in str(error.value.code), args
    for option, value, text in [("--n-steps", "0", "positive integer"), ("--device", "gpu", "torch device")]:
        with pytest.raises(SystemExit):
            main(["extract", "--model", "extract_models:tiny_vit", "--data", str(data), "--out", out, option, value])
        assert text in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def _image_folder(root: Path) -> Path:
    generator = torch.Generator().manual_seed(1)
    for label, name in enumerate(["ant", "bee"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            pixels = torch.randint(0, 256, (16, 16, 3), generator=generator, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(root / name / f"{i}.png")
    return root


def test_image_folder_with_timm_data_config_or_a_transform(tmp_path):
    folder = _image_folder(tmp_path / "images")
    runs = {}
    for name, extra in [("timm", []), ("transform", ["--transform", "extract_models:resize_16"])]:
        out = tmp_path / f"{name}.jsonl"
        main(["extract", "--data", str(folder), "--out", str(out), *FAST, *extra])
        runs[name] = [json.loads(line) for line in _lines(out)]
    records = runs["timm"]
    assert [r["file"] for r in records] == [f"{c}/{i}.png" for c in ("ant", "bee") for i in range(3)]
    assert [r["label"] for r in records] == [0, 0, 0, 1, 1, 1]
    # 16 x 16 images: timm's resize and crop to the model's 16 x 16 and the hand-written resize agree.
    assert runs["transform"] == records


def test_each_rank_gets_whole_batches_and_together_every_index_once():
    for num_inputs, batch_size, world_size in [(12, 2, 2), (13, 4, 3), (5, 8, 2), (7, 1, 4)]:
        done = {1, 2}
        batches = [assigned_batches(num_inputs, batch_size, r, world_size, done) for r in range(world_size)]
        indices = sorted(i for rank in batches for batch in rank for i in batch)
        assert indices == sorted(set(range(num_inputs)) - done)
        for rank, rank_batches in enumerate(batches):
            for batch in rank_batches:
                assert len({i // batch_size for i in batch}) == 1 and batch[0] // batch_size % world_size == rank


def test_merge_keeps_each_index_once_in_order_and_drops_torn_tails(tmp_path):
    out = tmp_path / "paths.jsonl"
    out.write_text('{"index": 0}\n{"index": 3}\n{"ind')
    shard_path(out, 0).write_text('{"index": 3}\n{"index": 1}\n')
    shard_path(out, 5).write_text('{"index": 2}\n{"index": 4')
    assert merge_records(out) == 4
    assert _lines(out) == [f'{{"index": {i}}}' for i in range(4)]
    assert list(tmp_path.iterdir()) == [out]
    out.write_text('{"index": 0}\nnot json\n{"index": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_records(out)
