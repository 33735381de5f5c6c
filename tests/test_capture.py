"""roi_lab.capture on single ops: what is recorded per op, scope (nesting, threads), restoring, budget, findings."""

from __future__ import annotations

import inspect
import json
import sys
import threading

import pytest
import torch
import torchvision
from torchvision.ops import roi_align  # name-imported before any capture: patched where it is looked up
from torchvision.ops import roi_align as tv_alias  # noqa: F401 - an alias the name scan cannot see

import roi_lab
from roi_lab.capture import Capture, CapturedCall, capture
from roi_lab.capture._hooks import _FUNCTION_NAMES
from roi_lab.errors import InputValueError

# A stride-16 map of an 800 x 1024 image, and boxes in its pixels.
IMAGE = (800, 1024)
FEATURES = torch.randn(2, 8, 50, 64, generator=torch.Generator().manual_seed(0))
BOXES_IMAGE = torch.tensor([[100.0, 50, 900, 600], [10, 20, 300, 200]])
ROIS = torch.cat([torch.tensor([[0.0], [1.0]]), BOXES_IMAGE], 1)  # [2, 5]


def _originals() -> dict[str, object]:
    """Every binding a capture may patch: module globals by name, and the pooling classes' forwards."""
    found: dict[str, object] = {}
    for name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            for attr in _FUNCTION_NAMES:
                if attr in namespace:
                    found[f"{name}.{attr}"] = namespace[attr]
    classes = [
        torchvision.ops.RoIAlign,
        torchvision.ops.RoIPool,
        torchvision.ops.MultiScaleRoIAlign,
        roi_lab.MultiScaleRoIAlign,
        torchvision.models.detection.transform.GeneralizedRCNNTransform,
    ]
    for cls in classes:
        found[f"{cls.__qualname__}.forward"] = cls.__dict__.get("forward")
    return found


def test_records_roi_align_with_every_field():
    with capture(image_size=IMAGE) as cap:
        line = inspect.currentframe().f_lineno + 1
        out = torchvision.ops.roi_align(FEATURES, ROIS, (7, 5), spatial_scale=1 / 16, sampling_ratio=2, aligned=True)
    assert out.shape == (2, 8, 7, 5)
    [call] = cap.calls
    assert isinstance(call, CapturedCall)
    assert call.op == "torchvision.ops.roi_align"
    assert call.where.startswith(f"{__name__}.test_records_roi_align_with_every_field (")
    assert call.where.endswith(f"test_capture.py:{line})")
    assert call.feature_shape == (2, 8, 50, 64) and call.feature_dtype == "float32" and call.device == "cpu"
    assert call.box_format == "rois [K,5]" and torch.equal(call.boxes, ROIS)  # a copy of what was passed
    assert (call.output_size, call.spatial_scale, call.sampling_ratio, call.aligned) == ((7, 5), 1 / 16, 2, True)
    assert call.image_size == IMAGE and call.image_size_source == "capture(image_size=...)"
    assert call.findings == [] and cap.findings() == []


def test_boxes_are_copied_so_later_edits_do_not_change_the_record():
    boxes = [BOXES_IMAGE.clone(), BOXES_IMAGE[:1].clone()]
    with capture() as cap:
        torchvision.ops.roi_align(FEATURES, boxes, 7, spatial_scale=1 / 16)
    boxes[0] += 1000
    [call] = cap.calls
    assert call.box_format == "list"
    assert torch.equal(call.boxes[0], BOXES_IMAGE) and torch.equal(call.boxes[1], BOXES_IMAGE[:1])


def _ms_inputs():
    x = {"0": torch.randn(1, 4, 64, 64), "1": torch.randn(1, 4, 32, 32), "2": torch.randn(1, 4, 16, 16)}
    boxes = [torch.tensor([[0.0, 0, 30, 30], [0, 0, 120, 120], [10, 10, 250, 250], [0, 0, 5, 8]])]
    return x, boxes, [(256, 256)]


# (op label, call) pairs: each must be recorded exactly once, with that label
CALLS = {
    "torchvision.ops.roi_align": lambda: torchvision.ops.roi_align(FEATURES, ROIS, 7, 1 / 16),
    "torchvision.ops.RoIAlign": lambda: torchvision.ops.RoIAlign(7, 1 / 16, 2)(FEATURES, ROIS),
    "torchvision.ops.roi_pool": lambda: torchvision.ops.roi_pool(FEATURES, ROIS, 7, 1 / 16),
    "torchvision.ops.RoIPool": lambda: torchvision.ops.RoIPool(7, 1 / 16)(FEATURES, ROIS),
    "torchvision.ops.ps_roi_align": lambda: torchvision.ops.ps_roi_align(FEATURES, ROIS, 2, 1 / 16),
    "torchvision.ops.MultiScaleRoIAlign": lambda: torchvision.ops.MultiScaleRoIAlign(["0", "1", "2"], 7, 2)(
        *_ms_inputs()
    ),
    "roi_lab.roi_align": lambda: roi_lab.roi_align(FEATURES, ROIS, 7, 1 / 16),
    "roi_lab.crop_and_resize": lambda: roi_lab.crop_and_resize(
        FEATURES, torch.tensor([[0.1, 0.1, 0.5, 0.6]]), torch.tensor([1]), 7
    ),
    "roi_lab.MultiScaleRoIAlign": lambda: roi_lab.MultiScaleRoIAlign(["0", "1", "2"], 7, 2)(*_ms_inputs()),
    "torch.ops.torchvision.roi_align": lambda: torch.ops.torchvision.roi_align(FEATURES, ROIS, 1 / 16, 7, 7, 2, False),
}


@pytest.mark.parametrize("op", list(CALLS))
def test_every_listed_op_is_recorded_once_and_computes_the_same(op):
    torch.manual_seed(0)
    expected = CALLS[op]()
    torch.manual_seed(0)  # _ms_inputs draws random maps
    with capture() as cap:
        got = CALLS[op]()
    assert [c.op for c in cap.calls] == [op]  # the ops nested inside (roi_align in a pooler) are not recorded again
    expected = expected[0] if isinstance(expected, tuple) else expected
    got = got[0] if isinstance(got, tuple) else got
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_name_imports_and_aliases_are_recorded():
    with capture() as cap:
        roi_align(FEATURES, ROIS, 7, 1 / 16)  # `from torchvision.ops import roi_align` at the top of this module
        sys.modules[__name__].tv_alias(FEATURES, ROIS, 7, 1 / 16)  # alias: seen by the TorchFunctionMode
    assert [c.op for c in cap.calls] == ["torchvision.ops.roi_align", "torch.ops.torchvision.roi_align"]
    assert "test_name_imports_and_aliases_are_recorded" in cap.calls[1].where  # past torchvision's frames
    assert cap.calls[1].box_format == "rois [K,5]" and cap.calls[1].spatial_scale == 1 / 16


def test_wrappers_keep_the_signature_and_parameter_names():
    before = torchvision.ops.roi_align
    with capture():
        inside = torchvision.ops.roi_align
        assert inside is not before
        assert inspect.signature(inside) == inspect.signature(before)
        # mmcv's RoIAlign(use_torchvision=True) checks this to decide whether to pass `aligned`
        n = before.__code__.co_argcount
        assert inside.__code__.co_varnames[:n] == before.__code__.co_varnames[:n]
        assert inside.__defaults__ == before.__defaults__ and inside.__name__ == "roi_align"
    assert torchvision.ops.roi_align is before


def test_multi_scale_pooler_levels_scales_and_image_sizes():
    torch.manual_seed(0)
    x, boxes, image_shapes = _ms_inputs()
    with capture() as cap:
        torchvision.ops.MultiScaleRoIAlign(["0", "1", "2"], 7, 2)(x, boxes, image_shapes)
    [call] = cap.calls
    assert call.level_names == ["0", "1", "2"] and call.scales == [1 / 4, 1 / 8, 1 / 16]
    assert call.level_shapes == [(1, 4, 64, 64), (1, 4, 32, 32), (1, 4, 16, 16)]
    assert call.image_sizes == [(256, 256)] and call.image_size == (256, 256)
    assert call.image_size_source == "pooler image_shapes"
    # torchvision's own formula, computed here independently: clamp(floor(4 + log2(sqrt(area) / 224) + 1e-6), 2, 4)
    area = (boxes[0][:, 2] - boxes[0][:, 0]) * (boxes[0][:, 3] - boxes[0][:, 1])
    expected = torch.floor(4 + torch.log2(area.sqrt() / 224) + 1e-6).clamp(2, 4).long() - 2
    assert call.levels.tolist() == expected.tolist() == [0, 1, 2, 0]
    assert call.level_counts() == [2, 1, 1] and call.findings == []
    assert call.spatial_scale is None and call.feature_shape == (1, 4, 64, 64)


def test_roi_lab_multi_scale_pooler_levels():
    torch.manual_seed(0)
    x, boxes, image_shapes = _ms_inputs()
    with capture() as cap:
        roi_lab.MultiScaleRoIAlign(["0", "1", "2"], 7, 2)(x, boxes, image_shapes)
    [call] = cap.calls
    expected = roi_lab.assign_fpn_levels(boxes[0], k_min=2, k_max=4) - 2
    assert call.levels.tolist() == expected.tolist() and call.scales == [1 / 4, 1 / 8, 1 / 16]


def test_per_level_findings_name_the_level():
    torch.manual_seed(0)
    x, _, image_shapes = _ms_inputs()
    boxes_norm = [torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.9, 0.8], [0.0, 0.6, 0.3, 0.95]])]
    with capture() as cap:
        torchvision.ops.MultiScaleRoIAlign(["0", "1", "2"], 7, 2)(x, boxes_norm, image_shapes)
    [finding] = [f for f in cap.calls[0].findings if f.severity == "error"]
    assert finding.code == "NORMALIZED_AS_PIXELS"
    assert finding.evidence.startswith("level '0' (spatial_scale 1/4, map 64 x 64, 3 boxes): all coordinates")


def test_image_size_unknown_uses_only_the_map():
    with capture() as cap:
        torchvision.ops.roi_align(FEATURES, ROIS, 7, spatial_scale=1.0)  # image pixels, scale left at 1
    [call] = cap.calls
    assert call.image_size is None and call.image_size_source == "unknown"
    assert [(f.code, f.severity) for f in call.findings] == [("OUT_OF_BOUNDS", "error")]
    assert "Without image_size" in call.findings[0].message


def test_image_size_from_the_argument_names_the_cause():
    with capture(image_size=IMAGE) as cap:
        torchvision.ops.roi_align(FEATURES, ROIS, 7, spatial_scale=1.0)
    assert [f.code for f in cap.findings()] == ["IMAGE_SPACE_BOXES"]
    assert cap.has_errors and cap.counts() == {"error": 1, "warning": 0, "info": 0}


def test_image_size_from_generalized_rcnn_transform():
    transform = torchvision.models.detection.transform.GeneralizedRCNNTransform(
        200, 300, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    )
    with capture() as cap:
        images, _ = transform([torch.rand(3, 100, 160)])
        feats = torch.zeros(1, 4, images.tensors.shape[-2] // 16, images.tensors.shape[-1] // 16)
        torchvision.ops.roi_align(feats, [torch.tensor([[10.0, 10, 180, 150]])], 7, spatial_scale=1 / 16)
    [img] = cap.images
    assert img.image_size == tuple(images.tensors.shape[-2:]) == (192, 320)  # padded to a multiple of 32
    assert img.image_sizes == [tuple(images.image_sizes[0])] and img.original_sizes == [(100, 160)]
    assert img.mean == pytest.approx([0.485, 0.456, 0.406]) and img.tensor is None  # not kept by default
    [call] = cap.calls
    assert (call.image_size, call.image_size_source, call.images) == ((192, 320), "GeneralizedRCNNTransform", 0)
    assert call.image_sizes == img.image_sizes and call.findings == []


def test_op_error_is_recorded_with_its_explanation_and_re_raised():
    with pytest.raises(AssertionError, match=r"The boxes tensor shape is not correct as Tensor\[K, 5\]"):
        with capture(image_size=IMAGE) as cap:
            torchvision.ops.roi_align(FEATURES, BOXES_IMAGE, 7, spatial_scale=1 / 16)  # [K, 4]: no batch index
    [call] = cap.calls
    assert call.error == "AssertionError: The boxes tensor shape is not correct as Tensor[K, 5]"
    assert call.explanation["code"] == "MISSING_BATCH_INDEX" and call.explanation["framework"] == "torchvision"
    assert [f.code for f in call.findings if f.severity == "error"] == ["MISSING_BATCH_INDEX"]
    assert "raised AssertionError: The boxes tensor shape" in cap.summary() and "(explained: MISSING_BATCH_INDEX)" in (
        cap.summary()
    )


def test_an_unexplained_op_error_is_still_an_error_finding():
    call = CapturedCall(0, "torchvision.ops.roi_align", "x", error="RuntimeError: something new", boxes=None)
    [f] = call.findings
    assert (f.code, f.severity, f.message) == (
        "OP_ERROR",
        "error",
        "torchvision.ops.roi_align raised RuntimeError: something new",
    )


def test_everything_is_restored_after_an_exception():
    before = _originals()
    with pytest.raises(ZeroDivisionError):
        with capture():
            assert torchvision.ops.roi_align is not before["torchvision.ops.roi_align"]
            assert torch._C._len_torch_function_stack() == 1
            torchvision.ops.roi_align(FEATURES, ROIS, 7)
            1 / 0  # noqa: B018
    after = _originals()
    assert after.keys() == before.keys()
    assert [k for k in before if after[k] is not before[k]] == []
    assert torch._C._len_torch_function_stack() == 0


def test_a_module_imported_during_the_capture_is_restored_too(tmp_path, monkeypatch):
    (tmp_path / "late_head.py").write_text("from torchvision.ops import roi_align\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "late_head", raising=False)
    with capture():
        import late_head

        assert late_head.roi_align is not torchvision.ops.roi_align.__wrapped__  # picked up the wrapper
    assert late_head.roi_align is torchvision.ops.roi_align  # the original again


def test_nested_captures_each_record_their_block():
    with capture() as outer:
        torchvision.ops.roi_align(FEATURES, ROIS, 7)
        with capture() as inner:
            torchvision.ops.roi_pool(FEATURES, ROIS, 7)
        wrapped = torchvision.ops.roi_align
        torchvision.ops.ps_roi_align(FEATURES, ROIS, 2)
    assert [c.op for c in inner.calls] == ["torchvision.ops.roi_pool"]
    assert [c.op for c in outer.calls] == [
        "torchvision.ops.roi_align",
        "torchvision.ops.roi_pool",
        "torchvision.ops.ps_roi_align",
    ]
    assert hasattr(wrapped, "__wrapped__")  # still patched after the inner exit, for the outer one
    assert not hasattr(torchvision.ops.roi_align, "_roi_lab_original")


def test_a_capture_records_only_its_own_thread():
    barrier = threading.Barrier(2, timeout=60)
    results: dict[str, object] = {}

    def other_thread(with_capture: bool):
        try:
            barrier.wait()  # both threads are inside their blocks
            if with_capture:
                with capture() as cap:
                    torchvision.ops.roi_pool(FEATURES, ROIS, 7)
                    barrier.wait()
                results["other"] = [c.op for c in cap.calls]
            else:
                torchvision.ops.roi_pool(FEATURES, ROIS, 7)  # no capture in this thread
                barrier.wait()
        except Exception as exc:  # surfaced by the main thread's assert
            results["error"] = exc

    for with_capture in (False, True):
        t = threading.Thread(target=other_thread, args=(with_capture,))
        t.start()
        with capture() as cap:
            barrier.wait()
            torchvision.ops.roi_align(FEATURES, ROIS, 7)
            barrier.wait()
        t.join(60)
        assert "error" not in results, results
        assert [c.op for c in cap.calls] == ["torchvision.ops.roi_align"]
    assert results["other"] == ["torchvision.ops.roi_pool"]
    assert (
        torch._C._len_torch_function_stack() == 0
        and torchvision.ops.roi_align is _originals()["torchvision.ops.roi_align"]
    )


def test_a_capture_is_single_use():
    cap = capture()
    with cap:
        pass
    with pytest.raises(InputValueError) as exc:
        with cap:
            pass
    assert str(exc.value) == (
        "roi_lab.capture() expects a fresh capture for each with-block; got a capture that is done.\n"
        "Fix: with roi_lab.capture() as cap: ...  # call roi_lab.capture() again for a new block"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"image_size": (800,)},
            "capture(image_size=...) expects (H, W), two positive integers: the image (or padded batch) the boxes "
            "are in pixels of; got tuple (800,).",
        ),
        ({"max_bytes": -1}, "capture(max_bytes=...) expects a byte count >= 0 (an int); got int -1."),
        ({"keep_features": "yes"}, "capture(keep_features=...) expects True or False; got str 'yes'."),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(InputValueError) as exc:
        capture(**kwargs)
    assert str(exc.value).split("\nFix:")[0] == message


def test_features_are_kept_only_when_asked_and_within_max_bytes():
    with capture() as cap:
        torchvision.ops.roi_align(FEATURES, ROIS, 7)
    assert cap.calls[0].features is None and cap.dropped == []

    with capture(keep_features=True) as cap:
        torchvision.ops.roi_align(FEATURES, ROIS, 7)
    assert torch.equal(cap.calls[0].features, FEATURES)  # a copy, exact by construction
    assert cap.calls[0].features is not FEATURES
    assert cap.bytes_kept == FEATURES.nelement() * 4 + ROIS.nelement() * 4

    budget = ROIS.nelement() * 4 * 3 + FEATURES.nelement() * 4  # room for one map and three sets of boxes
    with capture(keep_features=True, max_bytes=budget) as cap:
        for _ in range(3):
            torchvision.ops.roi_align(FEATURES, ROIS, 7)
    assert [c.features is not None for c in cap.calls] == [True, False, False]
    assert cap.bytes_kept <= budget
    assert (
        cap.calls[1].dropped == "features (200 KiB) not kept: max_bytes = 200.1 KiB would be exceeded (200.1 KiB kept)"
    )
    assert cap.dropped[0].startswith("call 1 (torchvision.ops.roi_align): features (200 KiB) not kept")
    assert "dropped: features (200 KiB)" in cap.summary()


def test_boxes_over_max_bytes_are_dropped_after_being_diagnosed():
    with capture(image_size=IMAGE, max_bytes=0) as cap:
        torchvision.ops.roi_align(FEATURES, ROIS, 7)  # image-space boxes at spatial_scale 1
    [call] = cap.calls
    assert call.boxes is None and cap.bytes_kept == 0
    assert [f.code for f in call.findings] == ["IMAGE_SPACE_BOXES"]  # computed before the boxes went
    assert call.dropped.startswith("boxes (40 B) not kept: max_bytes = 0 B would be exceeded")


def test_summary_and_to_dict():
    with capture(image_size=IMAGE) as cap:
        torchvision.ops.roi_align(FEATURES, ROIS, 7, spatial_scale=1.0)
        torchvision.ops.roi_align(FEATURES, ROIS, 7, spatial_scale=1 / 16)
    text = cap.summary()
    assert text.splitlines()[0] == "roi_lab capture: 2 calls; findings: 1 error(s), 0 warning(s), 0 info(s)"
    assert text.splitlines()[1].startswith(f"#0 torchvision.ops.roi_align in {__name__}.test_summary_and_to_dict (")
    assert text.splitlines()[2] == (
        "    2 boxes (rois [K,5]); map [2, 8, 50, 64] float32 on cpu; spatial_scale 1; output 7 x 7; "
        "sampling_ratio -1; aligned False; image 800 x 1024 (capture(image_size=...))"
    )
    assert "    ERROR IMAGE_SPACE_BOXES: The boxes are in image pixels" in text
    assert "    ok: nothing looks wrong" in text and "evidence:" not in text
    assert "      evidence: max x2 = 900 > map width 64" in cap.summary(detail=True)
    data = json.loads(json.dumps(cap.to_dict()))
    assert data["has_errors"] is True and data["counts"]["error"] == 1
    assert data["calls"][0]["findings"][0]["code"] == "IMAGE_SPACE_BOXES"
    assert data["calls"][0]["boxes_shape"] == [2, 5] and data["calls"][1]["findings"] == []


def test_empty_capture_says_so():
    with capture() as cap:
        pass
    assert "no ROI pooling call was recorded" in cap.summary() and isinstance(cap, Capture)


def test_torch_compile_fullgraph_works_inside_a_capture():
    def pooled(x, rois):
        return torchvision.ops.roi_align(x, rois, 7, 1 / 16) * 2

    compiled = torch.compile(pooled, backend="eager", fullgraph=True)  # a graph break would raise
    with capture() as cap:
        got = compiled(FEATURES, ROIS)
    torch.testing.assert_close(got, pooled(FEATURES, ROIS), rtol=0, atol=1e-6)
    # traced as if no capture were active; the eager backend still calls the op through Python
    assert [c.op for c in cap.calls] == ["torch.ops.torchvision.roi_align"]
    torch._dynamo.reset()


@pytest.mark.cuda
def test_cuda_calls_record_the_device_and_copy_the_boxes_to_cpu():
    features, rois = FEATURES.cuda(), ROIS.cuda()
    expected = torchvision.ops.roi_align(features, rois, 7, 1 / 16)
    with capture(image_size=IMAGE, keep_features=True) as cap:
        got = torchvision.ops.roi_align(features, rois, 7, 1 / 16)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    [call] = cap.calls
    assert call.device == "cuda:0" and call.boxes.device.type == "cpu" and torch.equal(call.boxes, ROIS)
    assert call.features.device.type == "cpu" and torch.equal(call.features, FEATURES)
    assert call.findings == []
