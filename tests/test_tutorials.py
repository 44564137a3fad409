"""Every tutorial runs top to bottom offline, with no error, and draws its figures."""

import sys
from pathlib import Path

import nbformat
import pytest

TUTORIALS = Path(__file__).parent.parent / "tutorials"
sys.path.insert(0, str(TUTORIALS))

from execute import execute  # noqa: E402

NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def test_the_tutorials_are_all_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01_getting_started.ipynb",
        "02_paper_experiments.ipynb",
        "03_bring_your_own_model.ipynb",
        "04_beyond_the_paper.ipynb",
        "05_language_models.ipynb",
        "06_data_set_paths.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_executes(path):
    saved = nbformat.read(path, as_version=4)
    assert any("image/png" in o.get("data", {}) for c in saved.cells if c.cell_type == "code" for o in c.outputs), (
        "saved outputs must hold the figures"
    )
    executed = execute(path, timeout=900)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1
