"""The path explorer of ``neuronpath demo``: the digits ViT's test paths, as ``neuronpath report`` writes them."""

from pathlib import Path
from typing import List, Sequence

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import TensorDataset

from captum_neuronpath._cli.loading import Inputs
from captum_neuronpath._extract.description import describe_paths
from captum_neuronpath._models import vit_mlp_layers, vit_readout_token
from captum_neuronpath._report import write_report
from captum_neuronpath._report.inputs import stacked
from captum_neuronpath.paths import Paths


def write_demo_report(
    out: Path, model: Module, images: Tensor, labels: Tensor, path: Tensor, jas: Tensor, class_names: Sequence[str]
) -> List[Path]:
    """Write ``out/report.json``, ``out/figures`` and ``out/index.html`` for the paths of ``images``."""
    with torch.no_grad():
        probabilities = model(images).softmax(-1)
    inputs = Inputs(TensorDataset(images, labels), labels, None, source=lambda index: images[index].numpy().tobytes())
    meta = describe_paths(model, vit_mlp_layers(model), vit_readout_token(model), inputs, None)
    meta["class_names"] = list(class_names)
    records = Paths(
        path, jas.double(), labels, labels, probabilities.argmax(-1),
        probabilities.gather(1, labels[:, None])[:, 0].double(), torch.arange(len(labels)), [None] * len(labels), meta,
    )  # fmt: skip
    return write_report(records, out, stacked(images), "digits ViT test set")
