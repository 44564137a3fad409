"""The ``neuronpath`` command line (also ``python -m captum_neuronpath``).

One module per subcommand adds its parser. A mistake is one line on stderr with exit status 2, a
failure during the run one line with status 1, a stop signal N status 128 + N; ``--debug`` or
``NEURONPATH_DEBUG=1`` adds the traceback.
"""

import argparse
import os
import signal
import sys
import traceback
from typing import List, Optional

from captum_neuronpath._cli import demo, errors, extract, report, table
from captum_neuronpath._cli.arguments import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuronpath",
        description="Influential neuron paths in Vision Transformers.",
        allow_abbrev=False,
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (demo, extract, table, report):
        command = module.add_parser(commands)
        command.add_argument(
            "--debug", action="store_true", help="print the traceback of an error (also NEURONPATH_DEBUG=1)"
        )
        command.set_defaults(parser=command)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # the subcommand's usage, not the top level's
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        with errors.stop_signals_interrupt():
            args.handler(args)
        return 0
    except errors.CommandLineError as caught:
        error, status, message = caught, errors.USAGE_ERROR, f"error: {caught}"
    except (errors.RunFailure, OSError) as caught:
        error, status, message = caught, errors.FAILURE, f"error: {errors.describe(caught)}"
    except KeyboardInterrupt as caught:
        error, status, message = caught, 128 + getattr(caught, "signum", signal.SIGINT), str(caught) or "interrupted"
    if args.debug or os.environ.get("NEURONPATH_DEBUG", "") not in ("", "0"):
        traceback.print_exception(type(error), error, error.__traceback__)  # the form Python 3.9 takes
    print(f"neuronpath {args.command}: {message}", file=sys.stderr, flush=True)
    return status
