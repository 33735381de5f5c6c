"""The app in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Starts ``streamlit run streamlit_app.py`` on a free port and, on every page, changes every control in
turn (on Side by side: aligned off first, the sequence that used to crash, then every other control),
drags boxes, edits the table, uploads bad files and reloads the page. After each step it checks that
the page shows no ``stException`` and no traceback text. Each step waits for a state, never a fixed delay:
the script runs it asked for finished (read from the app's websocket, :class:`Runs`), then the element or
chart state it should produce, each bounded by ``WAIT`` (3 min, for a loaded 2-core machine). Screenshots go to
tests/e2e/screenshots/ (git-ignored); with ROI_LAB_UPDATE_SCREENSHOT=1 the Side-by-side one is also copied to
docs/screenshot.png for the README.

A second test opens capture files of torchvision's real Faster R-CNN (made in the test: a broken one, one
without features, one with an injected bug, one with its maps; then a pickle with code and a weights file)
and visits every page with each, checking the same after every step, and that a refused file keeps the open
capture; with ROI_LAB_UPDATE_SCREENSHOT=1 it also writes docs/capture.png (the injected bug, on the Image &
backbone page).

Never ``playwright install``: it cannot download here. Install the browser with
``apt-get install chromium`` (.ci/run does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from _server import ROOT, streamlit_server
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

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
WAIT = 180_000  # ms: the bound of every wait for a state of the page (a loaded 2-core machine)
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install chromium); playwright install cannot download here"),
]


class Runs:
    """The app's script runs, read from its websocket frames (Streamlit's own protobuf messages).

    A user action asks for a run (``rerun_script``, or ``file_urls_request`` that starts an upload); it is
    done when a run that started after the ask (``new_session``) has finished (``script_finished``, not
    stopped early for the next rerun). The page's ``data-test-script-state`` alone cannot say this: it turns
    to ``running`` only when the server's answer arrives, which on a loaded machine can come after any fixed
    delay, so a check made then reads the page before the action.
    """

    ASKS = ("rerun_script", "file_urls_request")

    def __init__(self, page) -> None:
        self.asked = 0  # asks sent so far
        self.started = 0  # the asks that the latest started run covers
        self.done = 0  # the asks that the latest finished run covers
        page.on("websocket", self._watch)  # also the new socket after a reload

    def _watch(self, ws) -> None:
        ws.on("framesent", self._sent)
        ws.on("framereceived", self._received)

    def _sent(self, payload) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        if isinstance(payload, bytes) and BackMsg.FromString(payload).WhichOneof("type") in self.ASKS:
            self.asked += 1

    def _received(self, payload) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        if not isinstance(payload, bytes):
            return
        msg = ForwardMsg.FromString(payload)
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.started = self.asked
        elif kind == "script_finished" and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
            self.done = self.started

    def settle(self, page, asked_before: int, timeout_s: float = 300.0) -> None:
        """Until every run asked for since ``asked_before`` has finished and the page shows it (bounded)."""
        # The browser sends its ask in the event handler, or after a slider's 200 ms debounce; an action that
        # asks for nothing (a download, the option already selected) waits out this bound, nothing else does.
        deadline = time.monotonic() + 3.0
        while self.asked == asked_before and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        deadline = time.monotonic() + timeout_s
        while self.done < self.asked:
            if time.monotonic() > deadline:
                raise AssertionError(f"the app did not finish the run asked for in {timeout_s:.0f} s "
                                     f"(asked {self.asked}, started {self.started}, done {self.done})")
            page.wait_for_timeout(50)
        page.wait_for_selector(IDLE, timeout=int(timeout_s * 1000))


class Steps:
    """Runs named steps; after each, the page must show no exception and no traceback text."""

    def __init__(self, page) -> None:
        self.page = page
        self.runs = Runs(page)
        self.done: list[str] = []
        page.set_default_timeout(WAIT)  # every click, fill and locator wait: generous and bounded

    def __call__(self, name: str, action) -> None:
        asked = self.runs.asked
        action()
        self.runs.settle(self.page, asked)
        exceptions = self.page.locator("[data-testid=stException]")
        assert exceptions.count() == 0, f"after {name!r}: {exceptions.first.inner_text()[:2000]}"
        body = self.page.locator("[data-testid=stApp]").inner_text()
        found = TRACEBACK.search(body)
        assert found is None, f"after {name!r}: traceback text on the page: {body[max(0, found.start() - 300):][:1500]}"
        self.done.append(name)


def selectbox(page, label: str):
    return page.locator("[data-testid=stSelectbox]", has_text=label).first


def select(page, label: str, option: str | re.Pattern) -> None:
    box, listbox = selectbox(page, label), page.get_by_role("listbox").first
    for _ in range(6):  # a click that only ends another widget's editing does not open the list: click again,
        if not listbox.is_visible():  # never on an open list (that would close it)
            box.locator("input").click()
        try:
            listbox.wait_for(timeout=10_000)
            break
        except PlaywrightTimeout:
            continue
    page.get_by_role("option", name=option).first.click()


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
    area.wait_for(timeout=WAIT)
    box = area.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * fx0, box["y"] + box["height"] * fy0)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * fx1, box["y"] + box["height"] * fy1, steps=10)
    page.mouse.up()


def download(page, name) -> None:
    """Click a download button and check that a non-empty file arrives."""
    with page.expect_download(timeout=WAIT) as info:
        page.get_by_role("button", name=name).first.click()
    path = info.value.path()
    assert path is not None and Path(path).stat().st_size > 0, name


def wait_meta(page, condition: str) -> None:
    """Until the overview chart's ``layout.meta`` (``m``) meets the JavaScript ``condition`` (Plotly draws late)."""
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && "
                           f"g.layout.meta && g.layout.meta.view !== undefined && (m => {condition})(g.layout.meta))",
                           timeout=WAIT)


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


@contextlib.contextmanager
def app_in_chromium(failure_shot: str) -> Iterator[tuple[object, Steps]]:
    """The app as ``make run`` serves it, opened in headless Chromium: yields its page and a :class:`Steps`.

    On a failure the page is saved to ``SHOTS / failure_shot``, where it stopped, for the person reading the log.
    """
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {"ROI_LAB_MAX_SIDE": os.environ.get("ROI_LAB_E2E_MAX_SIDE", "320")}
    with streamlit_server(timeout=120, extra_env=env) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        step = Steps(page)
        try:
            step("open the app", lambda: page.goto(f"http://127.0.0.1:{port}/", timeout=WAIT))
            page.locator("[data-testid=stMetric]", has_text="Feature map").wait_for(timeout=WAIT)
            yield page, step
        except Exception:
            page.screenshot(path=str(SHOTS / failure_shot))
            raise
        finally:
            browser.close()


def test_every_control_on_every_page_without_a_traceback(files):
    with app_in_chromium("failure.png") as (page, step):
        # ---------------------------------------------------------------- Image & backbone
        step("source: upload", lambda: page.get_by_text("Upload your own").click())
        step("upload a text file as image", lambda: upload(page, files["not_an_image"]))
        page.get_by_text("That upload was refused.").first.wait_for()
        step("upload a 10 x 20000 PNG", lambda: upload(page, files["strip"]))
        page.get_by_text(re.compile(r"strip\.png: the app's image intake expects")).wait_for(timeout=WAIT)
        step("source: sample", lambda: page.get_by_text("Bundled sample").click())
        step("sample: coffee", lambda: select(page, "Sample", re.compile(r"^Coffee cup")))
        page.get_by_text(re.compile(r"^Coffee cup .*\(resized from 600 x 400\)")).wait_for(timeout=WAIT)
        step("sample: synthetic", lambda: select(page, "Sample", re.compile(r"^Synthetic scene")))
        step("backbone: resnet18", lambda: select(page, "Backbone", "resnet18"))
        step("backbone: resnet50_fpn", lambda: select(page, "Backbone", "resnet50_fpn"))
        expect(selectbox(page, "Stage").locator("input")).to_have_value(re.compile("^P4"), timeout=WAIT)  # an FPN
        # starts at its own default stage
        step("stage: P3", lambda: select(page, "Stage", re.compile(r"^P3")))
        step("backbone: resnet18 again", lambda: select(page, "Backbone", "resnet18"))
        step("stage: C3", lambda: select(page, "Stage", re.compile(r"^C3")))
        step("stage: C4", lambda: select(page, "Stage", re.compile(r"^C4")))
        step("device", lambda: select(page, "Device", "cpu"))
        step("weights: a checkpoint file", lambda: select(page, "Weights", re.compile(r"^a checkpoint file")))
        step("checkpoint path: missing file", lambda: (
            page.locator("[data-testid=stTextInput]", has_text="Checkpoint path").locator("input")
            .fill("/nonexistent/model.pth"), page.keyboard.press("Enter")))
        page.get_by_text(re.compile(r"no such file")).first.wait_for(timeout=WAIT)
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
        page.get_by_text("Added 1 box from the selection.").wait_for(timeout=WAIT)

        def edit_first_cell() -> None:
            grid = page.locator("[data-testid=stDataFrame]").first
            box = grid.bounding_box()
            # row 1, column x1: the second column of the first data row (35 px rows, a 35 px header)
            page.mouse.click(box["x"] + box["width"] * 0.30, box["y"] + 35 + 17)  # select the cell
            editor = page.locator(".gdg-input")  # the grid's cell editor (its code loads on first use)
            for _ in range(6):  # Enter opens the selected cell's editor; a click still landing may eat it
                page.keyboard.press("Enter")
                try:
                    editor.first.wait_for(timeout=10_000)
                    break
                except PlaywrightTimeout:
                    continue
            editor.first.fill("15")
            editor.first.press("Enter")

        step("edit the table", edit_first_cell)
        page.wait_for_function("() => document.querySelector('.js-plotly-plot').layout.shapes[0].x0 === 15",
                               timeout=WAIT)  # the table's numbers are the image's pixels
        step("import format: json", lambda: select(page, "Import format", "json"))
        step("import a 50,000-deep JSON file", lambda: upload(page, files["deep_json"]))
        page.get_by_text(re.compile(r"^deep\.json was not imported; the table is unchanged")).wait_for(
            timeout=WAIT)
        step("import format: auto", lambda: select(page, "Import format", "auto"))
        step("import an SVG", lambda: upload(page, files["svg"]))
        # the core refuses an SVG with a BoxFileError naming the formats it reads; the table stays
        page.get_by_text(re.compile(r"^drawing\.svg was not imported; the table is unchanged")).wait_for(
            timeout=WAIT)
        for fmt in ("voc", "yolo", "json", "coco"):
            step(f"export format {fmt}", lambda fmt=fmt: select(page, "Export format", fmt))
        step("download the boxes", lambda: download(page, re.compile(r"^Download \d+ boxes \(coco\)")))
        step("clear all boxes", lambda: page.get_by_role("button", name="Clear all boxes").click())
        page.get_by_text(re.compile(r"^The table is empty")).wait_for(timeout=WAIT)
        step("import two boxes", lambda: upload(page, files["boxes"]))
        page.get_by_text("Imported 2 boxes from boxes.json.").wait_for(timeout=WAIT)
        step("preset", lambda: page.get_by_role("button", name="Preset: synthetic scene").click())
        page.screenshot(path=str(SHOTS / "2_boxes.png"))

        # ---------------------------------------------------------------- Side by side
        step("go to Side by side", lambda: go_to(page, "Side by side"))
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && "
                               "g.layout.meta && g.layout.meta.view)", timeout=WAIT)
        step("aligned off (the reported crash, first)", lambda: toggle(page, "aligned=True"))
        wait_meta(page, "m.aligned === false")
        step("box shown: 3", lambda: page.locator(".st-key-w_focus_box_pills").first  # the widget key's class
             .get_by_text("3", exact=True).click())
        wait_meta(page, "m.focus === 2")
        step("output size +1", lambda: slider_step(page, "Output size"))
        step("output size -1", lambda: slider_step(page, "Output size", "ArrowLeft"))
        step("sampling ratio +1", lambda: slider_step(page, "Sampling ratio"))
        step("sampling ratio -1", lambda: slider_step(page, "Sampling ratio", "ArrowLeft"))
        step("box angle +5", lambda: slider_step(page, "Box angle"))
        wait_meta(page, "m.angle === 35")
        step("box angle -5", lambda: slider_step(page, "Box angle", "ArrowLeft"))
        wait_meta(page, "m.angle === 30")
        for label in ("max over C", "one channel", "PCA (1st)", "mean over C"):
            step(f"channel view {label}", lambda label=label: page.get_by_text(label, exact=True).click())
            if label == "one channel":
                step("channel index 7", lambda: (
                    page.locator("[data-testid=stNumberInput]", has_text="Channel").locator("input").fill("7"),
                    page.keyboard.press("Enter")))
        step("details on", lambda: toggle(page, "Details of one variant"))
        for title in ("Your settings", "aligned flipped", "RoIPool (quantized)", "Other framework's defaults",
                      "Clockwise flipped", "TF crop_and_resize, (size - 1)", "Pixel boxes as normalized (TF)"):
            step(f"details: {title}", lambda title=title: select(page, "Details for", title))
            if title == "Clockwise flipped":
                page.get_by_text(re.compile(r"clockwise=True\)\(features, rois\)")).first.wait_for()
        page.get_by_text(re.compile(r"^boxes_norm = \(boxes_yxyx / 16 - 0\.5\)")).first.wait_for()
        step("details off", lambda: toggle(page, "Details of one variant"))
        step("download the crops", lambda: download(page, re.compile(r"^Download the crops of the box shown")))
        step("download the overview", lambda: download(page, "Download the overview (HTML)"))
        step("aligned on", lambda: toggle(page, "aligned=True"))
        wait_meta(page, "m.aligned === true")
        meta = overview_meta(page)
        step("drag a box on the image", lambda: drag_on(page, page.locator("[data-testid=stPlotlyChart]").first,
                                                        0.15, 0.20, 0.45, 0.60))
        page.wait_for_function(f"() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && "
                               f"g.layout.meta && g.layout.meta.boxes === {meta['boxes'] + 1})", timeout=WAIT)
        after = overview_meta(page)
        assert (after["boxes"], after["focus"], after["aligned"]) == (meta["boxes"] + 1, meta["boxes"], True)
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "3_side_by_side.png"))
        if os.environ.get("ROI_LAB_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(SHOTS / "3_side_by_side.png", ROOT / "docs" / "screenshot.png")

        # ---------------------------------------------------------------- a refresh keeps the session
        size = overview_meta(page)["output_size"] + 1
        step("output size +1 before the reload", lambda: slider_step(page, "Output size"))
        wait_meta(page, f"m.output_size === {size}")
        step("reload the page", lambda: page.reload(timeout=WAIT))
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && "
                               "g.layout.meta && g.layout.meta.view)", timeout=WAIT)
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
        page.get_by_text(re.compile(r"^Ran without an error, but on this input")).first.wait_for()
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
        page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=WAIT)  # the results table
        page.screenshot(path=str(SHOTS / "5_parity.png"))
    assert len(step.done) > 70
    assert step.runs.done == step.runs.asked > 70  # the waits saw the runs (not only their 3 s bound)


@pytest.fixture(scope="module")
def capture_files(tmp_path_factory) -> dict[str, Path]:
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "app"))
    from capture_fixtures import captures, hostile_pickle

    tmp = tmp_path_factory.mktemp("captures")
    c = captures()
    out = {name: tmp / f"{name}.pt" for name in ("broken", "light", "buggy", "full")}
    out["broken"].write_bytes(b"PK\x03\x04 not really a zip")
    out["light"].write_bytes(c.light)
    out["buggy"].write_bytes(c.buggy)
    out["full"].write_bytes(c.full)
    out["evil"] = tmp / "evil.pt"  # a pickle that calls os.system when loaded without weights_only
    out["evil"].write_bytes(hostile_pickle())
    out["weights"] = tmp / "weights.pt"  # a torch file, but not a capture
    import torch

    torch.save({"conv.weight": torch.zeros(2, 2)}, out["weights"])
    if os.environ.get("ROI_LAB_UPDATE_SCREENSHOT") == "1":  # the README's picture: a larger input, same model
        out["shot"] = tmp / "my_detector_capture.pt"
        out["shot"].write_bytes(captures(320, 480).buggy)
    return out


def test_a_capture_file_on_every_page_without_a_traceback(capture_files):
    def every_page(tag: str) -> None:
        for title in ("Boxes", "Side by side", "Diagnose & explain", "Parity & speed", "Image & backbone"):
            step(f"{tag}: go to {title}", lambda title=title: go_to(page, title))

    def wait_text(pattern: str) -> None:
        page.get_by_text(re.compile(pattern)).first.wait_for(timeout=WAIT)

    with app_in_chromium("failure_capture.png") as (page, step):
        step("source: capture file", lambda: page.get_by_text("Capture file (your model)").click())
        wait_text(r"^No capture is open")

        # ---------------------------------------------------------------- a broken file: a message
        step("open a broken file", lambda: upload(page, capture_files["broken"]))
        wait_text(r"^That capture file was refused\. The current image \(")
        wait_text(r"broken\.pt: load_capture\('broken\.pt'\) expects a capture file")
        every_page("broken")

        # ---------------------------------------------------------------- no features, no image
        step("open a capture without features", lambda: upload(page, capture_files["light"]))
        wait_text(r"^Capture: light\.pt")
        wait_text(r"^No feature maps")
        step("light: go to Side by side", lambda: go_to(page, "Side by side"))
        wait_text(r"^This capture holds no feature map for this view")
        every_page("light")

        # ---------------------------------------------------------------- an injected bug
        step("open the capture with the bug", lambda: upload(page, capture_files["buggy"]))
        wait_text(r"^Capture: buggy\.pt")
        wait_text(r"^IMAGE_SPACE_BOXES")
        step("buggy: go to Side by side", lambda: go_to(page, "Side by side"))
        wait_text(r'that is the panel "Image-space boxes, spatial_scale=1"')
        step("buggy: go to Diagnose", lambda: go_to(page, "Diagnose & explain"))
        step("buggy: reproduce on the captured map",
             lambda: page.get_by_role("button", name="Run the ops on this input").click())
        wait_text(r"^Ran without an error, but on this input it reads the wrong thing")
        every_page("buggy")

        # ---------------------------------------------------------------- the full capture, every control
        step("open the capture with its maps", lambda: upload(page, capture_files["full"]))
        wait_text(r"^Capture: full\.pt")
        for name, stride in (("1", 8), ("0", 4)):  # the option reads "'1': 1/8, map 16 x 24, 5 boxes"
            step(f"level {name}", lambda name=name, stride=stride: select(  # "\\/": playwright sends /regex/
                page, "Pyramid level", re.compile(rf"^.{name}.: 1\/{stride},")))
        step("every box of the image", lambda: toggle(page, "Only the boxes sent to this level"))
        step("only this level's boxes", lambda: toggle(page, "Only the boxes sent to this level"))
        for kind in ("max_abs", "pca", "mean"):
            step(f"summary: {kind}", lambda kind=kind: select(page, "Feature summary", kind))
        step("full: go to Boxes", lambda: go_to(page, "Boxes"))
        step("format cxcywh", lambda: select(page, "Box format of your code", re.compile("^cxcywh")))
        step("format xyxy", lambda: select(page, "Box format of your code", re.compile("^xyxy")))
        step("full: go to Side by side", lambda: go_to(page, "Side by side"))
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && "
                               "g.layout.meta && g.layout.meta.view)", timeout=WAIT)
        wait_meta(page, "m.aligned === false")  # the call's own aligned (Faster R-CNN's legacy False)
        step("aligned on", lambda: toggle(page, "aligned=True"))
        step("sampling ratio +1", lambda: slider_step(page, "Sampling ratio"))
        step("channel view: PCA", lambda: page.get_by_text("PCA (1st)", exact=True).click())
        step("details on", lambda: toggle(page, "Details of one variant"))
        step("details off", lambda: toggle(page, "Details of one variant"))
        step("full: go to Diagnose", lambda: go_to(page, "Diagnose & explain"))
        step("full: reproduce", lambda: page.get_by_role("button", name="Run the ops on this input").click())
        step("full: go to Parity", lambda: go_to(page, "Parity & speed"))
        step("full: run the comparison", lambda: page.get_by_role("button", name="Run the comparison").click())
        page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=WAIT)
        step("full: back to Image & backbone", lambda: go_to(page, "Image & backbone"))
        for name, why in (("broken", r"not a torch\.save zip archive"),
                          ("evil", r"torch\.load\(weights_only=True\) refused it"),  # pickled code: never run
                          ("weights", r"format None version None")):  # a torch file, not a capture
            step(f"{name}.pt keeps the capture", lambda name=name: upload(page, capture_files[name]))
            wait_text(rf"{name}\.pt: load_capture\('{name}\.pt'\) expects a capture file .*{why}")
            wait_text(r"^That capture file was refused\. The current capture \(full\.pt\) is kept\.")
            wait_text(r"^Capture: full\.pt")
        step("reload the page", lambda: page.reload(timeout=WAIT))
        wait_text(r"^Capture: full\.pt")  # a refresh keeps the capture
        every_page("reloaded")
        page.screenshot(path=str(SHOTS / "1_capture.png"))
        step("source: sample", lambda: page.get_by_text("Bundled sample").click())
        page.locator("[data-testid=stMetric]", has_text="Forward pass").wait_for(timeout=WAIT)

        if "shot" in capture_files:  # the README's screenshot: docs/capture.png
            step("source: capture file again", lambda: page.get_by_text("Capture file (your model)").click())
            step("open the README's capture", lambda: upload(page, capture_files["shot"]))
            wait_text(r"^Capture: my_detector_capture\.pt")
            page.set_viewport_size({"width": 1600, "height": 1250})
            page.locator("[data-testid=stHeading]", has_text="Capture: my_detector_capture.pt").first \
                .scroll_into_view_if_needed()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ROOT / "docs" / "capture.png"))
    assert len(step.done) > 50
    assert step.runs.done == step.runs.asked > 50  # the waits saw the runs (not only their 3 s bound)
