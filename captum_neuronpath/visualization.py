"""Figures of neuron paths, in the manner of ``captum.attr.visualization``.

Every function returns ``(figure, axis)``, draws into ``plt_fig_axis`` when given one,
and never calls ``show()``. With ``use_pyplot=True`` (the default) a new figure comes
from ``matplotlib.pyplot``, so notebooks display it; with ``False`` it is a bare
``matplotlib.figure.Figure``, for scripts and servers. Styles differ by marker, line
style and hatch as well as colour, so the figures read in grayscale.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from captum_neuronpath._core.result import NeuronPathResult
from captum_neuronpath.experiments import PaperTable
from captum_neuronpath.metrics import PruningCurve

FigureAxis = Tuple[Figure, Axes]

_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_LINESTYLES = ["-", "--", ":", "-."]
_HATCHES = ["", "//", "..", "xx", "\\\\", "oo"]


def _figure(plt_fig_axis: Optional[FigureAxis], use_pyplot: bool, figsize: Tuple[float, float]) -> FigureAxis:
    if plt_fig_axis is not None:
        return plt_fig_axis
    if use_pyplot:
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=figsize, layout="constrained")
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.subplots()


def _style(index: int) -> Dict[str, Any]:
    return dict(marker=_MARKERS[index % len(_MARKERS)], linestyle=_LINESTYLES[index % len(_LINESTYLES)])


def _as_rows(values: Any) -> Tensor:
    values = torch.as_tensor(values).detach().cpu()
    return values.unsqueeze(0) if values.dim() == 1 else values


def visualize_path(
    paths: Union[NeuronPathResult, Tensor, Mapping[str, Any]],
    scores: Optional[Any] = None,
    labels: Optional[Sequence[str]] = None,
    num_neurons: Optional[int] = None,
    title: str = "Neuron path",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    Path diagram: layers left to right, each path's chosen neuron per layer, several
    paths overlaid (images, or methods on one image) to compare.

    Args:

        paths (NeuronPathResult, Tensor or Mapping[str, Tensor]): A result (all its
                    examples, annotated with their greedy scores), a path ``(L,)``,
                    paths ``(N, L)``, or named paths ``{"Neuron Path": path, ...}``.
        scores (Tensor, optional): ``(L,)`` or ``(N, L)`` values written beside each
                    neuron, e.g. ``result.chosen_scores()``; taken from ``paths`` when it is
                    a result.
                    Default: ``None``
        labels (sequence of str, optional): A legend entry per path.
                    Default: ``"path 0"``, ... or the mapping's keys
        num_neurons (int, optional): Neurons per layer, for the vertical range.
                    Default: ``None`` (fit the data)
        title (str, optional): Axis title.
                    Default: ``"Neuron path"``
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into.
                    Default: ``None`` (a new figure)
        use_pyplot (bool, optional): Create a new figure with pyplot.
                    Default: ``True``

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.visualization import visualize_path
        >>> fig, ax = visualize_path({"Neuron Path": torch.tensor([5, 17, 2]),
        ...                           "Activation": torch.tensor([5, 40, 9])},
        ...                          use_pyplot=False)
        >>> len(ax.get_lines())
        2
    """
    if isinstance(paths, NeuronPathResult):
        scores = paths.chosen_scores() if scores is None and paths.layer_scores is not None else scores
        paths = paths.path if paths.path.dim() == 2 else paths.path[..., 0]
    if isinstance(paths, Mapping):
        labels = list(paths) if labels is None else labels
        rows = torch.stack([torch.as_tensor(p).detach().cpu().reshape(-1) for p in paths.values()])
    else:
        rows = _as_rows(paths)
    labels = [f"path {i}" for i in range(len(rows))] if labels is None else list(labels)
    score_rows = None if scores is None else _as_rows(scores)
    figure, axis = _figure(plt_fig_axis, use_pyplot, (1.3 * rows.shape[1] + 2.5, 4.2))
    layers = np.arange(rows.shape[1])
    # One path: neuron and score written beside each point. Several: marker area shows
    # the score (relative to the largest), and only the neuron numbers are written.
    largest = None if score_rows is None else float(score_rows.abs().max().clamp(min=1e-30))
    for i, (row, label) in enumerate(zip(rows.tolist(), labels)):
        style = _style(i)
        line = axis.plot(layers, row, label=label, linewidth=1.6, markersize=8, **style)[0]
        if score_rows is not None and len(rows) > 1:
            sizes = 30 + 270 * score_rows[i].abs().numpy() / largest
            axis.scatter(layers, row, s=sizes, marker=style["marker"], color=line.get_color(), alpha=0.45, zorder=3)
        for layer, neuron in zip(layers, row):
            text = f"#{neuron}"
            if score_rows is not None and len(rows) == 1:
                text += f"\nscore {float(score_rows[i, layer]):.3g}"
            if len(rows) <= 4:
                axis.annotate(text, (layer, neuron), textcoords="offset points", xytext=(7, 3 - 11 * i),
                              fontsize=8, color=line.get_color())  # fmt: skip
    if score_rows is not None and len(rows) > 1:
        axis.plot([], [], " ", label="marker area: greedy score")
    axis.set_xticks(layers, [f"layer {layer}" for layer in layers])
    axis.set_xlim(-0.4, rows.shape[1] - 0.3)
    if num_neurons is not None:
        axis.set_ylim(-0.03 * num_neurons, 1.08 * num_neurons)
    axis.set_xlabel("layer (input side first)")
    axis.set_ylabel("neuron index")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize=9)
    return figure, axis


def visualize_layer_scores(
    layer_scores: Tensor,
    path: Optional[Tensor] = None,
    title: str = "Greedy candidate scores",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    How decisive each greedy choice was: at every layer, all candidates' scores scaled
    by the best one's magnitude, the chosen neuron marked, and the margin
    ``(best - second) / |best|`` written above.

    Args:

        layer_scores (Tensor): ``(L, C)`` scores of one example
                    (``result.layer_scores[i]``).
        path (Tensor, optional): ``(L,)`` chosen neurons.
                    Default: ``None`` (the argmax of each layer)
        title (str, optional): Axis title.
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into.
        use_pyplot (bool, optional): Create a new figure with pyplot.
                    Default: ``True``

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.visualization import visualize_layer_scores
        >>> fig, ax = visualize_layer_scores(torch.randn(3, 50), use_pyplot=False)
        >>> ax.get_xlabel()
        'layer'
    """
    scores = layer_scores.detach().cpu().double()
    path = scores.nan_to_num(float("-inf")).argmax(-1) if path is None else torch.as_tensor(path).cpu().reshape(-1)
    figure, axis = _figure(plt_fig_axis, use_pyplot, (1.1 * scores.shape[0] + 2.5, 4.2))
    generator = np.random.default_rng(0)
    for layer, row in enumerate(scores):
        row = row[~row.isnan()]
        best = row.max()
        scale = best.abs().clamp(min=1e-30)
        jitter = generator.uniform(-0.22, 0.22, len(row))
        axis.scatter(layer + jitter, (row / scale).numpy(), s=6, color="0.55", alpha=0.6, linewidths=0)
        chosen = float(scores[layer, path[layer]] / scale)
        axis.scatter([layer], [chosen], s=140, marker="*", color="black", zorder=3)
        second = row.topk(2).values[1] if len(row) > 1 else best
        margin = float((best - second) / scale)
        axis.annotate(f"margin\n{margin:.2g}", (layer, chosen), textcoords="offset points", xytext=(0, 9),
                      ha="center", fontsize=8)  # fmt: skip
    axis.scatter([], [], s=140, marker="*", color="black", label="chosen neuron")
    axis.scatter([], [], s=12, color="0.55", label="other candidates")
    axis.axhline(0, color="0.3", linewidth=0.8)
    axis.set_yscale("symlog", linthresh=1.0)  # linear within +-1, logarithmic for outliers
    axis.set_xticks(range(scores.shape[0]))
    axis.set_xlabel("layer")
    axis.set_ylabel("score / |best score| (symlog)")
    axis.set_title(title)
    axis.margins(y=0.18)
    axis.legend(loc="lower left", fontsize=9)
    return figure, axis


def visualize_neuron_frequency(
    frequency: Tensor,
    top: int = 5,
    title: str = "Intra-class neuron frequency",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    Heatmap of one class's neuron frequency, layer by neuron, its ``top`` most frequent
    neurons labelled.

    Args:

        frequency (Tensor): ``(L, C)``, e.g. ``neuron_frequency(...)[class_index]``.
        top (int, optional): Dominant neurons to label.
                    Default: ``5``
        title (str, optional): Axis title.
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into.
        use_pyplot (bool, optional): Create a new figure with pyplot.
                    Default: ``True``

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.visualization import visualize_neuron_frequency
        >>> fig, ax = visualize_neuron_frequency(torch.rand(6, 256), use_pyplot=False)
        >>> ax.get_ylabel()
        'layer'
    """
    values = frequency.detach().cpu().double()
    figure, axis = _figure(plt_fig_axis, use_pyplot, (9.0, 0.45 * values.shape[0] + 2.2))
    image = axis.imshow(values.numpy(), aspect="auto", cmap="viridis", interpolation="nearest", vmin=0)
    figure.colorbar(image, ax=axis, label="fraction of the class's paths")
    flat = values.flatten()
    for index in flat.topk(min(top, int((flat > 0).sum()))).indices.tolist():
        layer, neuron = divmod(index, values.shape[1])
        axis.annotate(
            f"#{neuron} ({float(values[layer, neuron]):.2f})", (neuron, layer), xytext=(8, -2),
            textcoords="offset points", fontsize=8, color="white",
            bbox=dict(boxstyle="round,pad=0.15", facecolor="black", alpha=0.7, linewidth=0),
        )  # fmt: skip
    axis.set_yticks(range(values.shape[0]))
    axis.set_xlabel("neuron index")
    axis.set_ylabel("layer")
    axis.set_title(title)
    return figure, axis


def visualize_class_similarity(
    similarity: Tensor,
    class_names: Optional[Sequence[str]] = None,
    title: str = "Inter-class similarity of neuron paths",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    The inter-class cosine similarity matrix, values written in each cell.

    Args:

        similarity (Tensor): ``(M, M)`` from :func:`~captum_neuronpath.metrics.class_similarity`.
        class_names (sequence of str, optional): Axis labels.
                    Default: the class indices
        title (str, optional): Axis title.
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into.
        use_pyplot (bool, optional): Create a new figure with pyplot.
                    Default: ``True``

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.visualization import visualize_class_similarity
        >>> fig, ax = visualize_class_similarity(torch.eye(3), ["cat", "dog", "car"], use_pyplot=False)
        >>> [t.get_text() for t in ax.get_xticklabels()]
        ['cat', 'dog', 'car']
    """
    values = similarity.detach().cpu().double().numpy()
    size = len(values)
    names = [str(i) for i in range(size)] if class_names is None else list(class_names)
    figure, axis = _figure(plt_fig_axis, use_pyplot, (0.55 * size + 3.0, 0.5 * size + 2.4))
    image = axis.imshow(values, cmap="viridis", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, label="cosine similarity")
    if size <= 20:
        for row in range(size):
            for column in range(size):
                value = values[row, column]
                axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                          color="black" if value > 0.6 else "white")  # fmt: skip
    axis.set_xticks(range(size), names, rotation=45, ha="right")
    axis.set_yticks(range(size), names)
    axis.set_title(title)
    return figure, axis


def visualize_nearest_classes(
    similarity: Tensor,
    class_index: int,
    class_names: Optional[Sequence[str]] = None,
    k: int = 5,
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    One class's ``k`` most similar classes by neuron-path frequency, as bars.

    Args:

        similarity (Tensor): ``(M, M)`` class similarity.
        class_index (int): The class to describe.
        class_names (sequence of str, optional): Names of the classes.
        k (int, optional): How many neighbours.
                    Default: ``5``
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into.
        use_pyplot (bool, optional): Create a new figure with pyplot.
                    Default: ``True``

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.visualization import visualize_nearest_classes
        >>> sim = torch.tensor([[1.0, 0.2, 0.9], [0.2, 1.0, 0.1], [0.9, 0.1, 1.0]])
        >>> fig, ax = visualize_nearest_classes(sim, 0, ["cat", "car", "dog"], k=2, use_pyplot=False)
        >>> [t.get_text() for t in ax.get_yticklabels()]
        ['dog', 'car']
    """
    from captum_neuronpath.metrics import most_similar_classes

    names = [str(i) for i in range(len(similarity))] if class_names is None else list(class_names)
    k = min(k, len(similarity) - 1)
    nearest = most_similar_classes(similarity, k)[class_index].tolist()
    values = [float(similarity[class_index, j]) for j in nearest]
    figure, axis = _figure(plt_fig_axis, use_pyplot, (5.5, 0.45 * k + 1.6))
    positions = np.arange(k)[::-1]
    axis.barh(positions, values, color="0.45", edgecolor="black", hatch="//")
    axis.set_yticks(positions, [names[j] for j in nearest])
    for position, value in zip(positions, values):
        axis.text(value, position, f" {value:.2f}", va="center", fontsize=9)
    axis.set_xlim(0, 1.12 * max(max(values), 1e-9))
    axis.set_xlabel("cosine similarity of neuron-path frequency")
    axis.set_title(f"Classes closest to {names[class_index]}")
    return figure, axis


def visualize_pruning_curve(
    curves: Mapping[str, PruningCurve],
    title: str = "Accuracy when pruning all but the path",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    Pruning curves: accuracy against the pruned fraction of non-path neurons, one line
    per method.

    Args:

        curves (Mapping[str, PruningCurve]): ``{"Neuron Path": pruning_curve(...), ...}``.
        title (str, optional): Axis title.
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into.
        use_pyplot (bool, optional): Create a new figure with pyplot.
                    Default: ``True``

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> from captum_neuronpath.metrics import PruningCurve
        >>> from captum_neuronpath.visualization import visualize_pruning_curve
        >>> fig, ax = visualize_pruning_curve({"Neuron Path": PruningCurve([0, 0.5, 1], [95.0, 80.0, 40.0])},
        ...                                   use_pyplot=False)
        >>> ax.get_xlabel()
        'fraction of other neurons pruned'
    """
    figure, axis = _figure(plt_fig_axis, use_pyplot, (6.0, 4.2))
    for i, (name, curve) in enumerate(curves.items()):
        axis.plot(curve.fractions, curve.accuracy, label=name, linewidth=1.6, markersize=7, **_style(i))
    axis.set_xlabel("fraction of other neurons pruned")
    axis.set_ylabel("accuracy (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=9)
    return figure, axis


def visualize_accuracy_deviation(
    table: PaperTable,
    title: str = "Accuracy deviation when intervening on each image's path",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    The accuracy-deviation part of the paper's table as grouped bars (removal,
    enhancement) per method, with their bootstrap intervals.

    Args:

        table (PaperTable): From :func:`~captum_neuronpath.experiments.paper_table`.
        title (str, optional): Axis title.
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into.
        use_pyplot (bool, optional): Create a new figure with pyplot.
                    Default: ``True``

    Returns:
        ``(figure, axis)``.
    """
    figure, axis = _figure(plt_fig_axis, use_pyplot, (1.6 * len(table.rows) + 2.5, 4.2))
    positions = np.arange(len(table.rows))
    width = 0.38
    kinds: List[Tuple[str, str, str]] = [("removal", "removal (path set to 0)", "0.35"),
                                         ("enhancement", "enhancement (path doubled)", "0.8")]  # fmt: skip
    for j, (field, label, color) in enumerate(kinds):
        results = [getattr(row, field) for row in table.rows]
        values = np.array([r.deviation for r in results])
        errors = np.array([[r.deviation - r.low for r in results], [r.high - r.deviation for r in results]])
        bars = axis.bar(positions + (j - 0.5) * width, values, width, yerr=errors, capsize=4, label=label,
                        color=color, edgecolor="black", hatch=_HATCHES[j + 1])  # fmt: skip
        axis.bar_label(bars, labels=[f"{v:+.2f}" for v in values], padding=3, fontsize=8)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(positions, [row.method for row in table.rows])
    axis.set_ylabel("accuracy deviation (percentage points)")
    axis.set_title(title)
    axis.legend(fontsize=9)
    return figure, axis


def visualize_path_saliency(
    saliency: Tensor,
    image: Tensor,
    title: str = "Where the path looks",
    method: str = "blended_heat_map",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    A :class:`~captum_neuronpath.PathSaliency` map over its image, drawn with Captum's
    ``visualize_image_attr`` (magnitude of the attribution, the image min-max scaled).
    For per-layer maps, draw each layer's map into one axis of a row of subplots.

    Args:

        saliency (Tensor): ``(C, H, W)`` map of one image.
        image (Tensor): ``(C, H, W)`` the image, in any value range.
        title (str, optional): Axis title.
        method (str, optional): Captum's ``visualize_image_attr`` method, e.g.
                    ``"heat_map"``.
                    Default: ``"blended_heat_map"``
        plt_fig_axis (tuple, optional): ``(figure, axis)`` to draw into.
        use_pyplot (bool, optional): Create a new figure with pyplot.
                    Default: ``True``

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.visualization import visualize_path_saliency
        >>> fig, ax = visualize_path_saliency(torch.rand(3, 8, 8), torch.rand(3, 8, 8), use_pyplot=False)
        >>> ax.get_title()
        'Where the path looks'
    """
    from captum.attr import visualization as captum_visualization

    figure, axis = _figure(plt_fig_axis, use_pyplot, (4.2, 4.0))
    picture = image.detach().cpu().double()
    picture = (picture - picture.min()) / (picture.max() - picture.min()).clamp(min=1e-12)
    captum_visualization.visualize_image_attr(
        saliency.detach().cpu().double().permute(1, 2, 0).numpy(), picture.permute(1, 2, 0).numpy(),
        method=method, sign="absolute_value", plt_fig_axis=(figure, axis), use_pyplot=False,
        show_colorbar=True, title=title,
    )  # fmt: skip
    return figure, axis
