"""Issue 10's findings, one test (or a few) each, through the real app in AppTest.

Each test failed on the app before the fix (checked against commit c14556b, the state the issue was
filed on); the comment under each says how.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from apphelpers import (
    PAGES,
    figure,
    make_app,
    no_exception,
    option_labels,
    overview_text,
    plotly_charts,
    png,
    texts,
)

from roi_lab.ui import boxtable
from roi_lab.ui.state import K, widget_key


def coords(row) -> list[float]:
    return [row[c] for c in boxtable.COORDS]


# ----------------------------------------------------------------------------- 1. crash after toggling aligned
SETTINGS = [
    (K.ALIGNED, False), (K.OUTPUT_SIZE, 5), (K.SAMPLING_RATIO, 0), (K.CHANNEL_VIEW, "pca"), (K.FOCUS_BOX, 3),
    (K.ALIGNED, True), (K.SHOW_DETAILS, True), (K.DETAIL_KIND, "aligned_mismatch"), (K.ALIGNED, False),
    (K.BOX_ANGLE, 0), (K.DETAIL_KIND, "clockwise_flipped"), (K.BOX_ANGLE, -45),
]


def test_widget_labels_stay_valid_whatever_else_changes():
    """The browser sends a widget's value as its option's label: a label that changes with another setting (the
    old "Variants shown" multiselect titled the aligned variant "aligned=False" / "aligned=True") leaves the
    browser with a value the server no longer knows, and the next touch raised TypeError. Every option label on
    the page must be a function of its option alone. (Before: the multiselect's labels changed with aligned.)"""
    at = make_app("side")
    seen: dict[str, list[str]] = option_labels(at)
    for key, value in SETTINGS:
        at.session_state[key] = value
        at.run()
        no_exception(at)
        for widget, labels in option_labels(at).items():
            if widget in seen:
                assert labels == seen[widget], (key, value, widget)
            seen[widget] = labels
    assert "Your settings" in seen[widget_key(K.DETAIL_KIND)] and "aligned flipped" in seen[widget_key(K.DETAIL_KIND)]


def test_after_aligned_off_every_control_of_side_by_side_still_works():
    """The reported sequence: aligned off, then touch each widget (through the widgets, as a user would)."""
    at = make_app("side")
    at.toggle(key=widget_key(K.ALIGNED)).set_value(False).run()
    no_exception(at)
    at.pills(key=widget_key(K.FOCUS_BOX, "pills")).set_value(2).run()
    at.slider(key=widget_key(K.OUTPUT_SIZE)).set_value(9).run()
    at.slider(key=widget_key(K.SAMPLING_RATIO)).set_value(1).run()
    at.segmented_control(key=widget_key(K.CHANNEL_VIEW)).set_value("index").run()
    at.number_input(key=widget_key(K.CHANNEL_INDEX)).set_value(5).run()
    at.toggle(key=widget_key(K.SHOW_DETAILS)).set_value(True).run()
    at.selectbox(key=widget_key(K.DETAIL_KIND)).set_value("aligned_mismatch").run()
    at.slider(key=widget_key(K.BOX_ANGLE)).set_value(-45).run()
    at.toggle(key=widget_key(K.ALIGNED)).set_value(True).run()
    no_exception(at)
    meta = figure(at, "overview")["layout"]["meta"]
    assert meta == {"boxes": 8, "focus": 2, "view": "index", "index": 5, "output_size": 9, "sampling_ratio": 1,
                    "aligned": True, "angle": -45.0}


# ----------------------------------------------------------------------------- 2. a green "ok" on a broken input
def test_reproduce_never_says_ok_when_the_diagnoser_found_an_error():
    """Before: "torchvision.ops.roi_align: ok" in st.success for boxes just named IMAGE_SPACE_BOXES."""
    at = make_app("diagnose")  # the example: the current boxes as rois, spatial_scale left at 1
    assert any(t.startswith("**IMAGE_SPACE_BOXES**") for t in texts(at.error))
    at.button(key="diag_reproduce").click().run()
    no_exception(at)
    assert not at.success  # no "ok" anywhere
    ran = [t for t in texts(at.warning) if t.startswith("Ran without an error, but on this input it reads the wrong")]
    assert len(ran) == 2  # torchvision and roi_lab
    for t in ran:
        assert "of its samples fall off the map" in t and "of the output bins are all zeros" in t
        assert "max |difference| to the correctly configured call = " in t
        assert t.endswith("Findings: IMAGE_SPACE_BOXES.")
    headers = [m.value for m in at.markdown if m.value.startswith("**torchvision")]
    assert headers == ["**torchvision.ops.roi_align**: ran"]


# ----------------------------------------------------------------------------- 3. a label that contradicts its numbers
def test_the_reference_is_your_settings_and_legacy_aligned_false_is_flagged():
    """Before: with aligned=False, "Correct (reference)" showed IoU 0.89 while the aligned=True panel showed 1.00."""
    at = make_app("side")
    at.toggle(key=widget_key(K.ALIGNED)).set_value(False).run()
    no_exception(at)
    text = overview_text(at)
    assert "Correct" not in text
    tiles = text.split(" | ")
    assert tiles[0] == "<b>Your settings</b>"
    ref_iou = float(tiles[1].split("IoU ")[1][:4])
    assert ref_iou < 1.0 and "legacy" in tiles[1]
    (note,) = [t for t in texts(at.warning) if t.startswith("aligned=False is the legacy (Detectron v1) setting")]
    assert "so these settings are themselves off" in note
    flipped = tiles[tiles.index("<b>aligned flipped</b>") + 1]
    assert flipped.startswith("<b>IoU 1.00 · 0% outside</b>")
    # the colour of each verdict follows its numbers: no green next to a low IoU, no red next to 1.00
    (scatter,) = [t for t in figure(at, "overview")["data"] if t.get("mode") == "text"]
    from roi_lab.ui.figures import LEVEL_COLORS

    colors = scatter["textfont"]["color"]
    for i in range(1, len(tiles) - 1, 2):
        iou = float(tiles[i].split("IoU ")[1][:4])
        outside = float(tiles[i].split(" · ")[1].split("%")[0]) / 100
        if colors[i] == LEVEL_COLORS["ok"]:
            assert iou >= 0.95 and outside <= 0.02, tiles[i - 1]
        if colors[i] == LEVEL_COLORS["bad"]:
            assert iou < 0.5 or outside >= 0.5 or "refused" in tiles[i], tiles[i - 1]
    assert colors[tiles.index("<b>aligned flipped</b>")] == LEVEL_COLORS["ok"]
    assert colors[0] == LEVEL_COLORS["warn"]  # your settings: legacy


# ----------------------------------------------------------------------------- 4. one truth for crop_and_resize
def test_the_diagnose_page_and_side_by_side_give_the_same_crop_and_resize_normalization():
    """Before: the diagnoser's fix divided by the image's (H - 1, W - 1), the convention Side by side shows as a
    misconfiguration. tests/test_tf_normalization.py checks the sample points and the CLI."""
    at = make_app("diagnose")
    at.selectbox(key="diag_op").set_value("crop_and_resize").run()
    at.text_area(key="diag_boxes").set_value("[[50.0, 60.0, 130.0, 170.0]]").run()  # (y1, x1, y2, x2) px
    no_exception(at)
    fixes = [c.value for c in at.code if c.value.startswith("boxes_norm")]
    assert fixes == ["boxes_norm = (boxes / 16 - 0.5) / torch.tensor([8, 11, 8, 11])  # (y1, x1, y2, x2) image px "
                     "onto the 9 x 12 map at stride 16: samples from edge to edge of each box, not / (image size - 1)"]
    at.switch_page(PAGES["side"]).run()
    at.toggle(key=widget_key(K.SHOW_DETAILS)).set_value(True).run()
    at.selectbox(key=widget_key(K.DETAIL_KIND)).set_value("tf_crop_and_resize").run()
    no_exception(at)
    assert any(c.value.startswith("boxes_norm = (boxes_yxyx / 16 - 0.5) / torch.tensor([8, 11, 8, 11])")
               for c in at.code)


# ----------------------------------------------------------------------------- 5. clipped regions
def test_the_pictures_hold_the_whole_image_and_the_whole_region_with_the_off_image_part_marked():
    """Before: regions leaving the map were cut off at the right/bottom (capped at twice the map)."""
    from roi_lab.geometry import make_variants
    from roi_lab.ui.thumbs import OFF_IMAGE_RGB, render_thumb, view_of

    image = np.full((450, 600, 3), 128, np.uint8)
    box = np.array([200.0, 150.0, 300.0, 250.0])
    v = next(v for v in make_variants(torch.tensor(box[None]), image_size=(450, 600), feature_size=(29, 38), stride=16)
             if v.kind.value == "image_space_boxes")
    region = v.region_image[0].numpy()
    assert region[2] > 16 * 300 - 100  # the region is ~16x the box: thousands of px off the image
    pic, (x0, y0, x1, y1) = render_thumb(image, (450, 600), box, region, v.points_image[0].numpy(), (156, 117))
    assert x0 <= 0 and y0 <= 0 and x1 >= region[2] and y1 >= region[3]  # the whole image and the whole region
    assert (x0, y0, x1, y1) == view_of((450, 600), [box, region], v.points_image[0].numpy())
    k = min(156 / (x1 - x0), 117 / (y1 - y0))
    ox, oy = (156 - (x1 - x0) * k) / 2, (117 - (y1 - y0) * k) / 2

    def at_px(x: float, y: float) -> tuple:
        return tuple(int(c) for c in pic[int((y - y0) * k + oy), int((x - x0) * k + ox)])

    # beyond the image's right edge, left of the region: hatched off-image grey, not image
    assert at_px(2000, 300) in (OFF_IMAGE_RGB, (196, 196, 196))
    assert at_px(100, 100) == (128, 128, 128)  # inside the image, away from the boxes: the image


# ----------------------------------------------------------------------------- 6. page length and speed
def test_side_by_side_is_one_overview_figure_not_55_charts():
    """Before: 11 panels x 5 Plotly charts = 55 charts and ~6,300 px of scrolling. Now: the image to drag on and
    ONE overview figure for all 17 variants (details on demand add one more figure): 1,000 px, five rows of
    200 px tiles at their design size, 4 rows for the 13 axis-aligned variants and the legend (issue 10's 600 px
    held 11), the rotated family on a fifth row of its own."""
    at = make_app("side")
    no_exception(at)
    assert len(plotly_charts(at)) == 2
    fig = figure(at, "overview")
    assert fig["layout"]["height"] == 5 * 200 and len(fig["data"]) == 3
    at.toggle(key=widget_key(K.SHOW_DETAILS)).set_value(True).run()
    assert len(plotly_charts(at)) == 3


# ----------------------------------------------------------------------------- 7. smaller ones
def test_matched_text_is_shown_verbatim_not_as_markdown():
    """Before: st.caption(f"Matched: {...}") rendered `__wrapped__CropAndResize_device_` as bold Markdown."""
    from pathlib import Path

    records = json.loads((Path(__file__).parents[1] / "data" / "error_messages.json").read_text())
    message = next(r["text"] for r in records if r["id"] == "tf_boxes_1d")  # recorded from TensorFlow
    at = make_app("diagnose")
    at.text_area(key="diag_error").set_value(message).run()
    no_exception(at)
    assert any("__wrapped__CropAndResize_device_" in c.value and c.language == "text" for c in at.code)
    assert not any("__wrapped__" in t for t in texts(at.caption) + texts(at.markdown))


def test_code_blocks_wrap_and_sentences_are_not_highlighted_as_python():
    """Before: st.code(fix, language="python") without wrapping, for code and English alike."""
    at = make_app("diagnose", max_side=200)  # 200 x 150: not divisible by 16, so NON_DIVISIBLE_STRIDE (English fix)
    no_exception(at)
    assert at.code and all(c.proto.wrap_lines for c in at.code)
    assert all(c.language == "python" for c in at.code if c.value.startswith(("rois", "roi_align", "boxes")))
    assert any(t.startswith("resize or pad the image to a multiple of 16") for t in texts(at.text))
    assert not any(c.value.startswith("resize or pad") for c in at.code)


def test_the_fpn_weights_notice_names_the_coco_checkpoint_and_the_fpn_starts_at_p4(tmp_path, monkeypatch):
    """Before: "ImageNet weights not found" for resnet50_fpn, whose first choice is a COCO checkpoint; and the
    stage stayed C4 when switching to resnet50_fpn."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    at = make_app()
    at.selectbox(key=widget_key(K.WEIGHTS)).set_value("auto").run()
    at.selectbox(key=widget_key(K.BACKBONE)).set_value("resnet50_fpn").run()
    no_exception(at)
    assert at.session_state[K.STAGE] == "P4" and at.selectbox(key=widget_key(K.STAGE)).value == "P4"
    assert any("COCO Faster R-CNN or ImageNet weights not found in" in t for t in texts(at.info))
    at.selectbox(key=widget_key(K.BACKBONE)).set_value("resnet18").run()
    assert at.session_state[K.STAGE] == "C4"


def test_the_default_device_is_cuda_when_present_and_the_page_says_which_device_ran(monkeypatch):
    """Before: DEFAULTS said "cpu" whatever the machine."""
    from roi_lab.ui.state import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == "cpu"
    at = make_app("side")  # the helper asks for the CPU: the pages say so
    assert {m.label: m.value for m in make_app().metric}["Device"] == "cpu"
    assert any(t.startswith("resnet18 C4 on cpu: features [1, 256, 9, 12]") for t in texts(at.caption))


def test_a_fresh_session_picks_the_default_device():
    from apphelpers import APP
    from streamlit.testing.v1 import AppTest

    from roi_lab.ui.state import default_device

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["max_side"] = 192
    at.session_state["backbone"] = "resnet18"
    at.session_state["weights"] = "none"
    at.run()
    assert at.session_state[K.DEVICE] == default_device()


def test_the_table_is_in_the_images_own_pixels_and_states_its_convention():
    """Before: the table showed the resized working image's pixels while import/export used the original's."""
    at = make_app("boxes")  # the model sees the 600 x 450 scene at 192 x 144
    text = b'{"images": [{"id": 1, "width": 600, "height": 450}], "annotations": [{"image_id": 1, ' \
           b'"bbox": [100, 50, 200, 150], "category_id": 1}], "categories": [{"id": 1, "name": "thing"}]}'
    at.file_uploader(key="boxes_import").set_value(("coco.json", text, "application/json")).run()
    no_exception(at)
    assert coords(at.session_state[K.BOXES][0]) == [100.0, 50.0, 300.0, 200.0]  # the file's numbers, xyxy
    frame = at.data_editor[0].value
    assert frame.iloc[0, 1:5].tolist() == [100.0, 50.0, 300.0, 200.0]
    caption = next(t for t in texts(at.caption) if t.startswith("xyxy (x1, y1, x2, y2) in your image's pixels"))
    assert "(0, 0) the top-left corner of the top-left pixel, x2 and y2 exclusive" in caption
    assert "The model sees the image resized to 192 x 144 (x0.32); boxes are scaled with it." in caption
    exported = at.get("download_button")[0]
    assert exported.proto.label == "Download 1 boxes (coco)"


def test_the_table_does_not_move_when_notes_come_and_go():
    """Before: notes were drawn above the table, which jumped down and up as they came and went."""

    def editor_path(at) -> tuple:
        def walk(node, path):
            for i, child in enumerate(getattr(node, "children", {}).values()):
                if getattr(child, "key", None) == f"{K.EDITOR_PREFIX}{at.session_state[K.BOXES_REV]}":
                    return (*path, i)
                found = walk(child, (*path, i)) if hasattr(child, "children") else None
                if found:
                    return found
            return None

        return walk(at.main, ())

    at = make_app("boxes")
    at.session_state[K.BOXES_NOTES] = []
    at.run()
    quiet = editor_path(at)
    at.session_state[f"{K.EDITOR_PREFIX}{at.session_state[K.BOXES_REV]}"] = {
        "edited_rows": {0: {"x1": "abc"}, 1: {"x2": 0.0}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert len(texts(at.error)) >= 1 and len(texts(at.warning)) >= 1  # notes are shown...
    assert editor_path(at) == quiet is not None  # ...and the table is where it was


def test_a_browser_refresh_keeps_the_image_the_boxes_and_the_settings():
    """Before: a reload started a new session from the defaults. The URL carries ?session=<token>."""
    at = make_app("side")
    at.toggle(key=widget_key(K.ALIGNED)).set_value(False).run()
    at.slider(key=widget_key(K.OUTPUT_SIZE)).set_value(11).run()
    at.session_state[K.BOXES] = at.session_state[K.BOXES][:3]
    at.session_state[K.BOXES_ORIGIN] = "user"
    at.session_state[K.SAMPLE] = "synthetic"
    at.run()
    token = at.query_params["session"]
    token = token[0] if isinstance(token, list) else token
    again = make_app(query={"session": token})  # a new session from the same URL
    no_exception(again)
    ss = again.session_state
    assert (ss[K.ALIGNED], ss[K.OUTPUT_SIZE], ss[K.BACKBONE], ss[K.MAX_SIDE]) == (False, 11, "resnet18", 192)
    assert ss[K.IMAGE_HASH] == at.session_state[K.IMAGE_HASH]
    assert [coords(r) for r in ss[K.BOXES]] == [coords(r) for r in at.session_state[K.BOXES]]
    new_token = again.query_params["session"]
    assert (new_token[0] if isinstance(new_token, list) else new_token) != token  # tabs never share a snapshot
    # an unknown token starts fresh, as before
    fresh = make_app(query={"session": "no-such-session"})
    assert fresh.session_state[K.OUTPUT_SIZE] == 7 and fresh.session_state[K.IMAGE_SAMPLE] == "synthetic"


def test_the_session_store_is_bounded():
    from roi_lab.ui.persist import Store

    store = Store(max_sessions=3, max_bytes=100)
    for i in range(5):
        store.put(f"s{i}", {"image_bytes": b"x" * 10})
    assert len(store) == 3 and store.get("s0") is None and store.get("s4") is not None
    store.put("big", {"image_bytes": b"x" * 95})
    assert store.get("big") is not None and len(store) == 1  # the byte budget evicts the oldest first


def test_the_parity_table_says_which_way_the_ratio_goes_and_passes_or_fails_a_stated_tolerance():
    """Before: a "ratio" column without direction and no pass/fail."""
    at = make_app("parity")
    assert "The time ratio is roi_lab / torchvision: below 1, roi_lab is faster." in " ".join(texts(at.caption))
    assert "tolerance 1e-05 x max(1, max |torchvision's output|)" in " ".join(texts(at.caption))
    at.slider(key="parity_repeats").set_value(1).run()
    at.button(key="parity_run").click().run()
    no_exception(at)
    row = at.session_state["parity_results"]["rows"][0]
    assert {"parity", "tolerance", "time ratio roi_lab / torchvision"} <= set(row) and "ratio" not in row
    assert row["parity"] == "pass" and row["time ratio roi_lab / torchvision"] == pytest.approx(
        row["roi_lab ms"] / row["torchvision ms"], rel=0.02)


def test_a_new_image_never_silently_replaces_your_boxes():
    """Before: any new image replaced the table with two starter boxes, without a word."""
    at = make_app("boxes")
    at.session_state[f"{K.CHART_PREFIX}{at.session_state[K.BOXES_REV]}"] = {
        "selection": {"box": [{"x": [10, 100], "y": [10, 90]}], "points": [], "point_indices": [], "lasso": []}}
    at.run()
    mine = [coords(r) for r in at.session_state[K.BOXES]]
    assert len(mine) == 9 and at.session_state[K.BOXES_ORIGIN] == "user"
    at.switch_page(PAGES["image"]).run()
    at.session_state[K.SOURCE] = "upload"
    at.run()
    at.file_uploader(key="image_upload").set_value(("other.png", png(300, 400), "image/png")).run()
    no_exception(at)
    assert [coords(r) for r in at.session_state[K.BOXES]] == mine  # kept
    assert "New image other.png: your 9 boxes were kept (same pixel numbers, now on this image)." in \
        " ".join(texts(at.info))
    at.button(key="accept_box_offer").click().run()  # the user's choice
    assert len(at.session_state[K.BOXES]) == 2 and at.session_state[K.BOXES_ORIGIN] == "starter"


# ----------------------------------------------------------------------------- 8. no raw tracebacks
def test_a_10_x_20000_png_is_refused_with_a_message_and_the_session_keeps_its_state():
    """Before: resize_to_max_side rounded the 10 px side to 0 and cv2 raised; the page showed the traceback."""
    at = make_app()
    before = (at.session_state[K.IMAGE_HASH], [coords(r) for r in at.session_state[K.BOXES]])
    at.session_state[K.SOURCE] = "upload"
    at.run()
    at.file_uploader(key="image_upload").set_value(("strip.png", png(10, 20000), "image/png")).run()
    no_exception(at)
    (error,) = [t for t in texts(at.error) if t.startswith("That upload was refused.")]
    assert "strip.png: the app's image intake expects an image whose sides are all at least 32 px" in error
    assert "got 20000 x 10 (W x H), 192 x 0 once its longer side is resized to 192 px" in error
    assert (at.session_state[K.IMAGE_HASH], [coords(r) for r in at.session_state[K.BOXES]]) == before


@pytest.mark.parametrize(
    "name,data",
    [
        ("deep.json", b"[" * 100_000 + b"]" * 100_000),
        ("digits.json", b'{"boxes": [[' + b"9" * 5000 + b', 0, 10, 10]]}'),
        ("categories.json", b'{"images": [], "annotations": [], "categories": 5}'),
        ("images.json", b'{"images": 5, "annotations": [], "categories": []}'),
        ("images_dict.json", b'{"images": {"id": 1}, "annotations": [], "categories": []}'),
        ("category_id.json", b'{"images": [{"id": 1, "width": 600, "height": 450}], "annotations": [{"image_id": 1, '
                             b'"bbox": [1, 2, 3, 4], "category_id": [1]}], "categories": []}'),
        ("long_line.txt", b"0 " + b"5" * 1_000_000 + b"\n"),
        ("binary.bin", bytes(range(256)) * 40),
    ],
)
def test_broken_box_files_are_refused_with_a_message_and_the_table_is_kept(name, data):
    """Before: several of these reached the page as raw exceptions (RecursionError, TypeError, ...)."""
    at = make_app("boxes")
    before = [coords(r) for r in at.session_state[K.BOXES]]
    at.file_uploader(key="boxes_import").set_value((name, data, "application/octet-stream")).run()
    no_exception(at)
    assert [coords(r) for r in at.session_state[K.BOXES]] == before
    (note,) = [t for t in texts(at.error) + texts(at.warning) if t.startswith(name)]
    assert "was not imported; the table is unchanged." in note or "holds no boxes" in note
    assert len(note) < 3000  # a megabyte line is not echoed back whole


@pytest.mark.parametrize("name,data", [("empty.txt", b""), ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" '
                                       b'width="10" height="10"><rect width="5" height="5"/></svg>')])
def test_a_box_file_without_boxes_never_empties_the_table(name, data):
    """Issue 15: an empty file or an SVG replaced the whole table with zero boxes, silently."""
    at = make_app("boxes")
    before = [coords(r) for r in at.session_state[K.BOXES]]
    at.file_uploader(key="boxes_import").set_value((name, data, "application/octet-stream")).run()
    no_exception(at)
    assert [coords(r) for r in at.session_state[K.BOXES]] == before and len(before) == 8
    assert any(t.startswith(f"{name} ") and "table is unchanged" in t for t in texts(at.warning) + texts(at.error))


def test_whatever_the_core_raises_the_page_shows_a_message_and_the_session_goes_on(monkeypatch):
    """The guard: an unexpected exception anywhere in a page run (here the variants) is one st.error, not a
    traceback, and the session state is untouched; the next run works again."""
    from roi_lab import geometry

    at = make_app("side")
    before = (at.session_state[K.IMAGE_HASH], [coords(r) for r in at.session_state[K.BOXES]])
    real = geometry.make_variants

    def broken(*args, **kwargs):
        raise TypeError("bad argument type for built-in operation")

    monkeypatch.setattr(geometry, "make_variants", broken)
    at.slider(key=widget_key(K.OUTPUT_SIZE)).set_value(13).run()  # a new size: the variants are recomputed
    no_exception(at)
    (error,) = [t for t in texts(at.error) if t.startswith("Side by side: TypeError: bad argument type")]
    assert "(unexpected: the server log has the details)" in error and "Traceback" not in error
    assert "Your image, boxes and settings are kept" in error
    assert (at.session_state[K.IMAGE_HASH], [coords(r) for r in at.session_state[K.BOXES]]) == before
    monkeypatch.setattr(geometry, "make_variants", real)
    at.slider(key=widget_key(K.OUTPUT_SIZE)).set_value(12).run()
    no_exception(at)
    assert not at.error and figure(at, "overview")["layout"]["meta"]["output_size"] == 12


def test_a_failing_callback_becomes_a_message_on_the_next_run(monkeypatch):
    from roi_lab.ui import state

    at = make_app("boxes")

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(state, "edit_rows", broken)
    at.run()  # the page registers its callbacks when it runs
    at.button(key="clear_boxes").click().run()
    no_exception(at)
    assert any(t.startswith("That change could not be applied: KeyError: 'boom'") for t in texts(at.error))
    assert len(at.session_state[K.BOXES]) == 8


def test_json_of_the_overview_is_what_the_browser_gets():
    """Sanity for the helpers above: the overview spec is plain JSON with the state in layout.meta."""
    at = make_app("side")
    spec = [c for c in plotly_charts(at) if c.key == "overview"][0].proto.spec
    assert json.loads(spec)["layout"]["meta"]["boxes"] == 8
