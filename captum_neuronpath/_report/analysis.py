"""The numbers of ``neuronpath report``: per label with at least one input, the frequencies of
:func:`captum_neuronpath.metrics.neuron_frequency` and similarities of
:func:`captum_neuronpath.metrics.class_similarity`, computed sparsely (a class holds at most its
inputs' neurons).
"""

import warnings
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
from torch import Tensor

from captum_neuronpath.metrics import most_similar_classes
from captum_neuronpath.paths import Paths


@dataclass
class ClassFrequency:
    """Sparse per-class neuron frequencies: entry ``e`` is class row ``rows[e]``, ``layers[e]``,
    ``channels[e]``, held by ``counts[e]`` of the class's ``sizes[rows[e]]`` inputs."""

    classes: Tensor  # (M,) the class indices present, ascending
    sizes: Tensor  # (M,) inputs per class
    rows: Tensor
    layers: Tensor
    channels: Tensor
    counts: Tensor
    num_layers: int
    width: int  # the channels of the widest layer: layer * width + channel keys a neuron

    @property
    def frequency(self) -> Tensor:
        return self.counts.double() / self.sizes[self.rows].double()

    def neurons(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Each neuron in a class's paths: its layer and channel, and the classes and inputs whose paths hold it."""
        keys = self.layers * self.width + self.channels
        neurons, inverse, classes = torch.unique(keys, return_inverse=True, return_counts=True)
        inputs = torch.zeros(len(neurons), dtype=torch.long).index_add_(0, inverse, self.counts)
        return neurons // self.width, neurons % self.width, classes, inputs


def class_frequency(paths: Paths) -> ClassFrequency:
    """Which neurons each class's paths hold, and how often (each input counts a neuron once)."""
    classes, rows_of_inputs, sizes = torch.unique(paths.labels, return_inverse=True, return_counts=True)
    path = paths.paths if paths.paths.dim() == 3 else paths.paths[..., None]
    num_inputs, num_layers, _ = path.shape
    width = max(paths.num_channels, int(path.max()) + 1 if path.numel() else 1)
    layer = torch.arange(num_layers).view(1, -1, 1).expand_as(path)
    cells = num_layers * width  # the keys of one class, or of one input
    # An input counts a neuron once, as in neuron_frequency: each distinct (input, layer, channel), then its class.
    input_key = torch.unique((torch.arange(num_inputs).view(-1, 1, 1) * num_layers + layer) * width + path)
    key = rows_of_inputs[input_key // cells] * cells + input_key % cells
    unique, counts = torch.unique(key, return_counts=True)
    rows, rest = unique // cells, unique % cells
    return ClassFrequency(classes, sizes, rows, rest // width, rest % width, counts, num_layers, width)


def similarity(frequency: ClassFrequency) -> Tensor:
    """``(M, M)`` cosine similarity of the classes' flattened frequency matrices (float64)."""
    num_classes, width = len(frequency.classes), frequency.width
    columns = frequency.layers * width + frequency.channels
    matrix = torch.sparse_coo_tensor(
        torch.stack([frequency.rows, columns]), frequency.frequency, (num_classes, frequency.num_layers * width),
        check_invariants=False,
    ).coalesce()  # fmt: skip
    norms = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, frequency.rows, frequency.frequency**2).sqrt()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's notice that sparse support is in beta
        dot = torch.sparse.mm(matrix, matrix.t()).to_dense()
    return dot / (norms[:, None] * norms[None, :]).clamp(min=1e-12)


def analyze(
    paths: Paths, frequency: ClassFrequency, similar: Tensor, top_neurons: int = 10, nearest: int = 10, shared: int = 50
) -> Dict[str, object]:
    """Every number of ``report.json`` from the records, their :func:`class_frequency` and its :func:`similarity`."""
    names = paths.class_names
    classes = frequency.classes.tolist()
    correct = paths.predictions == paths.labels
    most = int(frequency.counts.max()) + 1 if len(frequency.counts) else 1
    order = torch.argsort(frequency.rows * most - frequency.counts, stable=True)  # by class, most frequent first
    by_class = (frequency.layers[order], frequency.channels[order], frequency.frequency[order])
    entries = list(zip(*(values.tolist() for values in by_class)))  # (layer, channel, frequency)
    row_bounds = torch.searchsorted(frequency.rows[order], torch.arange(len(classes) + 1)).tolist()
    nearest_rows = most_similar_classes(similar, min(nearest, len(classes) - 1)).tolist()
    per_class = []
    for row, label in enumerate(classes):
        mine = paths.labels == label
        top: List[List[List[float]]] = [[] for _ in range(paths.num_layers)]
        for layer, channel, value in entries[row_bounds[row] : row_bounds[row + 1]]:
            if len(top[layer]) < top_neurons:
                top[layer].append([channel, round(value, 6)])
        per_class.append(
            {
                "class": label,
                "name": names[label],
                "inputs": int(mine.sum()),
                "correct": int(correct[mine].sum()),
                "jas": _distribution(paths.jas[mine]),
                "top_neurons": top,
                "nearest": [[classes[j], round(float(similar[row, j]), 6)] for j in nearest_rows[row]],
            }
        )
    frequency_entries = torch.stack(
        [frequency.classes[frequency.rows], frequency.layers, frequency.channels, frequency.counts]
    ).T.tolist()
    return {
        "inputs": len(paths),
        "errors": len(paths.errors),
        "layers": [{"name": n, "width": w} for n, w in zip(paths.layer_names, paths.layer_widths)],
        "token": paths.meta.get("token"),
        "top_k": 1 if paths.paths.dim() == 2 else paths.paths.shape[2],
        "classes": per_class,
        "neuron_frequency": {
            "columns": ["class", "layer", "channel", "count"],
            "entries": frequency_entries,
            "note": "frequency = count / the class's inputs",
        },
        "class_similarity": {"classes": classes, "matrix": [[round(v, 6) for v in row] for row in similar.tolist()]},
        "shared_neurons": _shared_neurons(frequency, shared),
        "jas": _distribution(paths.jas),
        "predictions": _predictions(paths, correct),
    }


def _distribution(values: Tensor) -> Dict[str, object]:
    if not len(values):
        return {"count": 0}
    quantiles = torch.quantile(values.double(), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    return {
        "count": len(values),
        "mean": float(values.mean()),
        "std": float(values.std()) if len(values) > 1 else 0.0,
        "quantiles": dict(zip(["min", "q1", "median", "q3", "max"], quantiles.tolist())),
    }


def _shared_neurons(frequency: ClassFrequency, shared: int) -> List[Dict[str, int]]:
    """The neurons in the paths of the most classes: layer, channel, classes, inputs."""
    layers, channels, classes, inputs = frequency.neurons()
    order = torch.argsort(classes * (inputs.max() + 1 if len(inputs) else 1) + inputs, descending=True, stable=True)
    return [
        {"layer": int(layers[i]), "channel": int(channels[i]), "classes": int(classes[i]), "inputs": int(inputs[i])}
        for i in order[:shared].tolist()
    ]


def _predictions(paths: Paths, correct: Tensor) -> Dict[str, object]:
    known = paths.predictions >= 0
    return {
        "recorded": int(known.sum()),
        "correct": int((correct & known).sum()),
        "wrong": int((~correct & known).sum()),
        "jas_correct": _distribution(paths.jas[correct & known]),
        "jas_wrong": _distribution(paths.jas[~correct & known]),
    }
