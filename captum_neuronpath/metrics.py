"""The paper's evaluation: accuracy deviation under interventions, the
pruning curve, intra-class neuron frequency and inter-class similarity.

``data`` is either a pair ``(inputs, labels)`` of tensors or an iterable of such
batches (a ``DataLoader``); ``paths`` holds one path per example in the same order.
"""

from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

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


class PruningCurve(NamedTuple):
    """Accuracy (%) with the path kept and a fraction of the other neurons pruned."""

    fractions: List[float]
    accuracy: List[float]


def _batches(data: Data, batch_size: int) -> Iterator[Tuple[Tensor, Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        inputs, labels = data
        if len(inputs) != len(labels):
            raise ValueError(f"data holds {len(inputs)} inputs but {len(labels)} labels")
        for start in range(0, len(inputs), batch_size):
            yield inputs[start : start + batch_size], labels[start : start + batch_size]
    else:
        yield from data


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
    correct, start = [], 0
    with torch.no_grad():
        for inputs, labels in _batches(data, batch_size):
            if paths is None:
                outputs = forward_func(inputs)
            else:
                batch_paths = paths[start : start + len(inputs)]
                if len(batch_paths) != len(inputs):
                    raise ValueError(f"paths holds {len(paths)} paths but data holds more examples")
                with intervene(layers, batch_paths.to(inputs.device), **intervention):
                    outputs = forward_func(inputs)
            correct.append((outputs.argmax(-1) == labels.to(outputs.device)).cpu())
            start += len(inputs)
    if paths is not None and start != len(paths):
        raise ValueError(f"paths holds {len(paths)} paths but data holds {start} examples")
    return torch.cat(correct)


def bootstrap_interval(
    values: Tensor, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Tuple[float, float]:
    r"""
    Percentile bootstrap interval of the mean of ``values``.

    Args:

        values (Tensor): ``(N,)`` per-example values.
        n_bootstrap (int, optional): Resamples of the ``N`` examples, with replacement.
                    Default: ``1000``
        confidence (float, optional): Coverage of the interval.
                    Default: ``0.95``
        seed (int, optional): Seed of the resampling.
                    Default: ``0``

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
        layers (list[torch.nn.Module]): The neuron layers of the paths.
        data: ``(inputs, labels)`` tensors or an iterable of such batches.
        paths (Tensor): ``(N, L)`` or ``(N, L, K)``, one path per example in order.
        mode (str, optional): ``"remove"`` or ``"enhance"`` (or ``"prune"``).
                    Default: ``"remove"``
        token (int, slice, sequence of int or None, optional): The token set.
                    Default: ``0``
        factor (float, optional): The enhancement multiplier.
                    Default: ``2.0``
        batch_size (int, optional): Rows per forward pass when ``data`` is tensors.
                    Default: ``64``
        n_bootstrap (int, optional): Bootstrap resamples.
                    Default: ``1000``
        confidence (float, optional): Coverage of the interval.
                    Default: ``0.95``
        seed (int, optional): Seed of the resampling.
                    Default: ``0``

    Returns:
        :class:`AccuracyDeviation`.
    """
    clean = correct_predictions(forward_func, data, batch_size=batch_size)
    intervened = correct_predictions(
        forward_func, data, layers, paths, batch_size, mode=mode, token=token, factor=factor
    )
    change = 100.0 * (intervened.double() - clean.double())
    low, high = bootstrap_interval(change, n_bootstrap, confidence, seed)
    return AccuracyDeviation(
        deviation=float(change.mean()),
        low=low,
        high=high,
        clean_accuracy=100.0 * float(clean.double().mean()),
        intervened_accuracy=100.0 * float(intervened.double().mean()),
        n=len(clean),
    )


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
    accuracy = [
        100.0
        * float(
            correct_predictions(
                forward_func, data, layers, paths, batch_size, mode="prune", token=token, p=fraction, seed=seed
            )
            .double()
            .mean()
        )
        for fraction in fractions
    ]
    return PruningCurve(list(fractions), accuracy)


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
    num_layers = paths.shape[1]
    counts = torch.zeros(num_classes, num_layers, num_channels, device=paths.device)
    hits = torch.zeros(len(paths), num_layers, num_channels, device=paths.device)
    hits.scatter_(2, paths, 1.0)
    counts.index_add_(0, labels, hits)
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
