"""The data sets and reference runs the tests of `neuronpath extract` share."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from captum_neuronpath._cli import main

from extract.runs import FAST, LENGTHS, NUM_INPUTS, TEXT, extract


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
    done = extract("--data", data, "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    assert "images/s" in done.stderr and "img/s" in done.stderr  # the summary and the progress bar
    assert not Path(f"{out}.lock").exists()
    return out


@pytest.fixture(scope="module")
def text_data(tmp_path_factory) -> Path:
    generator = torch.Generator().manual_seed(3)
    path = tmp_path_factory.mktemp("text") / "sequences.jsonl"
    lines = [
        json.dumps({"input_ids": torch.randint(1, 23, (n,), generator=generator).tolist(), "target": int(t)})
        for n, t in zip(LENGTHS, torch.randint(0, 23, (len(LENGTHS),), generator=generator))
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def text_reference(text_data, tmp_path_factory) -> Path:
    """An uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("text_reference") / "paths.jsonl"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the command's in-process runs in this module
    try:
        assert main(["extract", "--data", str(text_data), "--out", str(out), *TEXT]) == 0
    finally:
        torch.set_num_threads(threads)  # a module fixture outlives the module: leave the suite as found
    return out
