"""diagnose(image_size=None): what a capture without a known image size can still say (map and boxes only)."""

from __future__ import annotations

import pytest
import torch

from roi_lab.diagnose import diagnose

MAP = (1, 256, 50, 64)  # stride 16 of an 800 x 1024 image


def test_no_image_size_is_not_an_error_when_the_boxes_fit_the_map():
    rois = torch.tensor([[0.0, 100, 50, 900, 600]])
    assert diagnose(rois, features=MAP, spatial_scale=1 / 16) == []
    assert diagnose(rois, image_size=None, features=MAP, spatial_scale=1 / 16) == []


def test_boxes_entirely_off_the_map_are_an_error():
    rois = torch.tensor([[0.0, 100, 50, 900, 600], [0, 700, 400, 1000, 780]])  # image pixels at scale 1
    [f] = diagnose(rois, features=MAP)
    assert (f.code, f.severity) == ("OUT_OF_BOUNDS", "error")
    assert f.message == (
        "Some boxes reach outside the feature map at this spatial_scale, some lie entirely outside it: roi_align "
        "pools only zeros for those. Without image_size the diagnoser cannot tell image-space boxes from a wrong "
        "stride."
    )
    assert f.evidence == (
        "2 of 2 boxes leave the 50 x 64 map by more than one cell, 2 entirely; at spatial_scale 1: max x2 = 1000 > "
        "map width 64; max y2 = 780 > map height 50"
    )
    assert f.fix.startswith("pass image_size=(H, W), the image the boxes refer to, to name the cause")


def test_boxes_partly_off_the_map_are_a_warning():
    rois = torch.tensor([[0.0, 10, 10, 70, 40]])  # x2 = 70 > 64 + 1 cells at scale 1
    [f] = diagnose(rois, features=MAP)
    assert (f.code, f.severity) == ("OUT_OF_BOUNDS", "warning")
    assert f.message.startswith("Some boxes reach outside the feature map at this spatial_scale. Without image_size")


def test_a_bad_image_size_is_still_reported():
    [f] = diagnose(torch.tensor([[0.0, 1, 1, 5, 5]]), image_size="800x1024", features=MAP, spatial_scale=1 / 16)
    assert (f.code, f.severity) == ("BAD_RANK", "error") and "image_size" in f.message


@pytest.mark.parametrize("image_size", [None, (50, 64)])
def test_crop_and_resize_without_an_image_size_reads_the_map_as_the_image(image_size):
    pixels = torch.tensor([[5.0, 10, 40, 60]])  # (y1, x1, y2, x2) pixels where normalized boxes belong
    findings = diagnose(pixels, image_size=image_size, features=MAP, op="crop_and_resize")
    assert [f.code for f in findings] == ["PIXELS_AS_NORMALIZED"]
    assert "as pixels they fit the 50 x 64 image in (y1, x1, y2, x2) order" in findings[0].evidence
