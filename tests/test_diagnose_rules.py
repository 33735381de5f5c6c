"""roi_lab.diagnose.RULES: the rule table itself. One rule per code; each rule's detector, run alone on the
shared context, fires on its bug (positive) and stays quiet on the same input without it (negative).

The end-to-end behaviour (messages, evidence numbers, severities, order) is pinned in test_diagnose.py;
here every rule is a unit.
"""

from __future__ import annotations

import pytest
import torch

from roi_lab._diagnose_context import Hit, _fmt, _fmt_scale, build_context
from roi_lab.diagnose import CODES, RULES, Finding, Rule, diagnose
from roi_lab.errors import InputValueError

IMAGE = (800, 1024)
FEAT = (2, 8, 50, 64)  # stride 16
ROIS = torch.tensor([[0.0, 100.0, 50.0, 900.0, 600.0], [1.0, 10.0, 20.0, 300.0, 700.0]])
GOOD = dict(image_size=IMAGE, features=FEAT, spatial_scale=1 / 16)
TF = torch.tensor([[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0]])
TF_GOOD = dict(image_size=IMAGE, features=(2, 3, 800, 1024), op="crop_and_resize",
               box_indices=torch.tensor([1, 0], dtype=torch.int32))  # fmt: skip


def _rule(code: str) -> Rule:
    (rule,) = [r for r in RULES if r.code == code]
    return rule


def _hits(code: str, boxes, **kwargs) -> list[Hit]:
    op = kwargs.pop("op", "roi_align")
    ctx = build_context(boxes, op=op, **kwargs)
    rule = _rule(code)
    if rule.check is None:  # found while reading the inputs
        return [f for f in ctx.read_findings if f.code == code]
    return list(rule.check(ctx)) if op in rule.ops else []


def test_one_rule_per_code():
    assert sorted(r.code for r in RULES) == sorted(CODES)
    for rule in RULES:
        assert rule.summary and rule.ops and set(rule.ops) <= {"roi_align", "crop_and_resize"}


def test_findings_come_in_table_order_within_a_severity():
    order = [r.code for r in RULES]
    both = diagnose(ROIS[:, [0, 2, 1, 4, 3]], image_size=(800, 1216), features=(2, 8, 50, 76))
    codes = [f.code for f in both if f.severity == "error"]
    assert codes == sorted(codes, key=order.index) and len(codes) >= 2


# (code, positive: boxes and kwargs with the bug, negative: the same call without it)
CASES = [
    ("BAD_RANK", (ROIS[None], GOOD), (ROIS, GOOD)),
    ("BOX_COLUMNS", (torch.cat([ROIS, ROIS[:, :1]], 1), GOOD), (ROIS, GOOD)),
    ("MISSING_BATCH_INDEX", (ROIS[:, 1:], GOOD), ([ROIS[:1, 1:]], GOOD)),
    ("DTYPE_MISMATCH", (ROIS.double(), dict(GOOD, features=torch.zeros(FEAT))),
     (ROIS, dict(GOOD, features=torch.zeros(FEAT)))),
    ("DEVICE_MISMATCH", (ROIS, dict(GOOD, features=torch.zeros(FEAT, device="meta"))),
     (ROIS, dict(GOOD, features=torch.zeros(FEAT)))),
    ("NON_FINITE", (torch.tensor([[0.0, float("nan"), 0, 10, 10]]), GOOD), (ROIS, GOOD)),
    ("BATCH_INDEX_OUT_OF_RANGE", (ROIS + torch.tensor([5.0, 0, 0, 0, 0]), GOOD), (ROIS, GOOD)),
    ("INVERTED_BOX", (ROIS[:, [0, 3, 2, 1, 4]], GOOD), (ROIS, GOOD)),
    ("DEGENERATE_BOX", (torch.tensor([[0.0, 40, 40, 40, 90]]), GOOD), (ROIS, GOOD)),
    ("NORMALIZED_AS_PIXELS", (torch.cat([ROIS[:, :1], ROIS[:, 1:] / torch.tensor([1024, 800] * 2)], 1), GOOD),
     (ROIS, GOOD)),
    ("PIXELS_AS_NORMALIZED", (TF * 700, TF_GOOD), (TF, TF_GOOD)),
    ("DOUBLE_SCALED", (torch.tensor([[0.0, 1, 2, 60, 45], [0, 10, 20, 50, 40], [1, 30, 5, 63, 49]]), GOOD),
     (ROIS, GOOD)),
    ("IMAGE_SPACE_BOXES", (ROIS, dict(image_size=IMAGE, features=FEAT)), (ROIS, GOOD)),
    ("WRONG_STRIDE", (ROIS, dict(GOOD, spatial_scale=1 / 8)), (ROIS, GOOD)),
    ("YX_SWAPPED", (ROIS[:, [0, 2, 1, 4, 3]], dict(image_size=(800, 1216), features=(2, 8, 50, 76))),
     (ROIS, dict(image_size=(800, 1216), features=(2, 8, 50, 76)))),
    ("OUT_OF_BOUNDS", (torch.tensor([[0.0, 100, 50, 1300, 600]]), GOOD), (ROIS, GOOD)),
    ("SUBCELL_ROI", (torch.tensor([[0.0, 100, 50, 104, 53]]), GOOD), (ROIS, GOOD)),
    ("NON_DIVISIBLE_STRIDE", (ROIS, dict(image_size=(800, 1000), features=(2, 8, 50, 63), spatial_scale=1 / 16)),
     (ROIS, GOOD)),
    ("FPN_LEVEL_SIZES", (ROIS, dict(GOOD, pyramid=[(100, 128), (50, 64), (25, 33)])),
     (ROIS, dict(GOOD, pyramid=[(100, 128), (50, 64), (25, 32)]))),
    ("MIXED_DEFAULTS", (ROIS, dict(GOOD, aligned=False, sampling_ratio=-1, convention="mmcv")),
     (ROIS, dict(GOOD, aligned=True, sampling_ratio=0, convention="mmcv"))),
]  # fmt: skip


def test_every_code_has_a_unit_case():
    assert sorted(code for code, *_ in CASES) == sorted(CODES)


@pytest.mark.parametrize(("code", "positive", "negative"), CASES, ids=[c[0] for c in CASES])
def test_rule_alone_positive_and_negative(code, positive, negative):
    boxes, kwargs = positive
    hits = _hits(code, boxes, **dict(kwargs))
    assert hits, f"{code} did not fire on its own bug"
    for hit in hits:
        assert hit.severity in ("error", "warning", "info") and hit.message and hit.evidence and hit.fix
    boxes, kwargs = negative
    assert _hits(code, boxes, **dict(kwargs)) == [], f"{code} fired without its bug"
    # and through the public entry point: the code is among the findings, with the rule's own message
    findings = diagnose(positive[0], **dict(positive[1]))
    assert code in [f.code for f in findings]
    assert all(isinstance(f, Finding) for f in findings)


def test_mixed_defaults_messages():
    (hit,) = _hits("MIXED_DEFAULTS", ROIS, **dict(GOOD, aligned=False, sampling_ratio=-1, convention="mmcv"))
    assert hit.severity == "warning"
    assert hit.message == (
        "The head was trained with mmcv's pooler (mmcv.ops.RoIAlign (mmdet's RoIAlign configs): aligned=True), but "
        "this call uses aligned=False, torchvision's default: every box is pooled half a feature cell off from "
        "what the head learned."
    )
    assert hit.evidence.endswith(f"half a cell at spatial_scale {_fmt_scale(GOOD['spatial_scale'])} is "
                                 f"{_fmt(0.5 / GOOD['spatial_scale'])} image px")  # fmt: skip
    assert hit.fix.startswith("roi_align(features, rois, output_size, spatial_scale, sampling_ratio=0, aligned=True)")
    # torchvision-trained head pooled the mmcv way, and a fixed grid against an adaptive default (info)
    (tv,) = _hits("MIXED_DEFAULTS", ROIS, **dict(GOOD, aligned=True, convention="torchvision"))
    assert "uses aligned=True, mmcv / detectron2's default" in tv.message
    (grid,) = _hits("MIXED_DEFAULTS", ROIS, **dict(GOOD, aligned=True, sampling_ratio=2, convention="detectron2"))
    assert grid.severity == "info" and "fixed 2 x 2 grid" in grid.message
    assert _hits("MIXED_DEFAULTS", ROIS, **dict(GOOD, convention="mmcv")) == []  # aligned not given: no claim
    with pytest.raises(InputValueError, match=r'expects "torchvision" or "mmcv" or "detectron2" \(the framework'):
        diagnose(ROIS, **dict(GOOD, aligned=True, convention="mmdet"))
