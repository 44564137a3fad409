"""Argument types (argparse reports their errors as usage errors naming the option) and the help format."""

import argparse
from typing import List, Optional, Type

import torch
from captum.attr import LayerAttribution
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS

from captum_neuronpath._core.intervention import SEED_RANGE
from captum_neuronpath._utils.quadrature import PAPER_QUADRATURE


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; every option that has a default shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, [], argparse.SUPPRESS) and "%(default)" not in text
        return f"{text} (default: %(default)s)" if shown and action.option_strings else text


def subcommand(commands: argparse._SubParsersAction, name: str, **options) -> argparse.ArgumentParser:
    """A subparser with the shared conventions: no abbreviated options, defaults in ``--help``."""
    return commands.add_parser(name, allow_abbrev=False, formatter_class=HelpFormatter, **options)


def integer(minimum: Optional[int] = None, maximum: Optional[int] = None, what: str = "an integer"):
    """An integer type bounded by ``minimum`` and ``maximum`` (inclusive); ``what`` names it in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


positive_int = integer(1, what="a positive integer")
non_negative_int = integer(0, what="a non-negative integer")
seed = integer(*SEED_RANGE, what=f"a seed torch accepts, an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}")


def device(text: str) -> torch.device:
    """A torch device this machine has."""
    try:
        value = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if value.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine")
    return value


def captum_methods(text: str) -> List[Type[LayerAttribution]]:
    """Comma-separated names of Captum layer attribution classes."""
    from captum_neuronpath.experiments import captum_layer_method

    try:
        return [captum_layer_method(name.strip()) for name in text.split(",") if name.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def paper_experiment_arguments(parser: argparse.ArgumentParser, batch_size: int, captum_note: str = "") -> None:
    """The options of the paper's experiments (``demo``, ``table``): quadrature, batch, bootstrap, seed, Captum rows."""
    parser.add_argument("--n-steps", type=positive_int, default=PAPER_QUADRATURE["n_steps"], help="quadrature nodes")
    parser.add_argument(
        "--method", default=PAPER_QUADRATURE["method"], choices=SUPPORTED_METHODS, metavar="M",
        help=f"Captum quadrature, one of {', '.join(SUPPORTED_METHODS)}",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, help="images per attribution call")
    parser.add_argument("--n-bootstrap", type=positive_int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random null and the bootstrap")
    parser.add_argument("--captum-methods", type=captum_methods, default=[], metavar="NAMES", help="further rows: "
                        "Captum layer methods, comma-separated (e.g. LayerIntegratedGradients,LayerConductance)"
                        + captum_note)  # fmt: skip
