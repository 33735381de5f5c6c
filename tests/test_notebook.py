"""The README's "In a notebook" section and examples/notebook.ipynb: the same code, and it runs as a notebook would.

Each notebook cell runs in one namespace, as in Jupyter; a cell ending with an expression is "displayed": the
value must have ``_repr_html_`` (what Jupyter shows) and is recorded, so the test knows the finding and the
figures are what the cells show, not just that no exception was raised.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"

RUNNER = """
import ast, json, sys
import plotly.graph_objects as go
shown = []
ns = {"__name__": "__main__"}
for source in json.loads(sys.argv[1]):
    tree = ast.parse(source)
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    body = tree.body[:-1] if last is not None else tree.body
    exec(compile(ast.Module(body, []), "<cell>", "exec"), ns)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), ns)
        if value is not None:
            html = value._repr_html_()
            kind = "Figure" if isinstance(value, go.Figure) else type(value).__name__
            shown.append([kind, len(html), getattr(value, "code", None),
                          len(getattr(value, "data", ()))])
print("SHOWN " + json.dumps(shown))
"""


def _readme_code() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## In a notebook") :]
    section = section[: section.index("\n## ", 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def _cells() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_the_notebook_is_the_readme_section():
    assert "\n\n".join(_cells()) == _readme_code().strip("\n")
    assert all(not c["outputs"] for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code")


@pytest.mark.slow
def test_the_notebook_runs_and_shows_a_finding_and_the_figures(tmp_path):
    pytest.importorskip("plotly", reason="roi_lab.viz needs plotly (the [viz] or [app] extra)")
    out = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(_cells())], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = [line for line in out.stdout.splitlines() if not line.startswith("SHOWN ")]
    assert printed == ["(1, 256, 25, 38)", "['IMAGE_SPACE_BOXES', 'NON_DIVISIBLE_STRIDE']"]  # the comments' values
    shown = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("SHOWN "))[6:])
    kinds = [s[0] for s in shown]
    assert kinds == ["Finding", "Figure", "Figure", "Figure"]
    assert shown[0][2] == "IMAGE_SPACE_BOXES" and shown[0][1] > 100
    assert shown[1][3] == 3 and shown[2][3] >= 5 and shown[3][3] == 1  # overview, details (5 panels), image
    assert (tmp_path / "side_by_side.html").stat().st_size > 10_000
