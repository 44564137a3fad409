"""``neuronpath report FILE --out DIR``: the paper's data-set analyses of an extract, and a path explorer.

From the records alone (no model): per class and layer the neuron frequencies (the
paper's intra-class analysis) and each class's most frequent neurons; the cosine
similarity of the classes' frequencies and each class's nearest classes (inter-class); the
neurons in the paths of the most classes; the JAS per class; correct and wrong
predictions. ``DIR`` receives ``report.json`` (every number), ``figures/*.png`` and
``index.html``, an explorer that opens from ``file://`` with nothing fetched.

The modules, one concern each:

- :mod:`.analysis`: the numbers.
- :mod:`.figures`: the PNG figures.
- :mod:`.inputs`: thumbnails and texts of the inputs, from the data the records came from.
- :mod:`.page`: ``index.html`` from the template ``explorer.html.j2``.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tqdm import tqdm

from captum_neuronpath import paths as paths_module
from captum_neuronpath._report.analysis import analyze, class_frequency, similarity
from captum_neuronpath._report.figures import write_figures
from captum_neuronpath._report.inputs import data_source, describe_inputs
from captum_neuronpath._report.page import render_page
from captum_neuronpath._utils.files import write_atomically
from captum_neuronpath.paths import Paths

__all__ = ["add_parser", "write_report"]


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to ``commands`` (the ``neuronpath`` subparsers)."""
    parser = commands.add_parser(
        "report",
        help="the intra- and inter-class analyses of an extract's paths, with a browsable path explorer",
        description="Analyse the paths of FILE (written by neuronpath extract) and write report.json, "
        "PNG figures and index.html, a self-contained path explorer, to DIR.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the JSON Lines file of neuronpath extract")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the report")
    parser.add_argument(
        "--tokenizer", metavar="NAME", help="Hugging Face tokenizer to show token sequences as text (else their ids)"
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> None:
    """The ``report`` command."""
    from captum_neuronpath._loading import CommandLineError

    if args.out.exists() and not args.out.is_dir():
        raise CommandLineError(f"--out {args.out} exists and is not a folder")
    try:
        with tqdm(total=1, desc="read", unit="file", file=sys.stderr, dynamic_ncols=True) as bar:
            records = paths_module.load(args.file)
            bar.update()
        if not len(records):
            raise ValueError(f"{args.file} holds no paths ({len(records.errors)} inputs recorded as errors)")
        source = data_source(records, args.tokenizer)
    except ValueError as error:
        raise CommandLineError(str(error)) from error
    written = write_report(records, args.out, lambda positions: describe_inputs(source, positions), args.file.name)
    print(f"wrote {', '.join(str(path) for path in written)}", file=sys.stderr, flush=True)


def write_report(
    records: Paths,
    out: Path,
    describe: Optional[Callable[[List[int]], Dict[str, Dict]]] = None,
    title: str = "neuron paths",
) -> List[Path]:
    """Write ``out/report.json``, ``out/figures/*.png`` and ``out/index.html`` for ``records``.

    ``describe(positions)`` gives the thumbnails or texts of those records (none by default).
    Returns the files written.
    """
    describe = describe or (lambda positions: describe_inputs(None, positions))
    out.mkdir(parents=True, exist_ok=True)
    steps = ["analyse", "figures", "page"]
    with tqdm(total=len(steps), desc="report", unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        bar.set_postfix_str(steps[0])
        frequency = class_frequency(records)
        similar = similarity(frequency, records.num_layers, max(records.num_channels, 1))
        report = analyze(records, frequency, similar)
        write_atomically(out / "report.json", json.dumps(report).encode())
        bar.update()
        bar.set_postfix_str(steps[1])
        figures = write_figures(out / "figures", records, report, frequency, similar)
        bar.update()
        bar.set_postfix_str(steps[2])
        page = render_page(records, report, describe, title=f"Neuron paths: {title}")
        write_atomically(out / "index.html", page.encode())
        bar.update()
    return [out / "report.json", *figures.values(), out / "index.html"]
