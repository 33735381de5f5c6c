"""The core never imports streamlit or plotly.

One fresh interpreter imports each core module in turn and records, after every import, whether
streamlit or plotly has entered ``sys.modules``; the first module that pulls one in is the culprit
(later modules would only inherit the leak, so each is reported against its own import).
"""

import json
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

PROBE = """
import importlib, json, sys
def leaked():
    return sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'plotly'))
report = {}
for name in json.loads(sys.argv[1]):
    before = set(leaked())
    importlib.import_module(name)
    if name == 'roi_lab':
        import roi_lab
        [getattr(roi_lab, n) for n in roi_lab.__all__]  # every public name, loaded lazily
    report[name] = sorted(set(leaked()) - before)
print(json.dumps(report))
"""


def _probe(modules):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def report():
    return _probe(["roi_lab", *CORE_MODULES])


@pytest.mark.parametrize("module", ["roi_lab", *CORE_MODULES])
def test_core_module_does_not_import_ui_libraries(report, module):
    assert report[module] == [], f"{module} pulled in {report[module]}"


def test_the_probe_catches_a_leak():
    """Negative control: the same probe sees roi_lab.ui pulling in streamlit."""
    assert "streamlit" in _probe(["roi_lab.ui.state"])["roi_lab.ui.state"]
