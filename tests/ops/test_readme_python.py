"""The README's "From Python" section runs as written and prints what its comments say (compile and
ONNX export included)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"


def python_section() -> str:
    text = README.read_text()
    section = text[text.index("## From Python") :]
    section = section[: section.index("\n## ", 1)]
    return "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))


@pytest.mark.slow
def test_from_python_section_runs_and_prints_its_comments(tmp_path):
    pytest.importorskip("onnxruntime", reason="the section runs the exported model with onnxruntime")
    pytest.importorskip("onnxscript", reason="the section exports with torch's default (dynamo) ONNX exporter")
    code = python_section()
    assert "torch.compile(head, fullgraph=True)" in code and "torch.onnx.export(head" in code
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if not line.startswith("[torch.onnx]")]
    assert printed == ["torch.Size([1, 256, 7, 7])", "error IMAGE_SPACE_BOXES", "info NON_DIVISIBLE_STRIDE", "True",
                       "True"]  # fmt: skip
    assert (tmp_path / "head.onnx").exists()
