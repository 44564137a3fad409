import json
import os
import subprocess
import sys

import pytest
import torch

import captum_neuronpath as cnp
from captum_neuronpath._cli import build_parser, main


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
        (["--seed", str(2**64)], "--seed: expected a seed torch accepts"),
        (["--seed", str(-(2**63) - 1)], "--seed: expected a seed torch accepts"),
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


def test_options_are_never_abbreviated_and_an_unknown_one_shows_the_subcommand_usage(capsys):
    for command in (["extract", "--model", "m", "--data", "d", "--out", "o", "--n-step", "20"], ["demo", "--epoch", "1"]):
        with pytest.raises(SystemExit) as exited:
            main(command)
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith(f"usage: neuronpath {command[0]} ") and f"unrecognized arguments: {command[-2]}" in error


def test_help_shows_every_default():
    parser = build_parser()
    commands = next(action for action in parser._actions if action.choices)
    assert set(commands.choices) >= {"demo", "extract", "table"}
    for name, command in commands.choices.items():
        text = " ".join(command.format_help().split())
        for action in command._actions:
            if action.option_strings and action.default not in (None, False, [], "==SUPPRESS=="):
                assert f"(default: {action.default})" in text, (name, action.dest)


def test_seeds_torch_accepts_and_those_derived_from_them_work(tmp_path):
    """The widest seeds, in intervene's pruning (each layer's seed is derived from it) as in the demo's option."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    for seed in (2**64 - 1, 2**50, -(2**63)):
        with cnp.intervene([model[1]], [0], mode="prune", p=0.5, token=None, seed=seed):
            assert model(torch.randn(3, 4)).shape == (3, 2)
    for seed in (2**64, -(2**63) - 1):
        with pytest.raises(ValueError, match="seed"):
            with cnp.intervene([model[1]], [0], mode="prune", p=0.5, token=None, seed=seed):
                pass
    args = build_parser().parse_args(["demo", "--seed", str(2**64 - 1)])
    assert args.seed == 2**64 - 1


def test_table_subcommand_and_the_benchmark_script_run_the_same_command(tmp_path):
    from safetensors.torch import save_file

    tests = os.path.dirname(os.path.abspath(__file__))
    data = tmp_path / "images.safetensors"
    generator = torch.Generator().manual_seed(0)
    save_file({"images": torch.randn(4, 3, 16, 16, generator=generator), "labels": torch.tensor([0, 1, 2, 3])}, data)
    options = ["--model", "extract_models:tiny_vit", "--data", str(data), "--n-bootstrap", "10", "--n-steps", "2",
               "--methods", "Neuron Path", "Random"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])))
    script = [sys.executable, os.path.join(os.path.dirname(tests), "benchmarks", "paper_table.py")]
    tables = []
    for command in ([sys.executable, "-m", "captum_neuronpath", "table"], script):
        out = tmp_path / "table.json"
        done = subprocess.run([*command, *options, "--out", str(out)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        assert "| Neuron Path |" in done.stdout and "| Random |" in done.stdout
        tables.append(json.loads(out.read_text()))
    assert tables[0] == tables[1] and [row["method"] for row in tables[0]["rows"]] == ["Neuron Path", "Random"]
    done = subprocess.run([*script, "--n-step", "2"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr.startswith("usage: neuronpath table")
