"""Every page through streamlit.testing.v1.AppTest: the real entrypoint, st.navigation and session state.

Small images (max side 192 px for the model) and resnet18 with random init keep a page run well under a
second once the model is built; Streamlit's caches are shared by the tests of one process. The synthetic
scene is 600 x 450 px: the box table holds its own pixels (the model sees them x 0.32).
The issue-10 findings each have their own test in test_app_findings.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from apphelpers import (
    PAGES,
    SCALE,
    array,
    figure,
    make_app,
    no_exception,
    overview_text,
    plotly_charts,
    png,
    png_declaring,
    selection,
    texts,
)

from roi_lab.geometry import VARIANT_TITLES, VariantKind
from roi_lab.samples import load_sample
from roi_lab.ui import boxtable
from roi_lab.ui.state import K, widget_key

VARIANT_COUNT = len(VariantKind)


def chart_key(at) -> str:
    return f"{K.CHART_PREFIX}{at.session_state[K.BOXES_REV]}"


def side_chart_key(at) -> str:
    return f"{K.SIDE_CHART_PREFIX}{at.session_state[K.BOXES_REV]}"


def editor_key(at) -> str:
    return f"{K.EDITOR_PREFIX}{at.session_state[K.BOXES_REV]}"


def coords(row) -> list[float]:
    return [row[c] for c in boxtable.COORDS]


# ----------------------------------------------------------------------------- page 1
def test_image_page_shows_the_sample_its_feature_map_and_the_weights():
    at = make_app()
    no_exception(at)
    for name in (K.SOURCE, K.SAMPLE, K.BACKBONE, K.STAGE, K.DEVICE, K.WEIGHTS, K.SUMMARY):
        assert at.session_state[widget_key(name)] == at.session_state[name]
    assert at.selectbox(key=widget_key(K.BACKBONE)).value == "resnet18"
    assert at.selectbox(key=widget_key(K.STAGE)).value == "C4"
    assert at.session_state[K.IMAGE_SAMPLE] == "synthetic"
    metrics = {m.label: m.value for m in at.metric}
    # the synthetic scene is 600 x 450; at max side 192 it is 192 x 144; ResNet C4 rounds up: 12 x 9
    assert metrics["Feature map"] == "[1, 256, 9, 12]"
    assert metrics["Nominal stride"] == "16"
    assert metrics["Effective stride (y, x)"] == "16.000, 16.000"
    assert metrics["Device"] == "cpu"
    assert any("random init" in t for t in texts(at.info))  # random weights are said plainly
    assert len(plotly_charts(at)) == 1  # the feature summary


def test_image_page_warns_when_the_image_is_not_divisible_by_the_stride():
    at = make_app(max_side=200)  # 200 x 150 px: C4 is 13 x 10 cells = 208 x 160 px
    no_exception(at)
    warning = " ".join(texts(at.warning))
    assert "is not divisible by the stride 16" in warning
    assert "lands 8 px (x) / 10 px (y) past the image edge" in warning
    assert {m.label: m.value for m in at.metric}["Drift (y, x)"] == "10, 8 px"


def test_changing_the_stage_persists_across_pages():
    at = make_app()
    at.selectbox(key=widget_key(K.STAGE)).set_value("C3").run()
    no_exception(at)
    assert at.session_state[K.STAGE] == "C3"
    assert {m.label: m.value for m in at.metric}["Feature map"] == "[1, 128, 18, 24]"
    at.switch_page(PAGES["diagnose"]).run()
    at.switch_page(PAGES["image"]).run()
    assert at.session_state[K.STAGE] == "C3" and at.selectbox(key=widget_key(K.STAGE)).value == "C3"


def test_a_missing_checkpoint_path_is_reported_on_the_page():
    at = make_app()
    at.selectbox(key=widget_key(K.WEIGHTS)).set_value("path").run()
    at.text_input(key=widget_key(K.WEIGHTS_PATH)).set_value("/nonexistent/resnet18.pth").run()
    no_exception(at)
    assert any("expects 'auto', 'imagenet', 'none' or the path of an existing checkpoint; got "
               "'/nonexistent/resnet18.pth' (no such file)." in t for t in texts(at.error))
    at.selectbox(key=widget_key(K.WEIGHTS)).set_value("none").run()  # and the page recovers
    assert not at.error and {m.label: m.value for m in at.metric}["Feature map"] == "[1, 256, 9, 12]"


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("notes.txt", b"hello world, not an image", "decode_image expects a PNG, JPEG, WebP, BMP, TIFF or GIF image"),
        ("huge.png", png_declaring(20000, 20000), "decode_image expects an image of at most 50,000,000 pixels"),
        ("tiny.png", png(8, 8), "the app's image intake expects an image whose sides are all at least 32 px, also "
                                "after resizing for the model (the backbones' minimum); got 8 x 8 (W x H)."),
    ],
)
def test_bad_uploads_are_refused_and_the_session_keeps_its_image(name, data, message):
    at = make_app()
    before = (at.session_state[K.IMAGE_HASH], list(at.session_state[K.BOXES]))
    at.session_state[K.SOURCE] = "upload"
    at.run()
    at.file_uploader(key="image_upload").set_value((name, data, "application/octet-stream")).run()
    no_exception(at)
    errors = " ".join(texts(at.error))
    assert "That upload was refused. The current image (" in errors
    assert f"{name}: {message}" in errors
    assert (at.session_state[K.IMAGE_HASH], at.session_state[K.BOXES]) == before
    assert {m.label: m.value for m in at.metric}["Feature map"] == "[1, 256, 9, 12]"  # still computed


def test_a_good_upload_becomes_the_image_and_the_untouched_sample_boxes_give_way_with_a_note():
    at = make_app()
    at.session_state[K.SOURCE] = "upload"
    at.run()
    at.file_uploader(key="image_upload").set_value(("mine.png", png(64, 96), "image/png")).run()
    no_exception(at)
    assert at.session_state[K.IMAGE_NAME] == "mine.png" and at.session_state[K.IMAGE_SAMPLE] is None
    assert {m.label: m.value for m in at.metric}["Feature map"] == "[1, 256, 4, 6]"
    assert len(at.session_state[K.BOXES]) == 2 and at.session_state[K.BOXES_ORIGIN] == "starter"
    assert "New image mine.png: the box table now holds two starter boxes." in texts(at.info)


# ----------------------------------------------------------------------------- page 2
def test_boxes_page_has_the_chart_the_table_and_the_format_selector():
    at = make_app("boxes")
    no_exception(at)
    (chart,) = plotly_charts(at)
    assert chart.key == chart_key(at)
    (editor,) = at.data_editor
    assert editor.key == editor_key(at)
    assert list(editor.value.columns) == ["label", "x1", "y1", "x2", "y2", "status"]
    assert len(editor.value) == 8  # the synthetic scene's known boxes
    assert at.selectbox(key=widget_key(K.BOX_FORMAT)).value == "xyxy"
    # the chart's axes are the original image's pixels: 600 x 450
    fig = figure(at, chart.key)
    assert fig["layout"]["xaxis"]["range"] == [0, 600] and fig["layout"]["yaxis"]["range"] == [450, 0]


def test_a_box_selection_on_the_chart_appends_a_box_in_the_images_pixels():
    at = make_app("boxes")
    n = len(at.session_state[K.BOXES])
    at.session_state[chart_key(at)] = selection([320, 20], [160, 10])
    at.run()
    no_exception(at)
    rows = at.session_state[K.BOXES]
    assert len(rows) == n + 1 and at.session_state[K.BOXES_ORIGIN] == "user"
    assert coords(rows[-1]) == [20.0, 10.0, 320.0, 160.0]
    assert "Added 1 box from the selection." in texts(at.info)
    assert len(at.data_editor[0].value) == n + 1
    at.run()  # the selection is not applied twice: the next chart is a fresh widget
    assert len(at.session_state[K.BOXES]) == n + 1
    assert plotly_charts(at)[0].key == chart_key(at)


def test_table_edits_apply_and_bad_values_are_reported_without_losing_state():
    at = make_app("boxes")
    rows = at.session_state[K.BOXES]
    first = coords(rows[0])
    at.session_state[editor_key(at)] = {
        "edited_rows": {0: {"x1": "abc"}, 1: {"x2": rows[1]["x1"]}, 2: {"x2": 700.0}},
        "added_rows": [{"label": "new", "x1": 5.0, "y1": float("nan")}],
        "deleted_rows": [],
    }
    at.run()
    no_exception(at)
    errors, warnings = texts(at.error), texts(at.warning)
    assert "Row 1, column x1: 'abc' is not a number; that cell keeps its old value." in errors
    assert "Row 2 (circle) is zero or negative size: left out until fixed." in warnings
    assert "Row 9 (new) is incomplete: left out until fixed." in warnings
    status = list(at.data_editor[0].value["status"])
    assert status[:3] == ["ok", "zero or negative size", "partly outside the image"]
    assert status[-1] == "incomplete"
    new = at.session_state[K.BOXES]
    assert coords(new[0]) == first
    assert len(new) == 9


def test_the_table_shows_and_edits_the_users_format():
    at = make_app("boxes")
    at.selectbox(key=widget_key(K.BOX_FORMAT)).set_value("cxcywh").run()
    at.selectbox(key=widget_key(K.BOX_SPACE)).set_value("normalized").run()
    no_exception(at)
    frame = at.data_editor[0].value
    assert list(frame.columns) == ["label", "cx", "cy", "w", "h", "status"]
    h, w = 450, 600  # the original image: the numbers of the user's files
    x1, y1, x2, y2 = coords(at.session_state[K.BOXES][0])
    np.testing.assert_allclose(frame.iloc[0, 1:5].to_numpy(float),
                               [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h], rtol=1e-5)
    at.session_state[editor_key(at)] = {"edited_rows": {0: {"w": 0.5}}, "added_rows": [], "deleted_rows": []}
    at.run()
    row = at.session_state[K.BOXES][0]
    assert row["x2"] - row["x1"] == pytest.approx(0.5 * w, abs=1e-3)
    assert (row["x1"] + row["x2"]) / 2 == pytest.approx((x1 + x2) / 2, abs=1e-3)  # the centre stays


def test_empty_table_is_explained_on_boxes_and_side_by_side():
    at = make_app("boxes")
    at.button(key="clear_boxes").click().run()
    no_exception(at)
    assert at.session_state[K.BOXES] == []
    assert any("The table is empty" in t for t in texts(at.info))
    at.switch_page(PAGES["side"]).run()
    no_exception(at)
    assert any(t.startswith("No usable boxes") for t in texts(at.warning))


def test_preset_loads_the_synthetic_scene_with_its_true_boxes():
    at = make_app()
    at.session_state[K.SAMPLE] = "coffee"
    at.run()
    at.button(key="use_sample").click().run()
    assert at.session_state[K.IMAGE_SAMPLE] == "coffee"
    at.switch_page(PAGES["boxes"]).run()
    at.button(key="preset_synthetic").click().run()
    no_exception(at)
    _, sample = load_sample("synthetic")
    rows = at.session_state[K.BOXES]
    assert at.session_state[K.IMAGE_SAMPLE] == "synthetic"
    assert [r["label"] for r in rows] == sample.labels
    np.testing.assert_allclose([coords(r) for r in rows], sample.boxes_image.numpy(), rtol=1e-6)


def test_import_reads_yolo_in_the_images_pixels_and_reports_a_malformed_file():
    at = make_app("boxes")
    at.file_uploader(key="boxes_import").set_value(("boxes.txt", b"3 0.5 0.5 0.25 0.5\n", "text/plain")).run()
    no_exception(at)
    rows = at.session_state[K.BOXES]
    assert len(rows) == 1 and rows[0]["label"] == "3"
    # YOLO is normalized: the middle quarter x half of the 600 x 450 image
    np.testing.assert_allclose(coords(rows[0]), [225, 112.5, 375, 337.5], rtol=1e-6)
    at.file_uploader(key="boxes_import").set_value(("bad.json", b'{"boxes": [[1, 2, 3]]}', "application/json"))
    at.run()
    no_exception(at)
    assert any(t.startswith("bad.json was not imported; the table is unchanged.") for t in texts(at.error))
    assert len(at.session_state[K.BOXES]) == 1


def test_export_offers_the_boxes():
    at = make_app("boxes")
    assert at.get("download_button")[0].proto.label == "Download 8 boxes (coco)"


# ----------------------------------------------------------------------------- page 3
def test_side_by_side_draws_every_variant_in_one_overview_with_one_colour_scale():
    at = make_app("side")
    no_exception(at)
    assert [c.key for c in plotly_charts(at)] == [side_chart_key(at), "overview"]
    fig = figure(at, "overview")
    (heatmap,) = [t for t in fig["data"] if t["type"] == "heatmap"]  # every crop in one heatmap: one scale
    assert heatmap["zmin"] < heatmap["zmax"] and "colorbar" in heatmap
    text = overview_text(at)
    for kind, title in VARIANT_TITLES.items():
        assert f"<b>{title}</b>" in text, kind
    assert text.count("% outside") == VARIANT_COUNT and text.count("IoU ") == VARIANT_COUNT
    assert "<b>IoU 1.00 · 0% outside</b><br>the reference" in text  # your settings on the synthetic scene


def _features_and_first_box(at) -> tuple[torch.Tensor, torch.Tensor]:
    """The Side-by-side page's feature map (the app's own cached call) and its first box in model-input px."""
    from roi_lab.ui import loaders

    ss = at.session_state
    working = loaders.working_image(ss[K.IMAGE_HASH], ss[K.MAX_SIDE], ss[K.IMAGE_BYTES])
    result = loaders.features(ss[K.IMAGE_HASH], ss[K.MAX_SIDE], "resnet18", "none", "cpu", "C4", working.image)
    boxes, _, _ = boxtable.usable_boxes(ss[K.BOXES], working.original_size)
    return result.features, torch.tensor(boxes[:1] * SCALE, dtype=torch.float32)


def test_side_by_side_crops_match_torchvision_for_your_settings():
    """The overview's reference crop is checked against torchvision.ops.roi_align on the same features."""
    at = make_app("side")
    features, boxes_model = _features_and_first_box(at)
    expected = torchvision.ops.roi_align(features, [boxes_model], 7, 1 / 16, 2, True).mean(1)[0]
    (heatmap,) = [t for t in figure(at, "overview")["data"] if t["type"] == "heatmap"]
    z = array(heatmap["z"])
    np.testing.assert_allclose(z[:7, :7], expected.numpy(), atol=1e-4)  # tile 1 (your settings), box 1


@pytest.mark.parametrize("view", ["max", "index", "pca"])
def test_changing_the_channel_view_reruns_without_errors(view):
    at = make_app("side")
    at.session_state[K.CHANNEL_VIEW] = view
    at.session_state[K.CHANNEL_INDEX] = 3
    at.run()
    no_exception(at)
    fig = figure(at, "overview")
    assert fig["layout"]["meta"]["view"] == view
    assert f"crop ({view})" == next(t for t in fig["data"] if t["type"] == "heatmap")["colorbar"]["title"]["text"]


def test_box_shown_and_settings_change_the_overview():
    at = make_app("side")
    at.pills(key=widget_key(K.FOCUS_BOX, "pills")).set_value(7).run()
    no_exception(at)
    assert figure(at, "overview")["layout"]["meta"]["focus"] == 7
    at.slider(key=widget_key(K.OUTPUT_SIZE)).set_value(4).run()
    at.toggle(key=widget_key(K.ALIGNED)).set_value(False).run()
    no_exception(at)
    meta = figure(at, "overview")["layout"]["meta"]
    assert (meta["output_size"], meta["aligned"], meta["focus"]) == (4, False, 7)


def test_the_box_shown_is_one_click_on_its_number_and_a_list_beyond_twelve_boxes():
    at = make_app("side")
    pills = at.pills(key=widget_key(K.FOCUS_BOX, "pills"))
    assert [o.content for o in pills.proto.options] == [str(i) for i in range(1, 9)]  # as numbered on the image
    labels = [a["text"] for a in figure(at, side_chart_key(at))["layout"]["annotations"]]
    assert labels[:2] == ["1 square", "2 circle"]
    rows = [dict(r) for r in at.session_state[K.BOXES]]
    rows += [boxtable.new_row(f"extra {i}", [10.0 + i, 10.0, 60.0 + i, 60.0]) for i in range(6)]  # 14 boxes
    at.session_state[K.BOXES] = rows
    at.run()
    no_exception(at)
    listed = at.selectbox(key=widget_key(K.FOCUS_BOX, "list"))
    assert len(listed.options) == 14 and listed.options[13] == "14: extra 5"
    listed.set_value(13).run()
    assert figure(at, "overview")["layout"]["meta"]["focus"] == 13


def test_a_box_dragged_on_side_by_side_becomes_the_box_shown():
    at = make_app("side")
    n = len(at.session_state[K.BOXES])
    at.session_state[side_chart_key(at)] = selection([100, 300], [50, 200])
    at.run()
    no_exception(at)
    assert len(at.session_state[K.BOXES]) == n + 1
    assert coords(at.session_state[K.BOXES][-1]) == [100.0, 50.0, 300.0, 200.0]  # the image's pixels
    assert figure(at, "overview")["layout"]["meta"] == {**figure(at, "overview")["layout"]["meta"], "focus": n,
                                                        "boxes": n + 1}


def test_details_on_demand_show_one_variant_with_its_fix():
    at = make_app("side")
    assert "details" not in [c.key for c in plotly_charts(at)]
    at.toggle(key=widget_key(K.SHOW_DETAILS)).set_value(True).run()
    at.selectbox(key=widget_key(K.DETAIL_KIND)).set_value("image_space_boxes").run()
    no_exception(at)
    fig = figure(at, "details")
    assert fig["layout"]["meta"]["kind"] == "image_space_boxes"
    assert [a["text"] for a in fig["layout"]["annotations"]] == [
        "on the feature map", "samples on the image", "what it reads (RGB)", "crop", "minus your settings' crop"]
    codes = [c.value for c in at.code]
    assert any("spatial_scale=1.0" in c for c in codes) and any("spatial_scale=1/16" in c for c in codes)


def test_box_angle_turns_the_rotated_panels_and_nothing_else():
    """The angle control (issue 14): the rotated family turns every box by it; the axis-aligned variants and the
    layout stay as they are. At 0 the angle mix-ups coincide with the rotated reference, and say so."""
    at = make_app("side")
    assert at.slider(key=widget_key(K.BOX_ANGLE)).value == 30  # the default: the mix-ups are visible
    before = overview_text(at).split(" | ")
    at.slider(key=widget_key(K.BOX_ANGLE)).set_value(0).run()
    no_exception(at)
    assert at.session_state[K.BOX_ANGLE] == 0
    fig = figure(at, "overview")
    assert fig["layout"]["meta"]["angle"] == 0.0 and fig["layout"]["height"] == 5 * 200
    tiles = overview_text(at).split(" | ")
    assert len(tiles) == len(before)  # the same tiles, titles and layout
    n_fixed = [k for k in VariantKind].index(VariantKind.ROTATED)
    assert tiles[: 2 * n_fixed] == before[: 2 * n_fixed]  # the axis-aligned variants do not change
    for kind in (VariantKind.RADIANS_AS_DEGREES, VariantKind.DEGREES_AS_RADIANS, VariantKind.CLOCKWISE_FLIPPED):
        verdict = tiles[tiles.index(f"<b>{VARIANT_TITLES[kind]}</b>") + 1]
        assert "same as the rotated reference for this box" in verdict, kind
        was = before[before.index(f"<b>{VARIANT_TITLES[kind]}</b>") + 1]
        assert "corners off by up to" in was and "same as" not in was, kind


def test_rotated_details_draw_the_turned_box_and_compare_with_the_rotated_reference():
    at = make_app("side")
    at.toggle(key=widget_key(K.SHOW_DETAILS)).set_value(True).run()
    at.selectbox(key=widget_key(K.DETAIL_KIND)).set_value("clockwise_flipped").run()
    no_exception(at)
    fig = figure(at, "details")
    assert fig["layout"]["meta"]["kind"] == "clockwise_flipped"
    assert [a["text"] for a in fig["layout"]["annotations"]][-1] == "minus the rotated reference's crop"
    paths = [sh for sh in fig["layout"]["shapes"] if sh["type"] == "path"]
    assert len(paths) == 4  # the turned box meant and the turned region, on the map and on the image
    codes = [c.value for c in at.code]
    assert any("clockwise=True" in c for c in codes) and any("clockwise" not in c.split("#")[0] for c in codes)
    assert any("turn 30 degrees clockwise instead of counter-clockwise" in t.value for t in at.text)
    at.selectbox(key=widget_key(K.DETAIL_KIND)).set_value("roi_pool").run()
    no_exception(at)
    fig = figure(at, "details")
    assert not [sh for sh in fig["layout"]["shapes"] if sh["type"] == "path"]
    assert [a["text"] for a in fig["layout"]["annotations"]][-1] == "minus your settings' crop"
    assert any("roi_pool(features, [boxes]" in c.value for c in at.code)


def test_roi_pool_tile_shows_the_channel_view_of_its_max_pooled_crop():
    """RoIPool is a max per bin: the mean view of its tile is the mean over channels of torchvision's roi_pool,
    not roi_pool of the mean map (the shortcut the linear variants take)."""
    at = make_app("side")
    features, boxes_model = _features_and_first_box(at)
    pooled = torchvision.ops.roi_pool(features, [boxes_model], 7, 1 / 16)  # [1, C, 7, 7]
    i = list(VariantKind).index(VariantKind.ROI_POOL)  # tile 12: row 2, column 3 of the first group
    r, c = divmod(i, 4)
    (heatmap,) = [t for t in figure(at, "overview")["data"] if t["type"] == "heatmap"]
    tile = array(heatmap["z"])[r * 8: r * 8 + 7, c * 8: c * 8 + 7]
    np.testing.assert_allclose(tile, pooled.mean(1)[0].numpy(), atol=1e-4)
    shortcut = torchvision.ops.roi_pool(features.mean(1, keepdim=True), [boxes_model], 7, 1 / 16)[0, 0]
    assert np.abs(shortcut.numpy() - tile).max() > 1e-2  # the shortcut would show something else


def test_side_by_side_keeps_going_with_a_box_outside_the_image():
    at = make_app("boxes")
    rows = [dict(r) for r in at.session_state[K.BOXES]]
    rows.append(boxtable.new_row("far", [530.0, 400.0, 1250.0, 940.0]))
    at.session_state[K.BOXES] = rows
    at.session_state[K.FOCUS_BOX] = len(rows) - 1
    at.switch_page(PAGES["side"]).run()
    no_exception(at)
    text = overview_text(at)
    assert "<b>IoU 1.00 · 0% outside</b>" not in text.split(" | ")[1]  # even your settings sample off the map


# ----------------------------------------------------------------------------- page 4
def test_diagnose_finds_image_space_boxes_in_the_current_boxes():
    at = make_app("diagnose")
    no_exception(at)
    assert at.text_area(key="diag_boxes").value.startswith("tensor([[0., ")
    assert any("IMAGE_SPACE_BOXES" in t for t in texts(at.error))
    assert any("spatial_scale" in c.value for c in at.code)  # the fix snippet


def test_diagnose_reports_unparseable_input_and_bad_sizes():
    at = make_app("diagnose")
    at.text_area(key="diag_boxes").set_value("import os; os.system('x')").run()
    at.text_input(key="diag_image_size").set_value("big").run()
    no_exception(at)
    errors = texts(at.error)
    assert any(t.startswith("pasted boxes expect a bracketed list") for t in errors)
    assert "Image size expects 2 positive integers like '450, 600'; got 'big'." in errors


def test_reproduce_refuses_torchvision_on_nan_and_shows_roi_labs_error():
    at = make_app("diagnose")
    at.text_area(key="diag_boxes").set_value("tensor([[0., nan, 1., 20., 30.]])").run()
    at.button(key="diag_reproduce").click().run()
    no_exception(at)
    assert any(t.startswith("not run: the boxes hold NaN or inf") for t in texts(at.warning))
    assert any(c.value.startswith("InputValueError: roi_align") for c in at.code)
    assert any(f.startswith("**NON_FINITE**") for f in texts(at.error))


def test_reproduce_runs_both_ops_on_valid_boxes_and_says_what_they_read():
    at = make_app("diagnose")
    at.text_input(key="diag_scale").set_value("1/16").run()
    at.button(key="diag_reproduce").click().run()
    no_exception(at)
    ok = [t for t in texts(at.success) if t.startswith("returned Tensor[")]
    assert len(ok) == 2 and ok[0] == ok[1]
    assert "0% of its samples fall off the map; 0% of the output bins are all zeros" in ok[0]


def test_explain_tab_explains_a_torchvision_error():
    at = make_app("diagnose")
    with pytest.raises(Exception) as info:
        torchvision.ops.roi_align(torch.zeros(1, 4, 8, 8), torch.tensor([[10.0, 10, 50, 60]]), 7)
    at.text_area(key="diag_error").set_value(f"Traceback (most recent call last):\n{type(info.value).__name__}: "
                                             f"{info.value}").run()
    no_exception(at)
    assert any(t.startswith("**") for t in texts(at.error))  # code, framework, cause
    at.text_area(key="diag_error").set_value("KeyError: 'banana'").run()
    assert "No known ROIAlign / CropAndResize error pattern matched this text." in texts(at.info)


# ----------------------------------------------------------------------------- page 5
def test_parity_page_matches_torchvision_on_the_current_boxes_and_the_cases():
    at = make_app("parity")
    no_exception(at)
    at.slider(key="parity_repeats").set_value(1).run()
    at.button(key="parity_run").click().run()
    no_exception(at)
    rows = at.session_state["parity_results"]["rows"]
    assert rows[0]["case"].startswith("current: resnet18 C4") and rows[0]["boxes"] == 8
    assert len(rows) == 4
    assert all(r["max abs error"] <= r["tolerance"] and r["parity"] == "pass" for r in rows)
    assert all(r["roi_lab ms"] > 0 and r["torchvision ms"] > 0 for r in rows)
    assert len(at.dataframe) == 1


def test_batched_crops_fall_back_to_one_call_per_variant_when_an_op_refuses_an_input():
    """The loaders crop all variants in a few batched op calls; when one variant's input is refused the
    batch is redone variant by variant, so only that variant shows the op's message."""
    from roi_lab.geometry import crop_features_for_variants, make_variants
    from roi_lab.ui import overview

    vs = make_variants(torch.tensor([[20.0, 30.0, 120.0, 150.0]]), image_size=(200, 240), feature_size=(13, 15),
                       stride=16)
    features = torch.rand(1, 4, 13, 15)
    crops, errors = overview._apply_batched(vs, lambda x: crop_features_for_variants(x, features, 3),
                                            lambda v: v.apply(features, 3))
    assert errors == {} and [tuple(c.shape) for c in crops] == [(1, 4, 3, 3)] * len(vs)

    def one(v):
        if v.kind is VariantKind.TF_CROP_AND_RESIZE:
            raise RuntimeError("refused")
        return v.apply(features, 3)

    def batched(_):
        raise RuntimeError("refused")

    crops, errors = overview._apply_batched(vs, batched, one)
    assert errors == {VariantKind.TF_CROP_AND_RESIZE.value: "refused"}
    assert [c is None for c in crops] == [v.kind is VariantKind.TF_CROP_AND_RESIZE for v in vs]
    torch.testing.assert_close(crops[0], vs[0].apply(features, 3), rtol=0, atol=0)  # the same call: exact
