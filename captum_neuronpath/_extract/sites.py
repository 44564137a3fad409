"""``--layers PATTERN`` and ``--token SPEC`` (see ``neuronpath extract --help``): the neuron sites, in the
order the forward pass runs them, and the token set."""

import difflib
from contextlib import contextmanager
from typing import Iterator, List, Tuple, Union

from torch.nn import Module

from captum_neuronpath._utils.sites import ModuleInput

INPUT = "input:"


def token_from_spec(spec: str) -> Union[int, slice]:
    """The ``token`` argument a spec names; :class:`ValueError` for a malformed one."""
    if spec == "cls":
        return 0
    if spec == "all":
        return slice(None)
    try:
        if ":" in spec:
            return slice(*(int(part) if part else None for part in spec.split(":", 1)))  # A:B, either may be empty
        return int(spec)
    except ValueError:
        raise ValueError(f"expected cls, an integer, A:B or all, got {spec!r}") from None


def _matches(pattern: str, name: str) -> bool:
    wanted, parts = pattern.split("."), name.split(".")
    return len(wanted) == len(parts) and all(w in ("*", p) for w, p in zip(wanted, parts))


def select_layers(model: Module, pattern: str) -> Tuple[List[Module], List[str]]:
    """The sites ``pattern`` names in ``model``, and their module names; one-line errors name the closest."""
    names_pattern = pattern.removeprefix(INPUT)
    named = [(name, module) for name, module in model.named_modules() if name and _matches(names_pattern, name)]
    if not named:
        names = [name for name, _ in model.named_modules() if name]
        close = difflib.get_close_matches(names_pattern, names, n=3, cutoff=0.4)
        hint = f"; the closest module names are {', '.join(close)}" if close else ""
        raise ValueError(f"--layers {pattern!r} matches no module of the model{hint}")
    modules = [ModuleInput(module) if pattern.startswith(INPUT) else module for _, module in named]
    return modules, [name for name, _ in named]


@contextmanager
def call_order(layers: List[Module]) -> Iterator[List[int]]:
    """Meanwhile, the indices into ``layers`` in the order their modules run (a site's input: before it runs)."""
    order: List[int] = []
    handles = []
    for index, layer in enumerate(layers):
        add = layer.module.register_forward_pre_hook if isinstance(layer, ModuleInput) else layer.register_forward_hook
        handles.append(add(lambda *_, index=index: order.append(index)))
    try:
        yield order
    finally:
        for handle in handles:
            handle.remove()


def check_call_order(pattern: str, names: List[str], order: List[int]) -> None:
    """Refuse a pattern whose modules did not each run once, in the order they are listed."""
    never = [names[i] for i in range(len(names)) if i not in order]
    if never:
        raise ValueError(
            f"--layers {pattern!r}: {', '.join(never[:3])}{', ...' if len(never) > 3 else ''} never ran in the "
            "model's forward pass; name modules the forward calls"
        )
    if order != list(range(len(names))):
        ran = [names[i] for i in dict.fromkeys(order)]
        raise ValueError(
            f"--layers {pattern!r} matches modules in an order the forward pass does not run them (or runs one "
            f"more than once): it ran {', '.join(ran[:4])}{', ...' if len(ran) > 4 else ''}; name one module per "
            "block, input side first"
        )
