import json
import os
import subprocess
import sys

import pytest

from captum_neuronpath.cli import main


def test_demo_runs_offline_end_to_end(tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "captum_neuronpath", "demo", "--epochs", "1", "--max-examples", "6",
        "--batch-size", "4", "--n-bootstrap", "20", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr
    assert "training the digits ViT" in done.stderr
    assert "| Neuron Path |" in done.stdout and "| Random |" in done.stdout
    assert "| Method | Removal: score change |" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert [row["method"] for row in results["rows"]] == ["Activation", "Influence Pattern", "Neuron Path", "Random"]
    assert len(results["labels"]) == 6 and len(results["inter_class_similarity"]) == 10
    assert set(results["pruning_curves"]) == {"Activation", "Influence Pattern", "Neuron Path", "Random"}
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == sorted(
        f"{name}.png" for name in ["path_methods", "path_images", "layer_scores", "neuron_frequency",
                                   "class_similarity", "nearest_classes", "pruning_curve", "accuracy_deviation",
                                   "score_change", "paired_score_change"]
    )  # fmt: skip
    assert all((out / "figures" / name).stat().st_size > 10_000 for name in figures)
    assert 'id="explorer-data"' in (out / "explorer" / "index.html").read_text()  # the path explorer
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "training" not in again.stderr  # loaded from the cache


def test_help_lists_the_demo():
    done = subprocess.run([sys.executable, "-m", "captum_neuronpath", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "demo" in done.stdout


@pytest.mark.parametrize(
    "args, text",
    [
        (["--epochs", "0"], "--epochs: expected a positive integer"),
        (["--max-examples", "-3"], "--max-examples: expected a positive integer"),
        (["--n-steps", "two"], "--n-steps: expected a positive integer"),
        (["--batch-size", "0"], "--batch-size: expected a positive integer"),
        (["--n-bootstrap", "0"], "--n-bootstrap: expected a positive integer"),
        (["--method", "simpson"], "--method: invalid choice: 'simpson'"),
        (["--seed", "-1"], "--seed: expected a non-negative integer"),
    ],
)
def test_bad_demo_arguments_are_usage_errors(args, text, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["demo", *args])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert text in error and "Traceback" not in error


def test_demo_refuses_an_out_that_is_a_file_before_any_work(tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    assert main(["demo", "--out", str(tmp_path / "taken"), "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "neuronpath demo: error: --out" in capsys.readouterr().err and not (tmp_path / "cache").exists()


def test_demo_refuses_an_unknown_captum_method_without_a_traceback(tmp_path):
    command = [sys.executable, "-m", "captum_neuronpath", "demo", "--captum-methods", "LayerConductance,Nope",
               "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--captum-methods: 'Nope' is not a Captum layer attribution method" in done.stderr
    assert "LayerIntegratedGradients" in done.stderr  # the names it accepts
