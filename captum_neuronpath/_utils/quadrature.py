"""The quadrature along alpha: every class's default, and the paper's (why: docs/concepts.md, Quadrature)."""

from types import MappingProxyType
from typing import Any, List, Mapping, NamedTuple

from captum.attr._utils.approximation_methods import SUPPORTED_METHODS, approximation_parameters

from captum_neuronpath._utils.validation import check_int

DEFAULT_N_STEPS = 3
DEFAULT_METHOD = "gausslegendre"

#: The paper's quadrature, ``n_steps=20, method="riemann_left"``, as keywords for any
#: ``attribute()``: ``locator.attribute(x, target=y, **cnp.PAPER_QUADRATURE)``. With the
#: softmax-probability forward it reproduces the authors' paths and scores.
PAPER_QUADRATURE: Mapping[str, Any] = MappingProxyType({"n_steps": 20, "method": "riemann_left"})


class Quadrature(NamedTuple):
    """A validated rule from Captum's ``approximation_parameters``."""

    n_steps: int
    method: str
    step_sizes: List[float]
    alphas: List[float]


def quadrature(n_steps: Any, method: Any) -> Quadrature:
    """Check ``n_steps`` and ``method`` and return Captum's nodes and weights for them."""
    check_int(n_steps, "n_steps", 1)
    if method not in SUPPORTED_METHODS:
        raise ValueError(f"method must be one of {SUPPORTED_METHODS}, got {method!r}")
    step_sizes_func, alphas_func = approximation_parameters(method)
    try:
        return Quadrature(n_steps, method, step_sizes_func(n_steps), alphas_func(n_steps))
    except AssertionError as error:  # Captum's Riemann rules need two nodes or more
        raise ValueError(f"n_steps={n_steps} is too few for method={method!r}: {error}") from None
