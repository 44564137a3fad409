"""The paper's Table 1 (:func:`paper_table`), with any Captum layer method as a further row, and the
agreement of the greedy step's candidate scores with other methods' per-neuron scores
(:func:`method_agreement`), on any classifier and labelled image set.
"""

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, Union

import captum.attr
import torch
from captum.attr import LayerAttribution
from torch import Tensor
from torch.nn import Module
from tqdm import tqdm

from captum_neuronpath._core.baselines import (
    ActivationPath,
    InfluencePatternPath,
    LayerMethodPath,
    RandomPath,
    _PathBaseline,
)
from captum_neuronpath._core.neuron_path import NeuronPath
from captum_neuronpath._models import vit_mlp_layers, vit_readout_token
from captum_neuronpath._utils.joint import best_channel
from captum_neuronpath._utils.quadrature import PAPER_QUADRATURE
from captum_neuronpath._utils.tokens import TokenType, check_token
from captum_neuronpath.metrics import (
    AccuracyDeviation,
    PairedDifference,
    RankAgreement,
    ScoreChange,
    accuracy_deviation,
    bootstrap_interval,
    explained_scores,
    paired_difference,
    rank_agreement,
    summarize_score_change,
)

METHODS = ("Activation", "Influence Pattern", "Neuron Path", "Random")
REFERENCE = "Neuron Path"

#: A row of the table: a name from :data:`METHODS`, a Captum layer attribution class, or a
#: :class:`~captum_neuronpath.LayerMethodPath`.
MethodType = Union[str, Type[LayerAttribution], LayerMethodPath]

# (value, low, high) per series, per method: the data of visualization.visualize_effects.
Effects = Dict[str, Dict[str, Tuple[float, float, float]]]


def captum_layer_methods() -> List[str]:
    r"""
    The names of Captum's layer attribution classes in ``captum.attr`` that are built
    from a forward function, each usable as a row of :func:`paper_table` or
    :func:`method_agreement`. Those built from the model itself (``LayerDeepLift``,
    ``LayerLRP``) cannot explain the table's softmax forward and are left out.

    Returns:
        *list of str*, sorted.

    Examples::

        >>> from captum_neuronpath.experiments import captum_layer_methods
        >>> "LayerIntegratedGradients" in captum_layer_methods()
        True
    """
    return sorted(
        name
        for name, obj in vars(captum.attr).items()
        if inspect.isclass(obj)
        and issubclass(obj, LayerAttribution)
        and obj is not LayerAttribution
        and not _needs_model(obj)
    )


def _needs_model(layer_method: type) -> bool:
    """Whether the class is built from the model itself (``LayerDeepLift``, ``LayerLRP``), not a forward function."""
    return list(inspect.signature(layer_method.__init__).parameters)[1:2] == ["model"]


def captum_layer_method(name: str) -> Type[LayerAttribution]:
    r"""
    A Captum layer attribution class by name, e.g. for a command-line option.

    Args:

        name (str): A class name in ``captum.attr``, e.g. ``"LayerConductance"``.

    Returns:
        The class.

    Examples::

        >>> from captum_neuronpath.experiments import captum_layer_method
        >>> captum_layer_method("LayerConductance").__name__
        'LayerConductance'
    """
    if name not in captum_layer_methods():
        raise ValueError(f"{name!r} is not a Captum layer attribution method; choose from {captum_layer_methods()}")
    return getattr(captum.attr, name)


def method_name(method: MethodType) -> str:
    r"""
    The row name of a method: the built-in name itself, a Captum class's name, or a
    :class:`~captum_neuronpath.LayerMethodPath`'s Captum class's name.

    Args:

        method (str, type or LayerMethodPath): An entry of ``methods``.

    Returns:
        *str*.

    Examples::

        >>> from captum.attr import LayerConductance
        >>> from captum_neuronpath.experiments import method_name
        >>> method_name(LayerConductance), method_name("Neuron Path")
        ('LayerConductance', 'Neuron Path')
    """
    if isinstance(method, LayerMethodPath):
        return type(method.layer_methods[0]).__name__
    if isinstance(method, type):
        return method.__name__
    return str(method)


_ACCEPTED = (
    f"methods entries must be one of {METHODS}, a Captum layer attribution class (e.g. "
    "captum.attr.LayerIntegratedGradients) or a captum_neuronpath.LayerMethodPath"
)


def _same_token(first: Any, second: Any) -> bool:
    if isinstance(first, Tensor) or isinstance(second, Tensor):
        return isinstance(first, Tensor) and isinstance(second, Tensor) and torch.equal(first, second)
    return first == second


def _locator(
    entry: MethodType, forward: Callable, layers: Sequence[Module], token: TokenType, seed: int
) -> Union[NeuronPath, _PathBaseline]:
    """The locator of one ``methods`` entry, validated."""
    if isinstance(entry, LayerMethodPath):
        if len(entry.layers) != len(layers) or any(a is not b for a, b in zip(entry.layers, layers)):
            raise ValueError(
                f"the LayerMethodPath of {method_name(entry)} in methods must use the table's layers "
                f"({len(layers)} modules, in order)"
            )
        if not _same_token(entry.token, check_token(token)):
            raise ValueError(
                f"the LayerMethodPath of {method_name(entry)} in methods has token={entry.token!r}, "
                f"the table token={token!r}"
            )
        return entry
    if isinstance(entry, type):
        if not issubclass(entry, LayerAttribution):
            raise TypeError(f"{_ACCEPTED}; got the class {entry.__name__}")
        if _needs_model(entry):
            raise TypeError(
                f"methods cannot hold {entry.__name__}: it is built from the model itself, not from the table's "
                "softmax forward; choose from captum_layer_methods()"
            )
        return LayerMethodPath(entry, forward, layers, token=token)
    if isinstance(entry, str):
        if entry == "Random":
            return RandomPath(forward, layers, token=token, seed=seed)
        built_in = {"Activation": ActivationPath, "Influence Pattern": InfluencePatternPath, "Neuron Path": NeuronPath}
        if entry not in built_in:
            raise ValueError(f"{_ACCEPTED}; got {entry!r}")
        return built_in[entry](forward, layers, token=token)
    raise TypeError(f"{_ACCEPTED}; got {type(entry).__name__} {entry!r}")


def _over_batches(batches: Sequence[Tuple[Tensor, Tensor]], bar: tqdm, call: Callable, **kwargs: Any) -> list:
    """``call(x, target=y, **kwargs)`` of every batch, the progress bar moved on after each."""
    results = []
    for x, y in batches:
        results.append(call(x, target=y, **kwargs))
        bar.update(len(x))
    return results


def _setup(
    model: Module,
    layers: Optional[Sequence[Module]],
    token: Optional[TokenType],
    methods: Sequence[MethodType],
    seed: int,
) -> Tuple[Callable[[Tensor], Tensor], List[Module], TokenType, Dict[str, Union[NeuronPath, _PathBaseline]]]:
    """The explained score (the softmax probability), the layers and token set (a ViT's by default), and
    the locator of each ``methods`` entry by its row name."""

    def forward(x: Tensor) -> Tensor:
        return model(x).softmax(-1)

    layers = vit_mlp_layers(model) if layers is None else list(layers)
    token = vit_readout_token(model) if token is None else token
    if isinstance(methods, (str, type)) or not isinstance(methods, Sequence) or not methods:
        raise TypeError(f"methods must be a non-empty sequence; {_ACCEPTED}")
    located: Dict[str, Union[NeuronPath, _PathBaseline]] = {}
    for entry in methods:
        name = method_name(entry)
        if name in located:
            raise ValueError(f"methods names {name!r} twice; each row needs its own name")
        located[name] = _locator(entry, forward, layers, token, seed)
    return forward, layers, token, located


@dataclass
class TableRow:
    """One method's line of the table.

    Accuracy deviations are in percentage points; score changes are in the explained
    score's units (the label's softmax probability). ``*_vs_reference`` are the paired
    differences of this method's score changes from the reference method's (``None`` for
    the reference itself, or without one).
    """

    method: str
    jas: float
    jas_low: float
    jas_high: float
    removal: AccuracyDeviation
    enhancement: AccuracyDeviation
    removal_score: ScoreChange
    enhancement_score: ScoreChange
    removal_vs_reference: Optional[PairedDifference] = None
    enhancement_vs_reference: Optional[PairedDifference] = None


@dataclass
class PaperTable:
    """The table's rows and, per method, every example's path ``(N, L)``, JAS ``(N,)``
    and score change under each intervention, ``{"remove": (N,), "enhance": (N,)}``;
    ``layer_scores`` holds the greedy candidate scores ``(N, L, C)`` of the methods that
    have them (Neuron Path), for :func:`method_agreement`. ``settings`` records the
    quadrature, the number of examples, the enhancement ``factor`` and the ``reference``
    method."""

    rows: List[TableRow]
    paths: Dict[str, Tensor] = field(repr=False)
    jas: Dict[str, Tensor] = field(repr=False)
    score_changes: Dict[str, Dict[str, Tensor]] = field(default_factory=dict, repr=False)
    settings: Dict[str, Any] = field(default_factory=dict)
    layer_scores: Dict[str, Tensor] = field(default_factory=dict, repr=False)

    def effects(self, quantity: str = "accuracy") -> Effects:
        r"""
        The removal and enhancement effects of every method as plain data, for
        :func:`~captum_neuronpath.visualization.visualize_effects`.

        Args:

            quantity (str, optional): ``"accuracy"`` (deviation, percentage points),
                        ``"score"`` (mean change of the explained score) or ``"paired"``
                        (each method's score change minus the reference's, on the same
                        examples; the reference's own row is left out).
                        Default: ``"accuracy"``

        Returns:
            ``{method: {series: (value, low, high)}}``, the series named after the
            intervention and its setting, e.g. ``"enhancement (path x2)"``.
        """
        fields = {"accuracy": ("removal", "enhancement"), "score": ("removal_score", "enhancement_score"),
                  "paired": ("removal_vs_reference", "enhancement_vs_reference")}  # fmt: skip
        if quantity not in fields:
            raise ValueError(f"quantity must be one of {tuple(fields)}, got {quantity!r}")
        values = {row.method: [getattr(row, name) for name in fields[quantity]] for row in self.rows}
        return {
            method: {label: tuple(value[:3]) for label, value in zip(self.intervention_labels(), pair)}
            for method, pair in values.items()
            if None not in pair
        }

    def intervention_labels(self) -> Tuple[str, str]:
        """``("removal (path set to 0)", "enhancement (path xF)")`` with the table's factor."""
        return "removal (path set to 0)", f"enhancement (path x{self.settings.get('factor', 2.0):g})"

    def to_markdown(self) -> str:
        """Two markdown tables, values with their 95% intervals: the paper's (JAS and
        accuracy deviations) and the score changes with the paired differences from the
        reference method."""
        paper_header = ["Method", "JAS", "Removal deviation (%)", "Enhancement deviation (%)"]
        paper = [
            [
                row.method,
                _interval((row.jas, row.jas_low, row.jas_high), ".4f"),
                _interval(row.removal, "+.2f"),
                _interval(row.enhancement, "+.2f"),
            ]
            for row in self.rows
        ]
        factor = f"x{self.settings.get('factor', 2.0):g}"
        header = ["Method", "Removal: score change", f"Enhancement ({factor}): score change"]
        fields = ["removal_score", "enhancement_score"]
        reference = self.settings.get("reference")
        if reference is not None and reference in self.paths:
            header += [f"Removal: minus {reference}", f"Enhancement: minus {reference}"]
            fields += ["removal_vs_reference", "enhancement_vs_reference"]
        scores = [[row.method, *(_interval(getattr(row, name), "+.4f") for name in fields)] for row in self.rows]
        return "\n".join([*_markdown(paper_header, paper), "", *_markdown(header, scores)])

    def to_json(self) -> Dict[str, object]:
        """Plain data: settings, rows, and per-example paths, JAS and score changes."""

        def plain(value: Any) -> Any:
            return value._asdict() if value is not None and hasattr(value, "_asdict") else value

        return {
            "settings": self.settings,
            "rows": [{key: plain(getattr(row, key)) for key in asdict(row)} for row in self.rows],
            "paths": {name: path.tolist() for name, path in self.paths.items()},
            "jas": {name: values.tolist() for name, values in self.jas.items()},
            "score_changes": {
                name: {mode: values.tolist() for mode, values in changes.items()}
                for name, changes in self.score_changes.items()
            },
        }


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    """The lines of a markdown table."""
    return ["| " + " | ".join(cells) + " |" for cells in (header, ["---"] * len(header), *rows)]


def _interval(result: Optional[Tuple[float, float, float]], spec: str) -> str:
    if result is None:
        return "-"
    value, low, high = result[:3]
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def paper_table(
    model: Module,
    images: Tensor,
    labels: Tensor,
    layers: Optional[Sequence[Module]] = None,
    token: Optional[TokenType] = None,
    methods: Sequence[MethodType] = METHODS,
    n_steps: int = PAPER_QUADRATURE["n_steps"],
    method: str = PAPER_QUADRATURE["method"],
    factor: float = 2.0,
    reference: Optional[str] = REFERENCE,
    batch_size: int = 32,
    n_bootstrap: int = 1000,
    seed: int = 0,
    show_progress: bool = True,
) -> PaperTable:
    r"""
    Reproduce the paper's Table 1 on ``model`` and a labelled image set, with any Captum
    layer method as a further row, and the explained score's change beside the accuracy.

    Each row's method locates one path per image for its label (the explained score is
    the label's softmax probability); the path's JAS, the accuracy deviation and the mean
    score change when every image's own path is removed (set to 0) or enhanced (times
    ``factor``) follow, each with a bootstrap interval, and so does the paired difference
    of every method's score changes from the ``reference`` method's on the same images.

    Args:

        model (torch.nn.Module): A classifier returning logits, in eval mode.
        images (Tensor): ``(N, C, H, W)`` preprocessed images.
        labels (Tensor): ``(N,)`` ground-truth classes; each path explains its label.
        layers (list[torch.nn.Module], optional): Neuron layers.
                    Default: ``vit_mlp_layers(model)``
        token (int, slice, sequence of int or None, optional): Token set.
                    Default: ``vit_readout_token(model)``
        methods (sequence, optional): The rows, in order: names from ``METHODS``,
                    Captum layer attribution classes (``captum.attr.LayerConductance``,
                    ...; each wrapped in :class:`~captum_neuronpath.LayerMethodPath` and
                    named after the class), or :class:`~captum_neuronpath.LayerMethodPath`
                    instances on the same layers and token set.
                    Default: the four of ``METHODS``
        n_steps (int, optional): Quadrature nodes of every path search and JAS (and of a
                    Captum method that takes them).
                    Default: ``20``, the paper's (``PAPER_QUADRATURE``)
        method (str, optional): Quadrature method.
                    Default: ``"riemann_left"``, the paper's (``PAPER_QUADRATURE``)
        factor (float, optional): The enhancement multiplier.
                    Default: ``2.0`` (the paper's)
        reference (str, optional): The row the paired differences are taken from;
                    ``None``, or a name not among the rows, for none.
                    Default: ``"Neuron Path"``
        batch_size (int, optional): Images per attribution call.
                    Default: ``32``
        n_bootstrap (int, optional): Bootstrap resamples of each interval.
                    Default: ``1000``
        seed (int, optional): Seed of the random null and the bootstrap.
                    Default: ``0``
        show_progress (bool, optional): Show a progress bar on stderr.
                    Default: ``True``

    Returns:
        :class:`PaperTable`.

    Examples::

        >>> import timm, torch
        >>> from captum.attr import LayerGradientXActivation
        >>> from captum_neuronpath.experiments import paper_table
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=2, num_classes=3).eval()
        >>> table = paper_table(model, torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]),
        ...                     methods=["Neuron Path", "Random", LayerGradientXActivation],
        ...                     n_steps=4, n_bootstrap=10, show_progress=False)
        >>> [row.method for row in table.rows]
        ['Neuron Path', 'Random', 'LayerGradientXActivation']
    """
    forward, layers, token, locators = _setup(model, layers, token, methods, seed)
    batches = list(zip(images.split(batch_size), labels.split(batch_size)))
    data = (images, labels)
    clean = explained_scores(forward, data, batch_size=batch_size)
    bar = tqdm(total=len(locators) * len(images), desc="paper table", unit="img", disable=not show_progress)
    paths, jas, changes, rows, layer_scores = {}, {}, {}, [], {}
    modes, intervened = ("remove", "enhance"), {"token": token, "factor": factor}
    for name, locator in locators.items():
        bar.set_postfix_str(name)
        found = _over_batches(batches, bar, locator.attribute, n_steps=n_steps, method=method)
        paths[name], jas[name] = torch.cat([r.path for r in found]), torch.cat([r.jas for r in found])
        if all(r.layer_scores is not None for r in found):
            layer_scores[name] = torch.cat([r.layer_scores for r in found]).detach()
        low, high = bootstrap_interval(jas[name], n_bootstrap, seed=seed)
        deviations = [
            accuracy_deviation(model, layers, data, paths[name], mode=mode, batch_size=batch_size,
                               n_bootstrap=n_bootstrap, seed=seed, **intervened)
            for mode in modes
        ]  # fmt: skip
        changes[name] = {
            mode: explained_scores(forward, data, layers, paths[name], batch_size, mode=mode, **intervened) - clean
            for mode in modes
        }
        summaries = [summarize_score_change(clean, clean + changes[name][m], n_bootstrap, seed=seed) for m in modes]
        rows.append(TableRow(name, float(jas[name].double().mean()), low, high, *deviations, *summaries))
    bar.close()
    for row in rows:
        if reference in changes and row.method != reference:
            row.removal_vs_reference, row.enhancement_vs_reference = (
                paired_difference(changes[row.method][mode], changes[reference][mode], n_bootstrap, seed=seed)
                for mode in modes
            )
    settings = dict(
        n_steps=n_steps, method=method, n_examples=len(images), seed=seed, n_bootstrap=n_bootstrap, factor=factor,
        reference=reference if reference in changes else None, score="softmax probability of the label",
    )  # fmt: skip
    return PaperTable(rows, paths, jas, changes, settings, layer_scores)


@dataclass
class MethodAgreement:
    """Greedy candidate scores against other methods' per-neuron scores.

    ``layer_scores`` ``(N, L, C)`` and ``path`` ``(N, L)`` are ``NeuronPath``'s;
    ``scores[name]`` ``(N, L, C)`` each method's per-neuron scores, ``top[name]``
    ``(N, L)`` its top neuron per layer (the path it would take), and
    ``agreement[name]`` the :class:`~captum_neuronpath.metrics.RankAgreement` of the
    greedy scores (first) with that method's (second)."""

    layer_scores: Tensor = field(repr=False)
    path: Tensor = field(repr=False)
    scores: Dict[str, Tensor] = field(repr=False)
    top: Dict[str, Tensor] = field(repr=False)
    agreement: Dict[str, RankAgreement] = field(repr=False)
    settings: Dict[str, Any] = field(default_factory=dict)

    def to_markdown(self) -> str:
        """Per method, medians over images and layers: the Spearman correlation (with its
        quartiles), the rank of the method's top neuron among the greedy candidates, and
        the rank of the greedy choice under the method; and how often they coincide."""
        header = [
            "Method",
            "Spearman, median [IQR]",
            "Its top neuron's greedy rank, median",
            "Greedy choice's rank under it, median",
            "Same top neuron (%)",
        ]
        rows = []
        for name, result in self.agreement.items():
            rho = result.spearman.flatten()
            rho = rho[~rho.isnan()]
            quartiles = rho.quantile(torch.tensor([0.25, 0.5, 0.75], dtype=rho.dtype)).tolist()
            rows.append(
                [
                    name,
                    _interval((quartiles[1], quartiles[0], quartiles[2]), "+.2f"),
                    f"{result.second_top_in_first.median().item():.0f}",
                    f"{result.first_top_in_second.median().item():.0f}",
                    f"{100 * float(result.first_top_in_second.eq(0).double().mean()):.1f}",
                ]
            )
        return "\n".join(_markdown(header, rows))


def method_agreement(
    model: Module,
    images: Tensor,
    labels: Tensor,
    methods: Sequence[MethodType],
    layers: Optional[Sequence[Module]] = None,
    token: Optional[TokenType] = None,
    n_steps: int = PAPER_QUADRATURE["n_steps"],
    method: str = PAPER_QUADRATURE["method"],
    batch_size: int = 32,
    show_progress: bool = True,
    layer_scores: Optional[Tensor] = None,
) -> MethodAgreement:
    r"""
    How far single-layer methods agree with the greedy locator, layer by layer: one
    ``NeuronPath`` per image for its label (softmax probability), its candidate scores at
    every step, each method's per-neuron scores at the same layers and token set
    (``channel_scores()`` of the baselines), and their :func:`~captum_neuronpath.metrics.rank_agreement`.

    Args:

        methods (sequence): Captum layer attribution classes,
                    :class:`~captum_neuronpath.LayerMethodPath` instances, or
                    ``"Activation"`` / ``"Influence Pattern"``.
        model, images, labels, layers, token, n_steps, method, batch_size, show_progress:
                    As for :func:`paper_table`; the quadrature is the greedy search's and
                    the methods'.
        layer_scores (Tensor, optional): The greedy candidate scores ``(N, L, C)`` of
                    these images when already computed with the same settings, e.g.
                    ``paper_table(...).layer_scores["Neuron Path"]``; the path is their
                    argmax per layer.
                    Default: ``None`` (run ``NeuronPath``)

    Returns:
        :class:`MethodAgreement`.

    Examples::

        >>> import timm, torch
        >>> from captum.attr import LayerConductance
        >>> from captum_neuronpath.experiments import method_agreement
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=2, num_classes=3).eval()
        >>> found = method_agreement(model, torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2]),
        ...                          [LayerConductance], n_steps=4, show_progress=False)
        >>> found.agreement["LayerConductance"].spearman.shape
        torch.Size([3, 2])
    """
    forward, layers, token, locators = _setup(model, layers, token, methods, seed=0)
    for name, locator in locators.items():
        if not isinstance(locator, (ActivationPath, LayerMethodPath)):
            raise ValueError(f"method_agreement compares per-neuron scores; methods cannot hold {name!r}")
    batches = list(zip(images.split(batch_size), labels.split(batch_size)))
    runs = len(locators) + (layer_scores is None)
    bar = tqdm(total=runs * len(images), desc="agreement", unit="img", disable=not show_progress)
    if layer_scores is None:
        greedy = NeuronPath(forward, layers, token=token)
        found = _over_batches(batches, bar, greedy.attribute, n_steps=n_steps, method=method)
        layer_scores = torch.cat([r.layer_scores for r in found]).detach()
    elif layer_scores.shape[:2] != (len(images), len(layers)):
        raise ValueError(
            f"layer_scores must be (N, L, C) = ({len(images)}, {len(layers)}, C), got {tuple(layer_scores.shape)}"
        )
    path = best_channel(layer_scores)
    scores: Dict[str, Tensor] = {}
    for name, locator in locators.items():
        bar.set_postfix_str(name)
        scores[name] = torch.cat(_over_batches(batches, bar, locator.channel_scores, n_steps=n_steps, method=method))
    bar.close()
    top = {name: best_channel(values) for name, values in scores.items()}
    agreement = {name: rank_agreement(layer_scores, values) for name, values in scores.items()}
    settings = dict(n_steps=n_steps, method=method, n_examples=len(images))
    return MethodAgreement(layer_scores, path, scores, top, agreement, settings)
