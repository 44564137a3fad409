"""Run the tutorials top to bottom and save their outputs (figures included) in place.

    python tutorials/execute.py                 # every notebook in this folder
    python tutorials/execute.py 01_getting_started.ipynb
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent


def execute(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute ``path`` in its folder and return the notebook with its outputs."""
    notebook = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(HERE)}}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources=resources)
    client.execute()
    return notebook


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.name for p in HERE.glob("*.ipynb"))
    for name in names:
        start = time.perf_counter()
        notebook = execute(HERE / name)
        nbformat.write(notebook, HERE / name)
        print(f"{name}: {time.perf_counter() - start:.0f} s")
