"""``roi-lab inspect MODEL.onnx`` / :func:`roi_lab.inspect_onnx.inspect_onnx` on models exported here.

torchvision's ``roi_align`` is exported with the TorchScript exporter at opset 11 and 16, aligned True and
False, and every model is run through onnxruntime against torchvision: the opset-11 ``aligned=True``
model really is off (the trap the inspector flags), the others match. Hand-built one-node models cover
what torchvision does not write (max mode, omitted attributes, subgraphs, TensorRT plugin nodes).
"""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path

import pytest
import torch
import torchvision

from roi_lab.cli import EXIT_FINDINGS, EXIT_OK, EXIT_UNREADABLE, main
from roi_lab.inspect_onnx import ONNX_CODES, OnnxModelError, inspect_onnx
from roi_lab.ops.roi_align import roi_align

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'roi-lab[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'roi-lab[onnx]')")
helper = onnx.helper

README = Path(__file__).resolve().parent.parent / "README.md"


class Pooler(torch.nn.Module):
    def __init__(self, aligned: bool, sampling_ratio: int):
        super().__init__()
        self.aligned, self.sampling_ratio = aligned, sampling_ratio

    def forward(self, x, rois):
        return torchvision.ops.roi_align(x, rois, (7, 7), 0.25, self.sampling_ratio, self.aligned)


def _inputs(seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 32, 40, generator=gen)
    xy = torch.rand(6, 2, generator=gen) * 100
    wh = torch.rand(6, 2, generator=gen) * 60 + 4
    rois = torch.cat([torch.tensor([[0.0], [1], [0], [1], [0], [1]]), xy, xy + wh], 1)
    return x, rois


def export(path: Path, opset: int, aligned: bool) -> list[str]:
    """torchvision's roi_align exported to ``path``; returns the exporter's ROIAlign warnings."""
    model = Pooler(aligned, -1 if aligned else 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(model, _inputs(0), str(path), dynamo=False, opset_version=opset)
    return sorted({str(w.message) for w in caught if "RoIAlign" in str(w.message) or "ROIAlign" in str(w.message)})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    models = {}
    for opset in (11, 16):
        for aligned in (False, True):
            path = folder / f"roi_align_opset{opset}_aligned{int(aligned)}.onnx"
            models[opset, aligned] = (path, export(path, opset, aligned))
    return models


def _run_ort(path_or_bytes, x, rois):
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return torch.from_numpy(session.run(None, dict(zip(names, (x.numpy(), rois.numpy()), strict=True)))[0])


def one_node(op_type="RoiAlign", opset=16, domain="", **attrs):
    node = helper.make_node(op_type, ["x", "rois", "idx"], ["y"], name="pool", domain=domain, **attrs)
    graph = helper.make_graph([node], "g", [], [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def codes(report):
    return [f.code for f in report.findings]


# ---------------------------------------------------------------------------------------- torchvision models


@pytest.mark.parametrize("opset", [11, 16])
@pytest.mark.parametrize("aligned", [False, True])
def test_exported_torchvision_models(exported, opset, aligned):
    path, exporter_warnings = exported[opset, aligned]
    report = inspect_onnx(path)
    assert report.opset == opset and len(report.nodes) == 1
    node = report.nodes[0]
    assert (node.op_type, node.spatial_scale, node.output_size, node.mode) == ("RoiAlign", 0.25, (7, 7), "avg")
    assert node.sampling_ratio == (0 if aligned else 2)  # torchvision writes 0 for its -1
    # what the graph says the node computes: half_pixel only where opset 16 wrote it for aligned=True
    assert node.coordinate_transformation_mode == ("half_pixel" if opset == 16 and aligned else "output_half_pixel")
    assert node.ctm_explicit == (opset == 16)
    assert ("ONNX_NO_HALF_PIXEL" in codes(report)) == (opset == 11)
    assert ("ONNX_ADAPTIVE_SAMPLING" in codes(report)) == aligned
    assert not report.has_errors

    # and the runtime agrees: onnxruntime reproduces torchvision except for the flagged trap
    x, rois = _inputs(1)  # not the traced inputs
    theirs = _run_ort(path, x, rois)
    reference = torchvision.ops.roi_align(x, rois, (7, 7), 0.25, -1 if aligned else 2, aligned)
    off = float((theirs - reference).abs().max())
    if opset == 11 and aligned:
        assert off > 0.1  # half a cell off on a N(0, 1) map
        assert exporter_warnings[-1] == (
            "ROIAlign with aligned=True is only supported in opset >= 16. Please export with opset 16 or higher, "
            "or use aligned=False."
        )
    else:
        assert off < 1e-5  # float32 bilinear sums in another order
    if aligned:
        assert exporter_warnings[0] == (
            "ONNX export for RoIAlign with a non-zero sampling_ratio is not supported. The model will be exported "
            "with a sampling_ratio of 0."
        )


def test_no_half_pixel_message(exported):
    finding = next(f for f in inspect_onnx(exported[11, True][0]).findings if f.code == "ONNX_NO_HALF_PIXEL")
    assert finding.severity == "warning"
    assert finding.evidence == (
        "opset 11 < 16, no coordinate_transformation_mode; half a cell at spatial_scale 0.25 is 2 input px"
    )
    assert "torchvision's exporter only warns" in finding.message and "onnx/onnx#3428" in finding.message
    assert finding.fix.startswith("re-export with torch.onnx.export(..., opset_version=16)")


# ------------------------------------------------------------------------------------------ hand-built nodes


def test_max_mode_is_flagged_and_measured():
    model = one_node(mode="max", output_height=4, output_width=4, sampling_ratio=2, spatial_scale=0.5,
                     coordinate_transformation_mode="half_pixel")  # fmt: skip
    report = inspect_onnx(model)
    assert codes(report) == ["ONNX_MAX_MODE", "OPENVINO_MAX_MODE"]  # OpenVINO's max: tests/test_inspect_openvino.py
    finding = report.findings[0]
    assert finding.code == "ONNX_MAX_MODE" and finding.severity == "warning"
    assert "microsoft/onnxruntime#6146" in finding.message
    match = re.search(r"up to ([\d.e+-]+), mean ([\d.e+-]+) \(map std 1\)", finding.evidence)
    assert match and float(match.group(1)) > 0.1  # ONNX's max really is another number than mmcv's
    # the measurement is what onnxruntime gives for these settings, compared independently here
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 2, 16, 16, generator=gen)
    boxes = torch.tensor([[2.0, 2, 20, 26], [4, 1, 30, 12]])
    node = helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], mode="max", output_height=4, output_width=4,
                            sampling_ratio=2, spatial_scale=0.5, coordinate_transformation_mode="half_pixel")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 16, 16]),
         helper.make_tensor_value_info("rois", onnx.TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("idx", onnx.TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )  # fmt: skip
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)]).SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    theirs = torch.from_numpy(session.run(None, {"x": x.numpy(), "rois": boxes.numpy(),
                                                 "idx": torch.zeros(2, dtype=torch.int64).numpy()})[0])  # fmt: skip
    mmcv_max = roi_align(x, torch.cat([torch.zeros(2, 1), boxes], 1), 4, 0.5, 2, True, mode="max")
    assert float((theirs - mmcv_max).abs().max()) > 0.1
    assert "measured" not in inspect_onnx(model, measure=False).findings[0].evidence


def test_omitted_and_negative_sampling_and_default_mode():
    omitted = inspect_onnx(one_node(opset=16, output_height=7, output_width=7))
    node = omitted.nodes[0]
    assert (node.coordinate_transformation_mode, node.ctm_explicit, node.sampling_ratio, node.sampling_explicit) == (
        "half_pixel", False, 0, False)  # fmt: skip
    assert codes(omitted) == ["ONNX_SAMPLING_OMITTED", "ONNX_CTM_DEFAULT"]
    assert "openvinotoolkit/openvino#37826" in omitted.findings[0].message
    assert inspect_onnx(one_node(opset=10)).nodes[0].coordinate_transformation_mode == "output_half_pixel"
    negative = inspect_onnx(one_node(sampling_ratio=-1, coordinate_transformation_mode="half_pixel"))
    assert codes(negative) == ["ONNX_NEGATIVE_SAMPLING"] and negative.has_errors
    assert str(negative.findings[0]) == (
        "ERROR ONNX_NEGATIVE_SAMPLING: RoiAlign 'pool' has sampling_ratio -1: ONNX allows 0 (adaptive) or a positive "
        "grid.\n  evidence: sampling_ratio=-1\n  fix: write sampling_ratio=0 for torchvision's -1 (adaptive), as "
        "torchvision's exporter does"
    )
    clean = inspect_onnx(one_node(sampling_ratio=2, coordinate_transformation_mode="output_half_pixel"))
    assert clean.findings == [] and "OK: no known export trap" in clean.summary()


def test_nodes_in_subgraphs_are_found():
    inner = helper.make_graph(
        [helper.make_node("RoiAlign", ["x", "r", "i"], ["y"], name="inner", sampling_ratio=2,
                          coordinate_transformation_mode="half_pixel", spatial_scale=0.125)], "then", [], [])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "else", [], [])
    cond = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=inner, else_branch=other)
    model = helper.make_model(helper.make_graph([cond], "g", [], []), opset_imports=[helper.make_opsetid("", 17)])
    (node,) = inspect_onnx(model).nodes
    assert (node.name, node.graph, node.opset, node.spatial_scale) == ("inner", "main/branch.then_branch", 17, 0.125)


def test_tensorrt_plugin_nodes():
    trt = inspect_onnx(one_node("ROIAlign_TRT", coordinate_transformation_mode=0, mode=0, sampling_ratio=2))
    assert (trt.nodes[0].coordinate_transformation_mode, trt.nodes[0].mode) == ("output_half_pixel", "max")
    assert inspect_onnx(one_node("ROIAlign_TRT")).nodes[0].coordinate_transformation_mode == "half_pixel"
    legacy = inspect_onnx(one_node("PyramidROIAlign_TRT", legacy=1))
    (finding,) = legacy.findings
    assert finding.code == "TRT_PYRAMID_FLAGS" and finding.severity == "warning"
    assert finding.message == (
        "PyramidROIAlign_TRT 'pool' matches the legacy plugin (legacy=1) preset: rois read as (y1, x1, y2, x2) "
        "(TensorFlow order); rois read as normalized [0, 1]; fpn_scale 158: levels change at sqrt(area) = 79, "
        "158, 316 px, not 112, 224, 448; roi_coords_transform -1 (align_corners-like legacy), not half_pixel."
    )
    detectron2 = inspect_onnx(one_node("PyramidROIAlign_TRT")).findings[0]  # the plugin's defaults
    assert detectron2.severity == "info" and "matches the detectron2 preset." in detectron2.message
    odd = inspect_onnx(one_node("PyramidROIAlign_TRT", roi_coords_plusone=1, fpn_scale=200)).findings[0]
    assert "matches none of the README's presets: +1 added to widths and heights; fpn_scale 200" in odd.message


def test_every_code_is_listed():
    assert set(ONNX_CODES) == {"ONNX_NO_HALF_PIXEL", "ONNX_MAX_MODE", "ONNX_ADAPTIVE_SAMPLING",
                               "ONNX_SAMPLING_OMITTED", "ONNX_CTM_DEFAULT", "ONNX_NEGATIVE_SAMPLING",
                               "OPENVINO_MAX_MODE", "OPENVINO_COORDINATES", "TRT_PYRAMID_FLAGS"}  # fmt: skip


# ------------------------------------------------------------------------------------------------ bad input


def test_unreadable_models(tmp_path):
    text = tmp_path / "model.onnx"
    text.write_text("not a model\n" * 10)
    with pytest.raises(OnnxModelError) as err:
        inspect_onnx(text)
    assert str(err.value).startswith(f"inspect_onnx expects an ONNX model (protobuf ModelProto); got {text}: ")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(OnnxModelError, match="no graph and no opset"):
        inspect_onnx(empty)
    with pytest.raises(OnnxModelError, match=r"expects a readable \.onnx file; got .*missing\.onnx: "):
        inspect_onnx(tmp_path / "missing.onnx")
    with pytest.raises(OnnxModelError, match="expects a path, bytes or onnx.ModelProto; got int"):
        inspect_onnx(3)
    with pytest.raises(OnnxModelError, match="expects a readable .onnx file; got .*"):
        inspect_onnx(tmp_path)  # a directory


def test_attributes_of_the_wrong_type_and_models_without_pooling():
    model = one_node(sampling_ratio="two", coordinate_transformation_mode="half_pixel")
    with pytest.raises(OnnxModelError) as err:
        inspect_onnx(model)
    assert str(err.value).startswith(
        "inspect_onnx expects RoiAlign attributes of the types its spec gives (ints, floats, strings); got node "
        "'pool' in main: ValueError: "
    )
    relu = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [], []))
    report = inspect_onnx(relu)
    assert report.nodes == [] and report.summary().endswith("No RoiAlign, ROIAlign_TRT or PyramidROIAlign_TRT "
                                                            "node: nothing to check.")  # fmt: skip


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_text_json_and_exit_codes(exported, tmp_path, capsys):
    path = exported[11, True][0]
    assert main(["inspect", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "ONNX opset 11" in out and "WARNING ONNX_NO_HALF_PIXEL" in out
    assert main(["inspect", str(path), "--format", "json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["nodes"][0]["coordinate_transformation_mode"] == "output_half_pixel"
    assert [f["code"] for f in data["findings"]] == ["ONNX_NO_HALF_PIXEL", "ONNX_ADAPTIVE_SAMPLING"]
    bad = tmp_path / "neg.onnx"
    bad.write_bytes(one_node(sampling_ratio=-1, coordinate_transformation_mode="half_pixel").SerializeToString())
    assert main(["inspect", str(bad)]) == EXIT_FINDINGS
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "missing.onnx")]) == EXIT_UNREADABLE
    err = capsys.readouterr().err
    assert err.startswith("roi-lab inspect: inspect_onnx expects a readable .onnx file; got ") and "\n" == err[-1]


def test_readme_transcript_is_what_the_cli_prints(tmp_path, monkeypatch, capsys):
    """The README's `roi-lab inspect` transcript, re-made: export as it says, run, compare."""
    text = README.read_text()
    block = re.search(r"```console\n\$ roi-lab inspect (\S+)\n(.*?)```", text, re.S)
    assert block, "README has no roi-lab inspect transcript"
    name, shown = block.group(1), block.group(2)
    monkeypatch.chdir(tmp_path)
    export(tmp_path / name, 11, True)
    main(["inspect", name])
    printed = capsys.readouterr().out
    version = re.escape(torch.__version__.split("+")[0])
    assert re.sub(f"pytorch {version}", "pytorch 2.14.1", printed) == shown


def test_exporter_output_is_deterministic_enough_for_the_transcript(exported):
    # the node name and attributes the transcript shows come from the exporter, not from the traced values
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooler(True, -1), _inputs(7), buffer, dynamo=False, opset_version=11)
    assert str(inspect_onnx(buffer.getvalue()).nodes[0]) == str(inspect_onnx(exported[11, True][0]).nodes[0])
