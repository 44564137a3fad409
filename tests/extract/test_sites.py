"""`neuronpath extract --layers PATTERN --token SPEC`: the sites and token set of any model."""

import json
from pathlib import Path

import pytest

from captum_neuronpath._cli import main

from extract.runs import FAST, NUM_INPUTS, TEXT, read_lines, refused


def test_layers_and_token_name_the_sites_and_are_recorded_as_settings(data, reference, tmp_path, capsys):
    """The tiny ViT's own sites named by hand give the family's records; other sites and tokens are settings."""
    out = tmp_path / "paths.jsonl"
    assert (
        main(
            ["extract", "--data", str(data), "--out", str(out), *FAST, "--layers", "blocks.*.mlp.act", "--token", "cls"]
        )
        == 0
    )
    assert read_lines(out) == read_lines(reference)
    settings = json.loads(Path(f"{out}.meta.json").read_text())["settings"]
    assert settings["layers"] == "blocks.*.mlp.act" and settings["token"] == "cls"
    message = refused(capsys, "--data", data, "--out", out, *FAST, "--layers", "blocks.*.mlp.act", "--token", "all")
    assert "token 'cls' -> 'all'" in message
    other, fc2 = tmp_path / "fc2.jsonl", ["--layers", "input:blocks.*.mlp.fc2"]
    assert main(["extract", "--data", str(data), "--out", str(other), *FAST, *fc2, "--token", "all"]) == 0
    records = [json.loads(line) for line in read_lines(other)]
    assert len(records) == NUM_INPUTS and all(len(r["path"]) == 2 and max(r["path"]) < 32 for r in records)
    # The last block's patch tokens never reach the class token the head reads: the engine's reason, in one line.
    message = refused(capsys, "--data", data, "--out", tmp_path / "patches.jsonl", *FAST, *fc2, "--token", "1:3")
    assert "do not reach the output" in message


def test_layer_patterns_that_match_nothing_or_out_of_forward_order_are_one_line(data, tmp_path, capsys):
    out = tmp_path / "paths.jsonl"
    message = refused(capsys, "--data", data, "--out", out, *FAST, "--layers", "blocks.*.mlp.ac")
    assert "--layers 'blocks.*.mlp.ac' matches no module" in message and "blocks.0.mlp.act" in message
    options = ["--data", data, "--out", out, "--token", "all", "--layers", "*"]
    message = refused(capsys, "--model", "extract_models:reordered", *options)
    assert "--layers '*' matches modules in an order the forward pass does not run them" in message
    assert "it ran first, second" in message
    message = refused(capsys, "--model", "extract_models:with_an_unused_layer", *options)
    assert "--layers '*': unused never ran" in message
    assert not out.exists()


def test_bad_token_specs_are_usage_errors_and_token_sequences_refuse_a_token(text_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["extract", *FAST, "--data", "d", "--out", "o", "--token", "first"])
    assert (
        exited.value.code == 2
        and "--token: expected cls, an integer, A:B or all, got 'first'" in capsys.readouterr().err
    )
    message = refused(capsys, "--data", text_data, "--out", tmp_path / "p.jsonl", *TEXT, "--token", "0")
    assert "--token applies to images" in message
