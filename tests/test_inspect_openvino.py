"""What ``roi-lab inspect`` says OpenVINO computes (``PoolNode.openvino``), against OpenVINO's recorded outputs.

``tests/fixtures/openvino_roi_align.npz`` holds models exported here from torchvision (opset 11 and 16, aligned
True and False), hand-built nodes (no ``sampling_ratio``, ``mode="max"``, a ``coordinate_transformation_mode``
at opset 11) and ROIAlign-9 graphs built with OpenVINO's API for each ``aligned_mode``, with what openvino
2026.4.1 computed for them (``gen_openvino_roi_align.py``). Each node's OpenVINO reading (aligned_mode,
sampling_ratio, mode) is replayed with roi_lab's ``roi_align`` and compared with OpenVINO's output: the
reading is right when they agree, and the differences it names are real when the ONNX semantics do not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from roi_lab.inspect_onnx import OPENVINO_MAPPINGS, inspect_onnx
from roi_lab.ops.roi_align import roi_align

pytest.importorskip("onnx", reason="onnx is not installed (pip install 'roi-lab[onnx]')")

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "openvino_roi_align.npz")
META = json.loads(FIXTURE["__meta__"].tobytes())
X = torch.from_numpy(FIXTURE["x"])  # [2, 3, 32, 40]
ROIS = torch.from_numpy(FIXTURE["rois"])  # [6, 5] (batch index, x1, y1, x2, y2), input px
SCALE = META["spatial_scale"]
TOL = 1e-5  # float32 bilinear sums in another order than OpenVINO's (N(0, 1) map, outputs of order 1)


def _replay(ov: dict, rois: torch.Tensor = ROIS) -> torch.Tensor:
    """What the reading says OpenVINO computes, with roi_lab's roi_align (torchvision's semantics)."""
    shift = {"asymmetric": 0.0, "half_pixel_for_nn": 0.0, "half_pixel": 0.5}[ov["aligned_mode"]]  # input px
    boxes = torch.cat([rois[:, :1], rois[:, 1:] + shift], 1)
    out = roi_align(X, boxes, (7, 7), SCALE, ov["sampling_ratio"], ov["aligned_mode"] != "asymmetric", mode=ov["mode"])
    return out.clamp(min=0) if ov["mode"] == "max" else out  # [K, C, 7, 7]


def _recorded(name: str) -> torch.Tensor:
    return torch.from_numpy(FIXTURE[f"{name}__output"])


def test_the_fixture_is_openvino_2026_4():
    assert META["openvino"].startswith("2026.4.1") and META["onnx_cases"]


@pytest.mark.parametrize("name", META["onnx_cases"])
def test_openvino_reading_reproduces_openvino(name):
    (node,) = inspect_onnx(FIXTURE[f"{name}__model"].tobytes()).nodes
    ov = node.openvino
    got = _replay(ov)
    assert float((got - _recorded(name)).abs().max()) < TOL


@pytest.mark.parametrize(("opset", "aligned"), [(11, 0), (11, 1), (16, 0), (16, 1)])
def test_torchvision_exports_are_read_as_onnxruntime_reads_them(opset, aligned):
    (node,) = inspect_onnx(FIXTURE[f"tv_opset{opset}_aligned{aligned}__model"].tobytes()).nodes
    ov = node.openvino
    assert ov["aligned_mode"] == ("half_pixel_for_nn" if opset == 16 and aligned else "asymmetric")
    assert (ov["shift_cells"], ov["shift_px"], ov["differs"]) == (0.0, 0.0, [])
    # and OpenVINO matches torchvision wherever the ONNX graph does (opset 11 aligned=True is off in both)
    reference = torchvision.ops.roi_align(X, ROIS, (7, 7), SCALE, -1 if aligned else 2, bool(aligned))
    off = float((_recorded(f"tv_opset{opset}_aligned{aligned}") - reference).abs().max())
    assert (off > 0.1) if (opset == 11 and aligned) else (off < TOL)


@pytest.mark.parametrize("opset", [11, 16])
def test_a_missing_sampling_ratio_is_read_as_1(opset):
    (node,) = inspect_onnx(FIXTURE[f"omitted_ratio_opset{opset}__model"].tobytes()).nodes
    assert node.sampling_ratio == 0 and not node.sampling_explicit  # ONNX's default: adaptive
    ov = node.openvino
    assert ov["sampling_ratio"] == 1 and ov["differs"] == ["sampling_ratio 1, not ONNX's default 0 (adaptive)"]
    adaptive = roi_align(X, ROIS, (7, 7), SCALE, 0, opset == 16)  # what onnxruntime computes
    assert float((_recorded(f"omitted_ratio_opset{opset}") - adaptive).abs().max()) > 0.1  # the difference is real


def test_max_mode_is_max_of_interpolated_samples_from_zero():
    model = FIXTURE["max_opset16__model"].tobytes()
    report = inspect_onnx(model, measure=False)
    assert report.nodes[0].openvino["differs"] == ["max over interpolated samples, from 0"]
    mmcv_max = roi_align(X, ROIS, (7, 7), SCALE, 2, True, mode="max")
    recorded = _recorded("max_opset16")
    assert float((recorded - mmcv_max.clamp(min=0)).abs().max()) < TOL
    assert float((recorded - mmcv_max).abs().max()) > 0.1 and float(recorded.min()) == 0.0  # not mmcv's
    finding = next(f for f in report.findings if f.code == "OPENVINO_MAX_MODE")
    assert finding.severity == "warning"
    assert finding.message == (
        "RoiAlign 'pool' uses mode=max, which OpenVINO computes as the max of the bilinearly interpolated samples "
        "starting from 0: mmcv's max where a bin has a positive sample, 0 where all its samples are negative; so "
        "OpenVINO, onnxruntime and mmcv give three different results (equal for OpenVINO and mmcv after a ReLU)."
    )
    assert finding.evidence.startswith("OpenVINO ROIAlign-9 mode=max: pooled = 0, then pooled = max(pooled, sample)")
    assert finding.fix.startswith("pool with mode='avg' if the model allows")


def test_max_mode_measured_against_onnxruntime():
    pytest.importorskip("onnxruntime")
    report = inspect_onnx(FIXTURE["max_opset16__model"].tobytes())
    finding = next(f for f in report.findings if f.code == "OPENVINO_MAX_MODE")
    assert "modelled as max(0, mmcv max): |OpenVINO - onnxruntime" in finding.evidence
    assert "% of the bins have only negative samples)" in finding.evidence


def test_a_mapping_attribute_at_opset_11_is_ignored():
    report = inspect_onnx(FIXTURE["ctm_on_opset11__model"].tobytes())
    ov = report.nodes[0].openvino
    assert (ov["aligned_mode"], ov["shift_cells"], ov["shift_px"]) == ("asymmetric", 0.5, 2.0)
    written = roi_align(X, ROIS, (7, 7), SCALE, 2, True)  # what the attribute says
    assert float((_recorded("ctm_on_opset11") - written).abs().max()) > 0.1
    finding = next(f for f in report.findings if f.code == "OPENVINO_COORDINATES")
    assert finding.message == (
        "RoiAlign 'pool' writes coordinate_transformation_mode=half_pixel at opset 11, where RoiAlign has no such "
        "attribute: onnxruntime refuses the model (INVALID_GRAPH), OpenVINO's ONNX frontend ignores it and computes "
        "asymmetric (x * s), 0.5 map cell off from what the attribute says."
    )
    assert finding.evidence == (
        "opset 11 < 16, coordinate_transformation_mode written; OpenVINO ROIAlign-9 aligned_mode=asymmetric; 0.5 "
        "cell at spatial_scale 0.25 is 2 input px"
    )


@pytest.mark.parametrize("mode", list(OPENVINO_MAPPINGS))
def test_roialign9_aligned_modes_as_the_spec_says(mode):
    """half_pixel is (x + 0.5) * s - 0.5: torchvision's aligned=True on boxes half an input px further."""
    ov = {"aligned_mode": mode, "sampling_ratio": META["ir_sampling_ratio"], "mode": "avg"}
    recorded = _recorded(f"ir_{mode}")
    assert float((_replay(ov) - recorded).abs().max()) < TOL
    if mode == "half_pixel":  # and it is not torchvision's aligned=True mapping
        aligned = roi_align(X, ROIS, (7, 7), SCALE, 2, True)
        assert float((aligned - recorded).abs().max()) > 0.05


def test_summary_states_what_openvino_computes():
    text = inspect_onnx(FIXTURE["tv_opset16_aligned1__model"].tobytes()).summary()
    assert ("    OpenVINO reads it as ROIAlign-9 aligned_mode=half_pixel_for_nn (x * s - 0.5), sampling_ratio=0, "
            "mode=avg: as onnxruntime") in text.splitlines()  # fmt: skip
    data = inspect_onnx(FIXTURE["omitted_ratio_opset16__model"].tobytes()).to_dict()
    assert data["nodes"][0]["openvino"]["sampling_ratio"] == 1
