"""``neuronpath report FILE --out DIR``: the paper's data-set analyses of an extract, from the records alone
(docs/command_line.md), and a path explorer. The modules: :mod:`.analysis` (the numbers), :mod:`.figures`,
:mod:`.inputs` (thumbnails and texts of the inputs) and :mod:`.page` (``index.html``).
"""

import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tqdm import tqdm

from captum_neuronpath._report.analysis import analyze, class_frequency, similarity
from captum_neuronpath._report.figures import write_figures
from captum_neuronpath._report.page import render_page
from captum_neuronpath._utils.files import write_atomically
from captum_neuronpath.paths import Paths


def write_report(
    records: Paths, out: Path, source: Optional[Callable[[int], Dict[str, str]]] = None, title: str = "neuron paths"
) -> List[Path]:
    """Write ``out/report.json``, ``out/figures/*.png`` and ``out/index.html`` for ``records``; returns the files.
    ``source`` gives the thumbnail or text of a record (none by default)."""
    out.mkdir(parents=True, exist_ok=True)
    with tqdm(total=3, desc="report", unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        bar.set_postfix_str("analyse")
        frequency = class_frequency(records)
        similar = similarity(frequency)
        report = analyze(records, frequency, similar)
        write_atomically(out / "report.json", json.dumps(report).encode())
        bar.update()
        bar.set_postfix_str("figures")
        figures = write_figures(out / "figures", records, report, frequency, similar)
        bar.update()
        bar.set_postfix_str("page")
        page = render_page(records, report, source, title=f"Neuron paths: {title}")
        write_atomically(out / "index.html", page.encode())
        bar.update()
    return [out / "report.json", *figures.values(), out / "index.html"]
