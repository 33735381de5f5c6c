"""The app in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Starts ``streamlit run streamlit_app.py`` on a free port, opens the sample image, drags a box on
the Boxes page with the mouse, and checks that the Side-by-side page draws its heatmaps without an
exception. Screenshots go to tests/e2e/screenshots/ (git-ignored); with ROI_LAB_UPDATE_SCREENSHOT=1
the Side-by-side one is also copied to docs/screenshot.png for the README.

Never ``playwright install``: it cannot download here. Install the browser with
``apt-get install chromium`` (.ci/run does).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from _server import ROOT, streamlit_server

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "tests" / "e2e" / "screenshots"
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install chromium); playwright install cannot download here"),
]


def wait_idle(page, timeout_ms: int = 120_000) -> None:
    """Until Streamlit has finished the current script run (and at least one run has happened)."""
    page.wait_for_selector(IDLE, timeout=timeout_ms)
    page.wait_for_timeout(300)  # a rerun triggered by the last event may start just after
    page.wait_for_selector(IDLE, timeout=timeout_ms)


def assert_no_exception(page) -> None:
    errors = page.locator("[data-testid=stException]")
    assert errors.count() == 0, errors.first.inner_text()


def pick_sample(page, title: str) -> None:
    page.locator("[data-testid=stSelectbox]", has_text="Sample").locator("input").click()
    page.get_by_role("option", name=re.compile("^" + re.escape(title))).click()
    wait_idle(page)


def go_to(page, title: str) -> None:
    page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
    wait_idle(page)


def test_draw_a_box_and_see_the_variants_side_by_side():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {"ROI_LAB_MAX_SIDE": os.environ.get("ROI_LAB_E2E_MAX_SIDE", "600")}
    with streamlit_server(timeout=120, extra_env=env) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            wait_idle(page)
            # page 1: pick a photo, then the synthetic scene (whose true boxes load with it)
            page.get_by_text("Bundled sample").click()
            wait_idle(page)
            pick_sample(page, "Coffee cup")
            page.get_by_text(re.compile(r"^Coffee cup .*: 600 x 400 px")).wait_for(timeout=120_000)
            pick_sample(page, "Synthetic scene")
            page.get_by_text(re.compile(r"^Synthetic scene .*: 600 x 450 px")).wait_for(timeout=120_000)
            page.locator("[data-testid=stMetric]", has_text="Feature map").wait_for(timeout=120_000)
            assert_no_exception(page)
            page.screenshot(path=str(SHOTS / "1_image.png"))

            # page 2: drag a box on the image's Plotly drag layer
            go_to(page, "Boxes")
            chart = page.locator("[data-testid=stPlotlyChart]").first
            chart.wait_for(timeout=60_000)
            drag = chart.locator("rect.nsewdrag").first
            drag.wait_for(timeout=30_000)
            box = drag.bounding_box()
            assert box is not None
            x0, y0 = box["x"] + box["width"] * 0.30, box["y"] + box["height"] * 0.55
            x1, y1 = box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.85
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x1, y1, steps=12)
            page.mouse.up()
            page.get_by_text("Added 1 box from the selection.").wait_for(timeout=60_000)
            wait_idle(page)
            assert_no_exception(page)
            page.screenshot(path=str(SHOTS / "2_boxes.png"))

            # page 3: every variant's panel, with heatmaps drawn by Plotly
            go_to(page, "Side by side")
            page.locator("[data-testid=stMetric]", has_text="IoU with the intended box").first.wait_for(timeout=120_000)
            wait_idle(page)
            page.locator(".js-plotly-plot .hm, .js-plotly-plot image").first.wait_for(timeout=60_000)
            charts = page.locator("[data-testid=stPlotlyChart]")
            assert charts.count() >= 5 * 11
            assert page.locator("[data-testid=stMetric]", has_text="IoU with the intended box").count() == 11
            assert_no_exception(page)
            page.screenshot(path=str(SHOTS / "3_side_by_side.png"))
            # the channel view lives in a fragment: clicking it redraws the crops only
            page.get_by_text("PCA (1st)", exact=True).click()
            page.get_by_text(re.compile(r"^Crop color scale .*\(pca\)")).wait_for(timeout=60_000)
            wait_idle(page)
            assert_no_exception(page)
            page.get_by_text("mean over C", exact=True).click()
            page.get_by_text(re.compile(r"^Crop color scale .*\(mean\)")).wait_for(timeout=60_000)
            wait_idle(page)
            # the first panels, for the README
            page.locator(".st-key-panel_correct").evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(800)
            page.screenshot(path=str(SHOTS / "3_side_by_side_panels.png"))
            if os.environ.get("ROI_LAB_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(SHOTS / "3_side_by_side_panels.png", ROOT / "docs" / "screenshot.png")
        finally:
            browser.close()
