"""One truth for crop_and_resize on a feature map (issue 10, finding 4): the geometry, the diagnoser's fix, the
CLI and the app's variants name the same normalization, and it samples exactly the box meant.

crop_and_resize samples ``y_norm * (h - 1)`` of the tensor it crops; on a stride-s map image coordinate y is
sample coordinate ``y / s - 0.5``. So ``y_norm = (y / s - 0.5) / (h - 1)`` with h the map's height.
"""

from __future__ import annotations

import re

import torch

from roi_lab.cli import main
from roi_lab.diagnose import diagnose
from roi_lab.geometry import VariantKind, crop_and_resize_sample_points, make_variants, tf_boxes_for_feature_map

IMAGE = (800, 1000)  # H, W: not divisible by 16 in x (63 cells = 1008 px)
MAP = (50, 63)
BOXES = torch.tensor([[150.0, 140.0, 420.0, 600.0], [700.0, 300.0, 1000.0, 800.0]])  # xyxy image px
NORMALIZATION = re.compile(r"/ 16 - 0\.5\) / torch\.tensor\(\[49, 62, 49, 62\]\)")


def _exec_fix(fix: str, boxes_yxyx: torch.Tensor) -> torch.Tensor:
    """Evaluate the first line of a fix snippet on ``boxes`` (our own text, never user input)."""
    line = fix.splitlines()[0].split("#")[0]
    name, expr = (part.strip() for part in line.split("=", 1))
    scope = {"torch": torch, "boxes": boxes_yxyx, "boxes_yxyx": boxes_yxyx}
    exec(f"{name} = {expr}", scope)  # noqa: S102 - a fixed string from roi_lab, checked to be one assignment
    return scope[name].float()


def test_the_diagnoser_the_cli_and_the_app_name_the_same_normalization(tmp_path, capsys):
    yxyx = BOXES[:, [1, 0, 3, 2]]
    finding = next(f for f in diagnose(yxyx, image_size=IMAGE, features=(1, 8, *MAP), op="crop_and_resize")
                   if f.code == "PIXELS_AS_NORMALIZED")
    variants = {v.kind: v for v in make_variants(BOXES, image_size=IMAGE, feature_size=MAP, stride=16)}
    app_fixes = [variants[k].fix for k in (VariantKind.PIXELS_AS_NORMALIZED, VariantKind.TF_CROP_AND_RESIZE)]
    path = tmp_path / "boxes.json"
    path.write_text(str(yxyx.tolist()))
    code = main(["diagnose", str(path), "--op", "crop_and_resize", "--image-size", "800", "1000",
                 "--features", "1", "8", "50", "63"])
    out = capsys.readouterr().out
    assert code == 1
    for text in [finding.fix, out, *app_fixes]:
        assert NORMALIZATION.search(text), text
    # and the snippets compute what roi_lab.geometry computes
    expected = tf_boxes_for_feature_map(BOXES, MAP, 16)
    for fix in [finding.fix, *app_fixes]:
        torch.testing.assert_close(_exec_fix(fix, yxyx), expected, atol=1e-6, rtol=0)


def test_the_named_normalization_samples_the_box_and_the_image_one_does_not():
    """Sample points (crop_and_resize's formula): first and last samples on the box's edges, in image px."""
    region, _ = crop_and_resize_sample_points(tf_boxes_for_feature_map(BOXES, MAP, 16), MAP, (7, 7))
    torch.testing.assert_close((region.double() + 0.5) * 16, BOXES.double(), atol=1e-4, rtol=0)
    # the "TF crop_and_resize, (size - 1)" variant (Matterport): by hand, image x maps to (x * 62 / 999 + 0.5) * 16,
    # 8 px (half a cell) off at x = 0 and 8 - 1000 * (1 - 992 / 999) = 1 px off at x = 1000
    v = next(v for v in make_variants(BOXES, image_size=IMAGE, feature_size=MAP, stride=16)
             if v.kind is VariantKind.TF_CROP_AND_RESIZE)
    x = BOXES[:, [0, 2]].double()
    torch.testing.assert_close(v.region_image[:, [0, 2]].double() - x, 8 - x * (1 - 992 / 999), atol=1e-3, rtol=0)
    assert (v.iou < 0.97).all()
