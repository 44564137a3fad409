"""`captum_neuronpath.paths.load` and what `neuronpath extract` writes about the paths in FILE.meta.json."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import captum_neuronpath as cnp
from captum_neuronpath._cli import main

from extract_models import tiny_vit

TINY = ["--model", "extract_models:tiny_vit", "--n-steps", "2", "--batch-size", "4"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    yield
    torch.set_num_threads(threads)


def _record(index, label, path, jas=0.5, prediction=None, **extra):
    prediction = label if prediction is None else prediction
    return {"index": index, "file": None, "label": label, "target": label, "prediction": prediction,
            "probability": 0.9, "path": path, "jas": jas, **extra}  # fmt: skip


def _write(file: Path, records, tail: str = "") -> Path:
    file.write_text("".join(json.dumps(record) + "\n" for record in records) + tail)
    return file


def test_load_returns_the_records_as_tensors_leaving_out_errors_and_a_torn_line(tmp_path):
    records = [_record(0, 2, [1, 5], 0.25), {"index": 1, "file": "a.png", "error": "cannot be read"},
               _record(2, 0, [3, 3], -0.5, prediction=1)]  # fmt: skip
    file = _write(tmp_path / "paths.jsonl", records, tail='{"index": 3, "label"')
    loaded = cnp.paths.load(file)
    assert torch.equal(loaded.paths, torch.tensor([[1, 5], [3, 3]]))
    assert loaded.jas.tolist() == [0.25, -0.5] and loaded.labels.tolist() == [2, 0]
    assert loaded.predictions.tolist() == [2, 1] and loaded.indices.tolist() == [0, 2]
    assert loaded.errors == {1: "cannot be read"} and len(loaded) == 2
    assert loaded.meta == {} and loaded.class_names == ["0", "1", "2"] and loaded.layer_widths == [4, 6]


def test_top_k_paths_are_three_dimensional(tmp_path):
    file = _write(tmp_path / "paths.jsonl", [_record(0, 0, [[1, 2], [0, 4]]), _record(1, 1, [[3, 0], [2, 1]])])
    assert cnp.paths.load(file).paths.shape == (2, 2, 2)


def test_bad_lines_are_named(tmp_path):
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        cnp.paths.load(_write(tmp_path / "a.jsonl", [_record(0, 0, [1])], tail="nope\n"))
    with pytest.raises(ValueError, match="line 1 lacks path, jas"):
        cnp.paths.load(_write(tmp_path / "b.jsonl", [{"index": 0, "label": 1, "target": 1}]))
    with pytest.raises(ValueError, match="same number of layers"):
        cnp.paths.load(_write(tmp_path / "c.jsonl", [_record(0, 0, [1, 2]), _record(1, 0, [1])]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cnp.paths.load(tmp_path / "missing.jsonl")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    generator = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("data") / "images.safetensors"
    save_file({"images": torch.randn(6, 3, 16, 16, generator=generator), "labels": torch.tensor([0, 1, 2, 0, 1, 2])}, path)
    return path


def test_extract_describes_layers_token_and_class_names(images, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("ant\nbee\ncat\ndog\n\n")
    out = tmp_path / "paths.jsonl"
    assert main(["extract", "--data", str(images), "--out", str(out), *TINY, "--class-names", str(names)]) == 0
    loaded = cnp.paths.load(out)
    model = tiny_vit()
    assert loaded.layer_names == ["blocks.0.mlp.act", "blocks.1.mlp.act"]
    assert loaded.layer_widths == [block.mlp.fc1.out_features for block in model.blocks] == [32, 32]
    assert loaded.meta["token"] == 0 and loaded.class_names == ["ant", "bee", "cat", "dog"]
    assert loaded.meta["settings"]["n_steps"] == 2 and len(loaded) == 6
    # A resume may name the classes afresh: the names do not change the records.
    names.write_text("a\nb\nc\nd\n")
    assert main(["extract", "--data", str(images), "--out", str(out), *TINY, "--class-names", str(names)]) == 0
    assert cnp.paths.load(out).class_names == ["a", "b", "c", "d"]


def test_too_few_class_names_are_refused(images, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("ant\nbee\n")
    out = tmp_path / "paths.jsonl"
    assert main(["extract", "--data", str(images), "--out", str(out), *TINY, "--class-names", str(names)]) == 2
    error = capsys.readouterr().err
    assert "--class-names" in error and "holds 2 names" in error and "use 3 classes" in error and not out.exists()
    assert main(["extract", "--data", str(images), "--out", str(out), *TINY, "--class-names", str(tmp_path / "no")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_image_folder_names_its_classes(tmp_path):
    for name in ("bee", "ant"):
        (tmp_path / "images" / name).mkdir(parents=True)
        Image.new("RGB", (16, 16), "white").save(tmp_path / "images" / name / "0.png")
    out = tmp_path / "paths.jsonl"
    assert main(["extract", "--data", str(tmp_path / "images"), "--out", str(out), *TINY]) == 0
    loaded = cnp.paths.load(out)
    assert loaded.meta["class_names"] == ["ant", "bee"] and loaded.files == ["ant/0.png", "bee/0.png"]
    predicted = int(loaded.predictions.max())  # the model has 4 classes: one without a folder is named by its index
    assert loaded.class_names == ["ant", "bee", *map(str, range(2, predicted + 1))]
