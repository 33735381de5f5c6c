"""Feature geometry and variants. Oracles: torchvision's ResNet (on the meta device: shapes only),
torchvision.ops.roi_align on coordinate-ramp and all-ones maps (where the samples really land and
which of them read zero), roi_lab's crop_and_resize (tested against TF fixtures by its owner), and
hand formulas for each bug."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from roi_lab.boxes import to_rois
from roi_lab.errors import InputValueError, RoiLabError
from roi_lab.geometry import (
    ROTATED_KINDS,
    VARIANT_TITLES,
    FeatureGeometry,
    Variant,
    VariantKind,
    box_iou_pairwise,
    crop_and_resize_sample_points,
    crop_features_for_variants,
    crop_image_for_variants,
    feature_geometry,
    make_variants,
    resnet_feature_size,
    tf_boxes_for_feature_map,
)

K = VariantKind


# ------------------------------------------------------------------------------------------------
# Feature geometry
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet_stages():
    """torchvision ResNet-50 on the meta device: real shapes, no arithmetic."""
    m = torchvision.models.resnet50(weights=None).to("meta").eval()

    def run(h: int, w: int) -> dict[int, tuple[int, int]]:
        x = torch.zeros(1, 3, h, w, device="meta")
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        out = {}
        for stride, layer in zip((4, 8, 16, 32), (m.layer1, m.layer2, m.layer3, m.layer4), strict=True):
            x = layer(x)
            out[stride] = tuple(x.shape[-2:])
        return out

    return run


def test_resnet_feature_size_issue_example(resnet_stages):
    assert resnet_stages(800, 1000)[16] == (50, 63)  # the issue's example, from the real model
    assert resnet_feature_size((800, 1000), 16) == (50, 63)


@pytest.mark.parametrize("size", [(800, 1000), (333, 517), (224, 224), (97, 1), (1, 65), (600, 1001)])
def test_resnet_feature_size_matches_torchvision(resnet_stages, size):
    real = resnet_stages(*size)
    for stride in (4, 8, 16, 32):
        assert resnet_feature_size(size, stride) == real[stride], (size, stride)


def test_resnet_feature_size_errors():
    with pytest.raises(InputValueError, match="power-of-two integer stride"):
        resnet_feature_size(100, 12)
    with pytest.raises(InputValueError, match=r"resnet_feature_size\(image_size=\.\.\.\)"):
        resnet_feature_size((0, 10), 16)


def test_feature_geometry_issue_example():
    g = feature_geometry((800, 1000), stride=16)
    assert isinstance(g, FeatureGeometry)
    assert g.feature_size == (50, 63)
    assert g.nominal_stride == (16.0, 16.0)
    assert g.effective_stride == (16.0, 1000 / 63)
    assert g.divisible is False
    assert g.drift_px == (0.0, 8.0)  # 63 * 16 = 1008 vs 1000
    assert g.spatial_scale == 1 / 16


def test_feature_geometry_infers_nominal_stride_like_multiscale_roialign():
    from torchvision.ops.poolers import _infer_scale

    for image, feat in [((800, 1000), (50, 63)), ((800, 1000), (25, 32)), ((512, 512), (128, 128))]:
        g = feature_geometry(image, feat)
        tv = _infer_scale(torch.zeros(1, 1, *feat), list(image))
        assert g.spatial_scale == tv
    g = feature_geometry((512, 768), (64, 96))
    assert g.divisible and g.drift_px == (0.0, 0.0) and g.effective_stride == (8.0, 8.0)
    aniso = feature_geometry((100, 100), (25, 50), stride=(4, 2))
    assert aniso.spatial_scale == (0.25, 0.5) and aniso.divisible


def test_feature_geometry_errors():
    with pytest.raises(InputValueError, match="feature_size, or a stride to derive it"):
        feature_geometry((100, 100))
    with pytest.raises(InputValueError, match="power-of-two stride"):
        feature_geometry((100, 100), stride=12)
    with pytest.raises(InputValueError, match="features.shape"):
        feature_geometry((100, 100), (0, 3))


# ------------------------------------------------------------------------------------------------
# Variants: shared oracles
# ------------------------------------------------------------------------------------------------

CONFIGS = {
    # name: (boxes_image, image_size, feature_size, stride, kwargs)
    "divisible": (
        torch.tensor([[130.0, 200.0, 300.0, 260.0], [260.0, 140.0, 500.0, 380.0], [400.0, 330.0, 440.0, 370.0]]),
        (400, 512),
        (25, 32),
        16,
        {},
    ),
    "resnet_1000": (
        torch.tensor([[150.0, 140.0, 420.0, 600.0], [700.0, 300.0, 1000.0, 800.0]]),
        (800, 1000),
        (50, 63),
        16,
        {"output_size": (3, 4), "sampling_ratio": 3},
    ),
    "legacy_unaligned": (
        torch.tensor([[160.0, 132.0, 168.0, 136.0], [300.0, 200.0, 420.0, 330.0]]),
        (400, 512),
        (50, 64),
        8,
        {"aligned": False},
    ),
    "adaptive": (
        torch.tensor([[150.0, 150.0, 260.0, 300.0], [300.0, 200.0, 330.0, 215.0]]),
        (400, 512),
        (50, 64),
        8,
        {"sampling_ratio": 0, "output_size": 2},
    ),
}


def variants_of(name: str, **override) -> dict[VariantKind, Variant]:
    boxes, image, feat, stride, kwargs = CONFIGS[name]
    vs = make_variants(boxes, image_size=image, feature_size=feat, stride=stride, **{**kwargs, **override})
    return {v.kind: v for v in vs}


def ramp_maps(h: int, w: int) -> torch.Tensor:
    """[1, 2, h, w] with channel 0 = x (column index) and channel 1 = y (row index), float64."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.stack([xs, ys])[None]


def bin_means(v: Variant, k: int) -> torch.Tensor:
    """Mean (x, y) of box k's samples per bin, [PH, PW, 2], from the variant's points."""
    ph, pw = v.output_size
    n = int(v.num_points[k])
    return v.points_feature[k, :n].double().reshape(ph, pw, -1, 2).mean(2)


def run_torchvision(v: Variant, features: torch.Tensor) -> torch.Tensor:
    rois = to_rois(v.boxes_passed.to(features.dtype), v.batch_index)
    return torchvision.ops.roi_align(features, rois, v.output_size, **v.op_kwargs)


def framework_rotated_call(v: Variant, features: torch.Tensor, batch_index: int) -> torch.Tensor:
    """The call each rotated variant's code line writes, through the frameworks' own module signatures:
    detectron2's ROIAlignRotated (degrees) or mmcv's RoIAlignRotated (radians, clockwise)."""
    from roi_lab.ops.roi_align_rotated import ROIAlignRotated, RoIAlignRotated

    kw = v.op_kwargs
    rois = torch.cat([torch.full((len(v.boxes_passed), 1), float(batch_index)), v.boxes_passed], 1).to(features.dtype)
    if v.kind in (K.ROTATED, K.RADIANS_AS_DEGREES):
        assert kw["angle_unit"] == "degrees" and not kw["clockwise"]
        return ROIAlignRotated(v.output_size, kw["spatial_scale"], kw["sampling_ratio"])(features, rois)
    assert kw["angle_unit"] == "radians" and kw["clockwise"] == (v.kind is K.CLOCKWISE_FLIPPED)
    return RoIAlignRotated(v.output_size, kw["spatial_scale"], kw["sampling_ratio"], aligned=True,
                           clockwise=kw["clockwise"])(features, rois)


# ------------------------------------------------------------------------------------------------
# Variants: the general contract
# ------------------------------------------------------------------------------------------------


def test_order_fields_and_shapes():
    vs = make_variants(
        CONFIGS["divisible"][0], image_size=(400, 512), feature_size=(25, 32), stride=16, output_size=(3, 5)
    )
    assert [v.kind for v in vs] == list(VariantKind)
    assert len(vs) == 17  # 11 of issue 10, RoIPool, the other framework's defaults, 4 rotated (issue 14)
    assert vs[0].kind is K.CORRECT
    for v in vs:
        assert v.op in ("roi_align", "crop_and_resize", "roi_pool", "roi_align_rotated")
        assert v.boxes_feature.shape == v.region_image.shape == (3, 4)
        assert v.boxes_passed.shape == ((3, 5) if v.op == "roi_align_rotated" else (3, 4))
        assert (v.rotated_region_image is None) == (v.op != "roi_align_rotated")
        if v.op == "roi_pool":  # whole cells; the largest box covers (round(500 / 16) - round(260 / 16) + 1) x
            p = 16 * 16  # (round(380 / 16) - round(140 / 16) + 1) = (31 - 16 + 1) x (24 - 9 + 1) cells
        elif v.kind is K.OTHER_DEFAULTS:  # torchvision's adaptive grid (aligned=False): box 1 is 15 x 15 cells,
            p = 3 * 5 * 5 * 3  # 3 x 5 bins of ceil(15 / 3) x ceil(15 / 5) samples
        else:
            p = 3 * 5 * 4 if v.op in ("roi_align", "roi_align_rotated") else 3 * 5
        assert v.points_feature.shape == v.points_image.shape == (3, p, 2)
        assert v.outside_fraction.shape == v.iou.shape == (3,)
        assert v.title and v.code and v.code in v.description
        assert ((v.outside_fraction >= 0) & (v.outside_fraction <= 1)).all()
    assert vs[0].op_kwargs == {"spatial_scale": 1 / 16, "sampling_ratio": 2, "aligned": True}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_roi_align_points_match_ramp_pooling(name):
    """Pool x/y ramps with torchvision: every bin's value is the mean of its sample positions wherever the
    samples stay inside [0, size - 1] (bilinear is exact on a linear map). Uses a map big enough for all."""
    checked = 0
    for v in variants_of(name).values():
        if v.op != "roi_align":
            continue
        pts = v.points_feature[~torch.isnan(v.points_feature[..., 0])]
        size = int(max(pts.max().item(), 1)) + 3
        pooled = run_torchvision(v, ramp_maps(size, size))  # [K, 2, PH, PW]
        for k in range(len(v.boxes_passed)):
            if int(v.num_points[k]) == 0:
                continue
            means = bin_means(v, k)  # [PH, PW, 2]
            ph, pw = v.output_size
            per_bin = v.points_feature[k, : int(v.num_points[k])].reshape(ph, pw, -1, 2)
            inside = ((per_bin >= 0) & (per_bin <= size - 1)).all(-1).all(-1)  # [PH, PW]
            got = pooled[k].permute(1, 2, 0)  # [PH, PW, 2]
            torch.testing.assert_close(got[inside], means[inside], atol=2e-5, rtol=1e-6)
            checked += int(inside.sum())
    assert checked > 50


@pytest.mark.parametrize("name", list(CONFIGS))
def test_outside_fraction_matches_pooling_ones(name):
    """On an all-ones map of the real size a bin pools the share of its samples that read a value;
    1 - mean over bins is the share that fell outside (every bin has the same number of samples)."""
    boxes, image, feat, stride, kwargs = CONFIGS[name]
    for v in variants_of(name).values():
        if v.op == "roi_pool":
            continue  # a max per bin: its outside share is the share of cells off the map (test_roi_pool_*)
        if v.op == "roi_align":
            pooled = run_torchvision(v, torch.ones(1, 1, *feat, dtype=torch.float64))
        elif v.op == "roi_align_rotated":
            pooled = v.apply(torch.ones(1, 1, *feat, dtype=torch.float64))
        else:
            from roi_lab import crop_and_resize

            pooled = crop_and_resize(
                torch.ones(1, 1, *feat), v.boxes_passed, v.op_kwargs["box_indices"], v.output_size
            ).double()
        expected = 1 - pooled.mean((1, 2, 3))
        has = v.num_points > 0
        torch.testing.assert_close(v.outside_fraction[has].double(), expected[has], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_crop_and_resize_points_match_ramp(name):
    """crop_and_resize on x/y ramps of the real map size returns each sample's position (or 0 outside)."""
    from roi_lab import crop_and_resize

    boxes, image, feat, stride, kwargs = CONFIGS[name]
    for v in variants_of(name).values():
        if v.op != "crop_and_resize":
            continue
        ramp = ramp_maps(*feat).float() + 1000  # +1000: a 0 can only be extrapolation
        out = crop_and_resize(ramp, v.boxes_passed, v.op_kwargs["box_indices"], v.output_size)  # [K, 2, CH, CW]
        got = out.permute(0, 2, 3, 1).reshape(len(boxes), -1, 2) - 1000
        inside = (out.permute(0, 2, 3, 1).reshape(len(boxes), -1, 2) != 0).all(-1)
        pts = v.points_feature
        x, y = pts[..., 0], pts[..., 1]
        in_range = (x >= 0) & (x <= feat[1] - 1) & (y >= 0) & (y <= feat[0] - 1)
        assert torch.equal(inside, in_range)
        torch.testing.assert_close(got[inside], pts[inside], atol=2e-3, rtol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_points_image_is_the_pixel_centre_mapping(name):
    for v in variants_of(name).values():
        s = torch.tensor(v.stride[::-1])
        torch.testing.assert_close(v.points_image, (v.points_feature + 0.5) * s, equal_nan=True)
        torch.testing.assert_close(v.region_image, (v.boxes_feature + 0.5) * s.repeat(2))


@settings(max_examples=30, deadline=None)
@given(
    stride=st.sampled_from([4, 8, 16, 32]),
    h=st.integers(33, 1200),
    w=st.integers(33, 1200),
    sampling_ratio=st.integers(-1, 3),
    data=st.data(),
)
def test_correct_is_exact_and_inside(stride, h, w, sampling_ratio, data):
    x1 = data.draw(st.floats(0, w - 2))
    y1 = data.draw(st.floats(0, h - 2))
    x2 = data.draw(st.floats(x1 + 1, w))
    y2 = data.draw(st.floats(y1 + 1, h))
    boxes = torch.tensor([[x1, y1, x2, y2]])  # float32
    feat = resnet_feature_size((h, w), stride)
    v = make_variants(boxes, image_size=(h, w), feature_size=feat, stride=stride, sampling_ratio=sampling_ratio)[0]
    assert v.kind is K.CORRECT
    torch.testing.assert_close(v.region_image, boxes, atol=1e-3, rtol=1e-5)
    assert v.iou.item() == pytest.approx(1.0, abs=1e-5)
    assert v.outside_fraction.item() == 0.0


# ------------------------------------------------------------------------------------------------
# Variants: each kind, positive and negative
# ------------------------------------------------------------------------------------------------


def test_image_space_boxes():
    vs = variants_of("divisible")
    v = vs[K.IMAGE_SPACE_BOXES]
    assert v.op_kwargs["spatial_scale"] == 1.0
    assert (v.outside_fraction > 0.5).all() and (v.iou < 0.05).all()
    torch.testing.assert_close(v.boxes_feature, CONFIGS["divisible"][0] - 0.5)
    # negative: on a stride-1 map (features at image resolution) spatial_scale=1 is right
    boxes = CONFIGS["divisible"][0]
    same = {x.kind: x for x in make_variants(boxes, image_size=(400, 512), feature_size=(400, 512), stride=1)}
    torch.testing.assert_close(same[K.IMAGE_SPACE_BOXES].points_feature, same[K.CORRECT].points_feature)
    assert (same[K.IMAGE_SPACE_BOXES].outside_fraction == 0).all()


def test_wrong_strides():
    boxes = CONFIGS["divisible"][0]
    vs = variants_of("divisible")
    x2, half = vs[K.WRONG_STRIDE_X2], vs[K.WRONG_STRIDE_HALF]
    assert x2.op_kwargs["spatial_scale"] == 1 / 32 and half.op_kwargs["spatial_scale"] == 1 / 8
    torch.testing.assert_close(x2.region_image, boxes / 2)  # aligned: (x / 32 - 0.5 + 0.5) * 16
    torch.testing.assert_close(half.region_image, boxes * 2)
    assert (x2.iou < 0.9).all() and (half.iou < 0.9).all()
    assert half.outside_fraction[1] > 0 and x2.outside_fraction.max() == 0
    # negative: a box at the origin is only resized, still overlapping its intended self
    at_origin = {
        v.kind: v for v in make_variants([[0, 0, 64, 64]], image_size=(256, 256), feature_size=(16, 16), stride=16)
    }
    assert at_origin[K.WRONG_STRIDE_X2].iou.item() == pytest.approx(0.25)


def test_yx_swapped():
    vs = variants_of("divisible")
    v = vs[K.YX_SWAPPED]
    boxes = CONFIGS["divisible"][0]
    torch.testing.assert_close(v.boxes_passed, boxes[:, [1, 0, 3, 2]])
    torch.testing.assert_close(v.region_image, boxes[:, [1, 0, 3, 2]])
    assert (v.iou < 0.5).all()
    # negative: a square box on the diagonal does not care
    sym = make_variants([[100, 100, 200, 200]], image_size=(400, 400), feature_size=(25, 25), stride=16)
    assert sym[4].kind is K.YX_SWAPPED and sym[4].iou.item() == pytest.approx(1.0)


def test_normalized_as_pixels():
    v = variants_of("divisible")[K.NORMALIZED_AS_PIXELS]
    boxes = CONFIGS["divisible"][0]
    torch.testing.assert_close(v.boxes_passed, boxes / torch.tensor([512, 400, 512, 400]))
    # the whole region sits inside the first cell of the image
    assert (v.region_image >= 0).all() and (v.region_image <= 16).all()
    assert (v.iou == 0).all()
    assert (v.outside_fraction == 0).all()  # it reads cell 0, a real value: silently wrong


def test_pixels_as_normalized():
    v = variants_of("divisible")[K.PIXELS_AS_NORMALIZED]
    boxes = CONFIGS["divisible"][0]
    assert v.op == "crop_and_resize"
    torch.testing.assert_close(v.boxes_passed, boxes[:, [1, 0, 3, 2]])
    assert (v.outside_fraction == 1).all() and (v.iou == 0).all()
    # by hand: first sample at y1 * (h - 1), x1 * (w - 1)
    torch.testing.assert_close(v.points_feature[0, 0], torch.tensor([130.0 * 31, 200.0 * 24]))
    # negative: a box within the first pixel really is inside [0, 1] and stays on the map
    tiny = make_variants([[0, 0, 0.5, 0.5]], image_size=(400, 512), feature_size=(25, 32), stride=16)
    assert tiny[6].kind is K.PIXELS_AS_NORMALIZED and tiny[6].outside_fraction.item() == 0


def test_double_scaled():
    vs = variants_of("divisible")
    v = vs[K.DOUBLE_SCALED]
    boxes = CONFIGS["divisible"][0]
    torch.testing.assert_close(v.boxes_passed, boxes / 16)
    torch.testing.assert_close(v.region_image, boxes / 16)  # scaled by 1/256 in feature px
    assert (v.iou < 0.01).all()
    # negative: stride 1 makes dividing by it harmless
    same = make_variants(boxes, image_size=(400, 512), feature_size=(400, 512), stride=1)
    assert same[7].kind is K.DOUBLE_SCALED
    torch.testing.assert_close(same[7].region_image, same[0].region_image)


def test_aligned_mismatch():
    boxes = CONFIGS["divisible"][0]
    v = variants_of("divisible")[K.ALIGNED_MISMATCH]
    assert v.op_kwargs["aligned"] is False
    torch.testing.assert_close(v.region_image, boxes + 8)  # half a cell right and down
    assert (v.iou < 1).all() and (v.iou > 0.4).all()
    # the unaligned min-size clamp: the 8 x 4 px box (1 x 0.5 cells at stride 8) becomes a full cell
    legacy = variants_of("legacy_unaligned")
    correct = legacy[K.CORRECT]
    assert correct.op_kwargs["aligned"] is False
    torch.testing.assert_close(correct.boxes_feature[0], torch.tensor([20.0, 16.5, 21.0, 17.5]))
    # negative: with the legacy setting as "correct", flipping it to aligned=True hits the box exactly
    flipped = legacy[K.ALIGNED_MISMATCH]
    assert flipped.op_kwargs["aligned"] is True
    torch.testing.assert_close(flipped.region_image, CONFIGS["legacy_unaligned"][0])
    assert (correct.iou < 1).all()


def test_tf_crop_and_resize_region_by_hand():
    boxes, (img_h, img_w), (h, w), s, _ = CONFIGS["resnet_1000"]
    v = variants_of("resnet_1000")[K.TF_CROP_AND_RESIZE]
    assert v.op == "crop_and_resize" and v.op_kwargs["crop_size"] == (3, 4)
    assert v.op_kwargs["box_indices"].dtype == torch.int32
    x1, y1, x2, y2 = boxes.double().unbind(1)
    fx, fy = (w - 1) / (img_w - 1), (h - 1) / (img_h - 1)
    expected_feature = torch.stack([x1 * fx, y1 * fy, x2 * fx, y2 * fy], 1)
    torch.testing.assert_close(v.boxes_feature.double(), expected_feature, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(v.region_image.double(), (expected_feature + 0.5) * s, atol=1e-4, rtol=1e-6)
    # first and last samples sit on the region's corners (corner-aligned), 4 columns evenly spaced
    torch.testing.assert_close(v.points_feature[:, 0], v.boxes_feature[:, :2])
    torch.testing.assert_close(v.points_feature[:, -1], v.boxes_feature[:, 2:])
    assert (v.iou < 0.99).all() and (v.iou > 0.8).all()
    # box 1 ends at the image's far corner (1000, 800): 1000 / 999 * 62 > 62 and 800 / 799 * 49 > 49, so the
    # last column (3 samples) and the last row (4) fall off the map: 6 of 12 read extrapolation_value
    assert v.outside_fraction.tolist() == [0.0, 0.5]
    # negative: ROIAlign's CORRECT region for the same boxes is exact
    assert variants_of("resnet_1000")[K.CORRECT].iou.min() > 0.9999


def test_non_divisible_stride():
    vs = variants_of("resnet_1000")
    v = vs[K.NON_DIVISIBLE_STRIDE]
    assert v.op_kwargs["spatial_scale"] == 63 / 1000
    # a box ending at the far edge x = 1000 ends 8 px too far (63 * 16 = 1008), by hand
    assert v.region_image[1, 2].item() == pytest.approx(1000 * 63 / 1000 * 16)
    assert v.region_image[1, 2].item() == pytest.approx(1008.0)
    assert (v.iou < 0.99).all()
    assert "8 px over the right edge" in v.description
    # negative: divisible image, the variant equals CORRECT and says so
    div = variants_of("divisible")
    same, correct = div[K.NON_DIVISIBLE_STRIDE], div[K.CORRECT]
    assert same.op_kwargs == correct.op_kwargs
    # exact by construction: both variants run the same elementwise code on the same inputs
    # (25 / 400 and 32 / 512 are both exactly 1 / 16), so every field is bit-identical
    for name in ("boxes_feature", "region_image", "points_feature", "outside_fraction", "iou"):
        assert torch.equal(getattr(same, name), getattr(correct, name)), name
    assert "identical to your settings" in same.description


def test_adaptive_grid_pads_with_nan():
    v = variants_of("adaptive")[K.CORRECT]
    # box 0: 110 x 150 px at stride 8 -> roi 13.75 x 18.75 cells, 2 x 2 bins -> grid ceil(6.875)=7 x ceil(9.375)=10
    assert v.num_points.tolist() == [2 * 2 * 7 * 10, 2 * 2 * 2 * 1]
    assert v.points_feature.shape == (2, 280, 2)
    assert torch.isnan(v.points_feature[1, 8:]).all() and not torch.isnan(v.points_feature[1, :8]).any()


def test_apply_matches_torchvision_and_crop_and_resize():
    from roi_lab import crop_and_resize

    torch.manual_seed(0)
    for name in ("divisible", "resnet_1000"):
        _, _, feat, _, _ = CONFIGS[name]
        features = torch.randn(2, 3, *feat)
        for v in variants_of(name, batch_index=1).values():
            got = v.apply(features)
            if v.op == "roi_align":
                expected = run_torchvision(v, features)
            elif v.op == "roi_pool":
                expected = torchvision.ops.roi_pool(features, to_rois(v.boxes_passed, 1), v.output_size,
                                                    **v.op_kwargs)
            elif v.op == "roi_align_rotated":
                expected = framework_rotated_call(v, features, 1)
            else:
                expected = crop_and_resize(
                    features, v.boxes_passed, torch.ones(len(v.boxes_passed), dtype=torch.int32), v.output_size
                )
            torch.testing.assert_close(got, expected)
            assert v.apply(features, 2).shape[-2:] == (2, 2)


def test_apply_to_image_matches_the_features_on_a_linear_image():
    """Average-pool a linear image into a stride-16 map: a feature sample at p then holds the image value at
    (p + 0.5) * 16 (pixel-centre convention), so per bin the feature crop and the image crop agree wherever
    both stay inside: evidence that region_image / points_image are the real image positions."""
    boxes = torch.tensor([[100.0, 60.0, 300.0, 250.0], [40.0, 200.0, 200.0, 380.0]])
    img_h, img_w, s = 400, 512, 16
    ys, xs = torch.meshgrid(
        torch.arange(img_h, dtype=torch.float64), torch.arange(img_w, dtype=torch.float64), indexing="ij"
    )
    image = torch.stack([xs, ys, 0.3 * xs + 0.7 * ys])[None]  # value = pixel-centre index
    features = torch.nn.functional.avg_pool2d(image, s)  # [1, 3, 25, 32]
    vs = make_variants(boxes, image_size=(img_h, img_w), feature_size=(25, 32), stride=s, output_size=4)
    checked = set()
    for v in vs:
        pts = v.points_feature
        if v.op == "roi_pool":
            continue  # a max over whole cells; its image crop is the mean over the cells' area
        if not ((pts >= 0).all() and (pts[..., 0] <= 31).all() and (pts[..., 1] <= 24).all()):
            continue  # clamping at the border differs between map and image
        a, b = v.apply(features), v.apply_to_image(image)  # [K, 3, 4, 4]
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-6, msg=v.kind.value)
        checked.add(v.kind)
    # CORRECT, stride x2, swapped, aligned mismatch, TF, non-divisible, and two turned ones (the others
    # turn a corner off the map, where the map and the image clamp differently)
    assert {K.CORRECT, K.YX_SWAPPED, K.TF_CROP_AND_RESIZE, K.RADIANS_AS_DEGREES, K.DEGREES_AS_RADIANS} <= checked
    assert len(checked) >= 8


def test_apply_to_image_shows_zero_off_image():
    boxes = torch.tensor([[300.0, 200.0, 500.0, 390.0]])
    image = torch.rand(1, 3, 400, 512)
    v = {x.kind: x for x in make_variants(boxes, image_size=(400, 512), feature_size=(25, 32), stride=16)}
    off = v[K.IMAGE_SPACE_BOXES].apply_to_image(image, 5)
    assert off.shape == (1, 3, 5, 5) and (off == 0).all()
    on = v[K.CORRECT].apply_to_image(image, 5)
    assert (on != 0).all()
    assert (v[K.PIXELS_AS_NORMALIZED].apply_to_image(image, 3) == 0).all()


def assert_batched_crop_matches(v, crop, expected, source, exact_ops=("crop_and_resize",)):
    """A crop from a batched call against the per-variant call. crop_and_resize is a gather plus
    elementwise lerps per output, and roi_pool a gather plus a max per bin, so they are bit-identical by
    construction whatever else is in the call; roi_align's (and roi_align_rotated's) matmul buckets depend
    on the other boxes, so it agrees to the documented batch-invariance bound, 4 * eps * max|source|
    (tests/ops/test_batch_invariance.py)."""
    assert crop.shape == expected.shape, v.kind.value
    if v.op in exact_ops:
        assert torch.equal(crop, expected), v.kind.value
    else:
        bound = 4 * torch.finfo(source.dtype).eps * float(source.abs().max())
        torch.testing.assert_close(crop, expected, rtol=0, atol=bound, msg=v.kind.value)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("output_size", [None, 56, (5, 9)])
def test_crop_image_for_variants_equals_apply_to_image_per_variant(aligned, output_size):
    """One batched call per op gives the crops of one call per variant (see assert_batched_crop_matches)."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 300, 400, generator=g)
    boxes = torch.tensor([[10.0, 20.0, 200.0, 150.5], [250.0, 30.0, 390.0, 280.0], [0.0, 0.0, 400.0, 300.0]])
    vs = make_variants(boxes, image_size=(300, 400), feature_size=(19, 25), stride=16, output_size=4,
                       aligned=aligned)
    assert {v.op for v in vs} == {"roi_align", "crop_and_resize", "roi_pool", "roi_align_rotated"}
    got = crop_image_for_variants(vs, image, output_size)
    assert len(got) == len(vs)
    for v, crop in zip(vs, got, strict=True):
        assert_batched_crop_matches(v, crop, v.apply_to_image(image, output_size), image)


def test_crop_image_for_variants_keeps_each_variants_own_size():
    """Variants made with different output sizes are batched per size, each cropped at its own size."""
    image = torch.rand(1, 3, 200, 240)
    boxes = torch.tensor([[20.0, 30.0, 120.0, 150.0]])
    a = make_variants(boxes, image_size=(200, 240), feature_size=(13, 15), stride=16, output_size=3)
    b = make_variants(boxes, image_size=(200, 240), feature_size=(13, 15), stride=16, output_size=6)
    mixed = [a[0], b[0], a[1], b[2]]
    got = crop_image_for_variants(mixed, image)
    assert [tuple(c.shape[-2:]) for c in got] == [(3, 3), (6, 6), (3, 3), (6, 6)]
    for v, crop in zip(mixed, got, strict=True):
        assert_batched_crop_matches(v, crop, v.apply_to_image(image), image)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
@pytest.mark.parametrize("output_size", [None, (3, 5)])
def test_crop_features_for_variants_equals_apply_per_variant(aligned, sampling_ratio, output_size):
    """Variants batched by op and settings give the crops of one call per variant (see assert_batched_crop_matches)."""
    g = torch.Generator().manual_seed(1)
    features = torch.randn(1, 8, 19, 25, generator=g)
    boxes = torch.tensor([[10.0, 20.0, 200.0, 150.5], [250.0, 30.0, 390.0, 280.0], [0.0, 0.0, 400.0, 300.0]])
    vs = make_variants(boxes, image_size=(300, 400), feature_size=(19, 25), stride=16, output_size=4,
                       sampling_ratio=sampling_ratio, aligned=aligned)
    settings = {(v.op_kwargs["spatial_scale"], v.op_kwargs["aligned"]) for v in vs if v.op == "roi_align"}
    assert 1 < len(settings) < len(vs)  # several groups, some with more than one variant
    got = crop_features_for_variants(vs, features, output_size)
    assert len(got) == len(vs)
    for v, crop in zip(vs, got, strict=True):
        assert_batched_crop_matches(v, crop, v.apply(features, output_size), features,
                                    exact_ops=("crop_and_resize", "roi_pool"))


def test_batched_crops_raise_like_the_op_for_a_refused_input():
    """A group whose input the op refuses raises (the caller then crops one by one to name the variant)."""
    boxes = torch.tensor([[20.0, 30.0, 120.0, 150.0]])
    vs = make_variants(boxes, image_size=(200, 240), feature_size=(13, 15), stride=16)
    with pytest.raises((RoiLabError, RuntimeError)):
        vs[0].apply(torch.rand(3, 13, 15))  # not [N, C, h, w]
    with pytest.raises((RoiLabError, RuntimeError)):
        crop_features_for_variants(vs, torch.rand(3, 13, 15))
    with pytest.raises((RoiLabError, RuntimeError)):
        crop_image_for_variants(vs, torch.rand(3, 200, 240))


def test_make_variants_errors():
    good = {"image_size": (100, 100), "feature_size": (7, 7), "stride": 16}
    with pytest.raises(InputValueError, match="one stride for both axes"):
        make_variants([[0, 0, 1, 1]], **{**good, "stride": (16, 8)})
    with pytest.raises(InputValueError, match=r"make_variants\(batch_index=\.\.\.\) expects a non-negative int"):
        make_variants([[0, 0, 1, 1]], **good, batch_index=-1)
    with pytest.raises(InputValueError, match="sampling_ratio=2"):
        make_variants([[0, 0, 1, 1]], **good, sampling_ratio=2.5)
    with pytest.raises(InputValueError, match=r"output_size"):
        make_variants([[0, 0, 1, 1]], **good, output_size=0)
    with pytest.raises(ValueError, match=r"make_variants\(boxes_image=\.\.\.\).*finite"):
        make_variants([[0, 0, math.inf, 1]], **good)
    assert [len(v.iou) for v in make_variants(torch.zeros(0, 4), **good)] == [0] * len(VariantKind)


def test_box_iou_pairwise_matches_torchvision():
    a = torch.rand(20, 2) * 50
    a = torch.cat([a, a + torch.rand(20, 2) * 30 + 0.1], 1)
    b = torch.rand(20, 2) * 50
    b = torch.cat([b, b + torch.rand(20, 2) * 30 + 0.1], 1)
    torch.testing.assert_close(box_iou_pairwise(a, b), torchvision.ops.box_iou(a, b).diagonal())


def test_accepts_numpy_and_torch_sizes():
    import numpy as np

    boxes = np.array([[10, 20, 100, 120]], dtype=np.int64)
    vs = make_variants(
        boxes,
        image_size=np.array([256, 256])[[0, 1]].tolist(),
        feature_size=torch.Size([16, 16]),
        stride=np.int64(16),
        sampling_ratio=np.int64(2),
        batch_index=np.int64(0),
    )
    assert vs[0].iou.item() == pytest.approx(1.0)
    assert resnet_feature_size(np.int64(1000), 16.0) == 63


@pytest.mark.cuda
def test_apply_on_cuda_matches_cpu():
    boxes, image, feat, stride, kwargs = CONFIGS["resnet_1000"]
    features = torch.randn(1, 3, *feat)
    img = torch.rand(1, 3, *image)
    for v in make_variants(boxes, image_size=image, feature_size=feat, stride=stride, **kwargs):
        torch.testing.assert_close(v.apply(features.cuda()).cpu(), v.apply(features), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(v.apply_to_image(img.cuda()).cpu(), v.apply_to_image(img), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Titles and the reference (issue 10, findings 1 and 3)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override", [{"aligned": False}, {"output_size": (2, 9)}, {"sampling_ratio": 0}])
def test_titles_do_not_depend_on_the_settings(override):
    """The app uses the titles as widget labels, which travel as strings: a label that changes with a setting
    (it was "aligned=False" / "aligned=True") leaves the browser with a value the server no longer knows."""
    for name in CONFIGS:
        base = [v.title for v in variants_of(name).values()]
        assert [v.title for v in variants_of(name, **override).values()] == base
        assert base == [VARIANT_TITLES[k] for k in VariantKind]
    assert len(set(VARIANT_TITLES.values())) == len(VariantKind)


def test_the_reference_is_your_settings_and_says_when_they_are_legacy():
    sound = variants_of("divisible")[K.CORRECT]
    assert sound.title == "Your settings" and sound.settings_note == "" and sound.fix == ""
    legacy = variants_of("legacy_unaligned")
    ref = legacy[K.CORRECT]
    assert ref.title == "Your settings"
    # by hand: stride 8, legacy: box 0 [160, 132, 168, 136] starts at cell (20, 16.5) and is stretched to one
    # cell, so it samples image px [164, 136, 172, 144]: it only touches the box (IoU 0)
    torch.testing.assert_close(ref.region_image[0], torch.tensor([164.0, 136.0, 172.0, 144.0]))
    assert ref.iou[0].item() == 0.0
    assert ref.settings_note.startswith("aligned=False is the legacy (Detectron v1) setting: its samples sit "
                                        "half a cell (4 image px) right of and below the boxes (IoU ")
    assert f"(IoU {ref.iou.min().item():.2f} for the worst box)" in ref.settings_note
    assert "aligned=True" in ref.fix
    # the flipped panel is the one on target, and its words say so
    flipped = legacy[K.ALIGNED_MISMATCH]
    assert flipped.iou.min().item() > 0.9999 and "onto the box" in flipped.words
    assert all(v.settings_note == "" for k, v in legacy.items() if k is not K.CORRECT)


def test_every_bug_variant_names_its_fix():
    vs = variants_of("divisible")
    for kind, v in vs.items():
        assert v.words and v.words in v.description and v.code in v.description
        if kind not in (K.CORRECT, K.ROTATED):  # your call and the rotated reference (detectron2's convention)
            assert v.fix, kind
    assert vs[K.ROTATED].fix == "" and vs[K.ROTATED].reference is K.ROTATED
    assert "spatial_scale=1/16" in vs[K.IMAGE_SPACE_BOXES].fix and "aligned=True" in vs[K.IMAGE_SPACE_BOXES].fix


# ------------------------------------------------------------------------------------------------
# crop_and_resize on a feature map: the exact normalization (issue 10, finding 4)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride,feature_size", [(16, (25, 32)), (8, (50, 64)), (16, (26, 33)), (1, (400, 512))])
def test_exact_tf_normalization_samples_the_box_edge_to_edge(stride, feature_size):
    """Oracle: crop_and_resize's own sample formula (y_norm * (h - 1)). With the exact normalization the first
    and last samples land on the box's edges in image px, for divisible and non-divisible maps alike."""
    boxes = CONFIGS["divisible"][0]
    norm = tf_boxes_for_feature_map(boxes, feature_size, stride)
    region, pts = crop_and_resize_sample_points(norm, feature_size, (5, 4))
    region_image = (region.double() + 0.5) * stride  # feature sample coordinate p is image coordinate (p + .5) s
    torch.testing.assert_close(region_image, boxes.double(), atol=1e-4, rtol=0)
    first, last = (pts[:, 0] + 0.5) * stride, (pts[:, -1] + 0.5) * stride  # (x, y) image px
    torch.testing.assert_close(first, boxes[:, :2].double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(last, boxes[:, 2:].double(), atol=1e-4, rtol=0)
    # negative: Matterport's (H - 1) normalization of the image misses the box by pixels on a feature map
    matterport = boxes[:, [1, 0, 3, 2]] / torch.tensor([399.0, 511.0, 399.0, 511.0])
    off, _ = crop_and_resize_sample_points(matterport, feature_size, (5, 4))
    if stride != 1:
        assert ((off.double() + 0.5) * stride - boxes.double()).abs().max() > 2


def test_exact_tf_normalization_reads_what_torchvision_reads_at_those_points():
    """Independent oracle: torchvision.ops.roi_align with sampling_ratio=1 and aligned=True samples bin centres;
    a box widened by half a sample step on each side puts its CW bin centres exactly on crop_and_resize's CW
    corner-aligned samples, so the two ops must agree on a random map (boxes inside the map)."""
    from roi_lab import crop_and_resize

    gen = torch.Generator().manual_seed(0)
    features = torch.randn(1, 3, 25, 32, generator=gen, dtype=torch.float64)
    boxes = CONFIGS["divisible"][0].double()
    ch, cw = 5, 4
    crops = crop_and_resize(features, tf_boxes_for_feature_map(boxes, (25, 32), 16).double(),
                            torch.zeros(3, dtype=torch.int32), (ch, cw))
    dy, dx = (boxes[:, 3] - boxes[:, 1]) / (ch - 1), (boxes[:, 2] - boxes[:, 0]) / (cw - 1)
    widened = torch.stack([boxes[:, 0] - dx / 2, boxes[:, 1] - dy / 2, boxes[:, 2] + dx / 2, boxes[:, 3] + dy / 2], 1)
    expected = torchvision.ops.roi_align(features, [widened], (ch, cw), 1 / 16, 1, True)
    # both are bilinear at the same points; crop_and_resize computes positions in float32 as TF does (up to
    # ~4e-6 of a cell here), so 1e-4 on a unit-variance map, far below the Matterport normalization's error
    torch.testing.assert_close(crops, expected, atol=1e-4, rtol=0)
    matterport = boxes[:, [1, 0, 3, 2]] / torch.tensor([399.0, 511.0, 399.0, 511.0], dtype=torch.float64)
    off = crop_and_resize(features, matterport, torch.zeros(3, dtype=torch.int32), (ch, cw))
    assert (off - expected).abs().max() > 0.1


def test_exact_tf_normalization_refuses_a_one_cell_map():
    with pytest.raises(InputValueError) as info:
        tf_boxes_for_feature_map(torch.tensor([[0.0, 0, 8, 8]]), (1, 5), 16)
    assert str(info.value).startswith("tf_boxes_for_feature_map(feature_size=...) expects a map of at least 2 x 2 "
                                      "cells (crop_and_resize divides by size - 1); got 1 x 5.")


def test_tf_variants_give_the_exact_normalization_as_their_fix():
    boxes, image, (h, w), s, _ = CONFIGS["resnet_1000"]
    vs = variants_of("resnet_1000")
    for kind in (K.TF_CROP_AND_RESIZE, K.PIXELS_AS_NORMALIZED):
        assert vs[kind].fix.startswith(
            f"boxes_norm = (boxes_yxyx / 16 - 0.5) / torch.tensor([{h - 1}, {w - 1}, {h - 1}, {w - 1}])"
        ), kind
    assert "(y / 16 - 0.5) / (h - 1) of the map" in vs[K.TF_CROP_AND_RESIZE].words


# ------------------------------------------------------------------------------------------------
# Issue 14: RoIPool, the other framework's defaults, rotated boxes and their angle mix-ups
# ------------------------------------------------------------------------------------------------


def test_roi_pool_region_by_hand():
    """Hand-derived from torchvision's roi_pool_kernel.cpp: start = round(x1 / 16), end = round(x2 / 16), halves
    away from zero (2.5 -> 3, where torch.round gives 2), both ends inclusive."""
    from roi_lab.geometry import roi_pool_cells

    boxes = torch.tensor([[20.0, 36.0, 100.0, 84.0], [40.0, 8.0, 72.0, 56.0]])
    region, cells, n = roi_pool_cells(boxes, 1 / 16)
    # box 0: x 1.25 -> 1, 6.25 -> 6 (6 cells); y 2.25 -> 2, 5.25 -> 5 (4 cells)
    # box 1: x 2.5 -> 3, 4.5 -> 5 (3 cells); y 0.5 -> 1, 3.5 -> 4 (4 cells)
    assert n.tolist() == [24, 12]
    assert region.tolist() == [[0.5, 1.5, 6.5, 5.5], [2.5, 0.5, 5.5, 4.5]]
    assert cells[1, :12].tolist() == [[x, y] for y in (1.0, 2.0, 3.0, 4.0) for x in (3.0, 4.0, 5.0)]
    assert torch.isnan(cells[1, 12:]).all()
    vs = {v.kind: v for v in make_variants(boxes, image_size=(128, 128), feature_size=(8, 8), stride=16)}
    v = vs[K.ROI_POOL]
    assert v.op == "roi_pool" and v.op_kwargs == {"spatial_scale": 1 / 16}
    assert v.region_image.tolist() == [[16.0, 32.0, 112.0, 96.0], [48.0, 16.0, 96.0, 80.0]]  # cell edges, image px


def test_roi_pool_reads_exactly_the_cells_drawn():
    """Oracle: torchvision.ops.roi_pool on a map whose channel c is one at cell c and zero elsewhere: the
    box's output in channel c is 1 iff the op reads cell c. Those cells are the variant's points on the map,
    and the rest of its points are off the map (outside_fraction)."""
    h, w = 9, 11
    features = torch.eye(h * w).reshape(h * w, h, w)[None]  # [1, h*w, h, w]
    boxes = torch.tensor([[20.0, 36.0, 100.0, 84.0], [100.0, 90.0, 190.0, 170.0], [0.0, 0.0, 30.0, 20.0],
                          [-24.0, 40.0, 60.0, 64.0], [8.0, 8.0, 9.0, 9.0]])
    for output_size in ((2, 3), (7, 7)):
        v = {x.kind: x for x in make_variants(boxes, image_size=(h * 16, w * 16), feature_size=(h, w), stride=16,
                                              output_size=output_size)}[K.ROI_POOL]
        out = torchvision.ops.roi_pool(features, to_rois(boxes), output_size, 1 / 16)  # [K, h*w, PH, PW]
        read = out.amax((2, 3)) > 0  # [K, h*w]
        for k in range(len(boxes)):
            pts = v.points_feature[k, : int(v.num_points[k])].long()  # [P, 2] (x, y) cell indices
            on = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
            drawn = set((pts[on, 1] * w + pts[on, 0]).tolist())
            assert drawn == set(read[k].nonzero().flatten().tolist()), (k, output_size)
            assert v.outside_fraction[k].item() == pytest.approx(1 - on.float().mean().item())
    assert v.outside_fraction[3].item() > 0  # the box reaching left of the image has cells off the map


@settings(max_examples=40, deadline=None)
@given(x1=st.floats(0, 400), y1=st.floats(0, 400), dw=st.floats(0, 300), dh=st.floats(0, 300),
       stride=st.sampled_from([8, 16, 32]))
def test_roi_pool_edges_move_as_its_words_say(x1, y1, dw, dh, stride):
    """The words' bounds: the left / top edges move by at most half a cell, the right / bottom ones land
    between half a cell and one and a half cells past the box's (the +1 of inclusive ends)."""
    boxes = torch.tensor([[x1, y1, x1 + dw, y1 + dh]])
    v = {x.kind: x for x in make_variants(boxes, image_size=(800, 800), feature_size=(800 // stride,) * 2,
                                          stride=stride)}[K.ROI_POOL]
    r, b = v.region_image[0].double(), boxes[0].double()
    tol = 1e-3  # float32 box coordinates
    assert (r[:2] - b[:2]).abs().max() <= stride / 2 + tol
    past = r[2:] - b[2:]
    assert (past >= stride / 2 - tol).all() and (past <= 1.5 * stride + tol).all()
    assert f"up to half a cell ({stride // 2} px)" in v.words
    assert f"({stride // 2} to {3 * stride // 2} px) past" in v.words


@pytest.mark.parametrize("aligned,sampling_ratio", [(True, 2), (False, 2), (True, 0), (False, 0)])
def test_other_framework_defaults(aligned, sampling_ratio):
    """aligned=True (mmcv-like) shows torchvision's defaults, aligned=False (torchvision-like) mmcv's; the
    words say which difference matters: the half-pixel offset always, the grid only for a fixed ratio."""
    vs = variants_of("divisible", aligned=aligned, sampling_ratio=sampling_ratio)
    v, flipped = vs[K.OTHER_DEFAULTS], vs[K.ALIGNED_MISMATCH]
    expected = {"aligned": False, "sampling_ratio": -1} if aligned else {"aligned": True, "sampling_ratio": 0}
    assert v.op == "roi_align" and v.op_kwargs == {"spatial_scale": 1 / 16, **expected}
    assert ("torchvision's defaults" if aligned else "mmcv's defaults") in v.words
    assert "-1 vs 0 changes nothing" in v.words
    assert ("torchvision.ops.roi_align" if aligned else "mmcv.ops.roi_align") in v.code
    assert f"sampling_ratio={sampling_ratio}, aligned={aligned}" in v.fix  # the fix passes every argument
    torch.testing.assert_close(v.region_image, flipped.region_image)  # the same half-pixel offset
    if sampling_ratio == 0:  # both adaptive: the same samples as 'aligned flipped', and the words say so
        torch.testing.assert_close(v.points_feature, flipped.points_feature, equal_nan=True)
        assert "equals 'aligned flipped'" in v.words
    else:
        assert v.points_feature.shape != flipped.points_feature.shape  # adaptive vs your fixed 2 x 2 per bin
        assert f"adaptive instead of your fixed {sampling_ratio} x {sampling_ratio}" in v.words


def test_sampling_ratio_minus_one_and_zero_are_the_same_in_torchvision():
    """The claim the OTHER_DEFAULTS words make (torchvision's kernel: ratio > 0 ? ratio : ceil(roi / P)),
    checked on torchvision itself: identical float operations, so exactly equal."""
    features = torch.randn(1, 4, 20, 24, generator=torch.Generator().manual_seed(3))
    rois = torch.tensor([[0.0, 10.0, 20.0, 300.0, 250.0], [0.0, 40.0, 33.0, 90.0, 60.0]])
    for aligned in (True, False):
        a = torchvision.ops.roi_align(features, rois, 7, 1 / 16, -1, aligned)
        b = torchvision.ops.roi_align(features, rois, 7, 1 / 16, 0, aligned)
        assert torch.equal(a, b)


ROTATED_BOXES = torch.tensor([[40.0, 60.0, 200.0, 140.0], [150.0, 120.0, 230.0, 280.0]])


def rotated_variants(angle: float, **kw) -> dict[VariantKind, Variant]:
    vs = make_variants(ROTATED_BOXES, image_size=(400, 512), feature_size=(25, 32), stride=16, angle_degrees=angle,
                       **kw)
    return {v.kind: v for v in vs}


def test_rotated_box_at_90_degrees_by_hand():
    """Box 0 is 160 x 80 about (120, 100). Turned 90 degrees counter-clockwise (y down: its x axis points up
    the image), it stands 80 wide and 160 tall about the same centre."""
    v = rotated_variants(90.0)[K.ROTATED]
    assert v.op == "roi_align_rotated"
    assert v.op_kwargs == {"spatial_scale": 1 / 16, "sampling_ratio": 2, "aligned": True, "angle_unit": "degrees",
                           "clockwise": False}
    torch.testing.assert_close(v.boxes_passed[0], torch.tensor([120.0, 100.0, 160.0, 80.0, 90.0]))
    torch.testing.assert_close(v.region_image[0], torch.tensor([80.0, 20.0, 160.0, 180.0]), atol=1e-4, rtol=0)
    corners = v.polygon_image[0]  # the box's own (-w/2, -h/2) corner: its top-left before the turn
    torch.testing.assert_close(corners[0], torch.tensor([80.0, 180.0], dtype=torch.float64), atol=1e-4, rtol=0)
    # the first bin's samples (box-top-left bin) sit near that corner: the bottom-left of the turned box
    first = v.points_image[0, 0]
    assert first[0] < 120 and first[1] > 100
    assert v.iou[0].item() == pytest.approx(1.0, abs=1e-5) and v.outside_fraction[0].item() == 0.0


def test_rotated_angle_mixups_turn_by_hand_derived_angles():
    vs = rotated_variants(30.0)
    theta = {k: vs[k].rotated_region_image[0, 4].item() for k in ROTATED_KINDS}
    assert theta[K.ROTATED] == pytest.approx(math.pi / 6)
    assert theta[K.RADIANS_AS_DEGREES] == pytest.approx(math.radians(math.radians(30.0)))  # 0.5236 degrees
    assert theta[K.DEGREES_AS_RADIANS] == pytest.approx(30.0)  # 30 rad = 1718.9 degrees
    assert theta[K.CLOCKWISE_FLIPPED] == pytest.approx(-math.pi / 6)
    assert vs[K.RADIANS_AS_DEGREES].op_kwargs["angle_unit"] == "degrees"
    assert vs[K.RADIANS_AS_DEGREES].boxes_passed[0, 4].item() == pytest.approx(math.pi / 6)
    assert vs[K.DEGREES_AS_RADIANS].op_kwargs["angle_unit"] == "radians"
    assert vs[K.DEGREES_AS_RADIANS].boxes_passed[0, 4].item() == 30.0
    assert vs[K.CLOCKWISE_FLIPPED].op_kwargs["clockwise"] is True
    assert "0.5236 degrees instead of 30" in vs[K.RADIANS_AS_DEGREES].words
    # 30 rad = 30 * 180 / pi = 1718.87 degrees = 5 turns - 81.13
    assert "1719 degrees, -81.13 after whole turns" in vs[K.DEGREES_AS_RADIANS].words
    for k in ROTATED_KINDS:
        assert vs[k].reference is K.ROTATED
        torch.testing.assert_close(vs[k].rotated_meant_image[:, 4], torch.full((2,), math.pi / 6))
    for k in set(VariantKind) - set(ROTATED_KINDS):
        assert vs[k].reference is K.CORRECT and vs[k].rotated_region_image is None
    # the IoUs: of the turned regions (a turn of theta - 30 degrees about the same centre)
    assert vs[K.ROTATED].iou.min().item() == pytest.approx(1.0, abs=1e-5)
    assert (vs[K.CLOCKWISE_FLIPPED].iou < vs[K.RADIANS_AS_DEGREES].iou).all()


@pytest.mark.parametrize("angle", [30.0, -65.0, 90.0, 180.0])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_rotated_points_match_ramp_pooling(angle, sampling_ratio):
    """Pool x/y ramps with each rotated variant's own op call: bilinear is exact on a linear map, so every
    bin's value is the mean of the sample positions drawn, wherever the bin's samples stay inside the map."""
    checked = 0
    for kind in ROTATED_KINDS:
        v = rotated_variants(angle, sampling_ratio=sampling_ratio, output_size=(3, 4))[kind]
        ramp = ramp_maps(40, 48)  # float64; the boxes' samples stay inside
        pooled = v.apply(ramp)  # [K, 2, PH, PW]
        for k in range(len(v.boxes_passed)):
            n = int(v.num_points[k])
            per_bin = v.points_feature[k, :n].double().reshape(3, 4, -1, 2)  # [PH, PW, S, 2]
            inside = ((per_bin >= 0) & (per_bin[..., :1] <= 47) & (per_bin[..., 1:] <= 39)).all(-1).all(-1)
            got = pooled[k].permute(1, 2, 0)  # [PH, PW, 2]
            torch.testing.assert_close(got[inside], per_bin.mean(2)[inside], atol=1e-5, rtol=0)  # float32 points
            checked += int(inside.sum())
    assert checked == 4 * 2 * 12  # every bin of every box inside


def test_rotated_at_angle_zero_samples_like_your_aligned_call():
    """At angle 0 detectron2's sampling is ROIAlign's with aligned=True (the same grid, the same -0.5), and
    the mix-ups coincide with it: evidence the two point formulas agree, and the words say so."""
    vs = rotated_variants(0.0, sampling_ratio=0)
    for k in ROTATED_KINDS:
        torch.testing.assert_close(vs[k].points_feature, vs[K.CORRECT].points_feature, equal_nan=True,
                                   atol=1e-5, rtol=0)
    assert "At 0 degrees this equals the reference" in vs[K.CLOCKWISE_FLIPPED].words


def test_rotated_iou_pairwise_exact_cases_and_a_raster_reference():
    from roi_lab.geometry import rotated_iou_pairwise

    square = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]])
    turned = torch.tensor([[0.0, 0.0, 1.0, 1.0, math.pi / 4]])
    assert rotated_iou_pairwise(square, square).item() == pytest.approx(1.0)
    # two unit squares 45 degrees apart: a regular octagon of area 2 (sqrt 2 - 1), IoU 1 / sqrt 2
    assert rotated_iou_pairwise(square, turned).item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert rotated_iou_pairwise(square, square + torch.tensor([[5.0, 0, 0, 0, 0]])).item() == 0.0
    # axis-aligned boxes: the IoU of box_iou_pairwise
    a, b = torch.tensor([[10.0, 10.0, 20.0, 6.0, 0.0]]), torch.tensor([[14.0, 12.0, 10.0, 10.0, math.pi]])
    xyxy = lambda r: torch.cat([r[:, :2] - r[:, 2:4] / 2, r[:, :2] + r[:, 2:4] / 2], 1)  # noqa: E731
    assert rotated_iou_pairwise(a, b).item() == pytest.approx(box_iou_pairwise(xyxy(a), xyxy(b)).item(), abs=1e-6)
    # random pairs against a raster count (a loop reference: point-in-rectangle on a 600 x 600 grid)
    g = torch.Generator().manual_seed(5)
    ra = torch.cat([torch.rand(6, 2, generator=g) * 4, 1 + torch.rand(6, 2, generator=g) * 3,
                    torch.rand(6, 1, generator=g) * 6], 1).double()
    rb = torch.cat([ra[:, :2] + torch.rand(6, 2, generator=g), 1 + torch.rand(6, 2, generator=g) * 3,
                    torch.rand(6, 1, generator=g) * 6], 1).double()
    ys, xs = torch.meshgrid(torch.linspace(-4, 9, 600, dtype=torch.float64),
                            torch.linspace(-4, 9, 600, dtype=torch.float64), indexing="ij")

    def inside(r):
        dx, dy = xs - r[0], ys - r[1]
        c, s = math.cos(r[4]), math.sin(r[4])
        # box coordinates (u, v): the inverse of x = cx + v sin + u cos, y = cy + v cos - u sin
        u, v = dx * c - dy * s, dx * s + dy * c
        return (u.abs() <= r[2] / 2) & (v.abs() <= r[3] / 2)

    got = rotated_iou_pairwise(ra, rb)
    for i in range(6):
        ia, ib = inside(ra[i]), inside(rb[i])
        raster = (ia & ib).sum().item() / (ia | ib).sum().item()
        assert got[i].item() == pytest.approx(raster, abs=0.01), i


def test_make_variants_refuses_a_bad_angle():
    good = {"image_size": (100, 100), "feature_size": (7, 7), "stride": 16}
    for bad in (math.nan, "30", True):
        with pytest.raises(InputValueError, match=r"(?s)make_variants\(angle_degrees=\.\.\.\) expects a finite angle "
                                                  r"in degrees, counter-clockwise.*angle_degrees=30\.0"):
            make_variants([[0, 0, 10, 10]], **good, angle_degrees=bad)
