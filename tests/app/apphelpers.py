"""AppTest helpers: the real entrypoint, a small image side and a light random-init backbone."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "streamlit_app.py")
TEST_MAX_SIDE = 192  # the synthetic scene (600 x 450) becomes 192 x 144 for the model: fast forward passes
SCALE = TEST_MAX_SIDE / 600  # working / original px of the synthetic scene
PAGES = {
    "image": "app_pages/1_image.py",
    "boxes": "app_pages/2_boxes.py",
    "side": "app_pages/3_side_by_side.py",
    "diagnose": "app_pages/4_diagnose.py",
    "parity": "app_pages/5_parity.py",
}


def make_app(page: str | None = None, max_side: int = TEST_MAX_SIDE, query: dict | None = None) -> AppTest:
    """A fresh session on the synthetic sample with resnet18 C4, random init, CPU; on ``page`` when given.

    The working image's longer side is ``max_side`` (set in session state before the first run,
    which keeps it: the entrypoint only fills in missing keys). ``query``: URL query parameters.
    """
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    if not query:
        at.session_state["max_side"] = max_side
        at.session_state["backbone"] = "resnet18"
        at.session_state["weights"] = "none"
        at.session_state["device"] = "cpu"
    at.run()
    if page is not None:
        at.switch_page(PAGES[page]).run()
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plotly_charts(at: AppTest) -> list:
    return [e for e in at.main.get("plotly_chart")]


def figure(at: AppTest, key: str) -> dict:
    """The plotly figure (as sent to the browser) of the chart with this key."""
    (chart,) = [c for c in plotly_charts(at) if c.key == key]
    return json.loads(chart.proto.spec)


def array(value) -> np.ndarray:
    """A plotly JSON array (a list, or plotly's typed array ``{"dtype", "bdata", "shape"}``) as numpy."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return out.reshape([int(d) for d in str(shape).split(",")]) if shape else out
    return np.asarray(value, dtype=np.float64)


def overview_text(at: AppTest) -> str:
    """All text drawn in the Side-by-side overview (titles, headlines, verdicts)."""
    fig = figure(at, "overview")
    return " | ".join(t for trace in fig["data"] if trace.get("mode") == "text" for t in trace["text"])


def option_labels(at: AppTest) -> dict[str, list[str]]:
    """The option labels of every keyed selectbox, multiselect, radio, segmented control and pills on the page."""
    out = {}
    for kind in ("selectbox", "multiselect", "radio", "segmented_control", "pills"):
        for w in getattr(at, kind):
            if w.key:
                out[w.key] = [o if isinstance(o, str) else o.content for o in w.proto.options]
    return out


def block_keys(at: AppTest) -> list[str]:
    """Keys of all keyed containers on the page, in page order."""
    keys: list[str] = []

    def walk(node) -> None:
        for child in getattr(node, "children", {}).values():
            if hasattr(child, "children"):
                if getattr(child, "key", None):
                    keys.append(child.key)
                walk(child)

    walk(at.main)
    return keys


def png_declaring(w: int, h: int) -> bytes:
    """A PNG signature and IHDR chunk declaring w x h pixels, and nothing else."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def png(h: int, w: int) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def selection(x, y) -> dict:
    return {"selection": {"box": [{"xref": "x", "yref": "y", "x": list(x), "y": list(y)}], "points": [],
                          "point_indices": [], "lasso": []}}
