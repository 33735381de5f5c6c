"""roi_lab.diagnose: every code has a positive test (bug present -> that code, with its numbers in the evidence)
and a negative one (correct input -> not that code); random correct inputs give no error or warning;
random bugs injected into them are caught; garbage never raises.

Oracles: torchvision itself (it raises for the shape/dtype errors; pooling a coordinate ramp shows which region
the geometric bugs really sample), the stride arithmetic written out in the tests, and roi_lab.geometry's
variants when that module is present.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roi_lab.diagnose import CODES, Finding, diagnose, has_errors
from roi_lab.errors import InputValueError

IMAGE = (800, 1024)  # H, W
FEAT = (2, 8, 50, 64)  # stride 16
ROIS = torch.tensor([[0.0, 100.0, 50.0, 900.0, 600.0], [1.0, 10.0, 20.0, 300.0, 700.0]])  # image px, xyxy


def codes(findings, severities=("error", "warning", "info")):
    return [f.code for f in findings if f.severity in severities]


def alarms(findings):
    return [f for f in findings if f.severity in ("error", "warning")]


def get(findings, code):
    found = [f for f in findings if f.code == code]
    assert found, f"{code} not in {codes(findings)}"
    return found[0]


def pooled_centres(features_shape, rois, scale):
    """Where torchvision really samples: pool ramps (channel 0 = x index, 1 = y index), 1x1 bins, aligned=True.

    Returns Tensor[K, 2] (x, y) in map cells; the intended centre of a box is ((x1 + x2) / 2) * scale - 0.5.
    """
    _, _, h, w = features_shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ramp = torch.stack([xs, ys])[None].expand(int(rois[:, 0].max()) + 1, 2, h, w).contiguous()
    out = torchvision.ops.roi_align(ramp, rois.double(), 1, spatial_scale=scale, sampling_ratio=2, aligned=True)
    return out[:, :, 0, 0]


def intended_centres(boxes_image, stride):
    return (
        torch.stack([(boxes_image[:, 0] + boxes_image[:, 2]) / 2, (boxes_image[:, 1] + boxes_image[:, 3]) / 2], 1)
        / (stride)
        - 0.5
    )


# ------------------------------------------------------------------------------------------------ the API


def test_codes_are_exactly_the_issue_list():
    assert CODES == (
        "MISSING_BATCH_INDEX", "BOX_COLUMNS", "BAD_RANK", "IMAGE_SPACE_BOXES", "WRONG_STRIDE", "DOUBLE_SCALED",
        "YX_SWAPPED", "NORMALIZED_AS_PIXELS", "PIXELS_AS_NORMALIZED", "INVERTED_BOX", "DEGENERATE_BOX",
        "OUT_OF_BOUNDS", "SUBCELL_ROI", "BATCH_INDEX_OUT_OF_RANGE", "NON_FINITE", "DTYPE_MISMATCH",
        "DEVICE_MISMATCH", "NON_DIVISIBLE_STRIDE", "MIXED_DEFAULTS", "FPN_LEVEL_SIZES",  # the last two: issue 14
    )  # fmt: skip


def test_finding_is_frozen_plain_data():
    f = Finding("BAD_RANK", "error", "msg", "ev", "fix")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.code = "X"  # type: ignore[misc]
    assert f.to_dict() == {"code": "BAD_RANK", "severity": "error", "message": "msg", "evidence": "ev", "fix": "fix"}
    assert json.loads(json.dumps([x.to_dict() for x in diagnose(ROIS, image_size=IMAGE, features=FEAT)]))
    assert str(f) == "ERROR BAD_RANK: msg\n  evidence: ev\n  fix: fix"


def test_has_errors():
    assert has_errors(diagnose(ROIS, image_size=IMAGE, features=FEAT))
    assert not has_errors(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))
    assert not has_errors([Finding("DOUBLE_SCALED", "warning", "", "", "")])
    assert not has_errors([])


def test_errors_first_then_warnings_then_infos():
    rois = torch.tensor(
        [[0.0, 10, 10, 500, 500], [5.0, 10, 10, 500, 500], [0.0, 40, 40, 40, 90], [0.0, 100, 100, 102, 102]]
    )  # batch index 5 (error), zero width (warning), a 2 px box (info)
    findings = diagnose(rois, image_size=(1000, 1000), features=(1, 8, 63, 63), spatial_scale=1 / 16)
    sev = [f.severity for f in findings]
    assert sev == sorted(sev, key=("error", "warning", "info").index)
    assert {"BATCH_INDEX_OUT_OF_RANGE", "DEGENERATE_BOX", "SUBCELL_ROI", "NON_DIVISIBLE_STRIDE"} <= set(codes(findings))
    assert sev[0] == "error" and sev[-1] == "info"


def test_unknown_op_is_a_clear_error():
    with pytest.raises(InputValueError) as err:
        diagnose(ROIS, image_size=IMAGE, features=FEAT, op="roialign2")
    assert str(err.value) == (
        'diagnose(op=...) expects "roi_align" or "crop_and_resize"; got \'roialign2\'.\nFix: op="roi_align"'
    )


def test_correct_examples_give_nothing():
    assert diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16) == []
    assert diagnose([ROIS[:1, 1:], ROIS[1:, 1:]], image_size=IMAGE, features=FEAT, spatial_scale=0.0625) == []
    assert diagnose(ROIS.numpy(), image_size=IMAGE, features=FEAT, spatial_scale=1 / 16) == []
    assert diagnose(ROIS.tolist(), image_size=IMAGE, features=FEAT, spatial_scale=1 / 16) == []
    tf = torch.tensor([[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0]])
    assert diagnose(tf, image_size=IMAGE, features=(2, 3, 800, 1024), op="crop_and_resize",
                    box_indices=torch.tensor([1, 0], dtype=torch.int32)) == []  # fmt: skip


# ------------------------------------------------------------------------------------------------ correct inputs


def _random_boxes_image(rng, h, w, k):
    """k boxes inside the h x w image, (x1, y1, x2, y2): tiny (1-4 px), whole-image, any size; some touch edges."""
    out = []
    for _ in range(k):
        kind = rng.integers(5)
        if kind == 1:
            out.append([0.0, 0.0, float(w), float(h)])
            continue
        bw, bh = (rng.uniform(1, 4), rng.uniform(1, 4)) if kind == 0 else (rng.uniform(1, w), rng.uniform(1, h))
        bw, bh = min(bw, w), min(bh, h)
        x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        x1 = 0.0 if rng.random() < 0.2 else (w - bw if rng.random() < 0.2 else x1)
        y1 = 0.0 if rng.random() < 0.2 else (h - bh if rng.random() < 0.2 else y1)
        box = [x1, y1, x1 + bw, y1 + bh]
        if rng.random() < 0.3:  # integer pixel boxes
            box = [float(round(v)) for v in box]
            box[2], box[3] = max(box[2], box[0] + 1), max(box[3], box[1] + 1)
            box = [min(box[0], w - 1), min(box[1], h - 1), min(box[2], w), min(box[3], h)]
        out.append(box)
    return torch.tensor(out, dtype=torch.float64).reshape(-1, 4)


MODES = ("rois", "list", "feature_rois", "feature_list", "crop", "crop_feature", "stride1", "padded")


def _random_correct_config(rng):
    """(boxes, diagnose kwargs, description), correct by construction."""
    mode = str(rng.choice(MODES))
    stride = int(rng.choice([4, 8, 16, 32]))
    h, w = int(rng.integers(32, 1334)), int(rng.integers(32, 1334))
    rounding = str(rng.choice(["ceil", "floor"]))  # torchvision ResNet: ceil(n / stride); VGG pools: floor
    rnd = math.ceil if rounding == "ceil" else math.floor
    hf, wf = max(rnd(h / stride), 1), max(rnd(w / stride), 1)
    scale = 1 / stride if rng.random() < 0.7 else (wf / w if wf >= hf else hf / h)  # nominal or measured
    if mode == "padded":  # detectron2: image padded to a multiple of 32; boxes in the unpadded image's px
        h, w = int(rng.integers(128, 1334)), int(rng.integers(128, 1334))
        hf, wf = -(-h // 32) * 32 // stride, -(-w // 32) * 32 // stride
        scale = 1 / stride
    if mode == "stride1":
        hf, wf, scale = h, w, 1.0
    n = int(rng.integers(1, 4))
    dtype = torch.float64 if rng.random() < 0.2 else torch.float32
    features = torch.zeros(1, dtype=dtype).expand(n, 2, hf, wf) if rng.random() < 0.5 else (n, 2, hf, wf)
    k = int(rng.integers(1, 13))
    desc = f"{mode}: image {h}x{w}, map {hf}x{wf}, stride {stride} ({rounding}), scale {scale}, N {n}, K {k}"
    to_feature = torch.tensor([wf / w, hf / h] * 2, dtype=torch.float64)
    if mode in ("rois", "stride1", "padded", "feature_rois"):
        b = _random_boxes_image(rng, h, w, k)
        if mode == "feature_rois":
            b, scale = b * to_feature, (1.0 if rng.random() < 0.5 else None)
        idx = torch.from_numpy(rng.integers(0, n, k)).double()
        boxes = torch.cat([idx[:, None], b], 1).to(dtype)
        return boxes, dict(image_size=(h, w), features=features, spatial_scale=scale), desc
    if mode in ("list", "feature_list"):
        boxes = [_random_boxes_image(rng, h, w, int(rng.integers(0, 6))) for _ in range(n)]
        if mode == "feature_list":
            boxes, scale = [b * to_feature for b in boxes], 1.0
        return [b.to(dtype) for b in boxes], dict(image_size=(h, w), features=features, spatial_scale=scale), desc
    b = _random_boxes_image(rng, h, w, k)  # crop_and_resize: (y1, x1, y2, x2) / (size - 1), TF's convention
    boxes = (b[:, [1, 0, 3, 2]] / torch.tensor([h - 1, w - 1, h - 1, w - 1], dtype=torch.float64)).float()
    crop_input = (n, 3, h, w) if mode == "crop" else (n, 2, hf, wf)
    box_indices = torch.from_numpy(rng.integers(0, n, k)).int()
    kwargs = dict(image_size=(h, w), features=crop_input, op="crop_and_resize", box_indices=box_indices)
    return boxes, kwargs, desc


@pytest.mark.parametrize("seed", [0, 1])
def test_random_correct_inputs_raise_no_error_or_warning(seed):
    rng = np.random.default_rng(seed)
    seen_modes, infos = set(), set()
    for _ in range(700):
        boxes, kwargs, desc = _random_correct_config(rng)
        findings = diagnose(boxes, **kwargs)
        assert not alarms(findings), f"{desc}\n" + "\n".join(map(str, alarms(findings)))
        seen_modes.add(desc.split(":")[0])
        infos.update(codes(findings))
    assert seen_modes == set(MODES)
    # the generator does reach tiny boxes and non-divisible images (reported as info only)
    assert {"SUBCELL_ROI", "NON_DIVISIBLE_STRIDE"} <= infos


def _random_rois(rng):
    stride = int(rng.choice([4, 8, 16, 32]))
    h, w = int(rng.integers(64, 1334)), int(rng.integers(64, 1334))
    k = int(rng.integers(3, 13))
    b = _random_boxes_image(rng, h, w, k).float()
    return stride, h, w, (1, 8, math.ceil(h / stride), math.ceil(w / stride)), b


def test_bugs_injected_into_random_correct_inputs_are_caught():
    rng = np.random.default_rng(7)
    for _ in range(150):
        stride, h, w, fshape, b = _random_rois(rng)
        _, _, hf, wf = fshape
        rois = torch.cat([torch.zeros(len(b), 1), b], 1)
        ctx = f"image {h}x{w} stride {stride} boxes {b.tolist()}"

        def run(boxes, image_size=(h, w), features=fshape, **kw):
            return diagnose(boxes, image_size=image_size, features=features, **kw)

        assert not alarms(run(rois, spatial_scale=1 / stride)), ctx
        # spatial_scale left at 1: caught whenever the boxes overflow the map in both orientations
        if b.max() > max(hf, wf) + 1:
            assert codes(run(rois), ["error"]) == ["IMAGE_SPACE_BOXES"], ctx
        # stride off by 2x either way: always caught
        assert "WRONG_STRIDE" in codes(run(rois, spatial_scale=2 / stride), ["error"]), ctx
        assert "WRONG_STRIDE" in codes(run(rois, spatial_scale=0.5 / stride), ["error"]), ctx
        # normalized passed as pixels
        normalized = rois / torch.tensor([1, w, h, w, h])
        if (normalized[:, 1:] * 1e6 % 1e6).abs().max() > 1:  # some coordinate is fractional
            assert codes(run(normalized, spatial_scale=1 / stride), ["error"]) == ["NORMALIZED_AS_PIXELS"], ctx
        # y and x exchanged: reported when the exchanged boxes overflow the map clearly, never a false reason
        swapped = run(rois[:, [0, 2, 1, 4, 3]], spatial_scale=1 / stride)
        over = max(
            b[:, [1, 3]].max() / stride - wf - max(2, 0.1 * wf), b[:, [0, 2]].max() / stride - hf - max(2, 0.1 * hf)
        )
        if over > 0:
            assert codes(swapped, ["error"]) == ["YX_SWAPPED"], ctx
        else:
            assert codes(swapped, ["error"]) == [] and "YX_SWAPPED" not in codes(swapped), ctx
        # divided by the stride and scaled again: a warning when 3+ boxes fill half the map, never an error
        double = run(torch.cat([rois[:, :1], rois[:, 1:] / stride], 1), spatial_scale=1 / stride)
        assert codes(double, ["error"]) == [], ctx
        fill = min(b[:, [0, 2]].max() / w, b[:, [1, 3]].max() / h)
        if fill >= 0.5 and len(torch.unique(b, dim=0)) >= 3:
            assert "DOUBLE_SCALED" in codes(double, ["warning"]), ctx


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    boxes=st.one_of(
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True), st.text(max_size=3)),
            lambda children: st.lists(children, max_size=6),
            max_leaves=30,
        ),
        st.builds(
            lambda shape, dtype, fill: torch.full(shape, fill).to(dtype),
            st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple),
            st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool, torch.float16]),
            st.floats(-2000, 2000),
        ),
        st.lists(
            st.builds(lambda k, c: torch.rand(k, c) * 900, st.integers(0, 4), st.integers(1, 6)), min_size=1, max_size=3
        ),
    ),
    op=st.sampled_from(["roi_align", "crop_and_resize"]),
    features=st.one_of(
        st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 80), st.integers(1, 80)),
        st.lists(st.integers(-2, 80), max_size=5),
        st.just("features"),
    ),
    image_size=st.one_of(st.tuples(st.integers(1, 1500), st.integers(1, 1500)), st.integers(-3, 900), st.text()),
    spatial_scale=st.one_of(st.none(), st.floats(allow_nan=True), st.just("x")),
    box_indices=st.one_of(st.none(), st.lists(st.integers(-3, 5), max_size=6), st.just("idx")),
)
def test_never_raises_on_garbage(boxes, op, features, image_size, spatial_scale, box_indices):
    findings = diagnose(
        boxes, image_size=image_size, features=features, op=op, spatial_scale=spatial_scale, box_indices=box_indices
    )
    assert isinstance(findings, list)
    for f in findings:
        assert f.code in CODES and f.severity in ("error", "warning", "info")
        assert f.message and f.evidence and f.fix


# ------------------------------------------------------------------------------------------------ shapes and ranks


def test_missing_batch_index_positive():
    boxes = ROIS[:, 1:].repeat(6, 1)  # Tensor[12, 4]
    f = get(diagnose(boxes, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16), "MISSING_BATCH_INDEX")
    assert f.severity == "error"
    assert "Tensor[K, 5] (batch_index, x1, y1, x2, y2)" in f.message
    assert f.evidence == "boxes.shape = [12, 4]: 4 columns, expected 5 (or a list of Tensor[L, 4])"
    assert f.fix.startswith("rois = torch.cat([torch.zeros(12, 1), boxes], dim=1)")
    with pytest.raises((RuntimeError, ValueError, AssertionError)):  # the oracle: torchvision refuses it too
        torchvision.ops.roi_align(torch.rand(*FEAT), boxes, 7, spatial_scale=1 / 16)


def test_missing_batch_index_negative():
    for boxes in (ROIS, [ROIS[:, 1:]]):
        assert "MISSING_BATCH_INDEX" not in codes(
            diagnose(boxes, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16)
        )
        torchvision.ops.roi_align(torch.rand(*FEAT), boxes, 7, spatial_scale=1 / 16)
    tf = torch.tensor([[0.1, 0.1, 0.5, 0.5]])  # crop_and_resize takes 4 columns
    assert codes(diagnose(tf, image_size=IMAGE, features=FEAT, op="crop_and_resize")) == []


def test_box_columns_positive():
    six = torch.cat([ROIS, torch.ones(2, 1)], 1)
    f = get(diagnose(six, image_size=IMAGE, features=FEAT), "BOX_COLUMNS")
    assert f.severity == "error" and "got 6 columns" in f.message and "score" in f.message
    assert f.evidence == "boxes.shape = [2, 6]: 6 columns, expected 5 (or 4 in a list)"
    with pytest.raises((RuntimeError, ValueError, AssertionError)):
        torchvision.ops.roi_align(torch.rand(*FEAT), six, 7)
    f = get(diagnose(ROIS, image_size=IMAGE, features=FEAT, op="crop_and_resize"), "BOX_COLUMNS")
    assert "torchvision rois" in f.message and "box_indices = rois[:, 0].int()" in f.fix
    f = get(diagnose([ROIS], image_size=IMAGE, features=FEAT), "BOX_COLUMNS")
    assert "element 0 has 5 columns" in f.message and f.evidence == "boxes[0].shape = [2, 5]: 5 columns, expected 4"


def test_box_columns_negative():
    assert "BOX_COLUMNS" not in codes(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))
    assert "BOX_COLUMNS" not in codes(diagnose([ROIS[:, 1:]], image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))


@pytest.mark.parametrize(
    "boxes, evidence, fix",
    [
        (ROIS[0], "boxes.shape = [5] (1 dimension, expected 2)", "boxes = boxes[None]  # one box -> [1, 5]"),
        (ROIS[:, 1:].reshape(1, 2, 4), "boxes.shape = [1, 2, 4] (3 dimensions, expected 2)", "boxes = list(boxes)"),
    ],
)
def test_bad_rank_positive(boxes, evidence, fix):
    f = get(diagnose(boxes, image_size=IMAGE, features=FEAT), "BAD_RANK")
    assert f.severity == "error" and f.evidence == evidence and f.fix.startswith(fix)
    with pytest.raises((RuntimeError, ValueError, AssertionError, IndexError)):
        torchvision.ops.roi_align(torch.rand(*FEAT), boxes, 7)


def test_bad_rank_ragged_features_and_image_size():
    f = get(diagnose([[0, 1, 2, 3, 4], [0, 1, 2]], image_size=IMAGE, features=FEAT), "BAD_RANK")
    assert f.message == "boxes is not a rectangular array: the rows have different lengths."
    f = get(diagnose(ROIS, image_size=IMAGE, features=torch.zeros(8, 50, 64), spatial_scale=1 / 16), "BAD_RANK")
    assert f.evidence == "features = Tensor[8, 50, 64]: 3 dimensions, expected 4 (N, C, H, W); read as N = 1"
    assert f.fix == "features = features[None]  # [C, H, W] -> [1, C, H, W]"
    f = get(diagnose(ROIS, image_size="big", features=FEAT), "BAD_RANK")
    assert f.message.startswith("`image_size` must be the (H, W)") and f.evidence == "image_size = 'big'"
    f = get(diagnose(ROIS, image_size=IMAGE, features=(2, 8, 0, 64)), "BAD_RANK")
    assert f.message.startswith("`features` must be the feature tensor") and f.evidence == "features = (2, 8, 0, 64)"


def test_bad_rank_negative():
    for boxes in (ROIS, ROIS.numpy(), ROIS.tolist(), [ROIS[:, 1:]], torch.zeros(0, 5)):
        assert "BAD_RANK" not in codes(diagnose(boxes, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))
    assert diagnose(ROIS, image_size=1024, features=(2, 8, 64, 64), spatial_scale=1 / 16) == []  # int = square


def test_non_numeric_boxes_are_reported():
    f = get(diagnose([["a", "b", "c", "d"]], image_size=IMAGE, features=FEAT), "DTYPE_MISMATCH")
    assert f.message == "boxes hold text (str) values, not numbers."
    assert codes(diagnose(None, image_size=IMAGE, features=FEAT)) == ["BAD_RANK"]
    assert codes(diagnose(torch.ones(2, 5, dtype=torch.bool), image_size=IMAGE, features=FEAT)) == ["DTYPE_MISMATCH"]


# ------------------------------------------------------------------------------------------------ scale and space


def test_image_space_boxes_positive():
    findings = diagnose(ROIS, image_size=IMAGE, features=FEAT)  # spatial_scale None = torchvision's 1.0
    assert codes(findings) == ["IMAGE_SPACE_BOXES"]
    f = findings[0]
    assert f.severity == "error"
    assert f.evidence.startswith("max x2 = 900 > map width 64; max y2 = 700 > map height 50 at spatial_scale 1 ")
    assert f"900 * 1/16 = {900 / 16:g} and 700 * 1/16 = {700 / 16:g} fit" in f.evidence
    assert "stride 16" in f.evidence and "spatial_scale=1 / 16" in f.fix
    # oracle: at scale 1 torchvision pools far from the intended centre; at 1/16 on it
    wrong, right = pooled_centres(FEAT, ROIS, 1.0), pooled_centres(FEAT, ROIS, 1 / 16)
    target = intended_centres(ROIS[:, 1:], 16)
    assert (right - target).abs().max() < 0.5 and (wrong - target).abs().max() > 5


def test_image_space_boxes_negative():
    assert codes(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16)) == []
    feature = torch.cat([ROIS[:, :1], ROIS[:, 1:] / 16], 1)  # feature px with scale 1 is right
    assert codes(diagnose(feature, image_size=IMAGE, features=FEAT)) == []
    assert codes(diagnose(ROIS, image_size=IMAGE, features=(2, 8, 800, 1024))) == []  # stride 1


def test_wrong_stride_too_large_positive():
    f = get(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 8), "WRONG_STRIDE")
    assert f.severity == "error"
    assert f"max x2 = 900 * 1/8 = {900 / 8:g} > map width 64" in f.evidence
    assert f"900 * 1/16 = {900 / 16:g} fits (scale off by 2x)" in f.evidence
    assert f.fix.startswith("roi_align(features, rois, output_size, spatial_scale=1 / 16)")
    target = intended_centres(ROIS[:, 1:], 16)
    assert (pooled_centres(FEAT, ROIS, 1 / 8) - target).abs().max() > 5


def test_wrong_stride_too_small_positive():
    f = get(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 32), "WRONG_STRIDE")
    assert f.severity == "error" and "maps the image onto 50% of the map's extent" in f.message
    assert "image width 1024 * 1/32 = 32 vs map width 64, height 800 * 1/32 = 25 vs map height 50" in f.evidence
    target = intended_centres(ROIS[:, 1:], 16)
    assert (pooled_centres(FEAT, ROIS, 1 / 32) - target).abs().max() > 5
    f = get(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale="1/16"), "WRONG_STRIDE")
    assert f.message.startswith("spatial_scale must be one positive float")


def test_wrong_stride_negative():
    # torchvision ResNet: ceil(1000 / 16) = 63 cells; both the nominal 1/16 and the measured 63/1000 are fine
    rois = torch.tensor([[0.0, 0, 0, 1000, 1000], [0.0, 500, 600, 990, 999]])
    for scale in (1 / 16, 63 / 1000):
        assert "WRONG_STRIDE" not in codes(
            diagnose(rois, image_size=1000, features=(1, 8, 63, 63), spatial_scale=scale)
        )
    # VGG pools floor: 1000 -> 31 cells at stride 32
    assert alarms(diagnose(rois, image_size=1000, features=(1, 8, 31, 31), spatial_scale=1 / 32)) == []


def test_double_scaled_positive():
    feature = torch.cat([ROIS[:, :1], ROIS[:, 1:] / 16], 1)
    boxes = torch.cat([feature, feature + torch.tensor([0, 2.0, 2, 2, 2])])  # 4 boxes, already / 16
    f = get(diagnose(boxes, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16), "DOUBLE_SCALED")
    assert f.severity == "warning"
    assert f"all 4 boxes lie within the 50 x 64 map (max x = {900 / 16 + 2:g}, max y = {700 / 16 + 2:g}" in f.evidence
    assert f"shrinks them to x <= {(900 / 16 + 2) / 16:.4g}" in f.evidence
    assert "spatial_scale=1.0" in f.fix
    target = intended_centres(boxes[:, 1:] * 16, 16)
    assert (pooled_centres(FEAT, boxes, 1 / 16) - target).abs().max() > 5
    single = get(diagnose(feature[:1] * torch.tensor([1, 1, 1, 1.1, 1.3]), image_size=IMAGE, features=FEAT,
                          spatial_scale=1 / 16), "DOUBLE_SCALED")  # fmt: skip
    assert single.severity == "info" and "Only 1-2 boxes" in single.message


def test_double_scaled_negative():
    feature = torch.cat([ROIS[:, :1], ROIS[:, 1:] / 16], 1)
    assert "DOUBLE_SCALED" not in codes(diagnose(feature, image_size=IMAGE, features=FEAT, spatial_scale=1.0))
    assert "DOUBLE_SCALED" not in codes(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))
    small_in_corner = torch.tensor([[0.0, 3, 4, 20, 30]])  # a genuine small image box near the origin
    assert alarms(diagnose(small_in_corner, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16)) == []


def test_yx_swapped_roi_align_positive():
    swapped = ROIS[:, [0, 2, 1, 4, 3]]  # (b, y1, x1, y2, x2)
    findings = diagnose(swapped, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16)
    assert codes(findings) == ["YX_SWAPPED"]
    f = findings[0]
    assert f.severity == "error" and "(y1, x1, y2, x2) was passed" in f.message
    assert f.evidence == (
        f"in map cells at spatial_scale 1/16: max y = {900 / 16:g} > height 50; exchanged, x reaches {900 / 16:g} "
        f"of width 64 and y reaches {700 / 16:g} of height 50"
    )
    assert f.fix.startswith("rois = rois[:, [0, 2, 1, 4, 3]]")
    target = intended_centres(ROIS[:, 1:], 16)
    assert (pooled_centres(FEAT, swapped, 1 / 16) - target).abs().max() > 5
    # also found together with a forgotten scale
    both = diagnose(swapped, image_size=IMAGE, features=FEAT)
    assert codes(both) == ["IMAGE_SPACE_BOXES", "YX_SWAPPED"]
    assert "max x = 700 > width 1024" not in get(both, "YX_SWAPPED").evidence
    assert "in image pixels: max y = 900 > height 800" in get(both, "YX_SWAPPED").evidence


def test_yx_swapped_crop_and_resize_pixels_positive():
    xyxy_px = ROIS[:, 1:]  # (x1, y1, x2, y2) pixels where TF wants normalized (y1, x1, y2, x2)
    findings = diagnose(xyxy_px, image_size=IMAGE, features=(2, 3, 800, 1024), op="crop_and_resize")
    assert codes(findings) == ["PIXELS_AS_NORMALIZED", "YX_SWAPPED"]
    f = get(findings, "YX_SWAPPED")
    assert f.evidence == (
        "read as (y1, x1, y2, x2): max y = 900 > image height 800; exchanged: max y = 700 <= height 800 and "
        "max x = 900 <= width 1024"
    )
    assert f.fix.startswith("boxes = boxes[:, [1, 0, 3, 2]]")
    portrait = torch.tensor([[20.0, 100, 500, 900]])  # (x1, y1, x2, y2) px on a 1000 x 600 image; TF reads x2 = 900
    f = get(diagnose(portrait, image_size=(1000, 600), features=(1, 3, 1000, 600), op="crop_and_resize"), "YX_SWAPPED")
    assert f.evidence.startswith("read as (y1, x1, y2, x2): max x = 900 > image width 600")


def test_yx_swapped_negative():
    assert "YX_SWAPPED" not in codes(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))
    # honest limit: on a square image a swap cannot be seen from ranges, so nothing is claimed
    square = torch.tensor([[0.0, 100, 50, 1000, 600], [0.0, 10, 20, 300, 700]])
    assert diagnose(square[:, [0, 2, 1, 4, 3]], image_size=1024, features=(1, 8, 64, 64), spatial_scale=1 / 16) == []
    # normalized TF boxes carry no range information about the order either
    tf_xyxy = torch.tensor([[0.1, 0.2, 0.6, 0.9]])
    assert codes(diagnose(tf_xyxy, image_size=IMAGE, features=(1, 3, 800, 1024), op="crop_and_resize")) == []
    # a box slightly past the right edge is out of bounds, not a swap
    near = torch.tensor([[0.0, 700, 100, 1024 + 40, 200]])
    assert codes(diagnose(near, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16)) == ["OUT_OF_BOUNDS"]


def test_normalized_as_pixels_positive():
    norm = ROIS / torch.tensor([1, 1024, 800, 1024, 800])
    f = get(diagnose(norm, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16), "NORMALIZED_AS_PIXELS")
    assert f.severity == "error"
    assert f"max x = {900 / 1024:.4g}, max y = {700 / 800:.4g}" in f.evidence
    assert "they would span up to 900 x 700 px" in f.evidence
    assert f.fix.startswith("boxes_image = boxes_norm * torch.tensor([1024, 800, 1024, 800])")
    target = intended_centres(ROIS[:, 1:], 16)
    assert (pooled_centres(FEAT, norm, 1 / 16) - target).abs().max() > 5
    three = torch.tensor([[0.0, 0.1, 0.1, 0.9, 0.8], [0.0, 0.5, 0.2, 0.7, 0.9], [0.0, 0.05, 0.6, 0.3, 0.95]])
    assert get(diagnose(three, image_size=IMAGE, features=FEAT), "NORMALIZED_AS_PIXELS").severity == "error"


def test_normalized_as_pixels_negative():
    assert "NORMALIZED_AS_PIXELS" not in codes(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))
    # feature-cell boxes on a tiny map legitimately lie in [0, 1]
    tiny_map = torch.tensor([[0.0, 0.2, 0.1, 0.9, 0.8]])
    assert codes(diagnose(tiny_map, image_size=(64, 64), features=(1, 8, 2, 2))) == ["SUBCELL_ROI"]
    # one sub-cell feature box at the origin: ambiguous, at most an info
    one = torch.tensor([[0.0, 0.0, 0.0, 0.3, 0.25]])
    assert alarms(diagnose(one, image_size=IMAGE, features=FEAT)) == []
    # an integer box in the first pixel is not taken for normalized
    assert (
        alarms(diagnose(torch.tensor([[0.0, 0, 0, 1, 1]]), image_size=IMAGE, features=FEAT, spatial_scale=1 / 16)) == []
    )


def test_pixels_as_normalized_positive():
    yxyx_px = ROIS[:, [2, 1, 4, 3]]  # TF order, but pixels
    f = get(
        diagnose(yxyx_px, image_size=IMAGE, features=(2, 3, 800, 1024), op="crop_and_resize"), "PIXELS_AS_NORMALIZED"
    )
    assert f.severity == "error"
    assert f.evidence == (
        "max coordinate = 900 > 1 (normalized boxes lie in [0, 1]); max y = 700, max x = 900; as pixels they fit "
        "the 800 x 1024 image in (y1, x1, y2, x2) order"
    )
    assert f.fix == ("boxes_norm = (boxes - 0.5) / torch.tensor([800 - 1, 1024 - 1, 800 - 1, 1024 - 1])  # (y1, x1, "
                     "y2, x2) continuous px; for pixel indices (TF's convention) drop the - 0.5")


def test_pixels_as_normalized_on_a_feature_map_fixes_with_the_maps_size_and_stride():
    """On a stride-16 map the fix divides by the map's (h - 1, w - 1) after the half-cell shift, not by the image's
    (H - 1, W - 1) (issue 10, finding 4; tests/test_tf_normalization.py checks the sample points)."""
    f = get(diagnose(ROIS[:, [2, 1, 4, 3]], image_size=IMAGE, features=FEAT, op="crop_and_resize"),
            "PIXELS_AS_NORMALIZED")
    assert f.fix == ("boxes_norm = (boxes / 16 - 0.5) / torch.tensor([49, 63, 49, 63])  # (y1, x1, y2, x2) image px "
                     "onto the 50 x 64 map at stride 16: samples from edge to edge of each box, not / (image size - 1)")


def test_pixels_as_normalized_negative():
    norm = ROIS[:, [2, 1, 4, 3]] / torch.tensor([799, 1023, 799, 1023])
    assert diagnose(norm, image_size=IMAGE, features=(2, 3, 800, 1024), op="crop_and_resize") == []
    assert "PIXELS_AS_NORMALIZED" not in codes(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))


# ------------------------------------------------------------------------------------------------ box values


def test_inverted_box_positive():
    rois = torch.tensor([[0.0, 100, 50, 900, 600], [0.0, 300, 20, 250, 700]])
    f = get(diagnose(rois, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16), "INVERTED_BOX")
    assert f.severity == "error"
    assert f.evidence.startswith("1 of 2 boxes are inverted, rows 1; row 1: x2 - x1 = -50, y2 - y1 = 680")
    xywh = torch.tensor([[0.0, 100, 50, 80, 60], [0.0, 500, 300, 200, 100]])  # (x, y, w, h) read as xyxy
    f = get(diagnose(xywh, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16), "INVERTED_BOX")
    assert "look like (x, y, w, h)" in f.evidence and "box_convert(boxes, in_fmt='xywh', out_fmt='xyxy')" in f.fix
    tf = torch.tensor([[0.6, 0.2, 0.1, 0.9]])
    f = get(diagnose(tf, image_size=IMAGE, features=(1, 3, 800, 1024), op="crop_and_resize"), "INVERTED_BOX")
    assert f.severity == "warning" and "flipped crop" in f.message and "y2 - y1 = -0.5" in f.evidence


def test_inverted_box_negative():
    assert "INVERTED_BOX" not in codes(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))


def test_degenerate_box_positive():
    rois = torch.tensor([[0.0, 100, 50, 900, 600], [0.0, 300, 20, 300, 700], [0.0, 0, 0, 0, 0]])
    f = get(diagnose(rois, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16), "DEGENERATE_BOX")
    assert f.severity == "warning"
    assert f.evidence == (
        "2 of 3 boxes have zero width or height, rows 1, 2; row 1 = [300, 20, 300, 700]; "
        "1 of them all zeros (padding rows?)"
    )


def test_degenerate_box_negative():
    thin = torch.tensor([[0.0, 300, 20, 301, 700]])  # 1 px wide is thin, not degenerate
    assert "DEGENERATE_BOX" not in codes(diagnose(thin, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))


def test_out_of_bounds_positive():
    rois = torch.tensor([[0.0, 100, 50, 900, 600], [0.0, 900, 700, 1024 + 48, 800 + 40]])  # 3 / 2.5 strides out
    findings = diagnose(rois, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16)
    assert codes(findings) == ["OUT_OF_BOUNDS"]
    f = findings[0]
    assert f.severity == "warning"
    assert f.evidence.startswith(
        f"1 of 2 boxes; at spatial_scale 1/16: max x2 = 1072 * 1/16 = {1072 / 16:g} > map width 64"
    )
    assert f.fix == "boxes = torchvision.ops.clip_boxes_to_image(boxes, (800, 1024))"
    original = diagnose(ROIS * torch.tensor([1, 2, 2, 2, 2]), image_size=IMAGE, features=FEAT, spatial_scale=1 / 16)
    f = get(original, "OUT_OF_BOUNDS")  # boxes of a 2x larger original image: said, with the rescale
    assert (
        "are they pixels of a larger (original) image?" in f.message and "boxes * (new_size / original_size)" in f.fix
    )
    tf = torch.tensor([[0.1, 0.2, 1.2, 0.9]])
    f = get(diagnose(tf, image_size=IMAGE, features=(1, 3, 800, 1024), op="crop_and_resize"), "OUT_OF_BOUNDS")
    assert f.severity == "warning" and "y in [0.1, 1.2]" in f.evidence


def test_out_of_bounds_negative():
    # touching the far edge, or less than one stride past it (torchvision still samples there)
    for x2 in (1024, 1024 + 15):
        rois = torch.tensor([[0.0, 900, 700, x2, 800]])
        assert "OUT_OF_BOUNDS" not in codes(diagnose(rois, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))
    tf = torch.tensor([[0.0, 0.0, 1.0, 1023 / 1022]])  # normalized by W - 1 vs W: one pixel, quiet
    assert "OUT_OF_BOUNDS" not in codes(
        diagnose(tf, image_size=IMAGE, features=(1, 3, 800, 1024), op="crop_and_resize")
    )


def test_subcell_roi_positive():
    rois = torch.tensor([[0.0, 100, 50, 900, 600], [0.0, 500, 400, 502, 402]])  # a 2 px box at stride 32
    findings = diagnose(rois, image_size=IMAGE, features=(1, 8, 25, 32), spatial_scale=1 / 32)
    assert codes(findings) == ["SUBCELL_ROI"]
    f = findings[0]
    assert f.severity == "info"  # small objects are data, not a bug
    assert (
        f.evidence
        == f"1 of 2 boxes are under 1 cell at spatial_scale 1/32; smallest 2 x 2 -> {2 / 32:g} x {2 / 32:g} cells"
    )
    tf = torch.tensor([[0.5, 0.5, 0.501, 0.6]])
    assert (
        get(diagnose(tf, image_size=IMAGE, features=(1, 3, 80, 100), op="crop_and_resize"), "SUBCELL_ROI").severity
        == "info"
    )


def test_subcell_roi_negative():
    rois = torch.tensor([[0.0, 500, 400, 564, 464]])  # 64 px = 2 cells at stride 32
    assert "SUBCELL_ROI" not in codes(diagnose(rois, image_size=IMAGE, features=(1, 8, 25, 32), spatial_scale=1 / 32))


def test_batch_index_out_of_range_positive():
    n2 = (2, 8, 50, 64)
    for bad, text in ((2.0, "batch indices range 0..2 but features has N = 2"), (-1.0, "range -1..0")):
        rois = ROIS.clone()
        rois[1, 0] = bad
        rois[0, 0] = 0
        f = get(diagnose(rois, image_size=IMAGE, features=n2, spatial_scale=1 / 16), "BATCH_INDEX_OUT_OF_RANGE")
        assert f.severity == "error" and text in f.evidence
    half = ROIS.clone()
    half[0, 0] = 0.5
    f = get(diagnose(half, image_size=IMAGE, features=n2, spatial_scale=1 / 16), "BATCH_INDEX_OUT_OF_RANGE")
    assert "1 of 2 batch indices are not whole numbers, e.g. 0.5" in f.evidence
    index_last = torch.cat([ROIS[:, 1:], ROIS[:, :1]], 1)
    f = get(diagnose(index_last, image_size=IMAGE, features=n2), "BATCH_INDEX_OUT_OF_RANGE")
    assert f.evidence == (
        "batch indices range 10..100 but features has N = 2; the last column holds valid batch indices: "
        "is the batch index last instead of first?"
    )
    assert f.fix.startswith("rois = rois[:, [4, 0, 1, 2, 3]]")
    assert codes(diagnose(index_last, image_size=IMAGE, features=n2)) == ["BATCH_INDEX_OUT_OF_RANGE"]  # no guesses
    scores = torch.cat([ROIS[:, 1:], torch.tensor([[0.9], [0.35]])], 1)  # (x1, y1, x2, y2, score)
    f = get(diagnose(scores + 0.5, image_size=IMAGE, features=n2), "BATCH_INDEX_OUT_OF_RANGE")
    assert "is it (x1, y1, x2, y2, score)?" not in f.evidence  # score + 0.5 leaves [0, 1]
    f = get(
        diagnose(scores + torch.tensor([0.5, 0, 0, 0, 0]), image_size=IMAGE, features=n2), "BATCH_INDEX_OUT_OF_RANGE"
    )
    assert f.evidence.endswith("e.g. 100.5; the last column lies in [0, 1]: is it (x1, y1, x2, y2, score)?")
    f = get(
        diagnose([ROIS[:, 1:]] * 3, image_size=IMAGE, features=n2, spatial_scale=1 / 16), "BATCH_INDEX_OUT_OF_RANGE"
    )
    assert f.evidence == "len(boxes) = 3 (batch indices 0..2) but features has N = 2"
    tf = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6]])
    f = get(diagnose(tf, image_size=IMAGE, features=n2, op="crop_and_resize", box_indices=torch.tensor([0, 3])),
            "BATCH_INDEX_OUT_OF_RANGE")  # fmt: skip
    assert f.evidence == "box_indices range 0..3 but the image batch has N = 2"
    f = get(diagnose(tf, image_size=IMAGE, features=n2, op="crop_and_resize", box_indices=torch.tensor([0])),
            "BATCH_INDEX_OUT_OF_RANGE")  # fmt: skip
    assert "for 2 boxes (shape [1])" in f.evidence
    f = get(diagnose(tf, image_size=IMAGE, features=n2, op="crop_and_resize", box_indices=torch.tensor([0.0, 1.0])),
            "BATCH_INDEX_OUT_OF_RANGE")  # fmt: skip
    assert f.severity == "warning" and "int32" in f.message


def test_batch_index_out_of_range_negative():
    assert diagnose(ROIS, image_size=IMAGE, features=(2, 8, 50, 64), spatial_scale=1 / 16) == []
    tf = torch.tensor([[0.1, 0.1, 0.5, 0.5]])
    ok = diagnose(tf, image_size=IMAGE, features=(2, 3, 800, 1024), op="crop_and_resize", box_indices=torch.tensor([1]))
    assert ok == []


def test_non_finite_positive():
    rois = ROIS.clone()
    rois[1, 2] = float("nan")
    f = get(diagnose(rois, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16), "NON_FINITE")
    assert f.severity == "error"
    assert f.evidence == "1 of 2 rows are not finite, rows 1; row 1 = [1, 10, nan, 300, 700]"
    assert f.fix == "keep = torch.isfinite(boxes).all(dim=1); boxes = boxes[keep]"
    tf = torch.tensor([[0.1, float("inf"), 0.5, 0.5]])
    assert "NON_FINITE" in codes(diagnose(tf, image_size=IMAGE, features=FEAT, op="crop_and_resize"))


def test_non_finite_negative():
    assert "NON_FINITE" not in codes(diagnose(ROIS, image_size=IMAGE, features=FEAT, spatial_scale=1 / 16))


# ------------------------------------------------------------------------------------------------ dtype, device, stride


@pytest.mark.parametrize(
    "boxes_dtype, features_dtype",
    [(torch.float64, torch.float32), (torch.float32, torch.float16), (torch.float32, torch.float64)],
)
def test_dtype_mismatch_positive(boxes_dtype, features_dtype):
    features = torch.rand(*FEAT).to(features_dtype)
    rois = ROIS.to(boxes_dtype)
    f = get(diagnose(rois, image_size=IMAGE, features=features, spatial_scale=1 / 16), "DTYPE_MISMATCH")
    assert f.severity == "error"
    b, ft = str(boxes_dtype).split(".")[1], str(features_dtype).split(".")[1]
    assert f.evidence == f"boxes dtype = {b}, features dtype = {ft}"
    assert f.fix == "boxes = boxes.to(features.dtype)"
    # the oracle: torchvision 0.29 raises for this, for the list form too
    for form in (rois, [rois[:, 1:]]):
        with pytest.raises(RuntimeError, match="input should have the same type as rois"):
            torchvision.ops.roi_align(features, form, 7, spatial_scale=1 / 16)


def test_dtype_mismatch_integer_boxes():
    f = get(diagnose(ROIS.long(), image_size=IMAGE, features=FEAT, spatial_scale=1 / 16), "DTYPE_MISMATCH")
    assert f.severity == "error" and f.message.startswith("The boxes are int64; roi_align needs floating-point boxes")
    tf = torch.zeros(1, 4, dtype=torch.int32)
    f = get(diagnose(tf, image_size=IMAGE, features=FEAT, op="crop_and_resize"), "DTYPE_MISMATCH")
    assert "TensorFlow takes float32" in f.message


def test_dtype_mismatch_negative():
    for dtype in (torch.float32, torch.float64):
        features = torch.rand(*FEAT, dtype=dtype)
        assert diagnose(ROIS.to(dtype), image_size=IMAGE, features=features, spatial_scale=1 / 16) == []
        torchvision.ops.roi_align(features, ROIS.to(dtype), 7, spatial_scale=1 / 16)


def test_device_mismatch_positive():
    features = torch.empty(FEAT, device="meta")  # shape, dtype and device are all diagnose reads of a feature map
    f = get(diagnose(ROIS, image_size=IMAGE, features=features, spatial_scale=1 / 16), "DEVICE_MISMATCH")
    assert f.severity == "error" and f.evidence == "boxes on cpu, features on meta"
    assert f.fix == "boxes = boxes.to(features.device)"
    assert codes(diagnose(ROIS, image_size=IMAGE, features=features, spatial_scale=1 / 16)) == ["DEVICE_MISMATCH"]
    tf = torch.tensor([[0.1, 0.1, 0.5, 0.5]], device="meta")
    f = get(diagnose(tf, image_size=IMAGE, features=torch.empty(2, 3, 80, 80), op="crop_and_resize"), "DEVICE_MISMATCH")
    assert f.evidence == "boxes on meta, features on cpu"


def test_device_mismatch_negative():
    assert diagnose(ROIS, image_size=IMAGE, features=torch.empty(FEAT), spatial_scale=1 / 16) == []


@pytest.mark.cuda
def test_device_mismatch_cuda():
    features = torch.rand(*FEAT, device="cuda")
    f = get(diagnose(ROIS, image_size=IMAGE, features=features, spatial_scale=1 / 16), "DEVICE_MISMATCH")
    assert f.evidence == "boxes on cpu, features on cuda:0"
    with pytest.raises(RuntimeError):
        torchvision.ops.roi_align(features, ROIS, 7, spatial_scale=1 / 16)
    assert diagnose(ROIS.cuda(), image_size=IMAGE, features=features, spatial_scale=1 / 16) == []


def test_non_divisible_stride_positive():
    # torchvision ResNet on 1000 px: ceil(1000 / 16) = 63 cells; 63 * 16 = 1008, the far edge drifts 8 px
    assert math.ceil(1000 / 16) == 63
    rois = torch.tensor([[0.0, 100, 100, 900, 900]])
    findings = diagnose(rois, image_size=(1000, 1000), features=(1, 8, 63, 63), spatial_scale=1 / 16)
    assert codes(findings) == ["NON_DIVISIBLE_STRIDE"]
    f = findings[0]
    assert f.severity == "info"
    assert f.evidence == (
        "image 1000 x 1000 / 16 = 62.5 x 62.5; the map has 63 x 63 cells; 63 * 16 = 1008, 63 * 16 = 1008: "
        "drift 8 px (y), 8 px (x)"
    )
    assert f.fix.startswith("resize or pad the image to a multiple of 16 (e.g. 1008 x 1008)")


def test_non_divisible_stride_negative():
    rois = torch.tensor([[0.0, 100, 100, 900, 900]])
    assert diagnose(rois, image_size=(1024, 1024), features=(1, 8, 64, 64), spatial_scale=1 / 16) == []


# ------------------------------------------------------------------------------------------------ cross-check


def test_recognises_roi_lab_geometry_variants():
    geometry = pytest.importorskip("roi_lab.geometry")
    if not hasattr(geometry, "make_variants"):
        pytest.skip("roi_lab.geometry.make_variants not there yet")
    boxes = torch.tensor([[100.0, 50, 900, 600], [10, 20, 300, 700], [500, 400, 1000, 790]])
    expected = {
        "correct": [],
        "image_space_boxes": ["IMAGE_SPACE_BOXES"],
        "wrong_stride_x2": ["WRONG_STRIDE"],
        "wrong_stride_half": ["WRONG_STRIDE"],
        "yx_swapped": ["YX_SWAPPED"],
        "normalized_as_pixels": ["NORMALIZED_AS_PIXELS"],
        "pixels_as_normalized": ["PIXELS_AS_NORMALIZED"],
        "double_scaled": ["DOUBLE_SCALED"],
    }
    for v in geometry.make_variants(boxes, image_size=IMAGE, feature_size=(50, 64), stride=16):
        if v.kind.value not in expected:
            continue  # aligned / TF sampling / drift: not visible in the boxes' ranges
        if v.op == "roi_align":
            rois = torch.cat([torch.zeros(len(v.boxes_passed), 1), v.boxes_passed], 1)
            found = diagnose(rois, image_size=IMAGE, features=(1, 8, 50, 64),
                             spatial_scale=v.op_kwargs.get("spatial_scale"))  # fmt: skip
        else:
            found = diagnose(v.boxes_passed, image_size=IMAGE, features=(1, 8, 50, 64), op="crop_and_resize",
                             box_indices=v.op_kwargs.get("box_indices"))  # fmt: skip
        assert codes(found, ["error", "warning"]) == expected[v.kind.value], v.kind
