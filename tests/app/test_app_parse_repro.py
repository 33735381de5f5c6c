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
    assert [(o.impl, o.status) for o in outcomes] == [("torchvision.ops.roi_align", "ok"), ("roi_lab.roi_align", "ok")]
    assert outcomes[0].detail == outcomes[1].detail == "returned Tensor[1, 16, 7, 7] float32"  # channels capped


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
    assert ours.status == "ok" and ours.detail == "returned Tensor[1, 4, 7, 7] float32"
    (setup,) = repro.reproduce([[1, 2], [3]], op="roi_align", feature_shape=(1, 4, 8, 8))
    assert setup.status == "refused" and setup.detail.startswith("the boxes are not a rectangular list of numbers")
    (setup,) = repro.reproduce([[0, 1, 2, 3, 4]], op="roi_align", feature_shape=(64, 1024, 4000, 4000))
    assert setup.detail == "feature shape (64, 1024, 4000, 4000) is empty or too large for this panel"
