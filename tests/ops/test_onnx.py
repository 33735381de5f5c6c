"""ONNX export of roi_lab's ops, run back with onnxruntime against roi_lab.

torch 2.14 offers two exporters: the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``)
and the dynamo one (the default, ``dynamo=True``, which needs onnxscript). Both must write a real
``RoiAlign`` node (before: the TorchScript exporter silently wrote a model with no inputs and one
all-zero constant; the dynamo one failed in torch.export), and every model is run on inputs other
than the ones it was traced with, so a constant-folded model cannot pass.

The tests skip, saying why, when onnx / onnxruntime / onnxscript are not installed (they are in the
``test`` extra).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import OrderedDict

import pytest
import torch

from roi_lab.errors import NotSupportedError
from roi_lab.ops.crop_and_resize import crop_and_resize
from roi_lab.ops.fpn import MultiScaleRoIAlign
from roi_lab.ops.roi_align import onnx_translation_table, roi_align

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'roi-lab[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'roi-lab[onnx]')")

try:
    import onnxscript  # noqa: F401 - the dynamo exporter needs it
except ImportError:  # pragma: no cover - installed with the test extra
    HAVE_ONNXSCRIPT = False
else:
    HAVE_ONNXSCRIPT = True
EXPORTERS = [
    pytest.param(True, id="dynamo", marks=pytest.mark.skipif(not HAVE_ONNXSCRIPT, reason="onnxscript not installed")),
    pytest.param(False, id="torchscript"),
]


@pytest.fixture(autouse=True)
def _quiet_exporters():
    """The exporters print progress and warn (deprecations, tracer warnings); none of it is tested."""
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    logging.disable(logging.NOTSET)


def export(model: torch.nn.Module, args: tuple, dynamo: bool, opset: int | None = None) -> bytes:
    """The serialized ONNX model of ``model`` traced on ``args``."""
    if dynamo:
        program = torch.onnx.export(model, args, dynamo=True, opset_version=opset, verbose=False)
        return program.model_proto.SerializeToString()
    buffer = io.BytesIO()
    torch.onnx.export(model, args, buffer, dynamo=False, opset_version=opset or 17)
    return buffer.getvalue()


def run(model_bytes: bytes, args: tuple) -> list[torch.Tensor]:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=True)}
    return [torch.from_numpy(o) for o in session.run(None, feeds)]


def roi_align_nodes(model_bytes: bytes) -> list:
    return [n for n in onnx.load_from_string(model_bytes).graph.node if n.op_type == "RoiAlign"]


def attributes(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def random_inputs(seed: int, n=2, c=4, h=12, w=15, k=24):
    """A map and rois [K, 5] of boxes inside, across and outside the map, degenerate ones included."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen)
    size = torch.tensor([w, h, w, h]) / 0.5  # image px at spatial_scale 0.5
    xyxy = torch.rand(k, 4, generator=gen) * size * 1.4 - size * 0.2
    xyxy[:, 2:] = torch.maximum(xyxy[:, 2:], xyxy[:, :2])  # ONNX RoiAlign: x2 >= x1 (inverted ones differ)
    xyxy[0, 2:] = xyxy[0, :2]
    batch = torch.randint(0, n, (k, 1), generator=gen).float()
    return x, torch.cat([batch, xyxy], 1)


class Pool(torch.nn.Module):
    def __init__(self, aligned: bool, ratio: int, mode: str = "avg", output_size=(3, 4)):
        super().__init__()
        self.aligned, self.ratio, self.mode, self.output_size = aligned, ratio, mode, output_size

    def forward(self, x, rois):
        return roi_align(x, rois, self.output_size, 0.5, self.ratio, self.aligned, mode=self.mode)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio", [2, 0, -1])
def test_roi_align_round_trip_through_onnxruntime(dynamo, aligned, ratio):
    model = Pool(aligned, ratio)
    model_bytes = export(model, random_inputs(0), dynamo)
    (node,) = roi_align_nodes(model_bytes)
    attrs = attributes(node)
    assert attrs["coordinate_transformation_mode"] == (b"half_pixel" if aligned else b"output_half_pixel")
    assert attrs["sampling_ratio"] == max(ratio, 0) and attrs["mode"] == b"avg"
    assert (attrs["output_height"], attrs["output_width"]) == (3, 4) and attrs["spatial_scale"] == 0.5
    assert len(onnx.load_from_string(model_bytes).graph.input) == 2  # not a constant-folded model
    for seed in (1, 2, 3):  # inputs the model was not traced with
        args = random_inputs(seed)
        (got,) = run(model_bytes, args)
        torch.testing.assert_close(got, model(*args), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_roi_align_with_box_lists_and_a_list_of_images(dynamo):
    class ListPool(torch.nn.Module):
        def forward(self, x, b0, b1):
            return roi_align(x, [b0, b1], 2, 0.5, 2, True)

    x, rois = random_inputs(4)
    args = (x, rois[:10, 1:], rois[10:, 1:])
    model_bytes = export(ListPool(), args, dynamo)
    assert len(roi_align_nodes(model_bytes)) == 1
    x2, rois2 = random_inputs(5)
    args2 = (x2, rois2[:10, 1:], rois2[10:, 1:])
    torch.testing.assert_close(run(model_bytes, args2)[0], ListPool()(*args2), rtol=1e-5, atol=1e-5)


def test_torchscript_exporter_refuses_aligned_below_opset_16_and_accepts_legacy():
    """torchvision only warns and writes RoiAlign-10, which is always half a pixel off for aligned=True."""
    args = random_inputs(6)
    for opset in (11, 15):
        with pytest.raises(NotSupportedError) as info:
            export(Pool(True, 2), args, dynamo=False, opset=opset)
        assert "roi_align(aligned=True) expects opset_version >= 16 for aligned=True" in str(info.value)
        assert f"got opset_version={opset}" in str(info.value)
        assert "opset_version=17" in info.value.fix
        model_bytes = export(Pool(False, 2), args, dynamo=False, opset=opset)  # RoiAlign-10: the legacy transform
        (node,) = roi_align_nodes(model_bytes)
        assert "coordinate_transformation_mode" not in attributes(node)
        torch.testing.assert_close(run(model_bytes, random_inputs(7))[0], Pool(False, 2)(*random_inputs(7)),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
    with pytest.raises(NotSupportedError, match=r"opset_version >= 10 \(the first opset with RoiAlign\)"):
        export(Pool(False, 2), args, dynamo=False, opset=9)


@pytest.mark.skipif(not HAVE_ONNXSCRIPT, reason="onnxscript not installed")
def test_dynamo_exporter_keeps_roi_align_16_when_asked_for_an_older_opset():
    """The dynamo exporter writes opset 18 and converts down; it cannot convert RoiAlign-16 and keeps the
    model at 18 (logging why), so an aligned model is never written as a half-pixel-off RoiAlign-10."""
    model_bytes = export(Pool(True, 2), random_inputs(8), dynamo=True, opset=11)
    versions = {o.domain: o.version for o in onnx.load_from_string(model_bytes).opset_import}
    assert versions[""] >= 16
    assert attributes(roi_align_nodes(model_bytes)[0])["coordinate_transformation_mode"] == b"half_pixel"
    torch.testing.assert_close(run(model_bytes, random_inputs(9))[0], Pool(True, 2)(*random_inputs(9)),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_max_mode_is_refused(dynamo):
    with pytest.raises((NotSupportedError, torch.onnx.errors.OnnxExporterError)) as info:
        export(Pool(True, 2, mode="max"), random_inputs(10), dynamo)
    # the dynamo exporter tries several capture strategies and re-raises the first failure, ours
    text = str(info.value)
    assert "torch.onnx.export of roi_align(mode='max') expects mode=\"avg\"" in text
    assert "takes the max over the four weighted corner values of each sample" in text


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_crop_and_resize_is_refused(dynamo):
    class Crop(torch.nn.Module):
        def forward(self, image, boxes, box_indices):
            return crop_and_resize(image, boxes, box_indices, 3)

    args = (torch.rand(1, 2, 6, 6), torch.tensor([[0.1, 0.1, 0.9, 0.8]]), torch.tensor([0]))
    with pytest.raises((NotSupportedError, torch.onnx.errors.OnnxExporterError)) as info:
        export(Crop(), args, dynamo)
    assert "torch.onnx.export of crop_and_resize expects an op with an ONNX equivalent" in str(info.value)
    assert "pool with roi_lab.roi_align, which exports to ONNX RoiAlign" in str(info.value)


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_multi_scale_roi_align_round_trip(dynamo):
    """MultiScaleRoIAlign exports as one RoiAlign per level over all boxes, merged with Where."""

    class Pooler(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pooler = MultiScaleRoIAlign(["0", "1", "2"], 3, 2)

        def forward(self, p2, p3, p4, b0, b1):
            return self.pooler(OrderedDict([("0", p2), ("1", p3), ("2", p4)]), [b0, b1], [(256, 320), (256, 320)])

    def inputs(seed):
        gen = torch.Generator().manual_seed(seed)
        maps = [torch.randn(2, 3, 64 // 2**i, 80 // 2**i, generator=gen) for i in range(3)]
        centre = torch.rand(12, 2, generator=gen) * torch.tensor([320.0, 256.0])
        size = torch.exp(torch.rand(12, 2, generator=gen) * 4.4) + 2  # 3..83 px: all three levels
        boxes = torch.cat([centre - size / 2, centre + size / 2], 1)
        return (*maps, boxes[:7], boxes[7:])

    model_bytes = export(Pooler(), inputs(11), dynamo)
    assert len(roi_align_nodes(model_bytes)) == 3
    args = inputs(12)
    torch.testing.assert_close(run(model_bytes, args)[0], Pooler()(*args), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not HAVE_ONNXSCRIPT, reason="onnxscript not installed")
def test_exported_program_needs_the_translation_table():
    """An ExportedProgram made outside torch.onnx.export holds the registered op itself: the dynamo
    exporter translates it with roi_lab's table."""
    program = torch.export.export(Pool(True, 0), random_inputs(13))
    onnx_program = torch.onnx.export(program, custom_translation_table=onnx_translation_table(), verbose=False)
    model_bytes = onnx_program.model_proto.SerializeToString()
    assert attributes(roi_align_nodes(model_bytes)[0])["sampling_ratio"] == 0
    torch.testing.assert_close(run(model_bytes, random_inputs(14))[0], Pool(True, 0)(*random_inputs(14)),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
