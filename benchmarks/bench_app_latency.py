"""How fast the app answers after the first forward pass: ResNet-50 C4, CPU, an 800 x 600 image, 10 boxes.

Three kinds of numbers, all medians of ``--repeats`` (>= 5) runs after a warm-up:

- ``compute``: the pure work behind the Side-by-side page, without Streamlit: the variants, the
  one-channel crops of every box for every variant, the overview's pictures, the overview and details
  figures built and serialised as Streamlit sends them.
- ``server``: the whole page rerun through ``streamlit.testing.v1.AppTest`` (the real entrypoint and
  page, script run and element tree included; no browser, no websocket): change the box shown, the
  channel view, the output size, the sampling ratio, aligned; drag a box on the Side-by-side image.
  Budget: 150 ms each.
- ``browser`` (``--browser``): the same changes in headless Chromium (Debian's /usr/bin/chromium,
  software rendering) against ``streamlit run``, from the click (or the drag's mouse-up) until the
  script is idle and every Plotly figure of the page shows the new state (each figure carries the
  state it shows in ``layout.meta``) and two more animation frames have been painted: what a person
  waits for. Budget: 500 ms; 1 s for a dragged box. Two more rows per change: until Streamlit reports
  the script idle (its "running" indicator clears; it trails the redraw), and the real server's time
  of the runs the change caused (``ROI_LAB_LOG_RUNS``, see roi_lab/ui/timing.py).

Prints a table and writes benchmarks/results/app_latency.json (with the machine's load average: on a
shared machine the browser numbers move a lot with the load). A benchmark, never a test. Run:
``.venv/bin/python benchmarks/bench_app_latency.py [--browser] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "app_latency.json"
sys.path.insert(0, str(ROOT))
BUDGET_MS = {"server": 150.0, "browser": 500.0}
DRAG_BUDGET_MS = 1000.0


def scene(side: int = 800, k: int = 10) -> tuple[bytes, np.ndarray]:
    """The synthetic scene upscaled to ``side`` px wide (PNG bytes) and ``k`` boxes in its pixels."""
    from roi_lab.samples import make_synthetic_scene

    image, boxes, _ = make_synthetic_scene()
    h, w = image.shape[:2]
    scale = side / max(h, w)
    big = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    assert ok
    b = boxes.numpy().astype(np.float64) * scale
    extra = np.array([[40, 300, 260, 520], [500, 60, 760, 280]], dtype=np.float64)[: max(0, k - len(b))]
    return buf.tobytes(), np.concatenate([b, extra])[:k]


def median_ms(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), times


def row(what: str, kind: str, times: list[float], budget: float | None = None) -> dict:
    ms = statistics.median(times)
    out = {"what": what, "kind": kind, "ms": ms, "n": len(times), "min": min(times), "max": max(times)}
    if budget is not None:
        out["budget_ms"] = budget
        out["within"] = ms <= budget
    return out


# ----------------------------------------------------------------------------- compute
def bench_compute(data: bytes, boxes: np.ndarray, repeats: int) -> list[dict]:
    import plotly.io as pio

    from roi_lab.backbone import load_backbone
    from roi_lab.geometry import crop_features_for_variants, make_variants
    from roi_lab.image import decode_image
    from roi_lab.ui import figures, loaders, views
    from roi_lab.ui.thumbs import render_thumb

    image = decode_image(data)
    bb = load_backbone("resnet50", weights="auto", device="cpu")
    feats = bb.features(image, stages=["C4"])["C4"]
    rows = [{"what": f"forward pass resnet50 C4 {image.shape[1]}x{image.shape[0]} -> {tuple(feats.shape)} (once)",
             "kind": "compute", "ms": bb.last_forward_ms, "n": 1, "min": bb.last_forward_ms, "max": bb.last_forward_ms}]

    def timed(what: str, fn) -> None:
        _, times = median_ms(fn, repeats)
        rows.append(row(what, "compute", times))

    loaders.interactive_threads()  # as the app: one torch thread for the small ops below
    h, w = image.shape[:2]
    fsize = tuple(feats.shape[-2:])
    b = torch.tensor(boxes, dtype=torch.float32)
    timed(f"make_variants, {len(boxes)} boxes", lambda: make_variants(b, image_size=(h, w), feature_size=fsize,
                                                                      stride=16))
    vs = make_variants(b, image_size=(h, w), feature_size=fsize, stride=16)
    channel = views.channel_map(feats, "mean")
    timed("channel map 'pca' of the whole map", lambda: views.channel_map(feats, "pca"))
    timed(f"1-channel crops 7x7 of {len(boxes)} boxes x {len(vs)} variants (batched)",
          lambda: crop_features_for_variants(vs, channel, 7))
    crops = np.stack([c[:, 0].numpy() for c in crop_features_for_variants(vs, channel, 7)])[:, 0]
    small = cv2.resize(image, (312, 234), interpolation=cv2.INTER_AREA)

    def pictures() -> list:
        return [render_thumb(small, (h, w), v.boxes_meant[0].numpy(), v.region_image[0].numpy(),
                             v.points_image[0].numpy(), figures.PICTURE_SIZE)[0] for v in vs]

    timed(f"{len(vs)} overview pictures (render)", pictures)
    pics = pictures()
    cv = views.crop_views(crops)
    verdicts = views.verdicts(vs, 0, cv.maps)
    timed("overview figure: build (composes the pictures, JPEG) + serialise to JSON",
          lambda: pio.to_json(figures.overview_figure(verdicts, pics, cv.maps, cv.zmin, cv.zmax).to_dict()))
    return rows


# ----------------------------------------------------------------------------- server (AppTest)
def _apptest(data: bytes, boxes: np.ndarray):
    from streamlit.testing.v1 import AppTest

    from roi_lab.ui import boxtable

    os.environ["ROI_LAB_MAX_SIDE"] = "800"
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)
    ss = at.session_state
    ss["backbone"], ss["stage"], ss["weights"], ss["device"] = "resnet50", "C4", "auto", "cpu"
    ss["image_bytes"], ss["image_hash"] = data, hashlib.sha1(data).hexdigest()
    ss["image_name"], ss["image_sample"] = "synthetic scene, 800 px", None
    ss["boxes"] = boxtable.rows_from_boxes(boxes, [f"box {i + 1}" for i in range(len(boxes))])
    ss["boxes_origin"] = "user"
    return at


def bench_server(data: bytes, boxes: np.ndarray, repeats: int) -> list[dict]:
    at = _apptest(data, boxes)
    start = time.perf_counter()
    at.run()
    first = (time.perf_counter() - start) * 1000.0
    assert not at.exception, at.exception
    rows = [{"what": "first run (model load + forward pass)", "kind": "server", "ms": first, "n": 1, "min": first,
             "max": first}]
    at.switch_page("app_pages/3_side_by_side.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.run()
    ss = at.session_state

    def cycle(what: str, key: str, values: list, budget: float = BUDGET_MS["server"]) -> None:
        state = {"i": 0}

        def change() -> None:
            ss[key] = values[state["i"] % len(values)]
            state["i"] += 1
            at.run()
            assert not at.exception, [e.value for e in at.exception]

        for _ in range(len(values)):  # warm every value's caches once: a revisited setting is the common case
            change()
        _, times = median_ms(change, max(repeats, len(values)))
        rows.append(row(what, "server", times, budget))
        ss[key] = values[-1]
        at.run()

    cycle("Side by side: change the box shown", "focus_box", list(range(1, len(boxes))) + [0])
    cycle("Side by side: channel view mean / pca / max / one channel", "channel_view", ["pca", "max", "index", "mean"])
    cycle("Side by side: output size", "output_size", [9, 5, 7])
    cycle("Side by side: sampling ratio", "sampling_ratio", [0, 1, 3, 2])
    cycle("Side by side: aligned on / off", "aligned", [False, True])

    def first_time(what: str, key: str, values: list) -> None:
        """Settings never seen before (cold caches): a fresh value each repeat."""
        state = {"i": 0}

        def change() -> None:
            ss[key] = values[state["i"]]
            state["i"] += 1
            at.run()
            assert not at.exception

        _, times = median_ms(change, min(repeats, len(values)))
        rows.append(row(what, "server", times, BUDGET_MS["server"]))

    first_time("Side by side: output size never seen before", "output_size", [10, 11, 12, 13, 14, 15, 16][:repeats])

    def drag() -> None:
        rev = ss["boxes_rev"]
        ss[f"side_chart_{rev}"] = {"selection": {"box": [{"x": [100 + 3 * rev, 220], "y": [120, 260]}],
                                                 "points": [], "point_indices": [], "lasso": []}}
        at.run()
        assert not at.exception

    _, times = median_ms(drag, repeats)
    rows.append(row("Side by side: drag a new box (new variants, crops, pictures)", "server", times,
                    BUDGET_MS["server"]))
    return rows


# ----------------------------------------------------------------------------- browser
WAIT_JS = """
([want, figures]) => {
  const app = document.querySelector('[data-testid=stApp]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const plots = [...document.querySelectorAll('.js-plotly-plot')].filter(
    g => g.layout && g.layout.meta && g.layout.meta.view !== undefined);
  if (plots.length < figures) return false;
  return plots.every(g => g._fullLayout && Object.entries(want).every(([k, v]) => g.layout.meta[k] === v));
}
"""
FRAMES_JS = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def bench_browser(data: bytes, boxes: np.ndarray, repeats: int) -> list[dict]:
    """The same changes in headless Chromium against ``streamlit run``, click to redrawn."""
    import re
    import tempfile

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from _server import streamlit_server

    from roi_lab.boxes import write_boxes

    idle = "[data-testid=stApp][data-test-script-state=notRunning]"

    def wait_idle(page) -> None:
        page.wait_for_selector(idle, timeout=300_000)
        page.wait_for_timeout(300)
        page.wait_for_selector(idle, timeout=300_000)

    tmp = Path(tempfile.mkdtemp())
    (tmp / "scene.png").write_bytes(data)
    (tmp / "boxes.json").write_text(
        write_boxes(boxes, "json", image_size=(600, 800), labels=[f"box {i + 1}" for i in range(len(boxes))])
    )
    rows = []
    env = {"ROI_LAB_MAX_SIDE": "800", "ROI_LAB_LOG_RUNS": "1"}
    with streamlit_server(timeout=120, extra_env=env) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
            wait_idle(page)
            page.get_by_text("Upload your own").click()
            wait_idle(page)
            page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(tmp / "scene.png"))
            page.get_by_text(re.compile(r"^scene\.png: 800 x 600 px")).wait_for(timeout=300_000)
            wait_idle(page)
            page.get_by_role("link", name="Boxes").first.click()
            wait_idle(page)
            page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(tmp / "boxes.json"))
            page.get_by_text(f"Imported {len(boxes)} boxes from boxes.json.").wait_for(timeout=120_000)
            wait_idle(page)
            page.get_by_role("link", name="Side by side").first.click()
            page.wait_for_function(WAIT_JS, arg=[{"boxes": len(boxes)}, 1], timeout=300_000, polling="raf")
            wait_idle(page)

            log = ROOT / "tests" / "e2e" / "screenshots" / "server.log"

            def server_ms(offset: int) -> tuple[float, float]:
                """(wall, CPU) ms of the runs logged since ``offset`` (ROI_LAB_LOG_RUNS lines)."""
                with open(log, "rb") as f:
                    f.seek(offset)
                    lines = f.read().decode(errors="replace").splitlines()
                found = [m for m in (re.search(r"roi_lab run .*: ([\d.]+) ms \(cpu ([\d.]+) ms\)", x) for x in lines)
                         if m]
                return sum(float(m.group(1)) for m in found), sum(float(m.group(2)) for m in found)

            def timed(action, want: dict, prepare=None) -> tuple[float, float, float, float]:
                """(click to redrawn, click to script idle, server wall ms, server CPU ms) of one change;
                ``prepare`` (opening a list) is not timed."""
                if prepare is not None:
                    prepare()
                offset = log.stat().st_size
                start = time.perf_counter()
                action()
                page.wait_for_function(WAIT_JS, arg=[want, 1], timeout=120_000, polling="raf")
                page.evaluate(FRAMES_JS)
                drawn = (time.perf_counter() - start) * 1000.0
                page.wait_for_selector(idle, timeout=120_000)
                done = (time.perf_counter() - start) * 1000.0
                wait_idle(page)  # nothing else pending before the next change
                return (drawn, done, *server_ms(offset))

            def cycle(what: str, steps: list, budget: float = BUDGET_MS["browser"]) -> None:
                for action, want, *prepare in steps:  # warm-up round: every value once
                    timed(action, want, *prepare)
                results = []
                while len(results) < max(repeats, len(steps)):
                    for action, want, *prepare in steps:
                        results.append(timed(action, want, *prepare))
                rows.append(row(what, "browser", [r[0] for r in results], budget))
                rows.append(row("  same, until Streamlit reports the script idle", "browser", [r[1] for r in results]))
                rows.append(row("  same, server side (streamlit run, logged)", "server", [r[2] for r in results],
                                BUDGET_MS["server"]))
                rows.append(row("  same, CPU time of that server run", "server", [r[3] for r in results]))

            pills = page.locator(".st-key-w_focus_box_pills").first  # Streamlit's class for the widget key

            def pick_box(i: int):
                return lambda: pills.get_by_text(str(i + 1), exact=True).click()

            cycle("Side by side: change the box shown (click on its number)",
                  [(pick_box(i), {"focus": i}) for i in (1, 2, 3, 0)])
            labels = {"mean": "mean over C", "max": "max over C", "pca": "PCA (1st)", "index": "one channel"}
            cycle("Side by side: channel view mean / pca / max / one channel",
                  [((lambda v=v: page.get_by_text(labels[v], exact=True).click()), {"view": v})
                   for v in ("pca", "max", "index", "mean")])

            def slider_key(label: str, key: str):
                thumb = page.locator("[data-testid=stSlider]", has_text=label).locator("input[type=range]")

                def act() -> None:
                    thumb.focus()
                    page.keyboard.press(key)
                return act

            cycle("Side by side: output size (slider, one step)",
                  [(slider_key("Output size", "ArrowRight"), {"output_size": 8}),
                   (slider_key("Output size", "ArrowLeft"), {"output_size": 7})])
            cycle("Side by side: sampling ratio (slider, one step)",
                  [(slider_key("Sampling ratio", "ArrowRight"), {"sampling_ratio": 3}),
                   (slider_key("Sampling ratio", "ArrowLeft"), {"sampling_ratio": 2})])
            toggle = page.locator("[data-testid=stCheckbox], [data-testid=stToggle]", has_text="aligned").first
            cycle("Side by side: aligned on / off (toggle)",
                  [((lambda: toggle.click()), {"aligned": False}), ((lambda: toggle.click()), {"aligned": True})])

            chart = page.locator("[data-testid=stPlotlyChart]").first
            n = {"boxes": len(boxes)}


            def drag() -> tuple[float, float, float]:
                area = chart.locator("rect.nsewdrag").first.bounding_box()
                k = n["boxes"] - len(boxes)
                x0, y0 = area["x"] + area["width"] * (0.10 + 0.05 * k), area["y"] + area["height"] * 0.20
                page.mouse.move(x0, y0)
                page.mouse.down()
                page.mouse.move(x0 + area["width"] * 0.2, y0 + area["height"] * 0.3, steps=6)
                n["boxes"] += 1
                return timed(page.mouse.up, {"boxes": n["boxes"], "focus": n["boxes"] - 1})

            drag()  # warm-up
            results = [drag() for _ in range(repeats)]
            what = "Side by side: drag a new box -> its overview redrawn (mouse-up to redrawn)"
            rows.append(row(what, "browser", [r[0] for r in results], DRAG_BUDGET_MS))
            rows.append(row("  same, until Streamlit reports the script idle", "browser", [r[1] for r in results]))
            rows.append(row("  same, server side (streamlit run, logged)", "server", [r[2] for r in results],
                            BUDGET_MS["server"]))
            rows.append(row("  same, CPU time of that server run", "server", [r[3] for r in results]))
        finally:
            browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per median (at least 5)")
    parser.add_argument("--browser", action="store_true", help="also time the app in headless /usr/bin/chromium")
    parser.add_argument("--skip-compute", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args()
    repeats = max(5, args.repeats)
    data, boxes = scene()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows: list[dict] = []
    if not args.skip_compute:
        rows += bench_compute(data, boxes, repeats)
    if not args.skip_server:
        rows += bench_server(data, boxes, repeats)
    if args.browser:
        rows += bench_browser(data, boxes, repeats)
    width = max(len(r["what"]) for r in rows)
    print(f"{'what':<{width}}  {'kind':<8} {'median ms':>9} {'min':>7} {'max':>7}  budget")
    for r in rows:
        budget = "" if "budget_ms" not in r else f"<= {r['budget_ms']:.0f} {'ok' if r['within'] else 'MISSED'}"
        print(f"{r['what']:<{width}}  {r['kind']:<8} {r['ms']:9.1f} {r['min']:7.1f} {r['max']:7.1f}  {budget}")
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {
        "config": {"backbone": "resnet50", "stage": "C4", "device": "cpu", "image": "800 x 600",
                   "boxes": len(boxes), "output_size": 7, "repeats": repeats, "viewport": "1600 x 1000"},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "threads": torch.get_num_threads(), "loadavg_at_start": load_start, "loadavg_at_end": load_end},
        "rows": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(f"load average at start {load_start}, at end {load_end}; wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
