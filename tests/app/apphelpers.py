"""AppTest helpers: the real entrypoint, a small image side and a light random-init backbone."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "streamlit_app.py")
TEST_MAX_SIDE = 192  # the synthetic scene (600 x 450) becomes 192 x 144: fast forward passes
PAGES = {
    "image": "app_pages/1_image.py",
    "boxes": "app_pages/2_boxes.py",
    "side": "app_pages/3_side_by_side.py",
    "diagnose": "app_pages/4_diagnose.py",
    "parity": "app_pages/5_parity.py",
}


def make_app(page: str | None = None, max_side: int = TEST_MAX_SIDE) -> AppTest:
    """A fresh session on the synthetic sample with resnet18 C4, random init, CPU; on ``page`` when given.

    The working image's longer side is ``max_side`` (set in session state before the first run,
    which keeps it: the entrypoint only fills in missing keys).
    """
    at = AppTest.from_file(APP, default_timeout=120)
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
