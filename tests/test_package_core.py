"""The core install: everything but the app and the figures works with streamlit and plotly absent.

Each check runs in a fresh interpreter with both hidden from the import system (``sys.modules[name] = None``:
``import streamlit`` raises ModuleNotFoundError and ``importlib.util.find_spec`` answers None, exactly as when
they are not installed), and says what to install where they are needed. ``tests/test_headless.py`` proves the
core never imports them; this proves it runs without them.
"""

from __future__ import annotations

import json
import subprocess
import sys

HIDE = "import sys\nfor _m in {modules!r}:\n    sys.modules[_m] = None\n"
CHECKOUT_CLI = ["diagnose", "--image-size", "800", "1000", "--features", "1", "1024", "50", "63"]


def _run(code: str, modules: tuple[str, ...] = ("streamlit", "plotly")) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE.format(modules=modules) + code], capture_output=True, text=True,
                          timeout=300)


def test_the_hiding_works():
    """Negative control: with the names hidden, importing them fails as when they are not installed."""
    out = _run("import importlib.util\nprint(importlib.util.find_spec('plotly'))\nimport streamlit")
    assert out.stdout.strip() == "None"
    assert "ModuleNotFoundError: import of streamlit halted; None in sys.modules" in out.stderr


def test_core_imports_and_runs_without_streamlit_and_plotly(tmp_path):
    rois = tmp_path / "rois.json"
    rois.write_text("[[0, 120, 200, 560, 480], [0, 600, 40, 900, 300]]")
    code = f"""
import json, pkgutil, importlib, torch
import roi_lab
from roi_lab import cli
names = [getattr(roi_lab, n) for n in roi_lab.__all__]
core = [m.name for m in pkgutil.walk_packages(roi_lab.__path__, 'roi_lab.')
        if not m.name.startswith('roi_lab.ui') and m.name != 'roi_lab.__main__']
for name in core:
    importlib.import_module(name)
features = torch.randn(1, 8, 50, 63)
boxes = torch.tensor([[120., 200., 560., 480.]])
crops = roi_lab.roi_align(features, [boxes], 7, spatial_scale=1 / 16, sampling_ratio=2, aligned=True)
codes = [f.code for f in roi_lab.diagnose([boxes], image_size=(800, 1000), features=features)]
explained = roi_lab.explain_error("RuntimeError: The boxes tensor shape is not correct as Tensor[K, 5]").code
with roi_lab.capture(image_size=(800, 1000)) as cap:
    roi_lab.roi_align(features, [boxes], 7)
html = cap._repr_html_()
exit_code = cli.main({[CHECKOUT_CLI[0], str(rois), *CHECKOUT_CLI[1:]]!r})
print(json.dumps({{"modules": len(core), "crops": list(crops.shape), "codes": codes, "explained": explained,
                  "captured": len(cap.calls), "html": "IMAGE_SPACE_BOXES" in html, "exit": exit_code}}))
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] > 20 and result["crops"] == [1, 8, 7, 7]
    assert result["codes"] == ["IMAGE_SPACE_BOXES", "NON_DIVISIBLE_STRIDE"]
    assert result["explained"] == "MISSING_BATCH_INDEX"
    assert result["captured"] == 1 and result["html"] is True
    assert result["exit"] == 1  # the CLI's diagnose: an error finding


def test_viz_says_what_to_install_without_plotly():
    code = """
import numpy as np
import roi_lab.viz as viz
try:
    viz.boxes_figure(np.zeros((8, 8, 3), np.uint8), [[0, 0, 4, 4]])
except ModuleNotFoundError as e:
    print(e.name, '|', e)
"""
    out = _run(code, ("plotly",))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == (
        "plotly | roi_lab.viz draws with plotly, which is not installed: "
        "pip install 'roi-lab[viz]' (or 'roi-lab[app]' for the app too)"
    )


def test_app_says_exactly_what_to_install():
    code = "from roi_lab import cli\nraise SystemExit(cli.main(['app']))"
    both = _run(code)
    assert both.returncode == 2 and both.stdout == ""
    assert both.stderr == (
        "roi-lab app needs streamlit and plotly, which are not installed. "
        "Install the app with: pip install 'roi-lab[app]'\n"
    )
    one = _run(code, ("streamlit",))
    assert one.returncode == 2
    assert one.stderr == (
        "roi-lab app needs streamlit, which is not installed. Install the app with: pip install 'roi-lab[app]'\n"
    )
