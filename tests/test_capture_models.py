"""roi_lab.capture on torchvision's real Faster R-CNN and Mask R-CNN (random weights, no download).

Built with ``weights=None, weights_backbone=None`` and a small ``min_size`` so a forward pass takes well
under a second on a CPU, run in eval mode on the bundled coffee photo (400 x 600, resized to 256 x 384:
non-square, which the y/x-swap check needs).
"""

from __future__ import annotations

import sys

import pytest
import torch
import torchvision
from torch import nn

import roi_lab
from roi_lab.capture import capture
from roi_lab.capture._hooks import _FUNCTION_NAMES
from roi_lab.samples import load_sample

pytestmark = pytest.mark.slow

DETECTOR = {
    "weights": None,
    "weights_backbone": None,
    "min_size": 256,
    "max_size": 384,
    "rpn_pre_nms_top_n_test": 200,
    "rpn_post_nms_top_n_test": 100,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: fast on the shared 2-core machine, and what makes two runs of the same forward
    pass bit-identical (the premise of the exact comparison below, checked there too). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images():
    image, _ = load_sample("coffee")
    return [torch.from_numpy(image).permute(2, 0, 1).float() / 255]  # [3, 400, 600] in [0, 1]


@pytest.fixture(scope="module")
def faster_rcnn():
    torch.manual_seed(0)
    return torchvision.models.detection.fasterrcnn_resnet50_fpn(**DETECTOR).eval()


@pytest.fixture(scope="module")
def mask_rcnn():
    torch.manual_seed(0)
    # box_score_thresh=0: random weights score every class near 1/91, below the default 0.05, and the mask
    # head would then get no boxes
    return torchvision.models.detection.maskrcnn_resnet50_fpn(
        **DETECTOR, box_score_thresh=0.0, box_detections_per_img=20
    ).eval()


def _check_pooler_call(call, num_boxes: int, output_size: tuple[int, int], padded: tuple[int, int], sizes):
    assert call.op == "torchvision.ops.MultiScaleRoIAlign"
    assert call.where.startswith("torchvision.models.detection.roi_heads.RoIHeads.forward (")
    assert call.scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32] and call.level_names == ["0", "1", "2", "3"]
    assert [s[-2:] for s in call.level_shapes] == [(64, 96), (32, 48), (16, 24), (8, 12)]
    assert (call.image_size, call.image_size_source) == (padded, "GeneralizedRCNNTransform")
    assert call.image_sizes == sizes and call.output_size == output_size and call.box_format == "list"
    assert call.num_boxes == num_boxes and len(call.levels) == num_boxes
    assert set(call.levels.tolist()) <= {0, 1, 2, 3}
    assert [f for f in call.findings if f.severity == "error"] == []


def test_faster_rcnn_box_pooler_is_recorded(faster_rcnn, images):
    with torch.no_grad():
        image_list, _ = faster_rcnn.transform(images)
        proposals, _ = faster_rcnn.rpn(image_list, faster_rcnn.backbone(image_list.tensors))
        with capture() as cap:
            faster_rcnn(images)
    padded = tuple(image_list.tensors.shape[-2:])
    sizes = [tuple(s) for s in image_list.image_sizes]
    assert padded == (256, 384) and sizes == [(256, 384)]
    [call] = cap.calls
    _check_pooler_call(call, 100, (7, 7), padded, sizes)
    # The proposals reaching the pooler, computed again above by the same transform, backbone and RPN on one
    # thread: the same arithmetic on the same inputs, so exactly equal.
    assert torch.equal(call.boxes[0], proposals[0])
    [img] = cap.images
    assert img.image_size == padded and img.original_sizes == [(400, 600)]
    assert not cap.has_errors


def test_mask_rcnn_box_and_mask_poolers_are_recorded(mask_rcnn, images):
    with torch.no_grad(), capture() as cap:
        out = mask_rcnn(images)
    assert [c.output_size for c in cap.calls] == [(7, 7), (14, 14)]
    box_call, mask_call = cap.calls
    _check_pooler_call(box_call, 100, (7, 7), (256, 384), [(256, 384)])
    _check_pooler_call(mask_call, len(out[0]["boxes"]), (14, 14), (256, 384), [(256, 384)])
    assert len(out[0]["boxes"]) == 20
    # the mask head pools the detections in the resized frame; postprocess maps them to the 400 x 600 original
    torch.testing.assert_close(mask_call.boxes[0] * (400 / 256), out[0]["boxes"], rtol=1e-5, atol=1e-3)
    assert not cap.has_errors


class BuggyBoxPool(nn.Module):
    """A custom box pooler for Faster R-CNN's roi_heads, with one classic bug; pools the stride-16 map P4."""

    def __init__(self, bug: str) -> None:
        super().__init__()
        self.bug = bug

    def forward(self, features, proposals, image_shapes):
        p4 = features["2"]
        if self.bug == "image_space":
            return torchvision.ops.roi_align(p4, proposals, 7, spatial_scale=1.0, sampling_ratio=2)
        if self.bug == "stride_8":
            return torchvision.ops.roi_align(p4, proposals, 7, spatial_scale=1 / 8, sampling_ratio=2)
        if self.bug == "yx":
            return torchvision.ops.roi_align(p4, [p[:, [1, 0, 3, 2]] for p in proposals], 7, 1 / 16, 2)
        if self.bug == "no_batch_index":
            return torchvision.ops.roi_align(p4, torch.cat(proposals), 7, spatial_scale=1 / 16, sampling_ratio=2)
        raise ValueError(self.bug)


@pytest.mark.parametrize(
    ("bug", "code"),
    [
        ("image_space", "IMAGE_SPACE_BOXES"),
        ("stride_8", "WRONG_STRIDE"),
        ("yx", "YX_SWAPPED"),
        ("no_batch_index", "MISSING_BATCH_INDEX"),
    ],
)
def test_injected_bugs_are_named(faster_rcnn, images, bug, code):
    pooler = faster_rcnn.roi_heads.box_roi_pool
    faster_rcnn.roi_heads.box_roi_pool = BuggyBoxPool(bug)
    try:
        with torch.no_grad(), capture() as cap:
            if bug == "no_batch_index":
                with pytest.raises(AssertionError, match=r"The boxes tensor shape is not correct as Tensor\[K, 5\]"):
                    faster_rcnn(images)
            else:
                faster_rcnn(images)
    finally:
        faster_rcnn.roi_heads.box_roi_pool = pooler
    [call] = cap.calls
    assert call.op == "torchvision.ops.roi_align" and "BuggyBoxPool.forward" in call.where
    assert call.feature_shape == (1, 256, 16, 24) and call.image_size == (256, 384)  # non-square
    assert [f.code for f in call.findings if f.severity == "error"] == [code]
    if bug == "no_batch_index":
        assert call.box_format == "tensor [100, 4]"
        assert call.error == "AssertionError: The boxes tensor shape is not correct as Tensor[K, 5]"
        assert call.explanation["code"] == "MISSING_BATCH_INDEX" and "batch" in call.explanation["fix"]
    else:
        assert call.error is None and call.box_format == "list"


def _outputs(model, images):
    with torch.no_grad():
        return model(images)


def test_outputs_are_identical_with_and_without_the_capture(mask_rcnn, images):
    # Exact equality is justified: the capture calls the original ops with the very same arguments and only
    # reads them (a copy of the boxes), so every kernel computes the same arithmetic on the same inputs; with
    # one intra-op thread that arithmetic is bit-reproducible, which the first comparison checks.
    plain = _outputs(mask_rcnn, images)
    again = _outputs(mask_rcnn, images)
    with capture() as cap:
        captured = _outputs(mask_rcnn, images)
    with capture(keep_features=True) as kept:
        captured_kept = _outputs(mask_rcnn, images)
    assert len(cap.calls) == len(kept.calls) == 2 and kept.calls[0].features is not None
    for other in (again, captured, captured_kept):
        assert plain[0].keys() == other[0].keys() == {"boxes", "labels", "scores", "masks"}
        for key in plain[0]:
            assert torch.equal(plain[0][key], other[0][key]), key


def _bindings():
    found = {}
    for name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            found.update({f"{name}.{a}": namespace[a] for a in _FUNCTION_NAMES if a in namespace})
    for cls in (
        torchvision.ops.MultiScaleRoIAlign,
        torchvision.ops.RoIAlign,
        roi_lab.MultiScaleRoIAlign,
        torchvision.models.detection.transform.GeneralizedRCNNTransform,
    ):
        found[cls.__qualname__] = cls.__dict__["forward"]
    return found


class FailingBoxPool(nn.Module):
    def forward(self, features, proposals, image_shapes):
        torchvision.ops.roi_align(features["2"], proposals, 7, spatial_scale=1 / 16, sampling_ratio=2)
        raise RuntimeError("the box head failed after pooling")


def test_originals_are_restored_when_the_model_raises(faster_rcnn, images):
    before = _bindings()
    pooler = faster_rcnn.roi_heads.box_roi_pool
    faster_rcnn.roi_heads.box_roi_pool = FailingBoxPool()
    try:
        with pytest.raises(RuntimeError, match="the box head failed after pooling"):
            with torch.no_grad(), capture() as cap:
                faster_rcnn(images)
    finally:
        faster_rcnn.roi_heads.box_roi_pool = pooler
    after = _bindings()
    assert after.keys() == before.keys() and [k for k in before if after[k] is not before[k]] == []
    assert torch._C._len_torch_function_stack() == 0
    [call] = cap.calls  # the pooling call before the failure, which itself succeeded
    assert call.error is None and not [f for f in call.findings if f.severity == "error"]
