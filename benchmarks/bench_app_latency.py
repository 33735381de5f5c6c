"""How fast the app answers after the first forward pass: ResNet-50 C4, CPU, an 800 px image, 10 boxes.

Three kinds of numbers:

- page reruns through ``streamlit.testing.v1.AppTest`` (the real pages, script run and element tree
  included; no browser, no websocket, no drawing): edit or draw a box on the Boxes page; change the
  channel view, the box shown, or a box on the Side-by-side page. AppTest reruns the whole page even
  where the browser reruns only the channel-view fragment.
- the pure compute behind them, without Streamlit: make_variants for all boxes, the RGB crops and
  the one-channel crops of all boxes for every variant, the all-channel crops of one box (the
  "max" view), channel views, and the figure builders.
- with ``--browser``: the same changes in headless Chromium (/usr/bin/chromium) against
  ``streamlit run``, from the click until the page is redrawn and idle: what a person waits for.

Prints a table and writes benchmarks/results/app_latency.json. Medians of ``--repeats`` runs after
a warm-up; a benchmark, never a test. Run: ``.venv/bin/python benchmarks/bench_app_latency.py
[--browser]``. On a shared machine the numbers move a lot with the load (the JSON records it).
"""

from __future__ import annotations

import argparse
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


def bench_apptest(data: bytes, boxes: np.ndarray, repeats: int) -> list[dict]:
    import hashlib

    from streamlit.testing.v1 import AppTest

    from roi_lab.ui import boxtable

    os.environ["ROI_LAB_MAX_SIDE"] = "800"
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)
    ss = at.session_state
    ss["backbone"], ss["stage"], ss["weights"], ss["device"] = "resnet50", "C4", "auto", "cpu"
    ss["image_bytes"], ss["image_hash"] = data, hashlib.sha1(data).hexdigest()
    ss["image_name"], ss["image_sample"] = "synthetic scene, 800 px", None
    ss["boxes"] = boxtable.rows_from_boxes(boxes, [f"box {i + 1}" for i in range(len(boxes))])
    start = time.perf_counter()
    at.run()
    first = (time.perf_counter() - start) * 1000.0
    assert not at.exception, at.exception
    rows = [{"what": "page 1 first run (model load + forward pass)", "ms": first, "kind": "apptest"}]

    at.switch_page("pages/2_boxes.py").run()
    at.run()

    def edit_box() -> None:
        rev = at.session_state["boxes_rev"]
        x2 = float(at.session_state["boxes"][0]["x2"])
        at.session_state[f"boxes_editor_{rev}"] = {
            "edited_rows": {0: {"x2": x2 + 1.0}},
            "added_rows": [],
            "deleted_rows": [],
        }
        at.run()
        assert not at.exception

    ms, _ = median_ms(edit_box, repeats)
    rows.append({"what": "Boxes page: edit a box in the table", "ms": ms, "kind": "apptest"})

    def draw_box() -> None:
        rev = at.session_state["boxes_rev"]
        at.session_state[f"boxes_chart_{rev}"] = {
            "selection": {"box": [{"x": [100, 180], "y": [100, 170]}], "points": [], "point_indices": [], "lasso": []}
        }
        at.run()
        assert not at.exception
        at.session_state["boxes"] = at.session_state["boxes"][:-1]  # keep 10 boxes

    ms, _ = median_ms(draw_box, repeats)
    rows.append({"what": "Boxes page: drag a new box (selection event)", "ms": ms, "kind": "apptest"})

    start = time.perf_counter()
    at.switch_page("pages/3_side_by_side.py").run()
    rows.append(
        {
            "what": "Side by side: first run (variants + crops of box 1)",
            "ms": (time.perf_counter() - start) * 1000.0,
            "kind": "apptest",
        }
    )
    assert not at.exception, at.exception
    at.run()

    views = ["max", "pca", "index", "mean"]
    state = {"i": 0}

    def channel_view() -> None:
        at.session_state["channel_view"] = views[state["i"] % len(views)]
        state["i"] += 1
        at.run()
        assert not at.exception

    channel_view()
    ms, _ = median_ms(channel_view, repeats)
    rows.append(
        {
            "what": "Side by side: change the channel view (whole page; browser reruns the fragment only)",
            "ms": ms,
            "kind": "apptest",
        }
    )

    focus = {"i": 0}

    def focus_cached() -> None:
        at.session_state["focus_box"] = focus["i"] % 2
        focus["i"] += 1
        at.run()
        assert not at.exception

    focus_cached()
    focus_cached()
    ms, _ = median_ms(focus_cached, repeats)
    rows.append({"what": "Side by side: change the box shown", "ms": ms, "kind": "apptest"})

    new = {"i": 2}

    def max_new_box() -> None:
        at.session_state["channel_view"] = "max"
        at.session_state["focus_box"] = new["i"]
        new["i"] += 1
        at.run()
        assert not at.exception

    ms, _ = median_ms(max_new_box, min(repeats, len(boxes) - 2))
    rows.append(
        {"what": "Side by side: 'max' view of a box not seen yet (all-channel crops)", "ms": ms, "kind": "apptest"}
    )
    at.session_state["channel_view"] = "mean"

    def edit_then_side() -> None:
        rows_ = [dict(r) for r in at.session_state["boxes"]]
        rows_[0]["x2"] = float(rows_[0]["x2"]) + 1.0
        at.session_state["boxes"] = rows_
        at.session_state["focus_box"] = 0
        at.run()
        assert not at.exception

    ms, _ = median_ms(edit_then_side, repeats)
    rows.append({"what": "Side by side: a box moved (new variants, crops, figures)", "ms": ms, "kind": "apptest"})
    return rows


def bench_compute(data: bytes, boxes: np.ndarray, repeats: int) -> list[dict]:
    from roi_lab.backbone import feature_summary, load_backbone
    from roi_lab.geometry import crop_features_for_variants, crop_image_for_variants, make_variants
    from roi_lab.image import decode_image
    from roi_lab.ui import figures, views

    image = decode_image(data)
    bb = load_backbone("resnet50", weights="auto", device="cpu")
    feats = bb.features(image, stages=["C4"])["C4"]
    rows = [
        {
            "what": f"forward pass resnet50 C4 {image.shape[1]}x{image.shape[0]} -> {tuple(feats.shape)}",
            "ms": bb.last_forward_ms,
            "kind": "compute",
        }
    ]

    def time_row(what: str, fn) -> None:
        """Append the median of ``repeats`` calls of ``fn`` as a compute row."""
        ms, _ = median_ms(fn, repeats)
        rows.append({"what": what, "ms": ms, "kind": "compute"})

    h, w = image.shape[:2]
    fsize = tuple(feats.shape[-2:])
    b = torch.tensor(boxes, dtype=torch.float32)
    time_row(
        f"make_variants, {len(boxes)} boxes", lambda: make_variants(b, image_size=(h, w), feature_size=fsize, stride=16)
    )
    vs = make_variants(b, image_size=(h, w), feature_size=fsize, stride=16)
    image_t = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    time_row(
        f"RGB crops 56x56 of {len(boxes)} boxes x {len(vs)} variants (per box change)",
        lambda: [v.apply_to_image(image_t, 56) for v in vs],
    )
    time_row(
        "  the same, batched per op call (crop_image_for_variants; what the app runs)",
        lambda: crop_image_for_variants(vs, image_t, 56),
    )
    for view in ("mean", "pca"):
        time_row(
            f"channel map '{view}' of the whole [1, {feats.shape[1]}, {fsize[0]}, {fsize[1]}] map",
            lambda view=view: views.channel_map(feats, view),
        )
    channel = views.channel_map(feats, "mean")
    time_row(
        f"1-channel crops 7x7 of {len(boxes)} boxes x {len(vs)} variants (per view or box change)",
        lambda: [v.apply(channel, 7) for v in vs],
    )
    time_row(
        "  the same, batched per op call (crop_features_for_variants; what the app runs)",
        lambda: crop_features_for_variants(vs, channel, 7),
    )

    def full_crops_one_box() -> np.ndarray:
        one = make_variants(b[:1], image_size=(h, w), feature_size=fsize, stride=16)
        return np.stack([v.apply(feats, 7)[0].numpy() for v in one])

    time_row(f"all-channel crops of one box x {len(vs)} variants ('max' view, .npz)", full_crops_one_box)
    crops = full_crops_one_box()
    time_row("max view + shared ranges of those crops", lambda: views.crop_views(crops, "max"))
    cv = views.crop_views(crops, "mean")

    def crop_figures() -> None:
        for i in range(len(crops)):
            figures.crop_heatmap(cv.maps[i], cv.zmin, cv.zmax).to_dict()
            figures.diff_heatmap(cv.diffs[i], cv.zabs).to_dict()

    time_row(f"build + serialise {2 * len(crops)} crop/diff heatmaps", crop_figures)
    summary = feature_summary(feats, "mean")
    uri, sc = figures.image_data_uri(image, 320)

    def geometry_figures() -> None:
        for v in vs:
            p = views.panel_data(v, 0)
            figures.feature_map_figure(summary, p.regions_feature, views.intended_feature(boxes, 16)).to_dict()
            figures.points_figure(uri, (h, w), p.points_image, p.region_image, boxes[0], uri_scale=sc).to_dict()

    time_row(f"build + serialise {2 * len(vs)} geometry figures (built once per box set)", geometry_figures)
    full_uri, _ = figures.image_data_uri(image)
    time_row(
        "Boxes page image figure (build + serialise)",
        lambda: figures.image_figure(full_uri, (h, w), boxes, [str(i) for i in range(10)]).to_dict(),
    )
    return rows


def bench_browser(data: bytes, boxes: np.ndarray, repeats: int) -> list[dict]:
    """The same changes in headless Chromium against ``streamlit run``: event to redrawn page, websocket included.

    Uploads the 800 px image and imports the 10 boxes as a JSON box file, then times a channel-view
    click (a fragment rerun) until the crop caption names the new view, and a change of the box
    shown until the caption names the new box. Needs /usr/bin/chromium.
    """
    import re
    import tempfile

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from _server import streamlit_server

    from roi_lab.boxes import write_boxes

    idle = "[data-testid=stApp][data-test-script-state=notRunning]"

    def wait_idle(page) -> None:
        page.wait_for_selector(idle, timeout=300_000)
        page.wait_for_timeout(200)
        page.wait_for_selector(idle, timeout=300_000)

    tmp = Path(tempfile.mkdtemp())
    (tmp / "scene.png").write_bytes(data)
    (tmp / "boxes.json").write_text(
        write_boxes(boxes, "json", image_size=(600, 800), labels=[f"box {i + 1}" for i in range(len(boxes))])
    )
    rows = []
    with streamlit_server(timeout=120, extra_env={"ROI_LAB_MAX_SIDE": "800"}) as port, sync_playwright() as p:
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
            page.locator("[data-testid=stSidebarNav] a", has_text="Boxes").first.click()
            wait_idle(page)
            page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(tmp / "boxes.json"))
            page.get_by_text(f"Imported {len(boxes)} boxes from boxes.json.").wait_for(timeout=120_000)
            wait_idle(page)
            page.locator("[data-testid=stSidebarNav] a", has_text="Side by side").first.click()
            page.locator("[data-testid=stMetric]", has_text="IoU").first.wait_for(timeout=300_000)
            wait_idle(page)

            def timed(action, text: str) -> float:
                start = time.perf_counter()
                action()
                page.get_by_text(re.compile(text)).first.wait_for(timeout=120_000)
                wait_idle(page)  # includes the idle check's 200 ms pause, subtracted below
                return (time.perf_counter() - start) * 1000.0 - 200.0

            labels = {"mean": "mean over C", "max": "max over C", "pca": "PCA (1st)"}
            order = ["pca", "mean", "max", "mean"] * repeats
            times = {v: [] for v in labels}
            for view in order:
                ms = timed(
                    lambda view=view: page.get_by_text(labels[view], exact=True).click(),
                    rf"^Crop color scale .*\({view}\)",
                )
                times[view].append(ms)
            for view in ("mean", "pca", "max"):
                rows.append(
                    {
                        "what": f"Chromium: channel view -> '{view}' (fragment rerun, redrawn)",
                        "ms": statistics.median(times[view]),
                        "kind": "browser",
                    }
                )
            box_times = []
            select = page.locator("[data-testid=stSelectbox]", has_text="Box shown in the crops")
            for i in range(1, 1 + min(repeats, len(boxes) - 1)):

                def pick(i=i) -> None:
                    select.locator("input").click()
                    page.get_by_role("option", name=f"{i + 1}: box {i + 1}").click()

                box_times.append(timed(pick, rf"Box {i + 1} \(box {i + 1}\)"))
            rows.append(
                {
                    "what": "Chromium: change the box shown (whole page rerun, redrawn)",
                    "ms": statistics.median(box_times),
                    "kind": "browser",
                }
            )
        finally:
            browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-apptest", action="store_true")
    parser.add_argument("--browser", action="store_true", help="also time the app in headless /usr/bin/chromium")
    args = parser.parse_args()
    data, boxes = scene()
    rows = bench_compute(data, boxes, args.repeats)
    if not args.skip_apptest:
        rows += bench_apptest(data, boxes, args.repeats)
    if args.browser:
        rows += bench_browser(data, boxes, args.repeats)
    width = max(len(r["what"]) for r in rows)
    print(f"{'what':<{width}}  {'ms':>9}  kind")
    for r in rows:
        print(f"{r['what']:<{width}}  {r['ms']:9.1f}  {r['kind']}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {
        "config": {
            "backbone": "resnet50",
            "stage": "C4",
            "device": "cpu",
            "image": "800 x 600",
            "boxes": len(boxes),
            "output_size": 7,
            "repeats": args.repeats,
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "loadavg_at_end": load,
        },
        "rows": [{**r, "ms": round(r["ms"], 2)} for r in rows],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
