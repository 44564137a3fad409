"""``neuronpath report``: its arguments; the report itself is :mod:`captum_neuronpath._report`."""

import argparse
import sys
from pathlib import Path

from captum_neuronpath._cli.arguments import subcommand
from captum_neuronpath._cli.errors import CommandLineError


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subcommand(
        commands,
        "report",
        help="the intra- and inter-class analyses of an extract's paths, with a browsable path explorer",
        description="Analyse the paths of FILE (written by neuronpath extract) and write report.json, "
        "PNG figures and index.html, a self-contained path explorer, to DIR.",
    )
    add = parser.add_argument
    add("file", type=Path, metavar="FILE", help="the JSON Lines file of neuronpath extract")
    add("--out", type=Path, required=True, metavar="DIR", help="folder for the report")
    add("--tokenizer", metavar="NAME", help="Hugging Face tokenizer to show token sequences as text (else their ids)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from captum_neuronpath import paths
    from captum_neuronpath._report import write_report
    from captum_neuronpath._report.inputs import data_source

    if args.out.exists() and not args.out.is_dir():
        raise CommandLineError(f"--out {args.out} exists and is not a folder")
    try:
        with tqdm(total=1, desc="read", unit="file", file=sys.stderr, dynamic_ncols=True) as bar:
            records = paths.load(args.file)
            bar.update()
        if not len(records):
            raise ValueError(f"{args.file} holds no paths ({len(records.errors)} inputs recorded as errors)")
        source = data_source(records, args.tokenizer)
    except (ValueError, OSError) as error:  # FILE is not an extract's, or is not there
        raise CommandLineError(str(error)) from error
    written = write_report(records, args.out, source, args.file.name)
    print(f"wrote {', '.join(str(path) for path in written)}", file=sys.stderr, flush=True)
