"""Figures of neuron paths, in the manner of ``captum.attr.visualization``.

Every function returns ``(figure, axis)`` and never calls ``show()``. Besides its own
arguments each takes ``plt_fig_axis``, a ``(figure, axis)`` to draw into (default
``None``: a new figure), and ``use_pyplot``: with ``True`` (the default) a new figure
comes from ``matplotlib.pyplot``, so notebooks display it; with ``False`` it is a bare
``matplotlib.figure.Figure``, for scripts and servers. Those with a ``title`` argument
give it to the axis. Styles differ by marker, line style and hatch as well as colour, so
the figures read in grayscale.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from captum_neuronpath._core.result import NeuronPathResult
from captum_neuronpath._utils.joint import best_channel
from captum_neuronpath.metrics import PruningCurve, RankAgreement, most_similar_classes

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
    marker, linestyle = _MARKERS[index % len(_MARKERS)], _LINESTYLES[index % len(_LINESTYLES)]
    return dict(marker=marker, linestyle=linestyle, linewidth=1.6, markersize=7)


def _as_rows(values: Any) -> Tensor:
    return torch.atleast_2d(torch.as_tensor(values).detach().cpu())


def _spread(wanted: Sequence[float], gap: float, low: float, high: float) -> List[float]:
    """Label heights near ``wanted`` (ascending), at least ``gap`` apart, within ``[low, high]`` if they fit."""
    placed = list(wanted)
    for i in range(1, len(placed)):  # each pushed up past the one below
        placed[i] = max(placed[i], placed[i - 1] + gap)
    if placed and placed[-1] > high:  # the top one at ``high``, the others pushed down below it
        placed[-1] = high
        for i in range(len(placed) - 2, -1, -1):
            placed[i] = min(placed[i], placed[i + 1] - gap)
    if placed and placed[0] < low:
        placed = [y + (low - placed[0]) for y in placed]
    return placed


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

    Several paths are drawn side by side within each layer, so that paths through the
    same neuron show as markers next to each other at one height. Every neuron a path
    passes through is written once per layer (``#65``), in the path's colour, or in black
    when several paths share it; labels of nearby neurons are stacked apart, with a
    leader line to their neuron when moved.

    Args:

        paths (NeuronPathResult, Tensor or Mapping[str, Tensor]): A result (all its
                    examples, annotated with their greedy scores), a path ``(L,)``,
                    paths ``(N, L)``, or named paths ``{"Neuron Path": path, ...}``.
        scores (Tensor, optional): ``(L,)`` or ``(N, L)`` values written beside each
                    neuron of a single path, or shown as marker area for several, e.g.
                    ``result.chosen_scores()``; taken from ``paths`` when it is a
                    result.
                    Default: ``None``
        labels (sequence of str, optional): A legend entry per path.
                    Default: ``"path 0"``, ... or the mapping's keys
        num_neurons (int, optional): Neurons per layer, for the vertical range.
                    Default: ``None`` (fit the data)

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.visualization import visualize_path
        >>> fig, ax = visualize_path({"Neuron Path": torch.tensor([5, 17, 2]),
        ...                           "Activation": torch.tensor([5, 40, 9])},
        ...                          use_pyplot=False)
        >>> len(ax.get_lines()), sorted(t.get_text() for t in ax.texts)[:3]
        (2, ['#17', '#2', '#40'])
    """
    if isinstance(paths, NeuronPathResult):
        scores = paths.chosen_scores() if scores is None and paths.layer_scores is not None else scores
        paths = paths.path if paths.path.dim() == 2 else paths.path[..., 0]
    if isinstance(paths, Mapping):
        labels = list(paths) if labels is None else labels
        paths = torch.stack([torch.as_tensor(p).detach().cpu().reshape(-1) for p in paths.values()])
    rows = _as_rows(paths)
    labels = [f"path {i}" for i in range(len(rows))] if labels is None else list(labels)
    score_rows = None if scores is None else _as_rows(scores)
    num_paths, num_layers = rows.shape
    sized, written = score_rows is not None and num_paths > 1, score_rows is not None and num_paths == 1
    figure, axis = _figure(plt_fig_axis, use_pyplot, (1.3 * num_layers + 4.0, 4.4))
    layers = np.arange(num_layers)
    bottom, top = (0.0, float(num_neurons)) if num_neurons is not None else (float(rows.min()), float(rows.max()))
    span = max(top - bottom, 1.0)
    low, high = bottom - 0.04 * span, top + 0.06 * span
    axis.set_ylim(low, high)
    # Paths sit side by side within a layer; a label column follows each layer's markers.
    width = min(0.09, 0.36 / num_paths)
    offsets = (np.arange(num_paths) - (num_paths - 1) / 2) * width
    largest = None if score_rows is None else float(score_rows.abs().max().clamp(min=1e-30))
    colours = []
    for i, (row, label) in enumerate(zip(rows.tolist(), labels)):
        style = _style(i)
        line = axis.plot(layers + offsets[i], row, label=label, **style)[0]
        colours.append(line.get_color())
        if sized:
            sizes = 30 + 270 * score_rows[i].abs().numpy() / largest
            axis.scatter(layers + offsets[i], row, s=sizes, marker=style["marker"], color=line.get_color(),
                         alpha=0.45, zorder=3)  # fmt: skip
    # Label height in data units, from the axis height in inches (8 pt text, 1.25 line spacing).
    height_inches = axis.get_position().height * figure.get_figheight()
    gap = (2 if written else 1) * 1.25 * 8 / 72 / height_inches * (high - low)
    if num_paths <= 8:
        for layer in layers:
            column = [int(n) for n in rows[:, layer]]
            owners = {neuron: [i for i, n in enumerate(column) if n == neuron] for neuron in sorted(set(column))}
            placed = _spread([float(n) for n in owners], gap, low + gap / 2, high - gap / 2)
            # Past the largest marker (a score marker's radius is about 0.12 layer widths).
            x_text = layer + offsets[-1] + (0.22 if sized else 0.1)
            for (neuron, who), y_text in zip(owners.items(), placed):
                text = f"#{neuron}" + (f"\nscore {float(score_rows[0, layer]):.3g}" if written else "")
                moved = abs(y_text - neuron) > 0.3 * gap
                axis.annotate(
                    text, (layer + offsets[who[-1]], neuron), xytext=(x_text, y_text), textcoords="data",
                    fontsize=8, va="center", ha="left", color=colours[who[0]] if len(who) == 1 else "black",
                    bbox=dict(boxstyle="square,pad=0.1", facecolor="white", alpha=0.75, linewidth=0),
                    arrowprops=dict(arrowstyle="-", color="0.5", linewidth=0.6, shrinkA=0, shrinkB=4)
                    if moved else None,
                )  # fmt: skip
    notes = ["marker area: greedy score"] if sized else []
    notes += ["black label: shared neuron"] if num_paths > 1 else []
    handles = [*axis.get_lines(), *(Line2D([], [], linestyle="none", label=note) for note in notes)]
    axis.set_xticks(layers, [f"layer {layer}" for layer in layers])
    axis.set_xlim(-0.2 + min(offsets[0], 0.0), num_layers - 0.35)
    axis.set(xlabel="layer (input side first)", ylabel="neuron index", title=title)
    axis.grid(alpha=0.3)
    axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, borderaxespad=0)
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
    by the best one's magnitude, the chosen neuron marked, and the layer's margin written
    above it. The margin is ``(best - second best) / |best|``: how far the chosen
    neuron's score leads the runner-up's, as a fraction of the chosen one's. Near 0, a
    small change (of the image, of the quadrature) could swap the choice; near 1 or
    above, the choice stands clear.

    Args:

        layer_scores (Tensor): ``(L, C)`` scores of one example
                    (``result.layer_scores[i]``).
        path (Tensor, optional): ``(L,)`` chosen neurons.
                    Default: ``None`` (the argmax of each layer)

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
    path = best_channel(scores) if path is None else torch.as_tensor(path).cpu().reshape(-1)
    figure, axis = _figure(plt_fig_axis, use_pyplot, (1.1 * scores.shape[0] + 2.5, 4.2))
    generator = np.random.default_rng(0)
    for layer, row in enumerate(scores):
        row = row[~row.isnan()]
        best, second = row.topk(min(2, len(row))).values[[0, -1]]
        scale = best.abs().clamp(min=1e-30)
        jitter = generator.uniform(-0.22, 0.22, len(row))
        axis.scatter(layer + jitter, (row / scale).numpy(), s=6, color="0.55", alpha=0.6, linewidths=0)
        chosen = float(scores[layer, path[layer]] / scale)
        axis.scatter([layer], [chosen], s=140, marker="*", color="black", zorder=3)
        axis.annotate(f"margin\n{float((best - second) / scale):.2g}", (layer, chosen), textcoords="offset points",
                      xytext=(0, 9), ha="center", fontsize=8)  # fmt: skip
    axis.scatter([], [], s=140, marker="*", color="black", label="chosen neuron")
    axis.scatter([], [], s=12, color="0.55", label="other candidates")
    axis.plot([], [], " ", label="margin: (best - second best) / |best|")
    axis.axhline(0, color="0.3", linewidth=0.8)
    axis.set_yscale("symlog", linthresh=1.0)  # linear within +-1, logarithmic for outliers
    axis.set(xticks=range(scores.shape[0]), xlabel="layer", ylabel="score / |best score| (symlog)", title=title)
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
    axis.set(yticks=range(values.shape[0]), xlabel="neuron index", ylabel="layer", title=title)
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
        for row, column in np.ndindex(size, size):
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
    axis.set(xlabel="cosine similarity of neuron-path frequency", title=f"Classes closest to {names[class_index]}")
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
        axis.plot(curve.fractions, curve.accuracy, label=name, **_style(i))
    axis.set(xlabel="fraction of other neurons pruned", ylabel="accuracy (%)", title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=9)
    return figure, axis


def visualize_effects(
    effects: Mapping[str, Mapping[str, Sequence[float]]],
    ylabel: str = "change",
    title: str = "Effect of intervening on each image's path",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    Grouped bars with intervals: one group per method, one bar per series (e.g. removal
    and enhancement), each ``(value, low, high)`` drawn as a bar with its interval and
    its value written above. Series differ by grey level and hatch.

    The data is a plain mapping ``{method: {series: (value, low, high)}}``; the series
    names are the legend, so they carry any setting they depend on (e.g.
    ``"enhancement (path x2)"``). :meth:`PaperTable.effects
    <captum_neuronpath.experiments.PaperTable.effects>` gives the accuracy deviations,
    the score changes and the paired differences in this form.

    Args:

        effects (Mapping[str, Mapping[str, sequence of float]]): ``{method: {series:
                    (value, low, high)}}``; only the first three numbers of each entry
                    are used, so named tuples such as ``AccuracyDeviation`` work too.
        ylabel (str, optional): What the values are, with their units.
                    Default: ``"change"``

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> from captum_neuronpath.visualization import visualize_effects
        >>> effects = {"Neuron Path": {"removal": (-0.8, -1.8, 0.0), "enhancement (path x2)": (0.5, 0.0, 1.3)},
        ...            "Random": {"removal": (0.0, 0.0, 0.0), "enhancement (path x2)": (0.0, 0.0, 0.0)}}
        >>> fig, ax = visualize_effects(effects, ylabel="accuracy deviation (points)", use_pyplot=False)
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['removal', 'enhancement (path x2)']
    """
    methods = list(effects)
    series = list(dict.fromkeys(name for values in effects.values() for name in values))  # in order of appearance
    figure, axis = _figure(plt_fig_axis, use_pyplot, (1.7 * len(methods) + 2.5, 4.4))
    positions = np.arange(len(methods))
    width = 0.8 / max(len(series), 1)
    greys = np.linspace(0.3, 0.85, max(len(series), 2))
    for j, name in enumerate(series):
        present = [i for i, method in enumerate(methods) if name in effects[method]]
        triples = np.array([[float(v) for v in list(effects[methods[i]][name])[:3]] for i in present]).reshape(-1, 3)
        values = triples[:, 0]
        errors = np.stack([values - triples[:, 1], triples[:, 2] - values]).clip(min=0)
        bars = axis.bar(positions[present] + (j - (len(series) - 1) / 2) * width, values, width, yerr=errors,
                        capsize=4, label=name, color=str(greys[j]), edgecolor="black",
                        hatch=_HATCHES[(j + 1) % len(_HATCHES)])  # fmt: skip
        axis.bar_label(bars, labels=[f"{v:+.3g}" for v in values], padding=3, fontsize=8)
    axis.axhline(0, color="black", linewidth=0.8)
    crowded = len(methods) > 4
    axis.set_xticks(positions, methods, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    axis.set(ylabel=ylabel, title=title)
    axis.margins(y=0.12)
    axis.legend(fontsize=9)
    return figure, axis


def visualize_rank_agreement(
    agreement: Mapping[str, RankAgreement],
    title: str = "Agreement of each method with the greedy scores",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    Per layer, the Spearman rank correlation between the greedy step's candidate scores
    and each method's per-neuron scores: the median over images, with the interquartile
    range as an error bar. +1 means the method ranks the layer's neurons as the greedy
    step does, 0 no relation, -1 the reverse.

    Args:

        agreement (Mapping[str, RankAgreement]): ``{method: rank_agreement(greedy,
                    method_scores)}``, e.g. ``method_agreement(...).agreement``; only the
                    ``spearman`` field ``(N, L)`` is drawn.

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import rank_agreement
        >>> from captum_neuronpath.visualization import visualize_rank_agreement
        >>> greedy = torch.randn(5, 3, 40)
        >>> fig, ax = visualize_rank_agreement({"same": rank_agreement(greedy, greedy)}, use_pyplot=False)
        >>> ax.containers[0].lines[0].get_ydata().tolist()  # the medians
        [1.0, 1.0, 1.0]
    """
    figure, axis = _figure(plt_fig_axis, use_pyplot, (6.5, 4.4))
    num_methods = len(agreement)
    width = min(0.08, 0.4 / max(num_methods, 1))
    for i, (name, result) in enumerate(agreement.items()):
        rho = result.spearman.detach().double().cpu().numpy()
        quartiles = np.nanquantile(rho, [0.25, 0.5, 0.75], axis=0)
        layers = np.arange(rho.shape[1]) + (i - (num_methods - 1) / 2) * width
        errors = np.stack([quartiles[1] - quartiles[0], quartiles[2] - quartiles[1]])
        axis.errorbar(layers, quartiles[1], yerr=errors, label=name, capsize=3, **_style(i))
    axis.axhline(0, color="0.3", linewidth=0.8)
    axis.set(ylim=(-1.05, 1.05), xticks=range(rho.shape[1]) if num_methods else [])
    axis.set(
        xlabel="layer", ylabel="Spearman correlation with greedy scores\n(median over images, bars: IQR)", title=title
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=9, loc="best")
    return figure, axis


_RANK_FIELDS = {
    "second_top_in_first": "rank of the method's top neuron among the greedy candidates",
    "first_top_in_second": "rank of the greedy choice under the method",
}


def visualize_top_neuron_ranks(
    agreement: Mapping[str, RankAgreement],
    num_neurons: Optional[int] = None,
    field: str = "second_top_in_first",
    title: str = "Where the greedy step ranks each method's top neuron",
    plt_fig_axis: Optional[FigureAxis] = None,
    use_pyplot: bool = True,
) -> FigureAxis:
    r"""
    The distribution of top-neuron ranks over every image and layer, as cumulative
    fractions on a log axis: by default, how the greedy step ranks each method's top
    neuron (1 = the greedy step's own choice, ``num_neurons`` = its last). With
    ``num_neurons``, a dashed line shows what an unrelated ranking gives (uniform
    ranks): curves above it agree more often than chance, below it less.

    Args:

        agreement (Mapping[str, RankAgreement]): ``{method: rank_agreement(greedy,
                    method_scores)}``, e.g. ``method_agreement(...).agreement``.
        num_neurons (int, optional): Neurons per layer ``C``, for the chance line.
                    Default: ``None`` (no chance line)
        field (str, optional): ``"second_top_in_first"`` (the method's top neuron,
                    ranked by the greedy scores) or ``"first_top_in_second"`` (the
                    greedy choice, ranked by the method).
                    Default: ``"second_top_in_first"``

    Returns:
        ``(figure, axis)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import rank_agreement
        >>> from captum_neuronpath.visualization import visualize_top_neuron_ranks
        >>> greedy = torch.randn(5, 3, 40)
        >>> fig, ax = visualize_top_neuron_ranks({"reversed": rank_agreement(greedy, -greedy)}, 40,
        ...                                      use_pyplot=False)
        >>> ax.get_lines()[0].get_xdata().tolist()[0]  # every top neuron is the other's last
        40.0
    """
    if field not in _RANK_FIELDS:
        raise ValueError(f"field must be one of {tuple(_RANK_FIELDS)}, got {field!r}")
    figure, axis = _figure(plt_fig_axis, use_pyplot, (6.5, 4.4))
    for i, (name, result) in enumerate(agreement.items()):
        ranks = np.sort(getattr(result, field).detach().cpu().numpy().reshape(-1)).astype(float) + 1
        fractions = np.arange(1, len(ranks) + 1) / max(len(ranks), 1)
        axis.step(ranks, fractions, where="post", label=name, linewidth=1.8, linestyle=_LINESTYLES[i % 4])
    if num_neurons is not None:
        ranks = np.arange(1, num_neurons + 1)
        axis.plot(ranks, ranks / num_neurons, color="0.5", linestyle=(0, (2, 2)), linewidth=1.2,
                  label=f"chance (uniform over {num_neurons})")  # fmt: skip
        axis.set_xlim(0.9, num_neurons * 1.1)
    axis.set_xscale("log")
    axis.set_ylim(0, 1.02)
    axis.set(
        xlabel=_RANK_FIELDS[field] + "\n(1 = best, log scale)",
        ylabel="fraction of (image, layer) pairs\nwith at most this rank",
        title=title,
    )
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=9, loc="upper left")
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
        method (str, optional): Captum's ``visualize_image_attr`` method, e.g.
                    ``"heat_map"``.
                    Default: ``"blended_heat_map"``

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
