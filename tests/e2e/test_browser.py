"""The app in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Starts ``streamlit run streamlit_app.py`` on a free port and, on every page, changes every control in
turn (on Side by side: aligned off first, the sequence that used to crash, then every other control),
drags boxes, edits the table, uploads bad files and reloads the page. After each step it checks that
the page shows no ``stException`` and no traceback text. Screenshots go to tests/e2e/screenshots/
(git-ignored); with ROI_LAB_UPDATE_SCREENSHOT=1 the Side-by-side one is also copied to
docs/screenshot.png for the README.

Never ``playwright install``: it cannot download here. Install the browser with
``apt-get install chromium`` (.ci/run does).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
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
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install chromium); playwright install cannot download here"),
]


def wait_idle(page, timeout_ms: int = 180_000) -> None:
    """Until Streamlit has finished the current script run (and at least one run has happened)."""
    page.wait_for_selector(IDLE, timeout=timeout_ms)
    page.wait_for_timeout(350)  # a rerun triggered by the last event may start just after
    page.wait_for_selector(IDLE, timeout=timeout_ms)


class Steps:
    """Runs named steps; after each, the page must show no exception and no traceback text."""

    def __init__(self, page) -> None:
        self.page = page
        self.done: list[str] = []

    def __call__(self, name: str, action) -> None:
        action()
        wait_idle(self.page)
        exceptions = self.page.locator("[data-testid=stException]")
        assert exceptions.count() == 0, f"after {name!r}: {exceptions.first.inner_text()[:2000]}"
        body = self.page.locator("[data-testid=stApp]").inner_text()
        found = TRACEBACK.search(body)
        assert found is None, f"after {name!r}: traceback text on the page: {body[max(0, found.start() - 300):][:1500]}"
        self.done.append(name)


def select(page, label: str, option: str | re.Pattern) -> None:
    box = page.locator("[data-testid=stSelectbox]", has_text=label).first
    for _ in range(3):  # a click that only ends another widget's editing does not open the list: click again
        box.locator("input").click()
        try:
            page.get_by_role("listbox").first.wait_for(timeout=3_000)
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError
            continue
    page.get_by_role("option", name=option).first.click()


def selected(page, label: str) -> str:
    return page.locator("[data-testid=stSelectbox]", has_text=label).first.locator("input").input_value()


def slider_step(page, label: str, key: str = "ArrowRight") -> None:
    thumb = page.locator("[data-testid=stSlider]", has_text=label).first.locator("input[type=range]")
    thumb.focus()
    page.keyboard.press(key)


def toggle(page, label: str) -> None:
    page.locator("[data-testid=stCheckbox]", has_text=label).first.click()


def go_to(page, title: str) -> None:
    page.get_by_role("link", name=title).first.click()


def upload(page, path: Path, nth: int = 0) -> None:
    page.locator("[data-testid=stFileUploader] input[type=file]").nth(nth).set_input_files(str(path))


def drag_on(page, chart, fx0: float, fy0: float, fx1: float, fy1: float) -> None:
    """Drag a box on a Plotly chart's drag layer, corners as fractions of the plot area."""
    area = chart.locator("rect.nsewdrag").first
    area.wait_for(timeout=60_000)
    box = area.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * fx0, box["y"] + box["height"] * fy0)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * fx1, box["y"] + box["height"] * fy1, steps=10)
    page.mouse.up()


def download(page, name) -> None:
    """Click a download button and check that a non-empty file arrives."""
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name=name).first.click()
    path = info.value.path()
    assert path is not None and Path(path).stat().st_size > 0, name


def chart_layout(page, nth: int = 0) -> dict:
    return page.evaluate(f"() => JSON.parse(JSON.stringify(document.querySelectorAll('.js-plotly-plot')[{nth}]"
                         ".layout))")


def overview_meta(page) -> dict:
    return page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].map(g => g.layout.meta)"
                         ".filter(m => m && m.view !== undefined)[0]")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("inputs")
    out = {
        "not_an_image": tmp / "notes.txt",
        "strip": tmp / "strip.png",
        "deep_json": tmp / "deep.json",
        "svg": tmp / "drawing.svg",
        "boxes": tmp / "boxes.json",
    }
    out["not_an_image"].write_text("hello, not an image")
    cv2.imwrite(str(out["strip"]), np.full((10, 20000, 3), 90, np.uint8))
    out["deep_json"].write_text("[" * 50_000 + "]" * 50_000)
    out["svg"].write_text('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="4" '
                          'height="4"/></svg>')
    out["boxes"].write_text(json.dumps({"boxes": [[60, 50, 240, 200], [300, 100, 560, 400]],
                                        "labels": ["left", "right"]}))
    return out


def test_every_control_on_every_page_without_a_traceback(files):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {"ROI_LAB_MAX_SIDE": os.environ.get("ROI_LAB_E2E_MAX_SIDE", "320")}
    with streamlit_server(timeout=120, extra_env=env) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        step = Steps(page)
        try:
            step("open the app", lambda: page.goto(f"http://127.0.0.1:{port}/", timeout=90_000))
            page.locator("[data-testid=stMetric]", has_text="Feature map").wait_for(timeout=180_000)

            # ---------------------------------------------------------------- Image & backbone
            step("source: upload", lambda: page.get_by_text("Upload your own").click())
            step("upload a text file as image", lambda: upload(page, files["not_an_image"]))
            assert page.get_by_text("That upload was refused.").count() >= 1
            step("upload a 10 x 20000 PNG", lambda: upload(page, files["strip"]))
            page.get_by_text(re.compile(r"strip\.png: the app's image intake expects")).wait_for(timeout=30_000)
            step("source: sample", lambda: page.get_by_text("Bundled sample").click())
            step("sample: coffee", lambda: select(page, "Sample", re.compile(r"^Coffee cup")))
            page.get_by_text(re.compile(r"^Coffee cup .*\(resized from 600 x 400\)")).wait_for(timeout=120_000)
            step("sample: synthetic", lambda: select(page, "Sample", re.compile(r"^Synthetic scene")))
            step("backbone: resnet18", lambda: select(page, "Backbone", "resnet18"))
            step("backbone: resnet50_fpn", lambda: select(page, "Backbone", "resnet50_fpn"))
            assert selected(page, "Stage").startswith("P4")  # an FPN starts at its own default stage
            step("stage: P3", lambda: select(page, "Stage", re.compile(r"^P3")))
            step("backbone: resnet18 again", lambda: select(page, "Backbone", "resnet18"))
            step("stage: C3", lambda: select(page, "Stage", re.compile(r"^C3")))
            step("stage: C4", lambda: select(page, "Stage", re.compile(r"^C4")))
            step("device", lambda: select(page, "Device", "cpu"))
            step("weights: a checkpoint file", lambda: select(page, "Weights", re.compile(r"^a checkpoint file")))
            step("checkpoint path: missing file", lambda: (
                page.locator("[data-testid=stTextInput]", has_text="Checkpoint path").locator("input")
                .fill("/nonexistent/model.pth"), page.keyboard.press("Enter")))
            page.get_by_text(re.compile(r"no such file")).first.wait_for(timeout=30_000)
            step("weights: none", lambda: select(page, "Weights", re.compile(r"^none")))
            for kind in ("max", "pca", "mean"):
                step(f"summary: {kind}", lambda kind=kind: select(page, "Feature summary", kind))
            page.screenshot(path=str(SHOTS / "1_image.png"))

            # ---------------------------------------------------------------- Boxes
            step("go to Boxes", lambda: go_to(page, "Boxes"))
            for fmt in ("cxcywh", "xywh", "yxyx", "xyxy"):
                step(f"format {fmt}", lambda fmt=fmt: select(page, "Box format of your code", re.compile("^" + fmt)))
            step("normalized", lambda: select(page, "Coordinates", re.compile(r"^normalized")))
            step("absolute", lambda: select(page, "Coordinates", re.compile(r"^absolute")))
            chart = page.locator("[data-testid=stPlotlyChart]").first
            step("drag a box", lambda: drag_on(page, chart, 0.30, 0.55, 0.55, 0.85))
            page.get_by_text("Added 1 box from the selection.").wait_for(timeout=60_000)
            x0_before = chart_layout(page)["shapes"][0]["x0"]

            def edit_first_cell() -> None:
                grid = page.locator("[data-testid=stDataFrame]").first
                box = grid.bounding_box()
                # row 1, column x1: the second column of the first data row (35 px rows, a 35 px header)
                page.mouse.click(box["x"] + box["width"] * 0.30, box["y"] + 35 + 17)  # select the cell
                page.wait_for_timeout(300)
                page.keyboard.type("15", delay=120)  # typing opens the cell's editor with what is typed
                page.wait_for_timeout(300)
                page.keyboard.press("Enter")

            step("edit the table", edit_first_cell)
            page.wait_for_function(f"() => document.querySelector('.js-plotly-plot').layout.shapes[0].x0 !== "
                                   f"{x0_before}", timeout=30_000)
            assert chart_layout(page)["shapes"][0]["x0"] == 15  # the table's numbers are the image's pixels
            step("import format: json", lambda: select(page, "Import format", "json"))
            step("import a 50,000-deep JSON file", lambda: upload(page, files["deep_json"]))
            page.get_by_text(re.compile(r"^deep\.json was not imported; the table is unchanged")).wait_for(
                timeout=30_000)
            step("import format: auto", lambda: select(page, "Import format", "auto"))
            step("import an SVG", lambda: upload(page, files["svg"]))
            # the core refuses an SVG with a BoxFileError naming the formats it reads; the table stays
            page.get_by_text(re.compile(r"^drawing\.svg was not imported; the table is unchanged")).wait_for(
                timeout=30_000)
            for fmt in ("voc", "yolo", "json", "coco"):
                step(f"export format {fmt}", lambda fmt=fmt: select(page, "Export format", fmt))
            step("download the boxes", lambda: download(page, re.compile(r"^Download \d+ boxes \(coco\)")))
            step("clear all boxes", lambda: page.get_by_role("button", name="Clear all boxes").click())
            page.get_by_text(re.compile(r"^The table is empty")).wait_for(timeout=30_000)
            step("import two boxes", lambda: upload(page, files["boxes"]))
            page.get_by_text("Imported 2 boxes from boxes.json.").wait_for(timeout=30_000)
            step("preset", lambda: page.get_by_role("button", name="Preset: synthetic scene").click())
            page.screenshot(path=str(SHOTS / "2_boxes.png"))

            # ---------------------------------------------------------------- Side by side
            step("go to Side by side", lambda: go_to(page, "Side by side"))
            page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && "
                                   "g.layout.meta && g.layout.meta.view)", timeout=180_000)
            step("aligned off (the reported crash, first)", lambda: toggle(page, "aligned=True"))
            assert overview_meta(page)["aligned"] is False
            step("box shown: 3", lambda: page.locator(".st-key-w_focus_box_pills").first  # the widget key's class
                 .get_by_text("3", exact=True).click())
            assert overview_meta(page)["focus"] == 2
            step("output size +1", lambda: slider_step(page, "Output size"))
            step("output size -1", lambda: slider_step(page, "Output size", "ArrowLeft"))
            step("sampling ratio +1", lambda: slider_step(page, "Sampling ratio"))
            step("sampling ratio -1", lambda: slider_step(page, "Sampling ratio", "ArrowLeft"))
            for label in ("max over C", "one channel", "PCA (1st)", "mean over C"):
                step(f"channel view {label}", lambda label=label: page.get_by_text(label, exact=True).click())
                if label == "one channel":
                    step("channel index 7", lambda: (
                        page.locator("[data-testid=stNumberInput]", has_text="Channel").locator("input").fill("7"),
                        page.keyboard.press("Enter")))
            step("details on", lambda: toggle(page, "Details of one variant"))
            for title in ("Your settings", "aligned flipped", "TF crop_and_resize, (size - 1)",
                          "Pixel boxes as normalized (TF)"):
                step(f"details: {title}", lambda title=title: select(page, "Details for", title))
            assert page.get_by_text(re.compile(r"^boxes_norm = \(boxes_yxyx / 16 - 0\.5\)")).count() >= 1
            step("details off", lambda: toggle(page, "Details of one variant"))
            step("download the crops", lambda: download(page, re.compile(r"^Download the crops of the box shown")))
            step("download the overview", lambda: download(page, "Download the overview (HTML)"))
            step("aligned on", lambda: toggle(page, "aligned=True"))
            meta = overview_meta(page)
            step("drag a box on the image", lambda: drag_on(page, page.locator("[data-testid=stPlotlyChart]").first,
                                                            0.15, 0.20, 0.45, 0.60))
            page.wait_for_function(f"() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && "
                                   f"g.layout.meta && g.layout.meta.boxes === {meta['boxes'] + 1})", timeout=60_000)
            after = overview_meta(page)
            assert (after["boxes"], after["focus"], after["aligned"]) == (meta["boxes"] + 1, meta["boxes"], True)
            page.wait_for_timeout(800)
            page.screenshot(path=str(SHOTS / "3_side_by_side.png"))
            if os.environ.get("ROI_LAB_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(SHOTS / "3_side_by_side.png", ROOT / "docs" / "screenshot.png")

            # ---------------------------------------------------------------- a refresh keeps the session
            step("output size +1 before the reload", lambda: slider_step(page, "Output size"))
            size = overview_meta(page)["output_size"]
            step("reload the page", lambda: page.reload(timeout=90_000))
            page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && "
                                   "g.layout.meta && g.layout.meta.view)", timeout=180_000)
            again = overview_meta(page)
            assert (again["boxes"], again["output_size"]) == (after["boxes"], size)

            # ---------------------------------------------------------------- Diagnose & explain
            step("go to Diagnose", lambda: go_to(page, "Diagnose & explain"))

            def fill_area(label: str, text: str) -> None:
                area = page.locator("[data-testid=stTextArea]", has_text=label).first.locator("textarea")
                area.fill(text)
                page.keyboard.press("Control+Enter")

            def fill_input(label: str, text: str) -> None:
                page.locator("[data-testid=stTextInput]", has_text=label).first.locator("input").fill(text)
                page.keyboard.press("Enter")

            step("reproduce the example", lambda: page.get_by_role("button", name="Run the ops on this input").click())
            assert page.get_by_text(re.compile(r"^Ran without an error, but on this input")).count() >= 1
            step("boxes: not a list", lambda: fill_area("Boxes (JSON", "import os; print('hi')"))
            step("boxes: NaN", lambda: fill_area("Boxes (JSON", "tensor([[0., nan, 1., 20., 30.]])"))
            step("reproduce NaN", lambda: page.get_by_role("button", name="Run the ops on this input").click())
            step("image size: garbage", lambda: fill_input("Image size", "big"))
            step("image size", lambda: fill_input("Image size", "450, 600"))
            step("feature shape: garbage", lambda: fill_input("Feature shape", "1, 0, 5"))
            step("feature shape", lambda: fill_input("Feature shape", "1, 256, 29, 38"))
            step("spatial_scale 1/0", lambda: fill_input("spatial_scale", "1/0"))
            step("spatial_scale 1/16", lambda: fill_input("spatial_scale", "1/16"))
            step("boxes: pixels", lambda: fill_area("Boxes (JSON", "[[50.0, 60.0, 130.0, 170.0]]"))
            step("op: crop_and_resize", lambda: select(page, "Op", "crop_and_resize"))
            step("reproduce crop_and_resize",
                 lambda: page.get_by_role("button", name="Run the ops on this input").click())
            step("op: roi_align", lambda: select(page, "Op", "roi_align"))
            step("error tab", lambda: page.get_by_role("tab", name="Error message").click())
            step("paste a traceback", lambda: fill_area(
                "Error message or traceback", "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                "RuntimeError: The boxes tensor shape is not correct as Tensor[K, 5]"))
            step("paste unrelated text", lambda: fill_area("Error message or traceback", "KeyError: 'banana'"))

            # ---------------------------------------------------------------- Parity & speed
            step("go to Parity", lambda: go_to(page, "Parity & speed"))
            step("parity device", lambda: select(page, "Device", "cpu"))
            for _ in range(4):
                step("repeats -1", lambda: slider_step(page, "Repeats", "ArrowLeft"))
            step("run the comparison", lambda: page.get_by_role("button", name="Run the comparison").click())
            page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=120_000)  # the results table
            page.screenshot(path=str(SHOTS / "5_parity.png"))
        except Exception:
            page.screenshot(path=str(SHOTS / "failure.png"))  # where it stopped, for the person reading the log
            raise
        finally:
            browser.close()
    assert len(step.done) > 70
