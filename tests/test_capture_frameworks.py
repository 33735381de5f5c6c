"""detectron2's ROIPooler and mmcv's RoIAlign, recorded when importable.

Neither is installable here (no wheels for this torch), so these tests put small stand-in packages on
sys.path that have the real classes' module paths, constructor attributes and forward signatures
(detectron2 ``ROIPooler(output_size, scales, sampling_ratio, ...)`` with ``level_poolers``, ``min_level``,
``max_level``, ``canonical_box_size``, ``canonical_level`` and ``forward(x, box_lists)``; mmcv
``RoIAlign(output_size, spatial_scale, sampling_ratio, pool_mode, aligned, use_torchvision)`` with
``forward(input, rois)``). They test the capture's adapters against those interfaces, not the frameworks.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from roi_lab.capture import capture

D2_POOLERS = """
import math

import torch
from torch import nn
from torchvision.ops import RoIAlign


def assign_boxes_to_levels(box_lists, min_level, max_level, canonical_box_size, canonical_level):
    sizes = torch.sqrt(torch.cat([b.area() for b in box_lists]))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    return levels.clamp(min_level, max_level).to(torch.int64) - min_level


class ROIPooler(nn.Module):
    def __init__(self, output_size, scales, sampling_ratio, canonical_box_size=224, canonical_level=4):
        super().__init__()
        self.output_size = (output_size, output_size)
        self.level_poolers = nn.ModuleList(
            RoIAlign(self.output_size, spatial_scale=s, sampling_ratio=sampling_ratio, aligned=True) for s in scales
        )
        self.min_level, self.max_level = int(-math.log2(scales[0])), int(-math.log2(scales[-1]))
        self.canonical_box_size, self.canonical_level = canonical_box_size, canonical_level

    def forward(self, x, box_lists):
        rois = torch.cat([torch.cat([torch.full((len(b.tensor), 1), float(i)), b.tensor], 1)
                          for i, b in enumerate(box_lists)])
        levels = assign_boxes_to_levels(box_lists, self.min_level, self.max_level, self.canonical_box_size,
                                        self.canonical_level)
        out = x[0].new_zeros(len(rois), x[0].shape[1], *self.output_size)
        for level, pooler in enumerate(self.level_poolers):
            ids = torch.nonzero(levels == level).flatten()
            out[ids] = pooler(x[level], rois[ids])
        return out
"""

D2_STRUCTURES = """
class Boxes:
    def __init__(self, tensor):
        self.tensor = tensor

    def area(self):
        b = self.tensor
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
"""

MMCV_ROI_ALIGN = """
import importlib

from torch import nn


class RoIAlign(nn.Module):
    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=0, pool_mode="avg", aligned=True,
                 use_torchvision=False):
        super().__init__()
        self.output_size = tuple(output_size)
        self.spatial_scale, self.sampling_ratio = float(spatial_scale), int(sampling_ratio)
        self.pool_mode, self.aligned, self.use_torchvision = pool_mode, aligned, use_torchvision

    def forward(self, input, rois):
        tv = importlib.import_module("torchvision.ops").roi_align  # looked up at call time, as mmcv does
        if "aligned" not in tv.__code__.co_varnames:  # mmcv would then shift the rois in place instead
            raise AssertionError("torchvision's roi_align lost its `aligned` parameter")
        return tv(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)
"""


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    files = {
        "detectron2/__init__.py": "",
        "detectron2/structures.py": D2_STRUCTURES,
        "detectron2/modeling/__init__.py": "",
        "detectron2/modeling/poolers.py": D2_POOLERS,
        "mmcv/__init__.py": "",
        "mmcv/ops/__init__.py": "from .roi_align import RoIAlign\n",
        "mmcv/ops/roi_align.py": MMCV_ROI_ALIGN,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m.split(".")[0] in ("detectron2", "mmcv")]:
        del sys.modules[name]


def test_detectron2_roi_pooler(stand_ins):
    from detectron2.modeling.poolers import ROIPooler, assign_boxes_to_levels
    from detectron2.structures import Boxes

    torch.manual_seed(0)
    pooler = ROIPooler(7, [1 / 4, 1 / 8], 2)
    x = [torch.randn(1, 4, 64, 64), torch.randn(1, 4, 32, 32)]
    boxes = [Boxes(torch.tensor([[0.0, 0, 40, 40], [10, 10, 250, 200], [5, 5, 100, 120]]))]
    expected = pooler(x, boxes)
    with capture(image_size=(256, 256)) as cap:
        got = pooler(x, boxes)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    [call] = cap.calls  # the level poolers' roi_align calls inside are part of this one
    assert call.op == "detectron2.ROIPooler" and call.box_format == "list"
    assert torch.equal(call.boxes[0], boxes[0].tensor)
    assert call.scales == [1 / 4, 1 / 8] and call.level_names == ["p2", "p3"]
    assert call.levels.tolist() == assign_boxes_to_levels(boxes, 2, 3, 224, 4).tolist() == [0, 1, 0]
    assert (call.output_size, call.sampling_ratio, call.aligned) == ((7, 7), 2, True)
    assert call.extra["pooler"] == "RoIAlign" and call.findings == []
    assert "test_detectron2_roi_pooler" in call.where


def test_mmcv_roi_align_keeps_torchvisions_signature_visible(stand_ins):
    from mmcv.ops import RoIAlign

    features = torch.randn(1, 4, 50, 64)
    rois = torch.tensor([[0.0, 100, 50, 900, 600]])
    layer = RoIAlign((7, 7), 1 / 16, 2, "avg", True, use_torchvision=True)
    expected = layer(features, rois)
    with capture(image_size=(800, 1024)) as cap:
        got = layer(features, rois)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert torch.equal(rois, torch.tensor([[0.0, 100, 50, 900, 600]]))  # not shifted in place
    [call] = cap.calls
    assert call.op == "mmcv.ops.RoIAlign" and (call.spatial_scale, call.aligned) == (1 / 16, True)
    assert call.extra == {"pool_mode": "avg", "use_torchvision": True} and call.findings == []
