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

import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tqdm import tqdm

from captum_neuronpath._report.analysis import analyze, class_frequency, similarity
from captum_neuronpath._report.figures import write_figures
from captum_neuronpath._report.inputs import describe_inputs
from captum_neuronpath._report.page import render_page
from captum_neuronpath._utils.files import write_atomically
from captum_neuronpath.paths import Paths

__all__ = ["write_report"]


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
