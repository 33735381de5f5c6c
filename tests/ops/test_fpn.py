"""FPN level assignment per framework, and multi-level pooling against torchvision's MultiScaleRoIAlign."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torchvision
from torchvision.ops.poolers import LevelMapper

from roi_lab.errors import InputValueError, ShapeError
from roi_lab.ops.fpn import MultiScaleRoIAlign, assign_fpn_levels, fpn_level_table, infer_scales, multi_scale_roi_align


def square(sides, dtype=torch.float32):
    s = torch.as_tensor(sides, dtype=torch.float64)
    return torch.stack([torch.zeros_like(s), torch.zeros_like(s), s, s], 1).to(dtype)


def random_boxes(gen, k, width=1216.0, height=800.0):
    centre = torch.rand(k, 2, generator=gen) * torch.tensor([width, height])
    size = torch.exp(torch.rand(k, 2, generator=gen) * 6.5)  # 1 .. 665 px
    return torch.cat([centre - size / 2, centre + size / 2], 1)


def test_torchvision_convention_matches_level_mapper():
    # exact by construction: integer levels from the same elementwise ops (sqrt, log2, floor) in the same
    # order as LevelMapper, on tensors of the same shape, so both take the same vectorised code path
    gen = torch.Generator().manual_seed(0)
    boxes = torch.cat([random_boxes(gen, 500), square([0.0, 1, 111.99, 112, 223.99, 224, 447.9, 448, 2000])])
    for k_min, k_max in ((2, 5), (3, 6), (2, 2)):
        expected = LevelMapper(k_min, k_max)([boxes]) + k_min
        assert torch.equal(assign_fpn_levels(boxes, k_min=k_min, k_max=k_max), expected)
    expected = LevelMapper(2, 5, canonical_scale=160, canonical_level=3)([boxes]) + 2
    assert torch.equal(assign_fpn_levels(boxes, canonical_scale=160, canonical_level=3), expected)


def detectron2_reference(boxes, min_level, max_level, canonical_box_size=224, canonical_level=4):
    """detectron2/modeling/poolers.py::assign_boxes_to_levels, + min_level (absolute level)."""
    box_sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    level_assignments = torch.floor(canonical_level + torch.log2(box_sizes / canonical_box_size + 1e-8))
    return torch.clamp(level_assignments, min=min_level, max=max_level).to(torch.int64)


def test_detectron2_convention():
    gen = torch.Generator().manual_seed(1)
    boxes = random_boxes(gen, 500)
    got = assign_fpn_levels(boxes, convention="detectron2")
    assert torch.equal(got, detectron2_reference(boxes, 2, 5))


def test_conventions_disagree_just_below_a_boundary():
    # sqrt(area) = 224 * (1 - 5e-7): torchvision's +1e-6 outside the log lifts it to level 4,
    # detectron2's +1e-8 inside the log does not
    boxes = square([224 * (1 - 5e-7)], dtype=torch.float64)
    assert assign_fpn_levels(boxes).tolist() == [4]
    assert assign_fpn_levels(boxes, convention="detectron2").tolist() == [3]
    assert detectron2_reference(boxes, 2, 5).tolist() == [3]
    assert (LevelMapper(2, 5)([boxes]) + 2).tolist() == [4]


def test_mmdet_convention_thresholds():
    """mmdet SingleRoIExtractor.map_roi_levels docstring: scale < 112 -> level 0, [112, 224) -> 1,
    [224, 448) -> 2, >= 448 -> 3 (finest_scale 56); we return k_min + that index."""
    sides = [1, 55, 111.9, 112, 223.9, 224, 447.9, 448, 5000]
    assert assign_fpn_levels(square(sides), convention="mmdet").tolist() == [2, 2, 2, 3, 3, 4, 4, 5, 5]
    # mmdet's formula written out: floor(log2(scale / 56 + 1e-6)), clamped to [0, num_levels - 1]
    gen = torch.Generator().manual_seed(2)
    boxes = random_boxes(gen, 300)
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    index = torch.floor(torch.log2(scale / 56 + 1e-6)).clamp(min=0, max=3).long()
    assert torch.equal(assign_fpn_levels(boxes, convention="mmdet"), index + 2)


def test_zero_area_and_integer_boxes():
    assert assign_fpn_levels(torch.tensor([[5, 5, 5, 9]])).tolist() == [2]
    assert assign_fpn_levels(torch.tensor([[0, 0, 300, 300]])).dtype == torch.int64
    assert assign_fpn_levels(torch.zeros(0, 4)).shape == (0,)


def test_assign_errors():
    with pytest.raises(InputValueError, match='one of "torchvision", "detectron2", "mmdet", "matterport", '
                       '"tf_model_garden", "keras_cv", "tensorrt"; got str \'d2\''):
        assign_fpn_levels(square([10]), convention="d2")
    with pytest.raises(ShapeError, match=r"boxes as Tensor\[K, 4\].*got Tensor\[3, 5\]") as e:
        assign_fpn_levels(torch.zeros(3, 5))
    assert "boxes[:, 1:]" in e.value.fix
    with pytest.raises(InputValueError, match="1 inverted boxes, the first is row 1") as e:
        assign_fpn_levels(torch.tensor([[0.0, 0, 10, 10], [0, 0, -10, 10]]))
    assert "convert_boxes" in e.value.fix
    with pytest.raises(InputValueError, match="finite coordinates"):
        assign_fpn_levels(torch.tensor([[0.0, 0, float("nan"), 10]]))
    with pytest.raises(InputValueError, match="k_min <= k_max; got k_min=5, k_max=2"):
        assign_fpn_levels(square([10]), k_min=5, k_max=2)


def fpn_features(gen, n=2, c=4, image=(800, 1216)):
    h, w = image
    feats = OrderedDict()
    for i, stride in enumerate((4, 8, 16, 32)):
        feats[str(i)] = torch.randn(n, c, math.ceil(h / stride), math.ceil(w / stride), generator=gen)
    feats["pool"] = torch.randn(n, c, 13, 19, generator=gen)
    return feats


@pytest.mark.parametrize("image_shapes", [[(800, 1216), (800, 1216)], [(797, 1211), (640, 1000)]])
@pytest.mark.parametrize("output_size, ratio", [(7, 2), ((14, 14), 0), ((7, 5), -1)])
def test_module_matches_torchvision(image_shapes, output_size, ratio):
    gen = torch.Generator().manual_seed(3)
    feats = fpn_features(gen)
    boxes = [random_boxes(gen, 40), random_boxes(gen, 25)]
    ours = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size, ratio)
    theirs = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], output_size, ratio)
    torch.testing.assert_close(ours(feats, boxes, image_shapes), theirs(feats, boxes, image_shapes))
    assert ours.scales == theirs.scales == [0.25, 0.125, 0.0625, 0.03125]
    assert repr(ours) == repr(theirs)


def test_module_gradients_match_torchvision():
    gen = torch.Generator().manual_seed(4)
    feats = fpn_features(gen, c=3)
    boxes = [random_boxes(gen, 30), random_boxes(gen, 20)]
    names = ["0", "1", "2", "3"]
    ours = OrderedDict((k, v.clone().requires_grad_()) for k, v in feats.items())
    theirs = OrderedDict((k, v.clone().requires_grad_()) for k, v in feats.items())
    a = MultiScaleRoIAlign(names, 7, 2)(ours, boxes, [(800, 1216)] * 2)
    b = torchvision.ops.MultiScaleRoIAlign(names, 7, 2)(theirs, boxes, [(800, 1216)] * 2)
    g = torch.randn(a.shape, generator=gen)
    (a * g).sum().backward()
    (b * g).sum().backward()
    for k in names:
        torch.testing.assert_close(ours[k].grad, theirs[k].grad)


def test_single_level_and_subset_of_levels():
    gen = torch.Generator().manual_seed(5)
    feats = fpn_features(gen)
    boxes = [random_boxes(gen, 10), random_boxes(gen, 5)]
    for names in (["2"], ["1", "2"], ["3", "2", "1"]):  # torchvision keeps the dict order
        ours = MultiScaleRoIAlign(names, 7, 2)(feats, boxes, [(800, 1216)] * 2)
        theirs = torchvision.ops.MultiScaleRoIAlign(names, 7, 2)(feats, boxes, [(800, 1216)] * 2)
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("names", [["1", "3"], ["3", "0"]])
def test_skipped_level_is_refused_where_torchvision_pools_zeros(names):
    gen = torch.Generator().manual_seed(5)
    feats = fpn_features(gen)
    boxes = [square([60.0, 150, 300, 600]), square([20.0])]
    theirs = torchvision.ops.MultiScaleRoIAlign(names, 7, 2)(feats, boxes, [(800, 1216)] * 2)
    assert bool((theirs.flatten(1) == 0).all(1).any())  # torchvision's silent all-zero crops: the bug
    with pytest.raises(InputValueError) as err:
        MultiScaleRoIAlign(names, 7, 2)(feats, boxes, [(800, 1216)] * 2)
    assert err.value.got == (
        "[1/8, 1/32]: level 4 (1/16) is missing, so the boxes of the last 1 level(s) would find no map and pool "
        "zeros (torchvision does that silently)"
        if names == ["1", "3"]
        else "[1/4, 1/32]: level 3 (1/8) is missing, so the boxes of the last 2 level(s) would find no map and "
        "pool zeros (torchvision does that silently)"
    )


def test_scales_that_are_no_powers_of_two_are_refused():
    gen = torch.Generator().manual_seed(5)
    feats = fpn_features(gen)
    maps = [feats["0"], feats["1"]]
    with pytest.raises(InputValueError) as err:
        multi_scale_roi_align(maps, [square([100.0])], [(800, 1216)], 7, scales=[0.25, 1 / 6])
    assert str(err.value) == (
        "multi_scale_roi_align(scales=...) expects scales 1 / 2**k of consecutive levels k, finest first (e.g. "
        "[1/4, 1/8, 1/16, 1/32]); got [1/4, 1/6]: 1/6 is no power of two, so its level is truncated to 2 and its "
        "boxes are pooled at a scale that is not their map's.\nFix: use the backbone's real strides (powers of "
        "two), or pass scales=[...] explicitly"
    )


def test_oblong_images_take_the_scale_of_the_longer_side():
    # pytorch/vision#3747: a 100 x 1000 image resized to 10 x 100 and padded to 32 x 128; the stride-4 map is
    # 8 x 32. The height says 8 / 10 -> scale 1 (torchvision 0.29 takes it; older versions assert), the
    # width 32 / 100 -> 1/4, the map's real scale
    maps = [torch.zeros(1, 1, 8, 32), torch.zeros(1, 1, 4, 16), torch.zeros(1, 1, 2, 8), torch.zeros(1, 1, 1, 4)]
    with pytest.warns(UserWarning, match=r"map 0 \(8 x 32\): 1 by height, 0.25 by width; map 1"):
        assert infer_scales(maps, [(10, 100)]) == [0.25, 0.125, 0.0625, 0.03125]
    tv = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    tv(OrderedDict((str(i), m) for i, m in enumerate(maps)), [square([5.0])], [(10, 100)])
    assert tv.scales[0] == 1.0  # torchvision's wrong scale for level 0
    assert infer_scales([torch.zeros(1, 1, 25, 2)], [(100, 10)]) == [0.25]  # tall: the height is the longer side
    # the TorchScript twin infers the same scales (it has no warning to give)
    gen = torch.Generator().manual_seed(3)
    feats = OrderedDict((str(i), torch.randn(1, 2, *m.shape[-2:], generator=gen)) for i, m in enumerate(maps))
    boxes = [torch.tensor([[1.0, 1, 9, 9], [10, 0, 90, 10], [0, 0, 60, 8]])]
    with pytest.warns(UserWarning, match="longer side"):
        eager = MultiScaleRoIAlign(["0", "1", "2", "3"], 2, 2)(feats, boxes, [(10, 100)])
    scripted = torch.jit.script(MultiScaleRoIAlign(["0", "1", "2", "3"], 2, 2))
    torch.testing.assert_close(scripted(feats, boxes, [(10, 100)]), eager)  # float32 defaults: same kernels


def test_matterport_rounds_where_the_paper_floors():
    # mrcnn/model.py PyramidROIAlign: 4 + tf.round(log2(sqrt(h * w) / (224 / sqrt(image_area)))), clamp 2..5,
    # on boxes normalized by norm_boxes ((y2 - 1) / (H - 1)); tf.round rounds halves to even
    image = (1024, 1024)
    sides = torch.tensor([10.0, 100, 159, 170, 300, 317, 340, 2000])
    boxes = torch.stack([torch.zeros(8), torch.zeros(8), sides, sides], 1)
    h = (sides - 1) / 1023  # Matterport's normalized height (and width)
    expected = (4 + torch.round(torch.log2(h / (224 / 1024.0)))).clamp(2, 5).long()
    got = assign_fpn_levels(boxes, convention="matterport", image_size=image)
    assert torch.equal(got, expected)
    # 170 px and 340 px: one level up from torchvision's floor; 159 px stays (Matterport's - 1 px shift)
    assert got.tolist() == [2, 3, 3, 4, 4, 4, 5, 5] and assign_fpn_levels(boxes).tolist() == [2, 2, 3, 3, 4, 4, 4, 5]
    with pytest.raises(InputValueError, match="convention='matterport' normalizes the boxes by it"):
        assign_fpn_levels(boxes, convention="matterport")


def test_tf_model_garden_and_keras_cv_floor_of_the_log_ratio():
    # official/vision/ops/spatial_transform_ops.py: floor(log(sqrt(area) / 224) / log(2)) + 4 in float32
    sides = torch.tensor([0.0, 50, 111.9, 112, 224, 447, 448, 5000])
    boxes = torch.stack([torch.zeros(8), torch.zeros(8), sides, sides], 1)
    expected = [2, 2, 2, 3, 4, 4, 5, 5]
    assert assign_fpn_levels(boxes, convention="tf_model_garden").tolist() == expected
    assert assign_fpn_levels(boxes, convention="keras_cv").tolist() == expected


def test_tensorrt_thresholds_and_legacy_fpn_scale():
    # plugin/pyramidROIAlignPlugin: P3 above sqrt(area) = fpn_scale / 2, P4 above fpn_scale, P5 above 2 fpn_scale
    # (strictly); the legacy thresholds are fpn_scale 158's: 79, 158, 316
    sides = torch.tensor([100.0, 113, 170, 225, 449, 300])
    boxes = torch.stack([torch.zeros(6), torch.zeros(6), sides, sides], 1)
    assert assign_fpn_levels(boxes, convention="tensorrt", image_size=(1024, 1024)).tolist() == [2, 3, 3, 4, 5, 4]
    assert assign_fpn_levels(boxes, convention="tensorrt", canonical_scale=158,
                             image_size=(1024, 1024)).tolist() == [3, 3, 4, 4, 5, 4]  # fmt: skip
    # boxes are clipped to the image first: a box mostly outside counts its inside part (100 x 224 px: P3,
    # where its whole 1000 x 224 px would be P5)
    mostly_out = torch.tensor([[-900.0, 0, 100, 224]])
    assert assign_fpn_levels(mostly_out, convention="tensorrt", image_size=(1024, 1024)).tolist() == [3]
    assert assign_fpn_levels(mostly_out).tolist() == [5]


def test_level_table_shows_where_conventions_disagree():
    boxes = torch.tensor([[0.0, 0, 100, 100], [0, 0, 170, 170], [0, 0, 340, 340], [0, 0, 1000, 1000]])
    table = fpn_level_table(boxes, (1024, 1024))
    assert list(table) == ["sqrt_area", "torchvision", "detectron2", "mmdet", "matterport", "tf_model_garden",
                           "tensorrt", "tensorrt_legacy", "disagree"]  # fmt: skip
    assert table["torchvision"].tolist() == [2, 3, 4, 5] and table["matterport"].tolist() == [3, 4, 5, 5]
    assert table["mmdet"].tolist() == [2, 3, 4, 5] and table["tensorrt_legacy"].tolist() == [3, 4, 5, 5]
    assert table["disagree"].tolist() == [True, True, True, False]


def test_function_with_list_and_explicit_scales():
    gen = torch.Generator().manual_seed(6)
    feats = fpn_features(gen)
    maps = [feats[k] for k in ("0", "1", "2", "3")]
    boxes = [random_boxes(gen, 12), torch.zeros(0, 4)]
    theirs = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)(feats, boxes, [(800, 1216)] * 2)
    torch.testing.assert_close(multi_scale_roi_align(maps, boxes, [(800, 1216)] * 2, 7), theirs)
    scales = [0.25, 0.125, 0.0625, 0.03125]
    torch.testing.assert_close(multi_scale_roi_align(maps, boxes, [(1, 1)], 7, scales=scales), theirs)


def test_infer_scales_rounds_to_powers_of_two():
    maps = [torch.zeros(1, 1, 200, 304), torch.zeros(1, 1, 100, 152), torch.zeros(1, 1, 25, 38)]
    assert infer_scales(maps, [(797, 1211), (800, 1000)]) == [0.25, 0.125, 0.03125]


def test_multi_scale_errors():
    gen = torch.Generator().manual_seed(7)
    feats = fpn_features(gen)
    with pytest.raises(InputValueError, match=r"names among the feature maps.*got \['p6'\] not found"):
        MultiScaleRoIAlign(["0", "p6"], 7, 2)(feats, [random_boxes(gen, 2)] * 2, [(800, 1216)])
    with pytest.raises(ShapeError, match="maps with the same batch size N and channel count C"):
        multi_scale_roi_align([feats["0"], feats["1"][:, :2]], [random_boxes(gen, 2)] * 2, [(800, 1216)], 7)
    with pytest.raises(ShapeError, match=r"one Tensor\[L, 4\] \(x1, y1, x2, y2, image px\) per image"):
        multi_scale_roi_align([feats["0"]], torch.zeros(3, 5), [(800, 1216)], 7)
    with pytest.raises(InputValueError, match="one \\(height, width\\) per image; got list \\[\\]"):
        multi_scale_roi_align([feats["0"]], [random_boxes(gen, 2)], [], 7)
    with pytest.raises(InputValueError, match="one scale per feature map \\(2\\)"):
        multi_scale_roi_align([feats["0"], feats["1"]], [random_boxes(gen, 2)], [(800, 1216)], 7, scales=[0.25])
    with pytest.raises(InputValueError, match="at least one feature map"):
        multi_scale_roi_align([], [random_boxes(gen, 2)], [(800, 1216)], 7)


def test_infer_scales_rounds_in_float32_like_torchvision():
    """infer_scales emulates torchvision's float32 ``torch.tensor(h / H).log2().round()`` in Python, so
    torch.compile can fold it. Near h / H = 2**(k + 0.5) float32 matters: in float64 the ratio
    2378 / 3363 (just below 2**-0.5) rounds to the other power of two."""
    pairs = [(2378, 3363)]
    for height in range(1, 700):
        for k in range(-6, 1):
            centre = height * 2 ** (k + 0.5)
            pairs += [(h, height) for h in (math.floor(centre), math.ceil(centre)) if h >= 1]
    for h, height in pairs:
        expected = 2 ** float(torch.tensor(float(h) / float(height)).log2().round())  # torchvision's _infer_scale
        assert infer_scales([torch.zeros(1, 1, h, 1)], [(height, 1)]) == [expected], (h, height)
    assert 2 ** round(math.log2(2378 / 3363)) != infer_scales([torch.zeros(1, 1, 2378, 1)], [(3363, 1)])[0]


@pytest.mark.parametrize("scales", [[0.25, 0.0], [0.25, -0.125], [float("nan"), 0.125], [0.25]])
def test_the_op_refuses_bad_scales_clearly(scales):
    # a direct torch.ops call (TorchScript's path) used to crash in math.log2 ("math domain error")
    maps = [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)]
    rois = torch.tensor([[0, 1.0, 1, 5, 5]])
    with pytest.raises(InputValueError, match=r"multi_scale_roi_align\(scales=\.\.\.\) expects (finite positive|one "
                       "scale per feature map)"):  # fmt: skip
        torch.ops.roi_lab.multi_scale_roi_align(maps, rois, scales, 2, 2, 2, False, 224.0, 4)
