"""The paper's Table 1 on any classifier and labelled image set.

For each method (Activation, Influence Pattern, Neuron Path and a random null) it locates
one path per image for the image's label, with the softmax probability as the explained
score, and reports the mean JAS and the removal and enhancement accuracy deviations, each
with a bootstrap interval.
"""

from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor
from torch.nn import Module
from tqdm import tqdm

from captum_neuronpath._core.baselines import ActivationPath, InfluencePatternPath, RandomPath
from captum_neuronpath._core.neuron_path import NeuronPath
from captum_neuronpath._models import vit_mlp_layers, vit_readout_token
from captum_neuronpath._utils.tokens import TokenType
from captum_neuronpath.metrics import AccuracyDeviation, accuracy_deviation, bootstrap_interval

METHODS = ("Activation", "Influence Pattern", "Neuron Path", "Random")


@dataclass
class TableRow:
    """One method's line of the table; deviations in percentage points."""

    method: str
    jas: float
    jas_low: float
    jas_high: float
    removal: AccuracyDeviation
    enhancement: AccuracyDeviation


@dataclass
class PaperTable:
    """The table's rows and, per method, every example's path ``(N, L)`` and JAS ``(N,)``."""

    rows: List[TableRow]
    paths: Dict[str, Tensor] = field(repr=False)
    jas: Dict[str, Tensor] = field(repr=False)
    settings: Dict[str, object] = field(default_factory=dict)

    def to_markdown(self) -> str:
        """A markdown table, values with their 95% intervals."""
        lines = [
            "| Method | JAS | Removal deviation (%) | Enhancement deviation (%) |",
            "| --- | --- | --- | --- |",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.method} | {row.jas:.4f} [{row.jas_low:.4f}, {row.jas_high:.4f}] "
                f"| {_deviation(row.removal)} | {_deviation(row.enhancement)} |"
            )
        return "\n".join(lines)

    def to_json(self) -> Dict[str, object]:
        """Plain data: settings, rows, and per-example paths and JAS."""
        return {
            "settings": self.settings,
            "rows": [
                dict(asdict(row), removal=row.removal._asdict(), enhancement=row.enhancement._asdict())
                for row in self.rows
            ],
            "paths": {name: path.tolist() for name, path in self.paths.items()},
            "jas": {name: values.tolist() for name, values in self.jas.items()},
        }


def _deviation(result: AccuracyDeviation) -> str:
    return f"{result.deviation:+.2f} [{result.low:+.2f}, {result.high:+.2f}]"


def _locator(name: str, forward: Callable, layers: Sequence[Module], token: TokenType, seed: int):
    if name == "Activation":
        return ActivationPath(forward, layers, token=token)
    if name == "Influence Pattern":
        return InfluencePatternPath(forward, layers, token=token)
    if name == "Neuron Path":
        return NeuronPath(forward, layers, token=token)
    if name == "Random":
        return RandomPath(forward, layers, token=token, seed=seed)
    raise ValueError(f"methods must be drawn from {METHODS}, got {name!r}")


def paper_table(
    model: Module,
    images: Tensor,
    labels: Tensor,
    layers: Optional[Sequence[Module]] = None,
    token: Optional[TokenType] = None,
    methods: Sequence[str] = METHODS,
    n_steps: int = 20,
    method: str = "riemann_left",
    batch_size: int = 32,
    n_bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> PaperTable:
    r"""
    Reproduce the paper's Table 1 on ``model`` and a labelled image set.

    Args:

        model (torch.nn.Module): A classifier returning logits, in eval mode.
        images (Tensor): ``(N, C, H, W)`` preprocessed images.
        labels (Tensor): ``(N,)`` ground-truth classes; each path explains its label.
        layers (list[torch.nn.Module], optional): Neuron layers.
                    Default: ``vit_mlp_layers(model)``
        token (int, slice, sequence of int or None, optional): Token set.
                    Default: ``vit_readout_token(model)``
        methods (sequence of str, optional): Rows, from ``METHODS``.
                    Default: all four
        n_steps (int, optional): Quadrature nodes of every path search and JAS.
                    Default: ``20`` (the paper's)
        method (str, optional): Quadrature method.
                    Default: ``"riemann_left"`` (the paper's)
        batch_size (int, optional): Images per attribution call.
                    Default: ``32``
        n_bootstrap (int, optional): Bootstrap resamples of each interval.
                    Default: ``1000``
        seed (int, optional): Seed of the random null and the bootstrap.
                    Default: ``0``
        progress (bool, optional): Show a progress bar on stderr.
                    Default: ``True``

    Returns:
        :class:`PaperTable`.

    Examples::

        >>> import timm, torch
        >>> from captum_neuronpath.experiments import paper_table
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=2, num_classes=3).eval()
        >>> table = paper_table(model, torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]),
        ...                     n_steps=4, n_bootstrap=10, progress=False)
        >>> [row.method for row in table.rows]
        ['Activation', 'Influence Pattern', 'Neuron Path', 'Random']
    """
    layers = vit_mlp_layers(model) if layers is None else layers
    token = vit_readout_token(model) if token is None else token

    def forward(x: Tensor) -> Tensor:
        return model(x).softmax(-1)

    batches = list(zip(images.split(batch_size), labels.split(batch_size)))
    bar = tqdm(total=len(methods) * len(images), desc="paper table", unit="img", disable=not progress)
    rows, paths, jas = [], {}, {}
    for name in methods:
        locator = _locator(name, forward, layers, token, seed)
        bar.set_postfix_str(name)
        found, scores = [], []
        for x, y in batches:
            result = locator.attribute(x, target=y, n_steps=n_steps, method=method)
            found.append(result.path)
            scores.append(result.jas)
            bar.update(len(x))
        paths[name], jas[name] = torch.cat(found), torch.cat(scores)
        low, high = bootstrap_interval(jas[name], n_bootstrap, seed=seed)
        deviations = [
            accuracy_deviation(
                model, layers, (images, labels), paths[name], mode=mode, token=token,
                batch_size=batch_size, n_bootstrap=n_bootstrap, seed=seed,
            )
            for mode in ("remove", "enhance")
        ]  # fmt: skip
        rows.append(TableRow(name, float(jas[name].double().mean()), low, high, *deviations))
    bar.close()
    settings = dict(n_steps=n_steps, method=method, n_examples=len(images), seed=seed, n_bootstrap=n_bootstrap)
    return PaperTable(rows, paths, jas, settings)
