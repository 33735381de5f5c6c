"""roi_lab.ui.captured: a CapturedCall turned into the app's image, boxes, map, stride and settings (no Streamlit).

Real captures of torchvision's Faster R-CNN (``capture_fixtures``) where the model's own numbers are the
reference, hand-made ``CapturedCall`` records for the cases a detector does not produce.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from apphelpers import PAGES, make_app, no_exception, texts
from capture_fixtures import captures

from roi_lab.capture import CapturedCall, CapturedImages, load_capture
from roi_lab.capture._session import Capture
from roi_lab.diagnose import Finding
from roi_lab.ui import captured
from roi_lab.ui.captured import View


def parsed(data: bytes, tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(data)
    return load_capture(path)


def record(**kw) -> CapturedCall:
    """A hand-made call record (findings empty unless given: they are not under test here)."""
    defaults = {"index": 0, "op": "torchvision.ops.roi_align", "where": "mymodel.Head.forward (head.py:12)",
                "_findings": []}
    return CapturedCall(**{**defaults, **kw})


def capture_of(*calls, images=()) -> Capture:
    cap = Capture()
    cap.calls, cap.images = list(calls), list(images)
    return cap


# ------------------------------------------------------------------------------------------------ the image
@pytest.mark.slow
def test_the_captured_batch_un_normalized_is_the_photo_resized_as_torchvisions_transform_does(tmp_path):
    c = captures()
    cap = parsed(c.full, tmp_path)
    rgb = captured.image_of(cap, cap.calls[0], 0)  # [128, 192, 3] uint8
    # GeneralizedRCNNTransform: bilinear resize by min(128 / 400, 192 / 600) = 0.32, then (x - mean) / std
    resized = F.interpolate(c.image[None], scale_factor=0.32, mode="bilinear", recompute_scale_factor=True,
                            align_corners=False)[0]
    want = (resized.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert rgb.shape == want.shape == (128, 192, 3) and rgb.dtype == np.uint8
    # normalizing and un-normalizing in float32 moves a value by far less than one level: rounding may differ by 1
    assert np.abs(rgb.astype(np.int16) - want.astype(np.int16)).max() <= 1


def test_without_mean_and_std_the_tensor_is_read_as_an_image_in_0_1_or_0_255():
    t = torch.full((1, 3, 4, 5), 0.5)
    call = record(images=0)
    plain = captured.image_of(capture_of(call, images=[CapturedImages(0, "w", (4, 5), [(4, 5)], [(4, 5)],
                                                                      tensor=t)]), call)
    wide = captured.image_of(capture_of(call, images=[CapturedImages(0, "w", (4, 5), [(4, 5)], [(4, 5)],
                                                                     tensor=t * 255)]), call)
    assert plain.shape == (4, 5, 3) and (plain == 128).all() and (wide == 128).all()
    assert captured.image_of(capture_of(record()), record()) is None  # no batch recorded


# ------------------------------------------------------------------------------------------------ the boxes
@pytest.mark.slow
def test_a_multi_scale_calls_boxes_per_level_and_all_of_them(tmp_path):
    cap = parsed(captures().full, tmp_path)
    call = cap.calls[0]
    everything = call.boxes[0].double()
    for level in range(4):
        b = captured.call_boxes(call, View(0, 0, level, True))
        torch.testing.assert_close(b.boxes, everything[call.levels == level], rtol=0, atol=0)
        assert (b.levels == level).all() and b.total == len(everything)
    b = captured.call_boxes(call, View(0, 0, 2, False))
    torch.testing.assert_close(b.boxes, everything, rtol=0, atol=0)
    torch.testing.assert_close(b.levels, call.levels, rtol=0, atol=0)


def test_rois_are_split_by_their_batch_index_and_lists_by_position():
    rois = torch.tensor([[0.0, 1, 2, 3, 4], [1, 5, 6, 7, 8], [0, 9, 10, 11, 12]])
    call = record(boxes=rois, box_format="rois [K,5]", feature_shape=(2, 8, 10, 10))
    assert captured.num_images(call) == 2
    assert captured.call_boxes(call, View(0, 0)).boxes.tolist() == [[1, 2, 3, 4], [9, 10, 11, 12]]
    one = captured.call_boxes(call, View(0, 1))
    assert one.boxes.tolist() == [[5, 6, 7, 8]] and one.index.tolist() == [1]
    listed = record(boxes=[torch.tensor([[1.0, 2, 3, 4]]), torch.tensor([[5.0, 6, 7, 8], [1, 1, 2, 2]])])
    b = captured.call_boxes(listed, View(0, 1))
    assert b.boxes.tolist() == [[5, 6, 7, 8], [1, 1, 2, 2]] and b.index.tolist() == [1, 2]


def test_boxes_without_a_batch_index_column_and_crop_and_resize_boxes():
    bare = captured.call_boxes(record(boxes=torch.tensor([[1.0, 2, 3, 4]])), View(0))
    assert bare.boxes.tolist() == [[1, 2, 3, 4]]
    assert bare.notes == ["The boxes were passed as Tensor[K, 4] without a batch-index column: the table takes "
                          "them as boxes of image 0."]
    crop = record(op="roi_lab.crop_and_resize", boxes=torch.tensor([[0.25, 0.5, 0.75, 1.0], [0, 0, 0.5, 0.5]]),
                  box_indices=torch.tensor([1, 0], dtype=torch.int32))
    b = captured.call_boxes(crop, View(0, 1), frame=(100, 200))
    assert b.boxes.tolist() == [[100.0, 25.0, 200.0, 75.0]]  # (y1, x1, y2, x2) normalized -> xyxy px of 100 x 200
    assert "crop_and_resize's boxes are (y1, x1, y2, x2) normalized" in b.notes[0]


def test_boxes_the_table_cannot_hold_are_a_clear_error():
    with pytest.raises(ValueError, match=r"^call #0 kept no boxes \(boxes \(1 KiB\) not kept: max_bytes"):
        captured.call_boxes(record(dropped="boxes (1 KiB) not kept: max_bytes = 0 B would be exceeded"), View(0))
    with pytest.raises(ValueError, match=r"^call #0's boxes are \[3, 7\], not boxes of 4 coordinates"):
        captured.call_boxes(record(boxes=torch.zeros(3, 7)), View(0))
    with pytest.raises(ValueError, match=r"^call #0's boxes are not a list of Tensor\[L, 4\] \(list\)"):
        captured.call_boxes(record(boxes=[torch.zeros(3, 2)], box_format="list"), View(0))


def test_the_table_takes_the_first_boxes_and_says_how_many_it_left_out():
    n = captured.MAX_TABLE_BOXES + 7
    boxes = torch.arange(n, dtype=torch.float32)[:, None] + torch.tensor([0.0, 0, 10, 10])
    rows, notes = captured.table_rows(record(boxes=[boxes]), View(0))
    assert len(rows) == captured.MAX_TABLE_BOXES and rows[-1]["x1"] == captured.MAX_TABLE_BOXES - 1
    assert rows[0]["label"] == "#0" and notes == [
        f"The table holds the first {captured.MAX_TABLE_BOXES} of these {n} boxes (in the order passed); the "
        "call's findings cover all of them."]


# ------------------------------------------------------------------------------------------------ map, stride, scale
def test_the_stride_is_the_maps_own_also_when_the_calls_spatial_scale_is_wrong():
    call = record(feature_shape=(1, 256, 8, 12), spatial_scale=1.0, image_size=(128, 192))
    assert captured.nominal_stride(call, View(0), (128, 192)) == 16  # 128 / 8, not 1 / spatial_scale
    assert captured.nominal_stride(record(spatial_scale=0.125), View(0), (1, 1)) == 8  # no map shape: the scale
    multi = record(op="torchvision.ops.MultiScaleRoIAlign", scales=[0.25, 0.125], level_names=["0", "1"],
                   level_shapes=[(1, 4, 32, 48), (1, 4, 16, 24)], feature_shape=(1, 4, 32, 48))
    assert [captured.nominal_stride(multi, View(0, 0, lv), (128, 192)) for lv in (0, 1)] == [4, 8]
    assert captured.map_shape(multi, View(0, 0, 1)) == (1, 4, 16, 24)
    assert captured.spatial_scale_of(multi, View(0, 0, 1)) == 0.125


@pytest.mark.parametrize("scale, panel", [
    (1 / 16, "Your settings"),
    (1.0, "Image-space boxes, spatial_scale=1"),
    (1 / 32, "Stride x2"),
    (1 / 8, "Stride x1/2"),
    (1 / 10, None),
])
def test_the_calls_own_spatial_scale_is_named_as_its_side_by_side_panel(scale, panel):
    call = record(feature_shape=(1, 8, 8, 12), spatial_scale=scale)
    found, sentence = captured.panel_of_call(call, View(0), 16)
    assert found == panel
    if panel is None:
        assert sentence == ("Your call ran with spatial_scale 1/10 on this stride-16 map (x1.6 the map's own 1/16); "
                            "no panel shows exactly that scale. \"Your settings\" uses 1/16.")
    elif panel == "Your settings":
        assert sentence == ("Your call's spatial_scale 1/16 is the map's own (stride 16): \"Your settings\" is the "
                            "call as it ran.")
    else:
        assert f'that is the panel "{panel}". "Your settings" shows spatial_scale 1/16' in sentence


def test_the_calls_parameters_become_the_apps_controls_and_what_they_cannot_hold_is_said():
    s = captured.settings_of(record(output_size=(14, 14), sampling_ratio=-1, aligned=False), (7, 2, True))
    assert (s.output_size, s.sampling_ratio, s.aligned, s.notes) == (14, 0, False, ())  # -1: adaptive, like 0
    s = captured.settings_of(record(output_size=(1, 3), sampling_ratio=8), (7, 2, True))
    assert (s.output_size, s.sampling_ratio, s.aligned) == (2, 4, True)  # aligned unknown: the current one stays
    assert s.notes == ("The call's output size is 1 x 3; the app's controls show 2 x 2.",
                       "The call's sampling_ratio is 8; the app's control goes up to 4.")


def test_where_the_call_samples_in_feature_coordinates():
    box = np.array([[16.0, 32.0, 48.0, 64.0]])
    # aligned: x * scale - 0.5; legacy: x * scale (and at least one cell wide)
    assert captured.regions_feature(box, 1 / 16, True).tolist() == [[0.5, 1.5, 2.5, 3.5]]
    assert captured.regions_feature(box, 1 / 16, False).tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert captured.regions_feature(np.zeros((0, 4)), 1.0, True).shape == (0, 4)


# ---------------------------------------------------------------------------------------------- frame, what is missing
def test_the_frame_comes_from_the_image_then_the_call_then_the_map_then_the_boxes():
    img = CapturedImages(0, "w", (64, 96), [(60, 90)], [(300, 450)], tensor=torch.zeros(1, 3, 64, 96))
    assert captured.frame_size(capture_of(record(images=0), images=[img]), record(images=0)) == (
        (64, 96), "the captured image batch")
    assert captured.frame_size(capture_of(), record(image_size=(80, 120), image_size_source="capture(image_size=...)")
                               ) == ((80, 120), "the call's image size (capture(image_size=...))")
    assert captured.frame_size(capture_of(), record(feature_shape=(1, 8, 5, 7), spatial_scale=1 / 16))[0] == (80, 112)
    assert captured.frame_size(capture_of(), record(boxes=torch.tensor([[0.0, 1, 2, 30.2, 40.5]])))[0] == (41, 31)
    assert captured.frame_size(capture_of(), record()) == (
        (256, 256), "a placeholder (nothing in the capture says the image size)")


def test_a_frame_too_large_for_a_blank_canvas_is_refused_with_a_message():
    call = record(image_size=(100_000, 100_000), image_size_source="capture(image_size=...)")
    with pytest.raises(captured.CaptureDataMissing) as info:
        captured.checked_frame(capture_of(call), call)
    assert str(info.value) == (
        "call #0's frame expects an image size of at most 25,000,000 pixels to draw the boxes on; got 100000 x 100000 "
        "(the call's image size (capture(image_size=...))).\nFix: capture with keep_features=True (the image batch is "
        "then kept) or with capture(image_size=(H, W))")
    assert captured.blank_map((1, 8, 100_000, 100_000)) is None and captured.blank_map((1, 8, 5, 7)).shape == (5, 7)


def test_what_is_missing_says_how_to_get_it():
    img = CapturedImages(0, "w", (64, 96), [(64, 96)], [(64, 96)])
    lines = captured.missing(capture_of(record(images=0), images=[img]), record(images=0, boxes=torch.zeros(0, 5)))
    assert len(lines) == 2
    assert lines[0].startswith("No feature maps: ") and "`roi_lab.capture(keep_features=True)`" in lines[0]
    assert lines[1].startswith("No image: ") and "`roi_lab.capture(keep_features=True)`" in lines[1]
    lines = captured.missing(capture_of(record()), record(features=torch.zeros(1, 1, 2, 2), boxes=None,
                                                          dropped="boxes (4 KiB) not kept"))
    assert lines[0].startswith("No image batch: this call did not follow a torchvision GeneralizedRCNNTransform")
    assert lines[1] == ("No boxes (boxes (4 KiB) not kept): only the recorded findings remain. Capture with a larger "
                        "`max_bytes`.")
    assert captured.missing(capture_of(record(images=0), images=[CapturedImages(
        0, "w", (2, 2), [(2, 2)], [(2, 2)], tensor=torch.zeros(1, 3, 2, 2))]), record(
        images=0, features=torch.zeros(1, 1, 2, 2), boxes=torch.zeros(0, 5))) == []


# ------------------------------------------------------------------------------------------------ views and intake
def test_the_default_view_is_the_first_call_with_an_error_and_views_are_clamped():
    ok = record(boxes=torch.zeros(1, 5))
    bad = record(index=1, boxes=torch.zeros(1, 5))
    bad._findings = [Finding("IMAGE_SPACE_BOXES", "error", "m", "e", "f")]
    cap = capture_of(ok, bad)
    assert captured.default_view(cap) == View(1, 0, None, True)
    assert captured.valid_view(cap, View(5, 3, 9, False)) == View(1, 0, None, True)  # no call 5: the default
    assert captured.valid_view(cap, View(0, 3, 9, False)) == View(0, 0, None, False)  # one image, no levels


def test_the_apps_capture_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(captured.LIMIT_ENV, raising=False)
    assert captured.capture_limit() == 200 << 20
    for value, limit in (("1", 1 << 20), ("0.5", 1 << 19), ("lots", 200 << 20), ("inf", 200 << 20)):
        monkeypatch.setenv(captured.LIMIT_ENV, value)
        assert captured.capture_limit() == limit, value
    err = captured.too_large("big.pt", 3 << 20, 1 << 20)
    assert str(err).startswith("the app's capture intake ('big.pt') expects a capture file of at most 1 MiB (the "
                               "app's limit, ROI_LAB_CAPTURE_MAX_MB); got a file of 3 MiB.\nFix: capture less: ")


def test_a_capture_file_error_names_the_uploaded_file_not_the_temporary_one(tmp_path):
    from roi_lab.capture import CaptureFileError

    bad = tmp_path / "roi_lab_capture_x" / "capture.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"junk")
    with pytest.raises(CaptureFileError) as info:
        load_capture(bad)
    out = captured.renamed(info.value, "mine.pt")
    assert str(out).startswith("load_capture('mine.pt') expects a capture file written by Capture.save")
    assert str(tmp_path) not in str(out) and out.got == info.value.got


@pytest.mark.slow
def test_a_forged_capture_with_odd_boxes_or_a_huge_frame_is_a_message_not_a_traceback(tmp_path):
    from test_app_capture import open_capture

    cap = parsed(captures().light, tmp_path)
    cap.calls[0].boxes = [torch.zeros(3, 7)]  # not Tensor[L, 4]
    odd = tmp_path / "odd.pt"
    cap.save(odd)
    at = open_capture(make_app("image"), odd.read_bytes(), "odd.pt")
    assert any(t.startswith("The box table cannot hold this call's boxes: call #0's boxes are not a list of "
                            "Tensor[L, 4]") for t in texts(at.info))
    cap = parsed(captures().light, tmp_path)
    cap.calls[0].images, cap.images = None, []
    cap.calls[0].image_size = (100_000, 100_000)
    huge = tmp_path / "huge.pt"
    cap.save(huge)
    at = open_capture(make_app("image"), huge.read_bytes(), "huge.pt")
    assert any("expects an image size of at most 25,000,000 pixels" in t for t in texts(at.error))
    for page in ("boxes", "side", "diagnose", "parity"):
        at.switch_page(PAGES[page]).run()
        no_exception(at)
