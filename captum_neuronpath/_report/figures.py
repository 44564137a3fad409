"""The report's PNG figures, drawn with :mod:`captum_neuronpath.visualization` where it has the figure."""

from pathlib import Path
from typing import Dict, List

import numpy
import torch
from matplotlib.figure import Figure

from captum_neuronpath import visualization
from captum_neuronpath._report.analysis import ClassFrequency
from captum_neuronpath.paths import Paths

NAMED_CLASSES = 30  # above this many classes the similarity matrix has no names or values written in


def write_figures(
    folder: Path, paths: Paths, report: Dict[str, object], frequency: ClassFrequency, similarity: torch.Tensor
) -> Dict[str, Path]:
    """Render the figures into ``folder``; returns name -> file."""
    classes = report["classes"]
    drawn = {}
    if len(classes) <= NAMED_CLASSES:
        drawn["class_similarity"] = visualization.visualize_class_similarity(
            similarity, [c["name"] for c in classes], use_pyplot=False
        )[0]
    else:
        figure, axis = visualization._figure(None, False, (8.0, 7.0))
        image = axis.imshow(similarity.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        figure.colorbar(image, ax=axis, label="cosine similarity")
        axis.set_title(f"Inter-class similarity of neuron paths, {len(classes)} classes")
        axis.set(xlabel="class (in index order)", ylabel="class (in index order)")
        drawn["class_similarity"] = figure
    largest = max(range(len(classes)), key=lambda row: classes[row]["inputs"])  # the records hold a class at least
    dense = torch.zeros(frequency.num_layers, frequency.width, dtype=torch.float64)
    mine = frequency.rows == largest
    dense[frequency.layers[mine], frequency.channels[mine]] = frequency.frequency[mine]
    drawn["neuron_frequency"] = visualization.visualize_neuron_frequency(
        dense, title=f"Neuron-path frequency of class {classes[largest]['name']}", use_pyplot=False
    )[0]
    drawn["jas"] = _jas_figure(paths, classes)
    drawn["shared_neurons"] = _shared_figure(frequency, len(classes))
    return save_figures(folder, drawn, dpi=100)


def save_figures(folder: Path, figures: Dict[str, Figure], dpi: int) -> Dict[str, Path]:
    """Save each figure as ``folder/NAME.png``; returns name -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {name: folder / f"{name}.png" for name in figures}
    for name, figure in figures.items():
        figure.savefig(written[name], dpi=dpi)
    return written


def _jas_figure(paths: Paths, classes: List[Dict[str, object]]) -> Figure:
    """JAS of correct and wrong predictions, and each class's mean JAS (from the report's ``classes``)."""
    figure = Figure(figsize=(10.0, 3.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    known = paths.predictions >= 0
    correct = known & (paths.predictions == paths.labels)
    bins = _bins(paths.jas, 40)
    for selected, name, colour in ((correct, "correct", "0.35"), (known & ~correct, "wrong", "tab:red")):
        if selected.any():
            label = f"{name} ({int(selected.sum())})"
            left.hist(paths.jas[selected].numpy(), bins=bins, color=colour, alpha=0.7, label=label)
    left.set(xlabel="JAS of the path", ylabel="inputs", title="JAS, correct and wrong predictions")
    if known.any():
        left.legend(fontsize=9)
    means = torch.tensor([c["jas"]["mean"] for c in classes], dtype=torch.float64)
    right.hist(means.numpy(), bins=_bins(means, min(40, max(len(classes), 1))), color="0.45", edgecolor="black")
    right.set(xlabel="mean JAS of a class", ylabel="classes", title=f"JAS per class, {len(classes)} classes")
    return figure


def _bins(values: torch.Tensor, count: int) -> numpy.ndarray:
    """``count`` equal bins over ``values``; one unit wide around values that are (nearly) all equal."""
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    if high - low <= 1e-9 * max(1.0, abs(high)):
        low, high = low - 0.5, high + 0.5
    return numpy.linspace(low, high, count + 1)


def _shared_figure(frequency: ClassFrequency, num_classes: int) -> Figure:
    """How many classes' paths each neuron is in."""
    shared = frequency.neurons()[2]
    figure, axis = visualization._figure(None, False, (6.0, 3.8))
    top = int(shared.max()) if len(shared) else 1
    axis.hist(shared.numpy(), bins=range(1, top + 2), color="0.45", edgecolor="black", align="left")
    axis.set_yscale("log")
    axis.set(xlabel=f"classes whose paths hold the neuron (of {num_classes})", ylabel="neurons")
    axis.set_title("Neurons shared between classes")
    return figure
