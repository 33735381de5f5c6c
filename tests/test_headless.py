"""The core never imports streamlit or plotly: a subprocess imports each core module and checks."""

import pkgutil
import subprocess
import sys

import pytest

import roi_lab

CORE_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(roi_lab.__path__, "roi_lab.")
    if not m.name.startswith("roi_lab.ui") and m.name != "roi_lab.__main__"
)


@pytest.mark.parametrize("module", ["roi_lab", *CORE_MODULES])
def test_core_module_does_not_import_ui_libraries(module):
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "import roi_lab\n"
        "[getattr(roi_lab, n) for n in roi_lab.__all__]\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'plotly'))\n"
        "print(','.join(leaked))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"


def test_the_check_itself_catches_a_leak():
    """Negative control: importing roi_lab.ui's dependency is seen by the same probe."""
    code = "import sys, streamlit\nprint(','.join(m for m in sys.modules if m.split('.')[0] == 'streamlit'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "streamlit" in out.stdout
