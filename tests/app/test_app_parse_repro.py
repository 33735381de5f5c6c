"""Pasted boxes are parsed without eval; the reproduce panel runs the real ops or says why not."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from roi_lab.ui import repro, views
from roi_lab.ui.parse import BoxTextError, parse_boxes_text


@pytest.mark.parametrize(
    "text,values,dtype,device",
    [
        ("tensor([[1., 2., 3., 4.]])", [[1.0, 2.0, 3.0, 4.0]], None, None),
        ("tensor([[0.0000e+00, 1.2500e+01, 3., nan]], device='cuda:0', dtype=torch.float16)",
         [[0.0, 12.5, 3.0, math.nan]], "float16", "cuda:0"),
        ("array([[1, 2, 3, 4]], dtype=float32)", [[1.0, 2.0, 3.0, 4.0]], "float32", None),
        ("[[1, 2, 3, 4], [5, 6, 7, 8],]", [[1, 2, 3, 4], [5, 6, 7, 8]], None, None),
        ('{"boxes": [[0, 0, 5, 5]]}', [[0, 0, 5, 5]], None, None),
        ("rois = tensor([[0., -inf, 1., 2., 3.]])", [[0.0, -math.inf, 1.0, 2.0, 3.0]], None, None),
        ("((1, 2, 3, 4),)", [[1, 2, 3, 4]], None, None),
    ],
)
def test_parse_reads_printed_tensors_arrays_and_json(text, values, dtype, device):
    parsed = parse_boxes_text(text)
    got = parsed["values"]
    assert len(got) == len(values)
    for row, want in zip(got, values, strict=True):
        assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(row, want, strict=True))
    assert parsed["dtype"] == dtype and parsed["device"] == device


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "pasted boxes expect some text; got nothing."),
        ("__import__('os').system('true')", "pasted boxes expect a bracketed list"),
        ("[[1, 2, 3", "pasted boxes expect balanced brackets; got 2 unclosed '['."),
        ('[[1, "a", 3, 4]]', "pasted boxes expect numbers, commas and brackets"),
        ("[[1, a, 3, 4]]", "pasted boxes expect a list of numbers"),
        ("[[1, True, 3, 4]]", "pasted boxes expect numbers only; got True."),
        ('{"rois": []}', 'pasted JSON expects a "boxes" list'),
    ],
)
def test_parse_refuses_anything_else_with_a_fix(text, message):
    with pytest.raises(BoxTextError) as info:
        parse_boxes_text(text)
    assert str(info.value).startswith(message)
    assert "\nFix: " in str(info.value)


def test_sizes_and_scales_parse_or_explain():
    assert views.parse_shape("torch.Size([1, 256, 50, 64])", 4) == (1, 256, 50, 64)
    assert views.parse_size("(450, 600)") == (450, 600)
    assert views.parse_scale("1/16") == 0.0625 and views.parse_scale(" ") is None
    with pytest.raises(ValueError, match=r"Image size expects 2 positive integers like '450, 600'; got '450'\."):
        views.parse_size("450", "Image size")
    with pytest.raises(ValueError, match="expects 4 positive integers like '1, 256, 50, 64'; got '1, 0, 5, 5'"):
        views.parse_shape("1, 0, 5, 5", 4)
    with pytest.raises(ValueError, match="spatial_scale expects a number like 0.0625 or 1/16; got '1/0'"):
        views.parse_scale("1/0")
    with pytest.raises(ValueError, match="spatial_scale expects a positive finite number; got '-1'"):
        views.parse_scale("-1")


def test_rois_text_round_trips_through_the_parser():
    text = views.rois_text([[10, 20, 30.5, 40], [1, 2, 3, 4]])
    assert parse_boxes_text(text)["values"] == [[0.0, 10.0, 20.0, 30.5, 40.0], [0.0, 1.0, 2.0, 3.0, 4.0]]


def test_reproduce_runs_both_ops_on_a_valid_input_and_matches_torchvision_shapes():
    outcomes = repro.reproduce([[0, 10, 10, 50, 60]], op="roi_align", feature_shape=(1, 256, 8, 8),
                               spatial_scale=1 / 16)
    assert [(o.impl, o.status) for o in outcomes] == [("torchvision.ops.roi_align", "ran"),
                                                      ("roi_lab.roi_align", "ran")]
    assert outcomes[0].detail == outcomes[1].detail == "returned Tensor[1, 16, 7, 7] float32"  # channels capped
    # the box [10, 10, 50, 60] at 1/16 lies inside the 8 x 8 map: nothing off the map, no zero bins
    assert [(o.outside, o.zero_bins, o.max_diff) for o in outcomes] == [(0.0, 0.0, None)] * 2
    assert not any(o.suspicious for o in outcomes)


def test_reproduce_shows_the_real_exceptions():
    outcomes = repro.reproduce([[10, 10, 50, 60]], op="roi_align", feature_shape=(1, 4, 8, 8))
    tv, ours = outcomes
    assert tv.status == "raised" and ours.status == "raised"
    # the real torchvision message, whatever it is today, is what the page shows
    with pytest.raises(Exception) as info:
        torchvision.ops.roi_align(torch.zeros(1, 4, 8, 8), torch.tensor([[10.0, 10, 50, 60]]), 7)
    assert tv.detail == f"{type(info.value).__name__}: {info.value}"
    assert ours.detail.startswith("ShapeError: roi_align(boxes=...) expects boxes as Tensor[K, 5]")


@pytest.mark.parametrize(
    "values,reason",
    [
        ([[0, 1, 2, float("nan"), 4]], "the boxes hold NaN or inf"),
        ([[3, 1, 2, 3, 4]], "batch index 3 is outside [0, 1)"),
        ([[-1, 1, 2, 3, 4]], "batch index -1 is outside [0, 1)"),
    ],
)
def test_reproduce_never_hands_torchvision_out_of_bounds_input(values, reason, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("torchvision must not be called on this input")

    monkeypatch.setattr(torchvision.ops, "roi_align", boom)
    tv, ours = repro.reproduce(values, op="roi_align", feature_shape=(1, 4, 8, 8))
    assert tv.status == "refused" and tv.detail.startswith(f"not run: {reason}")
    assert ours.status == "raised" and ours.detail.startswith("InputValueError: roi_align")


def test_reproduce_crop_and_resize_and_setup_errors():
    tf, ours = repro.reproduce([[0.1, 0.1, 0.5, 0.5]], op="crop_and_resize", feature_shape=(1, 4, 8, 8))
    assert tf.status == "refused" and "TensorFlow is not a dependency" in tf.detail
    assert ours.status == "ran" and ours.detail == "returned Tensor[1, 4, 7, 7] float32"
    (setup,) = repro.reproduce([[1, 2], [3]], op="roi_align", feature_shape=(1, 4, 8, 8))
    assert setup.status == "refused" and setup.detail.startswith("the boxes are not a rectangular list of numbers")
    (setup,) = repro.reproduce([[0, 1, 2, 3, 4]], op="roi_align", feature_shape=(64, 1024, 4000, 4000))
    assert setup.detail == "feature shape (64, 1024, 4000, 4000) is empty or too large for this panel"


# ----------------------------------------------------------------------------- what the ops read (finding 2)
def test_reproduce_says_what_image_space_boxes_really_read():
    """Image-space boxes with spatial_scale=1 on a stride-16 map run without an error: the outcome must say that
    most samples fall off the map, that bins are all zeros, and how far the crops are from the correct call."""
    rois = [[0, 60, 50, 180, 170], [0, 268, 48, 393, 173]]  # px of a 450 x 600 image; map 29 x 38 (stride 16)
    tv, ours = repro.reproduce(rois, op="roi_align", feature_shape=(1, 8, 29, 38), image_size=(450, 600),
                               error_codes={"IMAGE_SPACE_BOXES"})
    for o in (tv, ours):
        assert o.status == "ran" and o.suspicious
        # by hand: box 1 spans x 60..180 on a 38-cell map at scale 1; its samples with x > 38 (one cell of
        # slack) are off: both boxes read mostly zeros
        assert o.outside > 0.7 and o.zero_bins > 0.7
        assert o.max_diff > 0.1  # the correct call (spatial_scale = 1/16) reads real features there
        assert o.read.startswith(f"{o.outside:.0%} of its samples fall off the map; {o.zero_bins:.0%} of the output "
                                 "bins are all zeros; max |difference| to the correctly configured call = ")


def test_corrected_call_applies_the_diagnosers_fixes():
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6]])  # normalized (x1, y1, x2, y2) passed as pixels
    ref = repro.corrected_call(boxes, {"MISSING_BATCH_INDEX", "NORMALIZED_AS_PIXELS"}, op="roi_align",
                               image_size=(400, 500), feature_shape=(1, 4, 25, 32), spatial_scale=1 / 16)
    torch.testing.assert_close(ref.boxes, torch.tensor([[0.0, 50.0, 80.0, 250.0, 240.0]]))
    assert ref.spatial_scale == 1 / 16 and ref.changes == "batch index 0 added, times the image size (500 x 400), " \
        "spatial_scale = 1/16"
    # crop_and_resize: pixel (y1, x1, y2, x2) boxes get the exact normalization of the stride-16 map
    from roi_lab.geometry import tf_boxes_for_feature_map

    px = torch.tensor([[40.0, 24.0, 200.0, 184.0]])
    ref = repro.corrected_call(px, {"PIXELS_AS_NORMALIZED"}, op="crop_and_resize", image_size=(400, 512),
                               feature_shape=(1, 4, 25, 32), spatial_scale=None)
    torch.testing.assert_close(ref.boxes, tf_boxes_for_feature_map(px[:, [1, 0, 3, 2]], (25, 32), 16))
    # no mechanical fix for some codes: then there is nothing to compare with
    assert repro.corrected_call(boxes, {"NON_FINITE"}, op="roi_align", image_size=(400, 500),
                                feature_shape=(1, 4, 25, 32), spatial_scale=None) is None
    # the correct call run as the reference gives a zero difference
    tv, ours = repro.reproduce([[0, 64, 48, 192, 160]], op="roi_align", feature_shape=(1, 4, 25, 32),
                               spatial_scale=1 / 16, image_size=(400, 512), error_codes=set())
    assert ours.max_diff == 0.0 and not ours.suspicious  # the same call: exact by construction
