"""The paper's evaluation: accuracy deviation under interventions, the pruning curve,
intra-class neuron frequency and inter-class similarity; beside them, the change of the
explained score under interventions, paired comparisons of two methods on the same
examples, and the rank agreement of two methods' per-neuron scores.

The arguments the functions share mean the same everywhere:

- ``data``: a pair ``(inputs, labels)`` of tensors or an iterable of such batches (a
  ``DataLoader``); ``batch_size``: rows per forward pass when it is tensors (default ``64``).
- ``layers`` (list[torch.nn.Module]): the neuron layers of ``paths``, ``(N, L)`` or
  ``(N, L, K)``, one path per example in the order of ``data``.
- ``mode`` (``"remove"``, ``"enhance"`` or ``"prune"``; default ``"remove"``), ``token``
  (the token set, default ``0``), ``factor`` (the enhancement multiplier, default ``2.0``),
  ``p`` and ``seed``: the keywords of :func:`~captum_neuronpath.intervene`.
- ``n_bootstrap``, ``confidence`` and ``seed``: the resamples (default ``1000``), coverage
  (default ``0.95``) and seed (default ``0``) of a percentile bootstrap interval.
"""

from contextlib import nullcontext
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._core.intervention import intervene
from captum_neuronpath._utils.tokens import TokenType

Data = Union[Tuple[Tensor, Tensor], Iterable[Tuple[Tensor, Tensor]]]


class AccuracyDeviation(NamedTuple):
    """Accuracy with each example's own path intervened minus clean accuracy.

    All values are percentages (points); ``low`` and ``high`` bound a paired bootstrap
    confidence interval of ``deviation``.
    """

    deviation: float
    low: float
    high: float
    clean_accuracy: float
    intervened_accuracy: float
    n: int


class ScoreChange(NamedTuple):
    """Mean change of the explained score with each example's own path intervened.

    ``change`` is the mean over examples of the intervened minus the clean score (in the
    forward's units, e.g. a probability), ``low`` and ``high`` bound its bootstrap
    interval; ``clean_score`` and ``intervened_score`` are the two means.
    """

    change: float
    low: float
    high: float
    clean_score: float
    intervened_score: float
    n: int


class PairedDifference(NamedTuple):
    """Mean of per-example differences ``values - reference`` with a paired bootstrap
    interval (the same examples resampled for both)."""

    difference: float
    low: float
    high: float
    n: int


class RankAgreement(NamedTuple):
    """How two per-neuron scorings of the same layers agree, per example and layer.

    All fields are ``(B, L)``: ``spearman`` is the Spearman rank correlation over a
    layer's neurons; ``first_top_in_second`` is the rank (0 = best) under the second
    scoring of the first scoring's top neuron, and ``second_top_in_first`` the other way
    round.
    """

    spearman: Tensor
    first_top_in_second: Tensor
    second_top_in_first: Tensor


class PruningCurve(NamedTuple):
    """Accuracy (%) with the path kept and a fraction of the other neurons pruned."""

    fractions: List[float]
    accuracy: List[float]


@torch.no_grad()  # around each step of the generator, not while the caller holds a batch
def _outputs(
    forward_func: Callable,
    data: Data,
    layers: Optional[Sequence[Module]],
    paths: Optional[Tensor],
    batch_size: int,
    intervention: Dict[str, object],
) -> Iterator[Tuple[Tensor, Tensor]]:
    """``(outputs, labels)`` of each batch without gradients, clean or with each example's own path intervened."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        if len(data[0]) != len(data[1]):
            raise ValueError(f"data holds {len(data[0])} inputs but {len(data[1])} labels")
        data = zip(data[0].split(batch_size), data[1].split(batch_size))
    start = 0
    for inputs, labels in data:
        batch_paths = None if paths is None else paths[start : start + len(inputs)]
        if batch_paths is not None and len(batch_paths) != len(inputs):
            raise ValueError(f"paths holds {len(paths)} paths but data holds more examples")
        with nullcontext() if batch_paths is None else intervene(layers, batch_paths.to(inputs.device), **intervention):
            outputs = forward_func(inputs)
        yield outputs, labels.to(outputs.device)
        start += len(inputs)
    if paths is not None and start != len(paths):
        raise ValueError(f"paths holds {len(paths)} paths but data holds {start} examples")


def correct_predictions(
    forward_func: Callable,
    data: Data,
    layers: Optional[Sequence[Module]] = None,
    paths: Optional[Tensor] = None,
    batch_size: int = 64,
    **intervention: object,
) -> Tensor:
    r"""
    Whether each example's prediction (the argmax of ``forward_func``) equals its label,
    clean or, with ``layers``, ``paths`` and ``intervention`` (the keywords of
    :func:`~captum_neuronpath.intervene`: ``mode``, ``token``, ``factor``, ``p``,
    ``seed``), with each example's own path intervened on.

    Returns:
        *Tensor* of **correct**, bool ``(N,)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import correct_predictions
        >>> correct_predictions(lambda x: x, (torch.eye(3), torch.tensor([0, 2, 2])))
        tensor([ True, False,  True])
    """
    outputs = _outputs(forward_func, data, layers, paths, batch_size, intervention)
    return torch.cat([(output.argmax(-1) == labels).cpu() for output, labels in outputs])


def accuracy(
    model: Module, data: Data, batch_size: int = 64, readout: Optional[Callable[[Any], Tensor]] = None
) -> float:
    r"""
    The fraction of examples whose prediction (the argmax of the model's output, or of
    ``readout(output)``) equals the label, with the model in eval mode; its mode is
    restored afterwards.

    Args:

        model (torch.nn.Module): The classifier.
        data, batch_size: As in the module's docstring.
        readout (Callable, optional): Maps the model's output to ``(B, num_classes)``
                    scores, e.g. ``lambda output: output.logits[:, -1]``.
                    Default: ``None`` (the output itself)

    Returns:
        *float* in ``[0, 1]``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import accuracy
        >>> accuracy(torch.nn.Identity(), (torch.eye(4), torch.tensor([0, 1, 0, 3])))
        0.75
    """
    training = model.training
    model.eval()
    try:
        forward = model if readout is None else (lambda inputs: readout(model(inputs)))
        return float(correct_predictions(forward, data, batch_size=batch_size).double().mean())
    finally:
        model.train(training)


def explained_scores(
    forward_func: Callable,
    data: Data,
    layers: Optional[Sequence[Module]] = None,
    paths: Optional[Tensor] = None,
    batch_size: int = 64,
    **intervention: object,
) -> Tensor:
    r"""
    The score each example's path explains: ``forward_func``'s output at the example's
    label when it returns ``(B, num_classes)`` (e.g. the label's softmax probability), or
    the output itself when it returns one value per example ``(B,)``; clean or, with
    ``layers``, ``paths`` and ``intervention`` (the keywords of
    :func:`~captum_neuronpath.intervene`), with each example's own path intervened on.

    Args:

        forward_func (Callable): Returns ``(B, num_classes)`` or ``(B,)``.
        data, layers, paths, batch_size: As in the module's docstring; without ``layers`` and
                    ``paths``, the clean scores.
        **intervention: ``mode``, ``token``, ``factor``, ``p``, ``seed``.

    Returns:
        *Tensor* ``(N,)`` in float64.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import explained_scores
        >>> explained_scores(lambda x: x, (torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0])))
        tensor([0.9000, 0.3000], dtype=torch.float64)
    """
    scores = []
    for outputs, labels in _outputs(forward_func, data, layers, paths, batch_size, intervention):
        if outputs.dim() == 2:
            outputs = outputs.gather(1, labels.long().view(-1, 1)).squeeze(1)
        elif outputs.dim() != 1:
            raise ValueError(
                f"forward_func must return (B, num_classes) or (B,) scores, got shape {tuple(outputs.shape)}"
            )
        scores.append(outputs.detach().double().cpu())
    return torch.cat(scores)


def summarize_score_change(
    clean: Tensor, intervened: Tensor, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> ScoreChange:
    r"""
    Summarise per-example clean and intervened scores (from :func:`explained_scores`)
    as their mean change with a bootstrap interval.

    Args:

        clean (Tensor): ``(N,)`` clean scores.
        intervened (Tensor): ``(N,)`` scores of the same examples, intervened.
        n_bootstrap, confidence, seed: The bootstrap's, as in the module's docstring.

    Returns:
        :class:`ScoreChange`.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import summarize_score_change
        >>> summary = summarize_score_change(torch.tensor([0.9, 0.5]), torch.tensor([0.7, 0.3]))
        >>> round(summary.change, 6), round(summary.clean_score, 6), summary.n
        (-0.2, 0.7, 2)
    """
    change = _paired(intervened, clean, "intervened and clean", n_bootstrap, confidence, seed)
    return ScoreChange(*change[:3], float(clean.double().mean()), float(intervened.double().mean()), change.n)


def score_change(
    forward_func: Callable,
    layers: Sequence[Module],
    data: Data,
    paths: Tensor,
    mode: str = "remove",
    token: TokenType = 0,
    factor: float = 2.0,
    batch_size: int = 64,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ScoreChange:
    r"""
    The mean change of the explained score (see :func:`explained_scores`) when each
    example's own path is removed (``mode="remove"``) or enhanced (``mode="enhance"``,
    times ``factor``), with a bootstrap interval. Unlike the accuracy deviation, which
    moves only when a prediction flips, it sees every example's change, so it separates
    methods on small test sets.

    Args:

        forward_func (Callable): Returns ``(B, num_classes)`` (e.g. softmax
                    probabilities) or ``(B,)``.
        layers, data, paths, mode, token, factor, batch_size, n_bootstrap, confidence, seed: As in the
                    module's docstring.

    Returns:
        :class:`ScoreChange`.

    Examples::

        >>> import torch
        >>> from torch import nn
        >>> from captum_neuronpath.metrics import score_change
        >>> layer = nn.Identity()
        >>> data = (torch.tensor([[0.8, 0.2], [0.4, 0.6]]), torch.tensor([0, 1]))
        >>> round(score_change(layer, [layer], data, torch.tensor([[0], [1]]), token=None).change, 6)
        -0.7
    """
    clean = explained_scores(forward_func, data, batch_size=batch_size)
    intervened = explained_scores(forward_func, data, layers, paths, batch_size, mode=mode, token=token, factor=factor)
    return summarize_score_change(clean, intervened, n_bootstrap, confidence, seed)


def paired_difference(
    values: Tensor, reference: Tensor, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> PairedDifference:
    r"""
    Paired comparison of two methods on the same examples: the mean of
    ``values - reference`` with a percentile bootstrap interval that resamples examples
    (each keeping its pair).

    Args:

        values (Tensor): ``(N,)`` per-example values of one method, e.g. score changes.
        reference (Tensor): ``(N,)`` the other method's values on the same examples.
        n_bootstrap, confidence, seed: The bootstrap's, as in the module's docstring.

    Returns:
        :class:`PairedDifference`.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import paired_difference
        >>> result = paired_difference(torch.tensor([0.5, 0.1, 0.3]), torch.tensor([0.4, 0.0, 0.2]))
        >>> round(result.difference, 6), result.n
        (0.1, 3)
    """
    return _paired(values, reference, "values and reference", n_bootstrap, confidence, seed)


def _paired(
    values: Tensor, reference: Tensor, names: str, n_bootstrap: int, confidence: float, seed: int
) -> PairedDifference:
    """The mean of ``values - reference`` over the same ``(N,)`` examples (float64) and its bootstrap interval."""
    if values.shape != reference.shape or values.dim() != 1:
        raise ValueError(
            f"{names} must be (N,) over the same examples, got {tuple(values.shape)} and {tuple(reference.shape)}"
        )
    difference = values.double().cpu() - reference.double().cpu()
    interval = bootstrap_interval(difference, n_bootstrap, confidence, seed)
    return PairedDifference(float(difference.mean()), *interval, len(difference))


def _average_ranks(values: Tensor) -> Tensor:
    """Ranks along the last dimension, 0 = smallest, ties sharing their average rank."""
    ordered = values.sort(dim=-1).values
    left = torch.searchsorted(ordered, values.contiguous(), right=False)
    right = torch.searchsorted(ordered, values.contiguous(), right=True)
    return (left + right - 1).double() / 2


def rank_agreement(first: Tensor, second: Tensor) -> RankAgreement:
    r"""
    Per example and layer, how two per-neuron scorings agree: the Spearman rank
    correlation over the layer's neurons, and the rank of each scoring's top neuron
    under the other (0 = also the other's best; ``C - 1`` = its worst). For instance
    ``first`` the greedy step's candidate scores (``result.layer_scores``) and
    ``second`` a single-layer method's attribution at the same layer and token set
    (``channel_scores()`` of :class:`~captum_neuronpath.LayerMethodPath`).

    Ties share their average rank in the correlation; a top neuron's rank counts the
    neurons the other scoring puts strictly above it, and a top neuron is the first
    among equal bests. ``NaN`` entries (the padding of narrower layers) are left out.

    Args:

        first (Tensor): ``(B, L, C)`` scores, larger is better.
        second (Tensor): ``(B, L, C)`` scores of the same neurons.

    Returns:
        :class:`RankAgreement` of ``(B, L)`` tensors (float64 correlations, int64 ranks).

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import rank_agreement
        >>> scores = torch.tensor([[[0.1, 0.5, 0.2, 0.9]]])
        >>> agreement = rank_agreement(scores, -scores)
        >>> agreement.spearman, agreement.first_top_in_second
        (tensor([[-1.]], dtype=torch.float64), tensor([[3]]))
    """
    if first.shape != second.shape or first.dim() != 3:
        raise ValueError(f"first and second must both be (B, L, C), got {tuple(first.shape)} and {tuple(second.shape)}")
    first, second = first.detach().double().cpu(), second.detach().double().cpu()
    valid = ~(first.isnan() | second.isnan())
    first, second = first.where(valid, float("-inf")), second.where(valid, float("-inf"))
    # Left-out entries rank below every valid one in both, shifting valid ranks alike.
    ranks = [_average_ranks(values) for values in (first, second)]
    centred = [(rank - (rank * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True)) * valid for rank in ranks]
    # The Pearson correlation of the ranks: NaN where a scoring is constant over the layer.
    spearman = (centred[0] * centred[1]).sum(-1) / (centred[0].square().sum(-1) * centred[1].square().sum(-1)).sqrt()

    def top_in_other(scores: Tensor, other: Tensor) -> Tensor:
        top = scores.argmax(-1, keepdim=True)  # the first among equal bests
        return (other > other.gather(-1, top)).sum(-1)

    return RankAgreement(spearman, top_in_other(first, second), top_in_other(second, first))


def bootstrap_interval(
    values: Tensor, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Tuple[float, float]:
    r"""
    Percentile bootstrap interval of the mean of ``values``.

    Args:

        values (Tensor): ``(N,)`` per-example values.
        n_bootstrap, confidence, seed: As in the module's docstring; the ``N`` examples
                    are resampled with replacement.

    Returns:
        ``(low, high)`` floats.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import bootstrap_interval
        >>> bootstrap_interval(torch.full((10,), 2.0))
        (2.0, 2.0)
    """
    generator = torch.Generator().manual_seed(seed)
    values = values.double().cpu()
    samples = torch.randint(len(values), (n_bootstrap, len(values)), generator=generator)
    means = values[samples].mean(1)
    tail = (1 - confidence) / 2
    return float(means.quantile(tail)), float(means.quantile(1 - tail))


def accuracy_deviation(
    forward_func: Callable,
    layers: Sequence[Module],
    data: Data,
    paths: Tensor,
    mode: str = "remove",
    token: TokenType = 0,
    factor: float = 2.0,
    batch_size: int = 64,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AccuracyDeviation:
    r"""
    The paper's accuracy deviation: accuracy with each example's own path removed
    (``mode="remove"``) or enhanced (``mode="enhance"``, times ``factor``) minus clean
    accuracy, in percentage points, with a paired bootstrap interval.

    Args:

        forward_func (Callable): Returns class scores ``(B, num_classes)``.
        layers, data, paths, mode, token, factor, batch_size, n_bootstrap, confidence, seed: As in the
                    module's docstring.

    Returns:
        :class:`AccuracyDeviation`.
    """
    clean = correct_predictions(forward_func, data, batch_size=batch_size).double()
    intervention = dict(mode=mode, token=token, factor=factor)
    intervened = correct_predictions(forward_func, data, layers, paths, batch_size, **intervention).double()
    change = _paired(100.0 * intervened, 100.0 * clean, "intervened and clean", n_bootstrap, confidence, seed)
    return AccuracyDeviation(*change[:3], 100.0 * float(clean.mean()), 100.0 * float(intervened.mean()), change.n)


def pruning_curve(
    forward_func: Callable,
    layers: Sequence[Module],
    data: Data,
    paths: Tensor,
    fractions: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0),
    token: TokenType = 0,
    batch_size: int = 64,
    seed: int = 0,
) -> PruningCurve:
    r"""
    Accuracy when each example keeps its path neurons (all ``K`` per layer of a
    ``(N, L, K)`` path) and a fraction of every layer's other neurons at the token set
    is zeroed, for each fraction.

    Returns:
        :class:`PruningCurve` with the fractions and the accuracy (%) at each.
    """
    pruned = dict(mode="prune", token=token, seed=seed)
    kept = [correct_predictions(forward_func, data, layers, paths, batch_size, p=p, **pruned) for p in fractions]
    return PruningCurve(list(fractions), [100.0 * float(correct.double().mean()) for correct in kept])


def neuron_frequency(paths: Tensor, labels: Tensor, num_channels: int, num_classes: Optional[int] = None) -> Tensor:
    r"""
    Intra-class neuron frequency: for each class, the fraction of its examples whose path
    holds each neuron.

    Args:

        paths (Tensor): ``(N, L)`` or ``(N, L, K)`` paths.
        labels (Tensor): ``(N,)`` class of each example.
        num_channels (int): Neurons per layer ``C``.
        num_classes (int, optional): Number of classes; the largest label plus one by
                    default.

    Returns:
        *Tensor* ``(num_classes, L, C)``; a class without examples has all zeros.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import neuron_frequency
        >>> neuron_frequency(torch.tensor([[0, 1], [0, 2]]), torch.tensor([0, 0]), num_channels=3)
        tensor([[[1.0000, 0.0000, 0.0000],
                 [0.0000, 0.5000, 0.5000]]])
    """
    if paths.dim() == 2:
        paths = paths.unsqueeze(-1)
    labels = labels.to(paths.device).long()
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    hits = torch.zeros(len(paths), paths.shape[1], num_channels, device=paths.device).scatter_(2, paths, 1.0)
    counts = hits.new_zeros(num_classes, *hits.shape[1:]).index_add_(0, labels, hits)
    sizes = torch.bincount(labels, minlength=num_classes).clamp(min=1).to(counts.dtype)
    return counts / sizes.view(-1, 1, 1)


def class_similarity(frequency: Tensor) -> Tensor:
    r"""
    Inter-class similarity: the cosine similarity between classes' flattened frequency
    matrices (``(num_classes, L, C)`` from :func:`neuron_frequency`).

    Returns:
        *Tensor* ``(num_classes, num_classes)``; 0 for a class without examples.
    """
    flat = torch.nn.functional.normalize(frequency.flatten(1).double(), dim=1)
    return (flat @ flat.T).to(frequency.dtype)


def most_similar_classes(similarity: Tensor, k: int = 1) -> Tensor:
    r"""
    Each class's ``k`` most similar other classes, most similar first.

    Returns:
        *LongTensor* ``(num_classes, k)``.

    Examples::

        >>> import torch
        >>> from captum_neuronpath.metrics import most_similar_classes
        >>> most_similar_classes(torch.tensor([[1.0, 0.2, 0.9], [0.2, 1.0, 0.1], [0.9, 0.1, 1.0]]))
        tensor([[2],
                [0],
                [0]])
    """
    others = similarity.clone().fill_diagonal_(float("-inf"))
    return torch.sort(others, dim=1, descending=True, stable=True).indices[:, :k]
