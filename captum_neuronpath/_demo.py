"""``neuronpath demo``: the paper's experiments on the embedded digits ViT, offline."""

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Type

import torch
from captum.attr import LayerAttribution
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn import Module
from torch.utils.data import TensorDataset

from captum_neuronpath import digits, visualization
from captum_neuronpath._cli.loading import Inputs
from captum_neuronpath._core.result import NeuronPathResult
from captum_neuronpath._extract.description import describe_paths
from captum_neuronpath._models import vit_mlp_layers, vit_readout_token
from captum_neuronpath._report import write_report
from captum_neuronpath._report.figures import save_figures
from captum_neuronpath._report.inputs import stacked
from captum_neuronpath._utils.files import write_atomically
from captum_neuronpath._utils.quadrature import PAPER_QUADRATURE
from captum_neuronpath.experiments import METHODS, MethodAgreement, PaperTable, method_agreement, paper_table
from captum_neuronpath.metrics import accuracy, class_similarity, most_similar_classes, neuron_frequency, pruning_curve
from captum_neuronpath.paths import Paths

CLASS_NAMES = [str(digit) for digit in range(10)]
WIDTH = digits.NUM_NEURONS  # neurons per layer of the digits ViT


def run_demo(
    out: Path,
    cache_dir: Optional[Path] = None,
    epochs: int = 40,
    max_examples: Optional[int] = None,
    n_steps: int = PAPER_QUADRATURE["n_steps"],
    method: str = PAPER_QUADRATURE["method"],
    batch_size: int = 64,
    n_bootstrap: int = 1000,
    seed: int = 0,
    captum_methods: Sequence[Type[LayerAttribution]] = (),
) -> Dict[str, object]:
    """Train or load the digits ViT; print the paper's table (with a row per Captum layer
    method), the agreement of those methods with the greedy scores, and the class
    analyses; write JSON and figures."""
    model = digits.digits_vit(cache_dir, epochs=epochs, log=lambda line: print(line, file=sys.stderr, flush=True))
    _, (images, labels) = digits.digits_split()
    images, labels = images[:max_examples], labels[:max_examples]
    test_accuracy = accuracy(model, (images, labels))
    print(f"digits ViT: test accuracy {test_accuracy:.3f} on {len(images)} images", flush=True)

    table = paper_table(
        model, images, labels, methods=[*METHODS, *captum_methods], n_steps=n_steps, method=method,
        batch_size=batch_size, n_bootstrap=n_bootstrap, seed=seed,
    )  # fmt: skip
    markdown = table.to_markdown()
    print(f"\nPaper Table 1 analog (n_steps={n_steps}, method={method}, 95% bootstrap intervals):\n")
    print(markdown)
    print(
        "\nScore change: mean change of the label's softmax probability when each image's own path is "
        "removed or enhanced;\n'minus Neuron Path': the mean paired difference from Neuron Path's change on the "
        "same images (paired bootstrap)."
    )
    agreement = None
    if captum_methods:
        agreement = method_agreement(
            model, images, labels, list(captum_methods), n_steps=n_steps, method=method, batch_size=batch_size,
            layer_scores=table.layer_scores["Neuron Path"],
        )  # fmt: skip
        print(f"\nAgreement with the greedy scores, over every image and layer (ranks: 0 = best of {WIDTH}):\n")
        print(agreement.to_markdown())

    frequency = neuron_frequency(table.paths["Neuron Path"], labels, num_channels=WIDTH, num_classes=10)
    similarity = class_similarity(frequency)
    nearest = most_similar_classes(similarity, k=1)[:, 0]
    print("\nInter-class: most similar class by neuron-path frequency")
    print("  " + ", ".join(f"{c}->{int(n)} ({float(similarity[c, n]):.2f})" for c, n in enumerate(nearest)))

    curves = {
        name: pruning_curve(model, vit_mlp_layers(model), (images, labels), paths, batch_size=batch_size, seed=seed)
        for name, paths in table.paths.items()
    }
    print("\nPruning: accuracy (%) keeping each image's path and pruning a fraction of the other neurons")
    width = max(len("fractions"), *(len(name) for name in curves))
    print(f"  {'fractions':<{width}} " + " ".join(f"{f:>5.2f}" for f in curves["Neuron Path"].fractions))
    for name, curve in curves.items():
        print(f"  {name:<{width}} " + " ".join(f"{a:5.1f}" for a in curve.accuracy))

    out.mkdir(parents=True, exist_ok=True)
    results = dict(
        table.to_json(),
        test_accuracy=test_accuracy,
        markdown=markdown,
        labels=labels.tolist(),
        intra_class_frequency=frequency.tolist(),
        inter_class_similarity=similarity.tolist(),
        most_similar_class=nearest.tolist(),
        pruning_curves={name: curve._asdict() for name, curve in curves.items()},
    )
    if agreement is not None:
        results["agreement"] = {
            name: {key: value.tolist() for key, value in result._asdict().items()}
            for name, result in agreement.agreement.items()
        }
    write_atomically(out / "results.json", json.dumps(results).encode())
    figures = write_figures(out / "figures", labels, table, frequency, similarity, curves, agreement)
    write_demo_report(out / "explorer", model, images, labels, table.paths["Neuron Path"], table.jas["Neuron Path"],
                      CLASS_NAMES)  # fmt: skip
    print(f"\nwrote {out / 'results.json'}, {len(figures)} figures in {out / 'figures'} and the path explorer "
          f"{out / 'explorer' / 'index.html'}")  # fmt: skip
    return results


def write_figures(
    folder: Path,
    labels: torch.Tensor,
    table: PaperTable,
    frequency: torch.Tensor,
    similarity: torch.Tensor,
    curves: Dict[str, object],
    agreement: Optional[MethodAgreement] = None,
) -> Dict[str, Path]:
    """Render the demo's figures as PNG files; returns name -> path."""
    first_class = int(labels[0])
    result = NeuronPathResult(
        table.paths["Neuron Path"][:3], table.jas["Neuron Path"][:3], table.layer_scores["Neuron Path"][:3]
    )
    drawn = {
        "path_methods": visualization.visualize_path(
            {name: paths[0] for name, paths in table.paths.items()}, num_neurons=WIDTH,
            title=f"Paths of each method, first test image (label {first_class})", use_pyplot=False,
        ),
        "path_images": visualization.visualize_path(
            result, labels=[f"image {i} (label {int(labels[i])})" for i in range(3)], num_neurons=WIDTH,
            title="Neuron paths of three test images, with greedy scores", use_pyplot=False,
        ),
        "layer_scores": visualization.visualize_layer_scores(
            result.layer_scores[0], result.path[0], title="Greedy candidate scores, first test image",
            use_pyplot=False,
        ),
        "neuron_frequency": visualization.visualize_neuron_frequency(
            frequency[first_class], title=f"Neuron-path frequency of class {first_class}", use_pyplot=False
        ),
        "class_similarity": visualization.visualize_class_similarity(similarity, CLASS_NAMES, use_pyplot=False),
        "nearest_classes": visualization.visualize_nearest_classes(
            similarity, first_class, CLASS_NAMES, k=5, use_pyplot=False
        ),
        "pruning_curve": visualization.visualize_pruning_curve(curves, use_pyplot=False),
        "accuracy_deviation": visualization.visualize_effects(
            table.effects("accuracy"), ylabel="accuracy deviation (percentage points)",
            title="Accuracy deviation when intervening on each image's path", use_pyplot=False,
        ),
        "score_change": visualization.visualize_effects(
            table.effects("score"), ylabel="mean change of the label's probability",
            title="Score change when intervening on each image's path", use_pyplot=False,
        ),
    }  # fmt: skip
    if table.effects("paired"):
        reference = table.settings["reference"]
        drawn["paired_score_change"] = visualization.visualize_effects(
            table.effects("paired"), ylabel=f"score change minus {reference}'s, same images",
            title=f"Each method's score change against {reference}'s (paired)", use_pyplot=False,
        )  # fmt: skip
    if agreement is not None:
        figure = Figure(figsize=(13.0, 4.6), layout="constrained")
        axes = figure.subplots(1, 2)
        visualization.visualize_rank_agreement(agreement.agreement, plt_fig_axis=(figure, axes[0]))
        visualization.visualize_top_neuron_ranks(agreement.agreement, WIDTH, plt_fig_axis=(figure, axes[1]))
        drawn["agreement"] = (figure, axes[0])
        methods = {"Neuron Path": agreement.path[0], **{name: top[0] for name, top in agreement.top.items()}}
        drawn["path_captum_methods"] = visualization.visualize_path(
            methods, num_neurons=WIDTH, use_pyplot=False,
            title=f"Neuron path and each method's top neurons, first test image (label {first_class})",
        )  # fmt: skip
    return save_figures(folder, {name: figure for name, (figure, _) in drawn.items()}, dpi=110)


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
