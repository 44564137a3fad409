# On a fresh clone: `make test` creates .venv, installs the package with its dev extras and runs
# the suite; `make demo` runs the paper's experiments on the embedded digits ViT, offline.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test demo tutorials docs lint clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest

$(VENV)/.demo-installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[demo]"
	touch $@

demo: $(VENV)/.demo-installed
	$(VENV)/bin/neuronpath demo --out neuronpath-demo

tutorials: $(VENV)/.installed  # re-run the notebooks and save their outputs
	$(PY) tutorials/execute.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check captum_neuronpath

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

docs: $(VENV)/.installed
	$(VENV)/bin/sphinx-build -W -b html docs docs/_build/html
