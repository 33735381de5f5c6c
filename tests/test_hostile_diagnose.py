"""diagnose on hostile input: it promises never to raise, and an empty box list is what roi_align accepts.

A bounded Hypothesis campaign feeds it extreme numbers (subnormals, 1e308, ints of hundreds of digits, NaN),
odd containers and odd types, in every argument.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roi_lab.diagnose import CODES, SEVERITIES, diagnose
from roi_lab.errors import InputValueError
from roi_lab.ops.roi_align import roi_align

ROIS = torch.tensor([[0.0, 16.0, 16.0, 160.0, 160.0]])


def test_subnormal_spatial_scale_is_a_finding_not_an_overflow_error():
    findings = diagnose(ROIS, image_size=(256, 256), features=(1, 8, 16, 16), spatial_scale=1e-320)
    assert [(f.code, f.severity) for f in findings] == [("WRONG_STRIDE", "error")]
    assert findings[0].message == ("spatial_scale must be one positive float between 1e-06 and 1e+06 (image pixels "
                                   "-> feature cells, e.g. 1/16).")
    assert findings[0].evidence == "spatial_scale = 1e-320"


@pytest.mark.parametrize("dim, shown", [(10**400, "<int of 1329 bits>"), (10**5000, "<int of 16610 bits>"),
                                        (2**31, "2147483648")], ids=["1e400", "1e5000", "2**31"])
def test_feature_sizes_beyond_int32_are_a_finding_not_an_overflow_error(dim, shown):
    findings = diagnose(ROIS, image_size=(256, 256), features=(1, 1, dim, 64), spatial_scale=1 / 16)
    bad = [f for f in findings if f.code == "BAD_RANK"]
    assert len(bad) == 1 and bad[0].severity == "error"
    assert bad[0].message == "`features` sizes must be at most 2,147,483,647 (2**31 - 1); the map-dependent checks " \
                             "were skipped."
    assert bad[0].evidence == f"features = (1, 1, {shown}, 64)"


def test_image_size_beyond_int32_is_a_finding():
    findings = diagnose(ROIS, image_size=(1e308, 1e308), features=(1, 8, 16, 16), spatial_scale=1 / 16)
    assert [f.code for f in findings] == ["BAD_RANK"]
    assert findings[0].evidence == "image_size = (1e+308, 1e+308)"


def test_empty_box_list_is_fine_for_roi_align_as_the_op_says():
    assert roi_align(torch.zeros(1, 8, 16, 16), [], 2).shape == (0, 8, 2, 2)  # the op accepts []
    assert diagnose([], image_size=(256, 256), features=(1, 8, 16, 16), spatial_scale=1 / 16) == []
    assert diagnose((), image_size=(256, 256), features=(1, 8, 16, 16), spatial_scale=1 / 16) == []


def test_empty_box_list_is_still_bad_rank_for_crop_and_resize():
    """crop_and_resize refuses [] (it wants Tensor[K, 4] and box_indices), and diagnose says so."""
    assert [f.code for f in diagnose([], image_size=(256, 256), features=(1, 8, 16, 16), op="crop_and_resize")] == [
        "BAD_RANK"]


def test_cli_diagnose_of_an_empty_array_exits_0(tmp_path, capsys):
    from roi_lab.cli import main

    path = tmp_path / "boxes.json"
    path.write_text("[]")
    code = main(["diagnose", str(path), "--image-size", "256", "256", "--features", "1", "8", "16", "16",
                 "--spatial-scale", "0.0625"])
    assert code == 0, capsys.readouterr().out


def test_unhashable_op_is_the_documented_input_value_error():
    with pytest.raises(InputValueError, match=r'diagnose\(op=...\) expects "roi_align" or "crop_and_resize"'):
        diagnose(ROIS, image_size=(8, 8), features=(1, 1, 4, 4), op=np.array([1, 2]))


# --------------------------------------------------------------------------- bounded fuzz campaign
_extreme = st.sampled_from([0.0, -0.0, 1e-320, 5e-324, 1e-300, 1e300, 1.7e308, -1e308, float("nan"), float("inf"),
                            -float("inf"), 2**53 + 1, 10**400, -(10**400), 2**31, 2**63, True, 1, 7, 0.5])
_number = _extreme | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70)
_row = st.lists(_number, min_size=0, max_size=6)
_boxes = st.one_of(
    st.lists(_row, max_size=5),
    st.lists(st.lists(_row, max_size=3), max_size=3),
    _row,
    st.lists(st.tuples(_number, _number, _number, _number, _number), max_size=4).map(
        lambda rows: torch.tensor([[float(min(max(v, -1e300), 1e300)) for v in r] for r in rows],
                                  dtype=torch.float64).reshape(-1, 5)),
    st.sampled_from([None, "boxes", b"\x00", {"a": 1}, 3.5, [[]], [[None] * 4], [torch.zeros(2, 4), "x"], []]),
)
_size = st.one_of(st.tuples(_number, _number), _number, st.lists(_number, max_size=5), st.none(), st.just("800x600"))
_features = st.one_of(st.tuples(_number, _number, _number, _number), st.lists(_number, max_size=6), _number,
                      st.none(), st.just(torch.zeros(1, 2, 3, 3)))


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(boxes=_boxes, image_size=_size, features=_features, scale=st.none() | _number,
       op=st.sampled_from(["roi_align", "crop_and_resize"]),
       box_indices=st.none() | st.lists(_number, max_size=5) | _number)
def test_fuzz_diagnose_never_raises(boxes, image_size, features, scale, op, box_indices):
    findings = diagnose(boxes, image_size=image_size, features=features, op=op, spatial_scale=scale,
                        box_indices=box_indices)
    for f in findings:
        assert f.code in CODES and f.severity in SEVERITIES
        assert len(f.message) + len(f.evidence) + len(f.fix) < 3000


_coord = _extreme | st.floats(-1e6, 1e6) | st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.lists(_coord, min_size=4, max_size=5), min_size=1, max_size=6),
       image_size=st.tuples(st.integers(1, 5000), st.integers(1, 5000)) | st.tuples(_coord, _coord),
       features=st.tuples(st.integers(1, 4), st.integers(1, 512), st.integers(1, 400), st.integers(1, 400)),
       scale=st.none() | st.floats(1e-6, 1e6) | _extreme, op=st.sampled_from(["roi_align", "crop_and_resize"]),
       as_list=st.booleans())
def test_fuzz_diagnose_geometry_with_extreme_coordinates_never_raises(rows, image_size, features, scale, op,
                                                                      as_list):
    """Valid shapes, so the geometry checks run, on coordinates from subnormal to 1e308, NaN and inf."""
    width = len(rows[0])
    rows = [r[:width] + [0.0] * (width - len(r)) for r in rows]
    boxes = rows
    if as_list and op == "roi_align":  # the list form, [Tensor[L, 4]], of what float64 can hold
        boxes = [torch.tensor([[float(min(max(v, -1e308), 1e308)) for v in r[-4:]] for r in rows],
                              dtype=torch.float64)]
    findings = diagnose(boxes, image_size=image_size, features=features, op=op, spatial_scale=scale)
    assert all(f.code in CODES for f in findings)
