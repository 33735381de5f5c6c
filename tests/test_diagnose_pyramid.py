"""diagnose(..., pyramid=...): FPN level sizes against the image (facebookresearch/detectron2#1840).

The level sizes come from a real torchvision ResNet-18 body (ceil-mode stride-2 convs, as detectron2's), the
top-down failure is reproduced with detectron2's own sum (``F.interpolate(scale_factor=2)`` + add) and its
torch message compared with what the finding quotes, and torchvision's FeaturePyramidNetwork is run on the
same maps to check the "no shift" the finding claims for it.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch.nn import functional as F
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FeaturePyramidNetwork

from roi_lab.capture import capture
from roi_lab.cli import EXIT_OK, main
from roi_lab.diagnose import CODES, PYRAMID_CODES, diagnose

ROIS = torch.tensor([[0.0, 10, 10, 100, 100]])


@pytest.fixture(scope="module")
def body():
    torch.manual_seed(0)
    layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    return IntermediateLayerGetter(torchvision.models.resnet18(), layers).eval()


def _levels(body, h, w):
    with torch.no_grad():
        return list(body(torch.zeros(1, 3, h, w)).values())  # C2..C5, finest first


def _detectron2_top_down(maps):
    """detectron2's FPN.forward top-down sum (detectron2/modeling/backbone/fpn.py); its 1x1 lateral convs, which
    give every level one channel count, are replaced by keeping the first 64 channels."""
    prev = maps[-1][:, :64]
    for lateral in reversed(maps[:-1]):
        prev = lateral[:, :64] + F.interpolate(prev, scale_factor=2.0, mode="nearest")
    return prev


def test_codes_and_rule_table():
    assert "FPN_LEVEL_SIZES" in CODES and set(PYRAMID_CODES) <= set(CODES)


def test_image_not_divisible_by_32_on_a_real_resnet(body):
    maps = _levels(body, 320, 330)
    sizes = [tuple(m.shape[-2:]) for m in maps]
    assert sizes == [(80, 83), (40, 42), (20, 21), (10, 11)]  # ceil(330 / s): 83, 42, 21, 11
    with pytest.raises(RuntimeError) as err:
        _detectron2_top_down(maps)  # what detectron2 does without padding
    findings = diagnose(ROIS, image_size=(320, 330), features=maps[1], spatial_scale=1 / 8, pyramid=maps)
    assert [f.code for f in findings] == ["NON_DIVISIBLE_STRIDE"]  # the single-map info is not repeated
    (f,) = findings
    assert f.severity == "warning"
    assert f"'{err.value}'" in f.message  # the very message torch raises, sizes and dimension included
    assert str(err.value) == (
        "The size of tensor a (21) must match the size of tensor b (22) at non-singleton dimension 3"
    )
    assert f.message == (
        "The image is not a multiple of the coarsest stride 32, so the pyramid's maps are not image / stride: "
        "level 2 (stride 16) has 21 cells on x and level 3 (stride 32) 11, not 21 / 2: detectron2's FPN "
        "(F.interpolate(scale_factor=2) + add, and any FPN written that way) raises 'The size of tensor a (21) must "
        "match the size of tensor b (22) at non-singleton dimension 3' (facebookresearch/detectron2#1840); "
        "torchvision's FeaturePyramidNetwork and mmdet's FPN resize the coarser map to the finer one's size "
        "instead, which here reads the same cells as x2 nearest (cell j // 2): no shift. The coarsest map reaches "
        "0.6875 cells (22 px) past the image: its effective stride is 32 x 30 px, not 32, so a scale taken as map "
        "/ image instead of 1/32 maps boxes at the far edge that far off."
    )
    assert f.evidence == (
        "image 320 x 330: 320 / 32 = 10, 330 / 32 = 10.31; levels 80 x 83, 40 x 42, 20 x 21, 10 x 11 at strides 4, "
        "8, 16, 32 (ceil of image / stride each); 10 * 32 = 320, 11 * 32 = 352 px"
    )
    assert f.fix.startswith("pad the image (bottom/right, so the boxes keep their coordinates) to a multiple of 32, "
                            "here 320 x 352, before the backbone: torchvision's GeneralizedRCNNTransform("
                            "size_divisible=32) does, detectron2 pads to backbone.size_divisibility")  # fmt: skip
    # old behaviour without the pyramid: only the single map's info, which says nothing of the top-down sum
    (single,) = diagnose(ROIS, image_size=(320, 330), features=maps[1], spatial_scale=1 / 8)
    assert single.code == "NON_DIVISIBLE_STRIDE" and single.severity == "info" and "tensor a" not in single.message


def test_torchvision_fpn_on_those_maps_reads_the_x2_cells(body):
    """The 'no shift' of the finding: torchvision's FPN runs, and its size-based upsampling picks cell j // 2."""
    maps = _levels(body, 320, 330)
    fpn = FeaturePyramidNetwork([m.shape[1] for m in maps], 8).eval()
    with torch.no_grad():
        out = fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))
    assert [tuple(o.shape[-2:]) for o in out.values()] == [(80, 83), (40, 42), (20, 21), (10, 11)]
    coarse = torch.randn(1, 2, 10, 11)
    sized = F.interpolate(coarse, size=(20, 21), mode="nearest")  # torchvision's inner_top_down
    doubled = F.interpolate(coarse, scale_factor=2.0, mode="nearest")[..., :20, :21]  # x2, cropped
    assert torch.equal(sized, doubled)  # exact: both copy values, no arithmetic


def test_padded_to_32_is_quiet(body):
    maps = _levels(body, 320, 352)
    assert [tuple(m.shape[-2:]) for m in maps] == [(80, 88), (40, 44), (20, 22), (10, 11)]
    _detectron2_top_down(maps)  # runs
    assert diagnose(ROIS, image_size=(320, 352), features=maps[1], spatial_scale=1 / 8, pyramid=maps) == []
    # boxes of the unpadded 320 x 330 image on the padded batch's maps: the maps are larger, nothing to say
    assert diagnose(ROIS, image_size=(320, 330), features=maps[1], spatial_scale=1 / 8, pyramid=maps) == []


def test_levels_that_halve_but_an_image_that_is_not_divisible_is_an_info(body):
    maps = _levels(body, 29, 61)  # ceil(29 / s) = 8, 4, 2, 1 and ceil(61 / s) = 16, 8, 4, 2: exact halving
    assert [tuple(m.shape[-2:]) for m in maps] == [(8, 16), (4, 8), (2, 4), (1, 2)]
    # 1 * 32 - 29 = 2 * 32 - 61 = 3 px past the image: 3 / 32 = 0.09375 cells
    (f,) = diagnose(ROIS / 4, image_size=(29, 61), features=maps[0], spatial_scale=1 / 4, pyramid=maps)
    assert (f.code, f.severity) == ("NON_DIVISIBLE_STRIDE", "info")
    assert f.message == (
        "The image is not a multiple of the coarsest stride 32, so the pyramid's maps are not image / stride: the "
        "levels still halve exactly, but the coarsest map reaches 0.09375 cells (3 px) past the image: its "
        "effective stride is 29 x 30.5 px, not 32, so a scale taken as map / image instead of 1/32 maps boxes at "
        "the far edge that far off."
    )
    assert "here 32 x 64, before the backbone" in f.fix


def test_level_sizes_without_an_image_size():
    sizes = [(80, 83), (40, 42), (20, 21), (10, 11)]
    (f,) = diagnose(ROIS, features=(1, 8, 40, 42), spatial_scale=1 / 8, pyramid=sizes)
    assert (f.code, f.severity) == ("FPN_LEVEL_SIZES", "warning")
    assert f.message.startswith("The pyramid's levels do not halve exactly: level 2 has 21 cells on x and level 3 "
                                "11, not 21 / 2: detectron2's FPN")  # fmt: skip
    assert f.evidence == (
        "levels 80 x 83, 40 x 42, 20 x 21, 10 x 11 (finest first); 83 != 2 * 42 (x, levels 0-1); 21 != 2 * 11 "
        "(x, levels 2-3)"
    )
    assert f.fix.startswith("pad the input to a multiple of the coarsest stride (32 for P2-P5, 64 with P6)")
    assert diagnose(ROIS, features=(1, 8, 40, 44), spatial_scale=1 / 8, pyramid=[(80, 88), (40, 44), (20, 22)]) == []


def test_a_level_that_does_not_cover_the_image_and_torchvisions_shift():
    sizes = [(80, 83), (40, 42), (20, 21), (5, 6)]  # the last level is not this image's
    found = diagnose(ROIS, image_size=(320, 330), features=(1, 8, 40, 42), spatial_scale=1 / 8, pyramid=sizes)
    assert [(f.code, f.severity) for f in found] == [("FPN_LEVEL_SIZES", "error"), ("FPN_LEVEL_SIZES", "warning")]
    assert found[0].message.startswith("level 3 (stride 32) is smaller than the image at its stride")
    assert found[0].evidence == (
        "level 3 (stride 32): 5 cells on y, but image 320 / 32 = 10 needs at least 10; levels 80 x 83, 40 x 42, "
        "20 x 21, 5 x 6"
    )
    # 6 -> 21 by size is not x2: F.interpolate(size=21) reads cell floor(j * 6 / 21), x2 nearest cell j // 2
    assert "'The size of tensor a (21) must match the size of tensor b (12) at non-singleton dimension 3'" in (
        found[1].message)  # fmt: skip
    assert found[1].message.endswith("so from cell 2 on its top-down features come from another coarse cell than "
                                     "x2 nearest's (up to 3 cells = 96 px off).")  # fmt: skip
    src = F.interpolate(torch.arange(6.0).view(1, 1, 1, 6), size=(1, 21), mode="nearest").flatten().long()
    doubled = (torch.arange(21) // 2).clamp(max=5)
    assert int((src != doubled).nonzero()[0]) == 2 and int((src - doubled).abs().max()) == 3


@pytest.mark.parametrize(
    "bad", [[(80, 83)], "80x83", [(80, 83), (40, "42")], [(80, 83), (0, 42)], [[1, 2, 3, 4, 5]] * 2, [(8, 8)] * 17]
)
def test_an_unreadable_pyramid_is_reported(bad):
    found = diagnose(ROIS, image_size=(320, 352), features=(1, 8, 40, 44), spatial_scale=1 / 8, pyramid=bad)
    (f,) = [f for f in found if f.code == "BAD_RANK"]
    assert f.message == (
        "`pyramid` must be the feature pyramid's levels, finest first, 2 to 16: a list (or dict) of "
        "Tensor[N, C, H, W], (N, C, H, W) shapes or (H, W) sizes; the pyramid checks were skipped."
    )
    assert f.fix.startswith("diagnose(..., pyramid=[p2, p3, p4, p5])")


def test_pyramid_as_a_dict_and_as_shapes(body):
    maps = _levels(body, 320, 330)
    as_dict = OrderedDict((str(i), m) for i, m in enumerate(maps))
    shapes = [tuple(m.shape) for m in maps]
    one = diagnose(ROIS, image_size=(320, 330), features=maps[1], spatial_scale=1 / 8, pyramid=as_dict)
    assert one == diagnose(ROIS, image_size=(320, 330), features=maps[1], spatial_scale=1 / 8, pyramid=shapes)
    assert [f.code for f in one] == ["NON_DIVISIBLE_STRIDE"]


def test_cli_pyramid(tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(ROIS.tolist()))
    args = ["diagnose", str(boxes), "--image-size", "320", "330", "--features", "1", "8", "40", "42",
            "--spatial-scale", "0.125"]  # fmt: skip
    assert main([*args, "--pyramid", "80", "83", "40", "42", "20", "21", "10", "11", "--format", "json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert [(f["code"], f["severity"]) for f in data["findings"]] == [("NON_DIVISIBLE_STRIDE", "warning")]
    assert "size of tensor a (21) must match the size of tensor b (22)" in data["findings"][0]["message"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--pyramid", "80", "83", "40"])
    assert exit_.value.code == 2
    assert "--pyramid takes an H W pair per level, at least two levels; got 3 numbers" in capsys.readouterr().err


def test_capture_of_a_multi_scale_pooler_on_an_unpadded_image(body):
    maps = _levels(body, 320, 330)
    fpn = FeaturePyramidNetwork([m.shape[1] for m in maps], 8).eval()  # one channel count, as the pooler needs
    with torch.no_grad():
        features = fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))
    boxes = [torch.tensor([[10.0, 10, 60, 60], [20, 30, 300, 310]])]
    with capture() as cap:
        torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)(features, boxes, [(320, 330)])
    (call,) = cap.calls
    assert call.image_size == (320, 330)
    pyramid = [f for f in call.findings if f.code in PYRAMID_CODES]
    assert [(f.code, f.severity) for f in pyramid] == [("NON_DIVISIBLE_STRIDE", "warning")]  # once, not per level
    assert pyramid[0].evidence.startswith("image 320 x 330: ")  # the pyramid's, not one level's
    assert "size of tensor a (21) must match the size of tensor b (22)" in pyramid[0].message


def test_huge_levels_stay_bounded():
    """A hostile pyramid: sizes up to 2**31 - 1 are read, but no index tensor of that size is made."""
    big = 2**31 - 1
    (f,) = diagnose(ROIS, features=(1, 8, 40, 44), spatial_scale=1 / 8, pyramid=[(big, big), (3, 3)])
    assert f.code == "FPN_LEVEL_SIZES" and f.message.endswith("resize the coarser map to the finer one's size instead.")
