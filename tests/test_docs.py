"""The Sphinx site builds with warnings as errors, and every public name is documented."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import captum_neuronpath as cnp
from captum_neuronpath import digits, experiments, metrics, modular_addition, paths, visualization

ROOT = Path(__file__).parent.parent
MODULES = [metrics, experiments, visualization, digits, modular_addition, paths]


def _public_functions(module):
    return [
        obj for name, obj in vars(module).items()
        if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
    ]  # fmt: skip


def test_docs_build_with_warnings_as_errors(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"), str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    api = (tmp_path / "api.html").read_text()
    for name in cnp.__all__:
        assert f"captum_neuronpath.{name}" in api, name
    for module in MODULES:
        for function in _public_functions(module):
            assert f"{module.__name__}.{function.__name__}" in api, function.__name__
    for notebook in ("01_getting_started", "02_paper_experiments", "03_bring_your_own_model", "04_beyond_the_paper",
                     "05_language_models", "06_data_set_paths"):
        assert "<img" in (tmp_path / "tutorials" / f"{notebook}.html").read_text()


@pytest.mark.parametrize("name", cnp.__all__)
def test_public_names_have_captum_style_docstrings(name):
    obj = getattr(cnp, name)
    doc = inspect.getdoc(obj) or ""
    if inspect.ismodule(obj):  # a public module: each of its functions documented
        assert doc and _public_functions(obj), name
        for function in _public_functions(obj):
            assert all(part in inspect.getdoc(function) for part in ("Args:", "Returns:", "Examples::")), function
        return
    if name == "NeuronPathResult":
        assert "Attributes:" in doc and "Examples::" in inspect.getdoc(obj.chosen_scores)
        return
    if name == "PAPER_QUADRATURE":  # a constant: documented where it is defined and in the API page
        assert dict(obj) == {"n_steps": 20, "method": "riemann_left"}
        assert "PAPER_QUADRATURE" in (ROOT / "docs" / "api.rst").read_text()
        return
    attribute = getattr(obj, "attribute", None)
    documented = doc + (inspect.getdoc(attribute) if attribute is not None else "")
    assert "Args:" in documented and "Examples::" in documented, name
    if attribute is not None:
        assert "Returns:" in inspect.getdoc(attribute), name
        assert "Args:" in inspect.getdoc(obj.__init__), name  # its own constructor, not Captum's
        assert "device_ids" not in inspect.getdoc(obj.__init__), name
    elif inspect.isfunction(obj) and name != "intervene":  # a context manager returns nothing
        assert "Returns:" in doc, name


@pytest.mark.parametrize(
    "function", [f for m in MODULES for f in _public_functions(m)], ids=lambda f: f"{f.__module__}.{f.__name__}"
)
def test_module_functions_are_documented(function):
    doc = inspect.getdoc(function) or ""
    assert len(doc) > 40, function.__name__
    if len(inspect.signature(function).parameters) > 2:
        assert "Args:" in doc or "Returns:" in doc, function.__name__
