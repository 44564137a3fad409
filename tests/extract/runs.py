"""Running `neuronpath extract` in tests: its options, a subprocess or in-process run, and its refusals."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from captum_neuronpath._cli import main

TESTS = Path(__file__).parents[1]  # where extract_models lives
BIN = Path(sys.executable).parent
NUM_INPUTS = 12
FAST = ["--model", "extract_models:tiny_vit", "--n-steps", "4", "--batch-size", "2", "--layer-scores", "3"]
SLOW = ["--model", "extract_models:slow_tiny_vit"] + FAST[2:]
TEXT = ["--model", "extract_models:tiny_gpt2", "--n-steps", "4", "--batch-size", "4", "--layer-scores", "3"]
LENGTHS = [5, 2, 7, 1, 4, 3]  # two batches of 4 and 2, both padded


def env() -> dict:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def extract(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "captum_neuronpath", "extract", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env())


def read_lines(path: Path) -> list:
    return path.read_text().splitlines()


def refused(capsys, *args) -> str:
    """The one-line message of a command that must fail with exit status 2."""
    capsys.readouterr()
    assert main(["extract", *map(str, args)]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.count("error:") == 1, error
    return error


def failed(capsys, *args) -> str:
    """The one-line message of a command that must fail during the run, with exit status 1."""
    capsys.readouterr()
    assert main(["extract", *map(str, args)]) == 1
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.count("error:") == 1, error
    return error.splitlines()[-1]


def image_folder(root: Path) -> Path:
    generator = torch.Generator().manual_seed(1)
    for label, name in enumerate(["ant", "bee"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            pixels = torch.randint(0, 256, (16, 16, 3), generator=generator, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(root / name / f"{i}.png")
    return root


def fresh_run(capsys, folder: Path, out: Path, *extra) -> list:
    """The records of an uninterrupted run on ``folder`` as it is now."""
    assert main(["extract", "--data", str(folder), "--out", str(out), *FAST, *extra, "--overwrite"]) == 0
    capsys.readouterr()
    return read_lines(out)
