import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

DATA = Path(__file__).parent / "data"


def pytest_configure(config):
    """Seed the digits weights cache with the fixture model, a digits ViT of the same
    architecture trained on the same split, so the tutorials and the demo need no training
    in the suite (tests/test_digits.py tests training and caching themselves). Notebook
    kernels and subprocesses inherit the variable."""
    if "CAPTUM_NEURONPATH_CACHE" not in os.environ:
        cache = Path(tempfile.mkdtemp(prefix="captum_neuronpath_cache_"))
        shutil.copy(DATA / "digits_vit_d6.safetensors", cache / "digits_vit_d6_e40_s0.safetensors")
        os.environ["CAPTUM_NEURONPATH_CACHE"] = str(cache)


@pytest.fixture(scope="session")
def digits_vit() -> VisionTransformer:
    """The authors' fixture model: a timm ViT trained on scikit-learn's digits."""
    config = json.loads((DATA / "digits_vit_d6.json").read_text())
    model = VisionTransformer(
        img_size=config["img_size"], patch_size=config["patch_size"], in_chans=3, num_classes=10,
        embed_dim=config["dim"], depth=config["depth"], num_heads=config["heads"],
        mlp_ratio=config["mlp_dim"] / config["dim"], qkv_bias=True,
        global_pool=config["global_pool"], class_token=True,
    )
    model.load_state_dict(load_file(DATA / "digits_vit_d6.safetensors"))
    return model.eval()


@pytest.fixture(scope="session")
def expected():
    """(cases, inputs): the authors' outputs and the exact input tensors."""
    cases = json.loads((DATA / "expected_d6.json").read_text())
    inputs = load_file(DATA / "expected_d6_inputs.safetensors")
    return cases, inputs


def case_images(case, inputs) -> torch.Tensor:
    rows = [inputs["dataset_indices"].tolist().index(i) for i in case["dataset_indices"]]
    return inputs["images"][rows]


@pytest.fixture(scope="session")
def digits_extract(tmp_path_factory) -> Path:
    """`neuronpath extract` of the fixture model on the digits ViT's 397 test images, with the class names."""
    from safetensors.torch import save_file

    from captum_neuronpath import digits
    from captum_neuronpath._cli import main

    folder = tmp_path_factory.mktemp("digits_extract")
    _, (images, labels) = digits.digits_split()
    save_file({"images": images.contiguous(), "labels": labels}, folder / "test.safetensors")
    (folder / "names.txt").write_text("".join(f"digit {d}\n" for d in range(10)))
    model = ["--model", "captum_neuronpath.digits:build_digits_vit", "--checkpoint", str(DATA / "digits_vit_d6.safetensors")]
    out = folder / "paths.jsonl"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        status = main(["extract", *model, "--data", str(folder / "test.safetensors"), "--out", str(out),
                       "--batch-size", "16", "--class-names", str(folder / "names.txt")])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    return out


@pytest.fixture(scope="session")
def digits_report(digits_extract, tmp_path_factory) -> Path:
    """`neuronpath report` of :func:`digits_extract`: the folder holding report.json, figures/ and index.html."""
    from captum_neuronpath._cli import main

    out = tmp_path_factory.mktemp("digits_report")
    assert main(["report", str(digits_extract), "--out", str(out)]) == 0
    return out
