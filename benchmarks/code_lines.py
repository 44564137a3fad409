"""Lines of code of the package at git revisions: the lines that are not blank, comments or docstrings.

python benchmarks/code_lines.py                 # the working tree, per file
python benchmarks/code_lines.py REV [REV ...]   # totals at revisions, e.g. two releases
"""

import argparse
import ast
import io
import subprocess
import tokenize
from pathlib import Path

PACKAGE = "captum_neuronpath"
_NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def code_lines(source: str) -> int:
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        documented = isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        if documented and ast.get_docstring(node, clean=False) is not None:
            docstrings.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def at_revision(revision: str) -> int:
    listed = subprocess.check_output(["git", "ls-tree", "-r", "--name-only", revision, PACKAGE], text=True).split()
    files = [name for name in listed if name.endswith(".py")]
    sources = (subprocess.check_output(["git", "show", f"{revision}:{name}"], text=True) for name in files)
    return sum(map(code_lines, sources))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs="*", help="git revisions (default: the working tree, per file)")
    args = parser.parse_args()
    if args.revisions:
        for revision in args.revisions:
            print(f"{revision}: {at_revision(revision)}")
        return
    counts = {path: code_lines(path.read_text()) for path in sorted(Path(PACKAGE).rglob("*.py"))}
    for path, count in counts.items():
        print(f"{count:6d}  {path}")
    print(f"{sum(counts.values()):6d}  total")


if __name__ == "__main__":
    main()
