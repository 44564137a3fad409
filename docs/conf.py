"""Sphinx configuration: `make docs` (or `sphinx-build -W -b html docs docs/_build/html`)."""

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

import captum_neuronpath  # noqa: E402

project = "captum-neuronpath"
author = "captum-neuronpath developers"
release = captum_neuronpath.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"captum-neuronpath {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings give types and defaults, as Captum's do
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nb_execution_mode = "off"  # the tutorials carry their outputs; CI executes them in the test suite
myst_enable_extensions = ["dollarmath"]
suppress_warnings = ["misc.highlighting_failure"]

# The tutorials live in tutorials/ at the top of the repository; Sphinx reads them from here.
(HERE / "tutorials").mkdir(exist_ok=True)
for notebook in (HERE.parent / "tutorials").glob("*.ipynb"):
    shutil.copy(notebook, HERE / "tutorials" / notebook.name)
