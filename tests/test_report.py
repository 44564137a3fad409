"""`neuronpath report`: its numbers against captum_neuronpath.metrics, the page's structure (no browser), errors."""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

import captum_neuronpath as cnp
from captum_neuronpath._cli import main
from captum_neuronpath.metrics import class_similarity, most_similar_classes, neuron_frequency


class _Page(HTMLParser):
    """The tags, attributes and script contents of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append([dict(attrs), ""])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            self.scripts[-1][1] += data


def parse(page: Path) -> _Page:
    parsed = _Page()
    parsed.feed(page.read_text())
    return parsed


def page_data(page: Path) -> dict:
    (data,) = [text for attrs, text in parse(page).scripts if attrs.get("id") == "explorer-data"]
    return json.loads(data)


def test_frequencies_and_similarities_equal_the_metrics_on_the_records(digits_extract, digits_report):
    records = cnp.paths.load(digits_extract)
    report = json.loads((digits_report / "report.json").read_text())
    expected = neuron_frequency(records.paths, records.labels, num_channels=records.num_channels, num_classes=10)
    sizes = {c["class"]: c["inputs"] for c in report["classes"]}
    frequency = torch.zeros_like(expected)
    for label, layer, channel, count in report["neuron_frequency"]["entries"]:
        frequency[label, layer, channel] = count / sizes[label]
    assert torch.allclose(frequency, expected, atol=1e-7) and frequency.sum() > 0
    similarity = class_similarity(expected)
    assert report["class_similarity"]["classes"] == list(range(10))
    assert torch.allclose(torch.tensor(report["class_similarity"]["matrix"]), similarity, atol=1e-6)
    nearest = most_similar_classes(similarity, k=9)
    for c in report["classes"]:
        assert [other for other, _ in c["nearest"]] == nearest[c["class"]].tolist()
        top = expected[c["class"]].max(dim=1)
        assert [layer[0][1] for layer in c["top_neurons"]] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert [c["name"] for c in report["classes"]] == [f"digit {d}" for d in range(10)]
    assert sum(sizes.values()) == report["inputs"] == len(records) == 397 and report["errors"] == 0
    correct = int((records.predictions == records.labels).sum())
    assert report["predictions"]["correct"] == correct and report["predictions"]["wrong"] == 397 - correct
    assert report["jas"]["mean"] == pytest.approx(float(records.jas.mean()))
    shared = report["shared_neurons"][0]
    assert shared["classes"] == int((expected[:, shared["layer"], shared["channel"]] > 0).sum())
    assert shared["classes"] == max(int((expected[:, l] > 0).sum(0).max()) for l in range(records.num_layers))
    assert sorted(p.name for p in (digits_report / "figures").glob("*.png")) == [
        "class_similarity.png", "jas.png", "neuron_frequency.png", "shared_neurons.png"
    ]  # fmt: skip


def test_top_k_paths_count_each_neuron_once_per_input(tmp_path):
    generator = torch.Generator().manual_seed(0)
    paths = torch.randint(0, 6, (40, 3, 4), generator=generator)
    labels = torch.randint(0, 5, (40,), generator=generator)
    file = tmp_path / "paths.jsonl"
    file.write_text("".join(
        json.dumps({"index": i, "label": int(y), "target": int(y), "prediction": int(y), "path": p.tolist(), "jas": 0.1})
        + "\n" for i, (p, y) in enumerate(zip(paths, labels))
    ))  # fmt: skip
    assert main(["report", str(file), "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    expected = neuron_frequency(paths, labels, num_channels=6)
    frequency = torch.zeros_like(expected)
    sizes = {c["class"]: c["inputs"] for c in report["classes"]}
    for label, layer, channel, count in report["neuron_frequency"]["entries"]:
        frequency[label, layer, channel] = count / sizes[label]
    assert torch.allclose(frequency, expected) and report["top_k"] == 4


def test_the_page_is_one_offline_file_with_the_explorer_and_every_record(digits_extract, digits_report):
    page = digits_report / "index.html"
    text = page.read_text()
    parsed = parse(page)
    assert "http://" not in text and "https://" not in text and "@import" not in text
    assert not [attrs for tag, attrs in parsed.tags if "src" in attrs or (tag == "link" and "href" in attrs)]
    ids = {attrs.get("id") for _, attrs in parsed.tags}
    assert {"search", "class-list", "class-panel", "neuron-panel", "overview-panel", "explorer-data"} <= ids
    data = page_data(page)
    records = cnp.paths.load(digits_extract)
    assert data["records"]["label"] == records.labels.tolist()
    assert data["records"]["path"] == records.paths.flatten().tolist()
    assert [c["name"] for c in data["classes"]] == [f"digit {d}" for d in range(10)]
    assert len(data["thumbnails"]) == len(records)  # the .safetensors data is still there: every image
    assert all(url.startswith("data:image/jpeg;base64,") for url in data["thumbnails"].values())
    assert page.stat().st_size < 1_000_000


def test_error_records_are_left_out_and_counted(digits_extract, tmp_path):
    file = tmp_path / "paths.jsonl"
    lines = digits_extract.read_text().splitlines()
    errors = [json.dumps({"index": 400 + i, "file": None, "error": "out of memory"}) for i in range(2)]
    file.write_text("\n".join(lines[:5] + errors + lines[5:]) + "\n")
    assert main(["report", str(file), "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["errors"] == 2 and report["inputs"] == 397
    assert "2 inputs left out as errors" in (tmp_path / "report" / "index.html").read_text()


def _records(file: Path, files=None, meta=None):
    records = [
        {"index": i, "file": None if files is None else files[i], "label": i % 2, "target": i % 2, "prediction": 0,
         "path": [i % 3, 1], "jas": 0.1 * i}
        for i in range(4)
    ]  # fmt: skip
    file.write_text("".join(json.dumps(r) + "\n" for r in records))
    if meta is not None:
        Path(f"{file}.meta.json").write_text(json.dumps(meta))
    return file


def test_image_folder_thumbnails_and_token_ids(tmp_path):
    folder = tmp_path / "images"
    files = ["a/0.png", "b/1.png", "a/2.png", "b/3.png"]
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (200, 100), "red").save(folder / name)
    images = _records(tmp_path / "images.jsonl", files, {"settings": {"data": str(folder)}, "class_names": ["a", "b"]})
    assert main(["report", str(images), "--out", str(tmp_path / "image_report")]) == 0
    data = page_data(tmp_path / "image_report" / "index.html")
    assert len(data["thumbnails"]) == 4 and data["names"] == {"0": "a", "1": "b"}
    thumbnail = Image.open(__import__("io").BytesIO(__import__("base64").b64decode(data["thumbnails"]["0"].split(",")[1])))
    assert max(thumbnail.size) <= 48

    sequences = tmp_path / "sums.jsonl"
    sequences.write_text("".join(json.dumps({"input_ids": list(range(i, i + 30)), "target": 1}) + "\n" for i in range(4)))
    text = _records(tmp_path / "text.jsonl", meta={"settings": {"data": str(sequences)}})
    assert main(["report", str(text), "--out", str(tmp_path / "text_report")]) == 0
    data = page_data(tmp_path / "text_report" / "index.html")
    assert data["texts"]["2"] == "... " + " ".join(str(t) for t in range(8, 32)) and not data["thumbnails"]


def test_mistakes_are_one_line_errors(tmp_path, capsys):
    def refused(*args) -> str:
        capsys.readouterr()
        assert main(["report", *map(str, args)]) == 2
        error = capsys.readouterr().err
        assert "Traceback" not in error and "neuronpath report: error:" in error
        return error

    assert "does not exist" in refused(tmp_path / "missing.jsonl", "--out", tmp_path / "r")
    (tmp_path / "bad.jsonl").write_text("{}\n")
    assert "line 1" in refused(tmp_path / "bad.jsonl", "--out", tmp_path / "r")
    (tmp_path / "errors.jsonl").write_text(json.dumps({"index": 0, "error": "gone"}) + "\n")
    assert "holds no paths (1 inputs recorded as errors)" in refused(tmp_path / "errors.jsonl", "--out", tmp_path / "r")
    (tmp_path / "taken").write_text("")
    assert "is not a folder" in refused(_records(tmp_path / "ok.jsonl"), "--out", tmp_path / "taken")


def test_the_demo_writes_the_same_page_for_the_digits_vit(digits_vit, tmp_path):
    from captum_neuronpath import digits
    from captum_neuronpath._demo import write_demo_report

    _, (images, labels) = digits.digits_split()
    images, labels = images[:20], labels[:20]
    result = cnp.NeuronPath(lambda x: digits_vit(x).softmax(-1), cnp.vit_mlp_layers(digits_vit)).attribute(
        images, target=labels
    )
    write_demo_report(tmp_path, digits_vit, images, labels, result.path, result.jas, [str(d) for d in range(10)])
    data = page_data(tmp_path / "index.html")
    assert data["records"]["path"] == result.path.flatten().tolist() and len(data["thumbnails"]) == 20
    assert [layer["width"] for layer in data["layers"]] == [256] * 6
    assert json.loads((tmp_path / "report.json").read_text())["inputs"] == 20


def test_a_tokenizer_shows_token_sequences_as_text(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocabulary = {word: i for i, word in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven"])}
    tokenizer = Tokenizer(WordLevel(vocabulary, unk_token="zero"))
    tokenizer.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="zero").save_pretrained(tmp_path / "tokenizer")
    sequences = tmp_path / "words.jsonl"
    sequences.write_text("".join(json.dumps({"input_ids": [i, i + 1], "target": 1}) + "\n" for i in range(4)))
    text = _records(tmp_path / "text.jsonl", meta={"settings": {"data": str(sequences)}})
    out = tmp_path / "report"
    assert main(["report", str(text), "--out", str(out), "--tokenizer", str(tmp_path / "tokenizer")]) == 0
    assert page_data(out / "index.html")["texts"]["2"].split() == ["two", "three"]
