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

SUBCOMMANDS = (demo, extract, table, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuronpath",
        description="Influential neuron paths in Vision Transformers.",
        allow_abbrev=False,
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
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
    debug = args.debug or os.environ.get("NEURONPATH_DEBUG", "") not in ("", "0")
    try:
        with errors.stop_signals_interrupt():
            args.handler(args)
    except errors.CommandLineError as error:
        return _report(args.command, f"error: {error}", errors.USAGE_ERROR, debug)
    except (errors.RunFailure, OSError) as error:
        return _report(args.command, f"error: {errors.describe(error)}", errors.FAILURE, debug)
    except KeyboardInterrupt as interrupt:
        status = 128 + getattr(interrupt, "signum", signal.SIGINT)
        return _report(args.command, str(interrupt) or "interrupted", status, debug)
    return 0


def _report(command: str, message: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"neuronpath {command}: {message}", file=sys.stderr, flush=True)
    return status
