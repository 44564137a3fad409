"""`neuronpath extract` end to end: records, resuming after kill -9, stop signals, torn lines, full disks and
changed inputs, unreadable images, refusals, locks, token sequences.

Every run uses one thread (torchrun's default; OMP_NUM_THREADS=1 for subprocesses, the
one_thread fixture in this process), so runs compared record for record do the same
floating-point arithmetic.
"""

import errno
import hashlib
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
from captum_neuronpath._cli import main
from captum_neuronpath._cli.loading import load_safetensors_data
from captum_neuronpath._extract.store import shard_path

from extract.runs import (
    FAST,
    LENGTHS,
    NUM_INPUTS,
    SLOW,
    TEXT,
    env,
    extract,
    failed,
    fresh_run,
    image_folder,
    read_lines,
    refused,
)
from extract_models import tiny_gpt2, tiny_vit

DATA = Path(__file__).parents[1] / "data"


def test_records_hold_the_paths_of_the_api(data, reference):
    """Each input once, in order, with the path and JAS that NeuronPath gives the same batch."""
    records = [json.loads(line) for line in read_lines(reference)]
    assert [r["index"] for r in records] == list(range(NUM_INPUTS))
    model = tiny_vit().eval()
    inputs = load_safetensors_data(data)
    locator = cnp.NeuronPath(
        lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model), token=cnp.vit_readout_token(model)
    )
    result = locator.attribute(inputs[0][:2], target=inputs[1][:2], n_steps=4, method="gausslegendre")
    for i, record in enumerate(records[:2]):
        assert record["label"] == record["target"] == int(inputs[1][i]) and record["file"] is None
        assert record["path"] == result.path[i].tolist()
        assert record["jas"] == pytest.approx(float(result.jas[i]), rel=1e-5)
        assert record["layer_candidates"][1][0] == record["path"][1]
        assert len(record["layer_scores"]) == 2 and len(record["layer_scores"][0]) == 3
        assert record["layer_scores"][0] == sorted(record["layer_scores"][0], reverse=True)
    meta = json.loads(Path(f"{reference}.meta.json").read_text())
    assert meta["settings"]["n_steps"] == 4
    assert set(meta["versions"]) >= {"torch", "captum", "timm", "captum_neuronpath"}
    assert meta["fingerprints"]["model"].startswith("sha256:")
    (run,) = meta["runs"]
    assert (
        run["new_inputs"] == run["num_inputs"] == NUM_INPUTS and run["images_per_second"] > 0 and run["processes"] == 1
    )
    image = inputs[0][0].contiguous()
    own = hashlib.sha256(f"{image.dtype}{tuple(image.shape)}".encode() + image.numpy().tobytes()).hexdigest()
    assert records[0]["fingerprint"] == f"sha256:{own}" and len({r["fingerprint"] for r in records}) == NUM_INPUTS


def test_reproduces_the_authors_paths_on_the_fixture_model(tmp_path):
    """The paper preset through the command: the reference implementation's paths and JAS."""
    out = tmp_path / "paths.jsonl"
    model = [
        "--model",
        "captum_neuronpath.digits:build_digits_vit",
        "--checkpoint",
        str(DATA / "digits_vit_d6.safetensors"),
    ]
    preset = ["--n-steps", "20", "--method", "riemann_left"]
    assert (
        main(
            [
                "extract",
                *model,
                *preset,
                "--data",
                str(DATA / "expected_d6_inputs.safetensors"),
                "--out",
                str(out),
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in read_lines(out)]
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
        process = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") <= seen):
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        seen = out.read_bytes().count(b"\n")
        assert 0 < seen < NUM_INPUTS  # killed mid-run, after at least one batch
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{NUM_INPUTS - seen} new" in done.stderr  # finished inputs were skipped
    assert read_lines(out) == read_lines(reference)


def test_a_torn_last_line_is_discarded_and_recomputed(data, reference, tmp_path):
    out = tmp_path / "paths.jsonl"
    shutil.copy(f"{reference}.meta.json", f"{out}.meta.json")
    lines = read_lines(reference)
    out.write_text("\n".join(lines[:5]) + "\n" + lines[5][:40])  # the write of record 5 cut short
    assert main(["extract", "--data", str(data), "--out", str(out), *FAST]) == 0
    assert read_lines(out) == lines


def test_changed_settings_are_refused_and_overwrite_starts_again(data, reference, tmp_path, capsys):
    out = tmp_path / "paths.jsonl"
    shutil.copy(reference, out)
    shutil.copy(f"{reference}.meta.json", f"{out}.meta.json")
    before = out.read_bytes()
    changed = ["--data", str(data), "--out", str(out), *FAST[:-1], "2"]  # --layer-scores 2
    message = refused(capsys, *changed, "--n-steps", "5")
    assert "layer_scores 3 -> 2" in message and "n_steps 4 -> 5" in message
    assert "--overwrite" in message and "--out" in message
    assert out.read_bytes() == before

    assert main(["extract", *changed, "--n-steps", "5", "--overwrite", "--target", "predicted"]) == 0
    records = [json.loads(line) for line in read_lines(out)]
    assert [r["index"] for r in records] == list(range(NUM_INPUTS))
    assert all(r["target"] == r["prediction"] and len(r["layer_scores"][0]) == 2 for r in records)
    assert json.loads(Path(f"{out}.meta.json").read_text())["settings"]["n_steps"] == 5


def test_a_resume_with_another_model_is_refused_and_with_changed_inputs_recomputes_them(data, tmp_path, capsys):
    """Same command line, but the checkpoint file or one image of the data file was rewritten meanwhile."""
    weights, images = tmp_path / "weights.safetensors", tmp_path / "images.safetensors"
    save_file(tiny_vit().state_dict(), weights)
    shutil.copy(data, images)
    out = tmp_path / "paths.jsonl"
    command = ["--data", images, "--out", out, *FAST, "--checkpoint", weights]
    assert main(["extract", *map(str, command)]) == 0
    before = read_lines(out)

    state = tiny_vit().state_dict()
    state["head.bias"] = state["head.bias"] + 1e-3
    save_file(state, weights)
    message = refused(capsys, *command)
    assert "the model changed" in message and "--overwrite" in message
    assert read_lines(out) == before
    save_file(tiny_vit().state_dict(), weights)

    tensors = load_file(images)
    tensors["images"][3, 0, 0, 0] += 1  # the second input of the second batch of 2
    save_file(tensors, images)
    capsys.readouterr()
    assert main(["extract", *map(str, command)]) == 0
    error = capsys.readouterr().err
    assert f"resuming with {NUM_INPUTS - 2} of {NUM_INPUTS} inputs done; 1 changed or vanished since" in error
    assert "2 new" in error  # input 3 and its batch companion 2
    fresh = tmp_path / "fresh.jsonl"
    assert main(["extract", *map(str, command[:2]), "--out", str(fresh), *map(str, command[4:])]) == 0
    assert read_lines(out) == read_lines(fresh)
    assert read_lines(out)[:2] == before[:2] and read_lines(out)[4:] == before[4:] and read_lines(out)[3] != before[3]


def test_a_run_that_wrote_no_record_does_not_block_the_corrected_command(data, reference, tmp_path):
    """A first run with other settings failed before its first batch was written: nothing to resume."""
    out = tmp_path / "paths.jsonl"
    meta = json.loads(Path(f"{reference}.meta.json").read_text())
    meta["settings"]["n_steps"] = 7
    Path(f"{out}.meta.json").write_text(json.dumps(meta))
    out.write_text(read_lines(reference)[0][:30])  # a first batch cut short
    assert main(["extract", "--data", str(data), "--out", str(out), *FAST]) == 0
    assert read_lines(out) == read_lines(reference)
    assert json.loads(Path(f"{out}.meta.json").read_text())["settings"]["n_steps"] == 4


def test_a_file_without_settings_is_refused(data, tmp_path, capsys):
    out = tmp_path / "paths.jsonl"
    out.write_text('{"index": 0}\n')
    assert "settings are unknown" in refused(capsys, "--data", data, "--out", out, *FAST)
    assert out.read_text() == '{"index": 0}\n'


def test_bad_command_lines_are_explained(data, tmp_path, capsys):
    out = str(tmp_path / "paths.jsonl")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    generator = torch.Generator().manual_seed(0)
    wide_labels = tmp_path / "wide_labels.safetensors"
    save_file(
        {"images": torch.randn(5, 3, 16, 16, generator=generator), "labels": torch.tensor([0, 9, 1, -1, 3])},
        wide_labels,
    )
    big_images = tmp_path / "big_images.safetensors"
    save_file({"images": torch.randn(2, 3, 24, 24, generator=generator), "labels": torch.tensor([0, 1])}, big_images)
    tiny = ["--model", "extract_models:tiny_vit"]
    cases = [
        (["--model", "no_such_module_xyz:make", "--data", data], ["no_such_module_xyz"]),
        ([*tiny, "--data", tmp_path / "missing.safetensors"], ["does not exist"]),
        ([*tiny, "--data", data, "--transform", "extract_models:resize_16"], ["--transform"]),
        (["--model", "torch.nn:Linear", "--data", data], ["Linear"]),  # a factory that needs arguments
        (["--model", "torch.nn:GELU", "--data", data], ["GELU is not of a supported model family", "--layers PATTERN"]),
        (["--model", "timm:vit_tiny_patch16_224", "--data", data, "--pretrained", "--checkpoint", out], ["not both"]),
        (["--model", "timm:vit_tiny_patch16_22", "--data", data], ["no model named", "vit_tiny_patch16_224"]),
        (["--model", "torchvision:vit_b_61", "--data", data], ["torchvision has no model named 'vit_b_61'"]),
        ([*tiny, "--data", garbage], [str(garbage), "safetensors"]),
        ([*tiny, "--data", data, "--checkpoint", garbage], ["checkpoint", str(garbage)]),
        (
            [*tiny, "--data", wide_labels],
            ["--data", "2 of 5 labels", "has 4", "label 9 at index 1", "label -1 at index 3"],
        ),
        # The model's own message, not a guess at it:
        ([*tiny, "--data", big_images], ["--model", "(1, 3, 24, 24)", "Input height (24) doesn't match model (16)"]),
    ]
    for args, texts in cases:
        message = refused(capsys, "--out", out, *args)
        for text in texts:
            assert text in message, (args, message)
    for option, value, text in [("--n-steps", "0", "positive integer"), ("--device", "gpu", "torch device")]:
        with pytest.raises(SystemExit):
            main(["extract", "--model", "extract_models:tiny_vit", "--data", str(data), "--out", out, option, value])
        assert text in capsys.readouterr().err
    assert main(["extract", *tiny, "--data", str(wide_labels), "--out", out, "--target", "predicted"]) == 0
    assert [json.loads(line)["label"] for line in read_lines(Path(out))] == [0, 9, 1, -1, 3]
    Path(out).unlink(), Path(f"{out}.meta.json").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "big_images.safetensors",
        "garbage.safetensors",
        "wide_labels.safetensors",
    ]


def test_errors_have_no_traceback_unless_debugging(data, tmp_path):
    command = ["--model", "timm:no_such_vit", "--data", data, "--out", tmp_path / "paths.jsonl"]
    for debug in ("0", "1"):
        done = subprocess.run(
            [sys.executable, "-m", "captum_neuronpath", "extract", *map(str, command)],
            capture_output=True, text=True, timeout=120, env=dict(env(), NEURONPATH_DEBUG=debug),
        )  # fmt: skip
        assert done.returncode == 2 and done.stdout == ""
        assert (
            done.stderr.splitlines()[-1]
            == "neuronpath extract: error: model 'timm:no_such_vit': timm has no model named 'no_such_vit'"
        )
        assert ("Traceback" in done.stderr) == (debug == "1")


def test_image_folder_with_timm_data_config_or_a_transform(tmp_path):
    folder = image_folder(tmp_path / "images")
    runs = {}
    for name, extra in [("timm", []), ("transform", ["--transform", "extract_models:resize_16"])]:
        out = tmp_path / f"{name}.jsonl"
        assert main(["extract", "--data", str(folder), "--out", str(out), *FAST, *extra]) == 0
        runs[name] = [json.loads(line) for line in read_lines(out)]
    records = runs["timm"]
    assert [r["file"] for r in records] == [f"{c}/{i}.png" for c in ("ant", "bee") for i in range(3)]
    assert [r["label"] for r in records] == [0, 0, 0, 1, 1, 1]
    # 16 x 16 images: timm's resize and crop to the model's 16 x 16 and the hand-written resize agree.
    assert runs["transform"] == records


def test_image_folder_inputs_that_changed_or_vanished_are_computed_again(tmp_path, capsys):
    folder = image_folder(tmp_path / "images")
    out, fresh = tmp_path / "paths.jsonl", tmp_path / "fresh.jsonl"
    assert main(["extract", "--data", str(folder), "--out", str(out), *FAST]) == 0
    before = read_lines(out)
    Image.new("RGB", (16, 16)).save(folder / "bee" / "1.png")  # input 4 rewritten after the run
    capsys.readouterr()
    assert main(["extract", "--data", str(folder), "--out", str(out), *FAST]) == 0
    error = capsys.readouterr().err
    assert "resuming with 4 of 6 inputs done; 1 changed or vanished since; 2 to compute" in error and "2 new" in error
    assert read_lines(out)[:4] == before[:4] and read_lines(out) == fresh_run(capsys, folder, fresh)

    (folder / "ant" / "1.png").unlink()  # input 1 vanished: every later input moves up one index
    assert main(["extract", "--data", str(folder), "--out", str(out), *FAST]) == 0
    assert "resuming with 0 of 5 inputs done; 5 changed or vanished since" in capsys.readouterr().err
    assert read_lines(out) == fresh_run(capsys, folder, fresh)


def test_an_unreadable_image_stops_the_run_and_the_same_command_resumes_once_it_is_fixed(tmp_path, capsys):
    folder = image_folder(tmp_path / "images")
    out, fresh = tmp_path / "paths.jsonl", tmp_path / "fresh.jsonl"
    broken = folder / "bee" / "0.png"
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 2])  # a truncated PNG: input 3
    message = failed(capsys, "--data", folder, "--out", out, *FAST)
    assert f"image {broken} cannot be read" in message and "records so far are kept" in message
    assert "--skip-unreadable" in message and len(read_lines(out)) == 2  # the batch before the broken image
    broken.write_bytes(good)
    assert main(["extract", "--data", str(folder), "--out", str(out), *FAST]) == 0
    assert read_lines(out) == fresh_run(capsys, folder, fresh)


def test_skip_unreadable_records_an_error_and_a_later_run_computes_the_fixed_file(tmp_path, capsys):
    folder = image_folder(tmp_path / "images")
    out, fresh = tmp_path / "paths.jsonl", tmp_path / "fresh.jsonl"
    broken = folder / "bee" / "0.png"
    good = broken.read_bytes()
    broken.write_bytes(b"not an image")
    assert main(["extract", "--data", str(folder), "--out", str(out), *FAST, "--skip-unreadable"]) == 0
    assert "6 of 6 inputs done (1 unreadable: error records)" in capsys.readouterr().err
    records = [json.loads(line) for line in read_lines(out)]
    assert records[3]["file"] == "bee/0.png" and records[3]["error"].startswith("cannot be read: ")
    assert "path" not in records[3] and all("path" in r for i, r in enumerate(records) if i != 3)
    assert main(["extract", "--data", str(folder), "--out", str(out), *FAST, "--skip-unreadable"]) == 0
    assert "0 to compute" in capsys.readouterr().err  # still unreadable: its error record stands
    assert "cannot be read" in failed(capsys, "--data", folder, "--out", out, *FAST)  # tried again without the option
    broken.write_bytes(good)
    assert main(["extract", "--data", str(folder), "--out", str(out), *FAST, "--skip-unreadable"]) == 0
    assert read_lines(out) == fresh_run(capsys, folder, fresh, "--skip-unreadable")


def test_a_timm_model_built_with_another_image_size_runs_on_an_image_folder(tmp_path):
    """Its pretrained config says 224 x 224; the folder is preprocessed at the 32 x 32 of its patch embedding."""
    folder = image_folder(tmp_path / "images")
    out = tmp_path / "paths.jsonl"
    assert (
        main(
            [
                "extract",
                "--model",
                "extract_models:timm_vit_32",
                "--data",
                str(folder),
                "--out",
                str(out),
                "--n-steps",
                "2",
            ]
        )
        == 0
    )
    assert [json.loads(line)["file"] for line in read_lines(out)] == [
        f"{c}/{i}.png" for c in ("ant", "bee") for i in range(3)
    ]


def test_ctrl_c_stops_cleanly_and_a_second_command_on_the_same_file_is_refused(data, reference, tmp_path, capsys):
    """SIGINT mid-run: one line, status 130, whole batches only; meanwhile the lock names the writer."""
    out = tmp_path / "paths.jsonl"
    command = [sys.executable, "-m", "captum_neuronpath", "extract", "--data", str(data), "--out", str(out), *SLOW]
    process = subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 2):
        time.sleep(0.01)
    message = refused(capsys, "--data", data, "--out", out, *SLOW)
    assert f"pid {process.pid} on host" in message and "another neuronpath extract" in message
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    seen = len(read_lines(out))
    assert out.read_bytes().endswith(b"\n") and seen % 2 == 0 and 0 < seen < NUM_INPUTS  # whole batches of 2
    assert stderr.splitlines()[-1] == (
        f"neuronpath extract: interrupted after {seen} of {NUM_INPUTS} inputs; run the same command again to resume"
    )
    assert not Path(f"{out}.lock").exists()
    assert main(["extract", "--data", str(data), "--out", str(out), *SLOW]) == 0
    assert f"{NUM_INPUTS - seen} new" in capsys.readouterr().err
    assert read_lines(out) == read_lines(reference)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_like_ctrl_c_with_128_plus_the_signal(stop, data, reference, tmp_path):
    """How schedulers stop a job: between batches, the resume hint, exit status 128 + N; the same command resumes."""
    out = tmp_path / "paths.jsonl"
    command = [sys.executable, "-m", "captum_neuronpath", "extract", "--data", str(data), "--out", str(out), *SLOW]
    process = subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 2):
        time.sleep(0.01)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + stop, stderr
    seen = len(read_lines(out))
    assert out.read_bytes().endswith(b"\n") and seen % 2 == 0 and 0 < seen < NUM_INPUTS
    assert stderr.splitlines()[-1] == (
        f"neuronpath extract: interrupted after {seen} of {NUM_INPUTS} inputs; run the same command again to resume"
    )
    assert not Path(f"{out}.lock").exists()
    assert extract("--data", data, "--out", out, *SLOW).returncode == 0
    assert read_lines(out) == read_lines(reference)


def test_a_full_disk_is_a_failure_that_drops_the_batch_and_the_same_command_completes(
    data, reference, tmp_path, capsys, monkeypatch
):
    """ENOSPC half-way through the second batch: exit status 1 naming the file, whole batches only, then resumable."""
    out = tmp_path / "paths.jsonl"
    real_write = os.write
    batches = []

    def write(descriptor, payload):
        if os.readlink(f"/proc/self/fd/{descriptor}") == str(out):
            batches.append(len(payload))
            if len(batches) == 2:
                real_write(descriptor, payload[: len(payload) // 2])  # the disk fills up in the middle
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(descriptor, payload)

    monkeypatch.setattr(os, "write", write)
    message = failed(capsys, "--data", data, "--out", out, *FAST)
    assert message == (
        f"neuronpath extract: error: {out}: No space left on device; records so far are kept: run the same command "
        "again once this is fixed"
    )
    assert out.read_bytes().endswith(b"\n") and len(read_lines(out)) == 2 and not Path(f"{out}.lock").exists()
    monkeypatch.setattr(os, "write", real_write)  # space freed
    assert main(["extract", "--data", str(data), "--out", str(out), *FAST]) == 0
    assert read_lines(out) == read_lines(reference)


def test_a_resume_under_other_versions_is_refused_unless_allowed(data, reference, tmp_path, capsys):
    out = tmp_path / "paths.jsonl"
    shutil.copy(reference, out)
    meta = json.loads(Path(f"{reference}.meta.json").read_text())
    meta["versions"].update(torch="0.0.1", timm="0.0.2")
    Path(f"{out}.meta.json").write_text(json.dumps(meta))
    message = refused(capsys, "--data", data, "--out", out, *FAST)
    assert f"other versions (torch '0.0.1' -> '{torch.__version__}', timm '0.0.2' -> " in message
    assert "--allow-version-change" in message
    assert main(["extract", "--data", str(data), "--out", str(out), *FAST, "--allow-version-change"]) == 0
    recorded = json.loads(Path(f"{out}.meta.json").read_text())
    assert recorded["versions"]["torch"] == torch.__version__ and recorded["earlier_versions"][0]["torch"] == "0.0.1"
    assert main(["extract", "--data", str(data), "--out", str(out), *FAST]) == 0  # now the same versions
    assert read_lines(out) == read_lines(reference)


def test_text_records_equal_each_sequence_alone_unpadded(text_data, text_reference):
    """Every sequence of a padded batch gets the path and JAS NeuronPath gives it alone, read at its last token."""
    records = [json.loads(line) for line in read_lines(text_reference)]
    assert [r["index"] for r in records] == list(range(len(LENGTHS)))
    model = tiny_gpt2().eval()
    alone = cnp.NeuronPath(lambda ids: model(ids).logits[:, -1].softmax(-1), cnp.mlp_layers(model), token=-1)
    for line, record in zip(read_lines(text_data), records):
        sequence = json.loads(line)
        ids, target = torch.tensor([sequence["input_ids"]]), torch.tensor([sequence["target"]])
        result = alone.attribute(ids, target=target, n_steps=4, method="gausslegendre")
        assert record["label"] == record["target"] == sequence["target"] and record["file"] is None
        assert record["path"] == result.path[0].tolist(), record["index"]
        assert record["jas"] == pytest.approx(float(result.jas[0]), rel=1e-5), record["index"]
        with torch.no_grad():
            probabilities = model(ids).logits[0, -1].softmax(-1)
        assert record["probability"] == pytest.approx(float(probabilities[target]), rel=1e-5)
        assert record["prediction"] == int(probabilities.argmax())
        assert len(record["layer_scores"]) == 2 and record["layer_candidates"][0][0] == record["path"][0]
    meta = json.loads(Path(f"{text_reference}.meta.json").read_text())
    assert meta["runs"][0]["num_inputs"] == len(LENGTHS) and meta["settings"]["data"] == str(text_data.resolve())
    ids = torch.tensor(json.loads(text_data.read_text().splitlines()[0])["input_ids"])
    own = hashlib.sha256(f"{ids.dtype}{tuple(ids.shape)}".encode() + ids.numpy().tobytes()).hexdigest()
    assert records[0]["fingerprint"] == f"sha256:{own}"


def test_text_resume_after_a_partial_run_equals_an_uninterrupted_run(text_data, text_reference, tmp_path, capsys):
    lines = read_lines(text_reference)
    out = tmp_path / "paths.jsonl"
    shutil.copy(f"{text_reference}.meta.json", f"{out}.meta.json")
    out.write_text("\n".join(lines[:4]) + "\n" + lines[4][:30])  # the first batch, then a record cut short
    assert main(["extract", "--data", str(text_data), "--out", str(out), *TEXT]) == 0
    assert "2 new" in capsys.readouterr().err
    assert read_lines(out) == lines

    # A distributed run killed after rank 1 finished the second batch: resumed in one process.
    out.unlink()
    shard_path(out, 1).write_text("\n".join(lines[4:]) + "\n")
    assert main(["extract", "--data", str(text_data), "--out", str(out), *TEXT]) == 0
    assert "4 new" in capsys.readouterr().err
    assert read_lines(out) == lines and not shard_path(out, 1).exists()


def test_text_data_that_changed_is_recomputed(text_data, text_reference, tmp_path, capsys):
    data, out = tmp_path / "sequences.jsonl", tmp_path / "paths.jsonl"
    shutil.copy(text_data, data)
    assert main(["extract", "--data", str(data), "--out", str(out), *TEXT]) == 0
    assert read_lines(out) == read_lines(text_reference)
    data.write_text(data.read_text().replace('"input_ids": [', '"input_ids": [0, ', 1))  # the first sequence
    capsys.readouterr()
    assert main(["extract", "--data", str(data), "--out", str(out), *TEXT]) == 0
    assert "4 new" in capsys.readouterr().err  # the first batch of 4 again
    records = [json.loads(line) for line in read_lines(out)]
    reference = [json.loads(line) for line in read_lines(text_reference)]
    assert records[0]["fingerprint"] != reference[0]["fingerprint"] and records[4:] == reference[4:]


@pytest.mark.parametrize(
    "line,texts",
    [
        ('{"input_ids": [1, 2], "target": 3', ["is not JSON"]),
        ('{"input_ids": [1, 2]}', ["lacks 'target'"]),
        ('{"target": 3}', ["lacks 'input_ids'"]),
        ('{"input_ids": [1, 2.5], "target": 3}', ["input_ids must hold non-negative integers", "2.5"]),
        ('{"input_ids": [1, "2"], "target": 3}', ["input_ids must hold non-negative integers"]),
        ('{"input_ids": [], "target": 3}', ["non-empty list"]),
        ('{"input_ids": [1, 2], "target": true}', ["target must be a non-negative integer"]),
        ("[1, 2, 3]", ["must be an object"]),
    ],
    ids=["json", "target", "input_ids", "float", "string", "empty", "bool", "list"],
)
def test_a_malformed_text_line_is_one_error_naming_the_file_and_line(line, texts, tmp_path, capsys):
    data, out = tmp_path / "sequences.jsonl", tmp_path / "paths.jsonl"
    data.write_text('{"input_ids": [1, 2, 3], "target": 4}\n\n' + line + '\n{"input_ids": [5], "target": 6}\n')
    message = refused(capsys, "--data", data, "--out", out, *TEXT)
    assert len(message.strip().splitlines()) == 1, message
    assert f"data file {data} line 3" in message
    for text in texts:
        assert text in message, message
    assert list(tmp_path.iterdir()) == [data]  # nothing written


def test_text_inputs_the_model_cannot_take_are_refused(text_data, tmp_path, capsys):
    data, out = tmp_path / "sequences.jsonl", tmp_path / "paths.jsonl"
    data.write_text('{"input_ids": [1, 2, 3], "target": 4}\n{"input_ids": [5, 23], "target": 6}\n')
    assert "input 1 holds token id 23, outside the model's vocabulary of 23" in refused(
        capsys, "--data", data, "--out", out, *TEXT
    )
    data.write_text('{"input_ids": [1, 2, 3], "target": 40}\n')
    assert "1 of 1 labels are not classes of the model, which has 23" in refused(
        capsys, "--data", data, "--out", out, *TEXT
    )
    assert "--transform" in refused(capsys, "--data", text_data, "--out", out, *TEXT, "--transform", "x:y")
    message = refused(capsys, "--data", text_data, "--out", out, *FAST)  # a ViT given token sequences
    assert "cannot take the token sequences" in message and "attention_mask" in message, message


# --- Precision, memory and data loading ---------------------------------------------------------------

MEMORY_BOUND = ["--model", "extract_models:memory_bound_tiny_vit", "--layers", "model.blocks.*.mlp.act",
                "--token", "cls"] + FAST[2:]  # fmt: skip


def test_bfloat16_precision_is_a_setting_and_keeps_the_paths_close(data, reference, tmp_path, capsys):
    out = tmp_path / "paths.jsonl"
    assert main(["extract", "--data", str(data), "--out", str(out), *FAST, "--precision", "bfloat16"]) == 0
    assert json.loads(Path(f"{out}.meta.json").read_text())["settings"]["precision"] == "bfloat16"
    low = [json.loads(line) for line in read_lines(out)]
    full = [json.loads(line) for line in read_lines(reference)]
    same = sum(a["path"] == b["path"] for a, b in zip(low, full))
    assert same >= NUM_INPUTS - 2, (same, NUM_INPUTS)  # bfloat16 layers move a near tie at most
    assert all(isinstance(r["jas"], float) for r in low)
    message = refused(capsys, "--data", data, "--out", out, *FAST)  # a resume cannot mix precisions
    assert "precision 'bfloat16' -> 'float32'" in message


def test_out_of_memory_halves_the_rows_per_pass_and_gives_the_same_records(data, reference, tmp_path, capsys):
    out = tmp_path / "paths.jsonl"
    capsys.readouterr()
    assert main(["extract", "--data", str(data), "--out", str(out), *MEMORY_BOUND]) == 0  # 2 x 4 rows > 4
    error = capsys.readouterr().err
    assert error.count("out of memory") == 1 and "fewer rows per pass" in error  # said once
    assert json.loads(Path(f"{out}.meta.json").read_text())["runs"][-1]["internal_batch_size"] == 4
    for line, expected in zip(read_lines(out), read_lines(reference)):
        record, expected = json.loads(line), json.loads(expected)
        assert record["path"] == expected["path"] and record["layer_candidates"] == expected["layer_candidates"]
        assert record["jas"] == pytest.approx(expected["jas"], rel=1e-5, abs=1e-9)  # other chunks, same sums


def test_a_batch_that_does_not_fit_at_one_node_per_pass_names_batch_size_and_device(data, tmp_path, capsys):
    command = ["--data", data, "--out", tmp_path / "paths.jsonl", "--model", "extract_models:one_row_tiny_vit",
               *MEMORY_BOUND[2:]]  # fmt: skip
    message = failed(capsys, *command)
    assert "out of memory on cpu" in message and "--batch-size" in message


def test_worker_processes_give_the_same_records(data, reference, tmp_path, capsys):
    for workers in ("0", "2"):
        out = tmp_path / f"paths-{workers}.jsonl"
        assert main(["extract", "--data", str(data), "--out", str(out), *FAST, "--workers", workers]) == 0
        assert read_lines(out) == read_lines(reference)
