"""The README's Python examples run as written (offline, random weights)."""

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_quickstart_runs_and_prints_a_path(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    res = namespace["res"]
    assert res.path.shape == (2, 12) and res.jas.shape == (2,)
    assert "tensor" in capsys.readouterr().out
