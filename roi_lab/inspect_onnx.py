"""What the ROI pooling nodes of an ONNX model will compute: ``roi-lab inspect MODEL.onnx``.

:func:`inspect_onnx` lists every ``RoiAlign`` node (the main graph, ``If`` / ``Loop`` bodies and local
functions) with its opset, ``coordinate_transformation_mode`` (written, or the opset's default),
``sampling_ratio``, ``mode``, ``spatial_scale`` and output size, TensorRT's ``ROIAlign_TRT`` and
``PyramidROIAlign_TRT`` plugin nodes with their flags, and returns :class:`~roi_lab.diagnose.Finding`
objects for the traps that can be seen in the graph:

- ``ONNX_NO_HALF_PIXEL`` (warning): opset < 16. RoiAlign-10 has no half-pixel mode: it maps ``x`` to ``x *
  spatial_scale`` (torchvision's ``aligned=False``). A model whose PyTorch pooler used ``aligned=True``
  (detectron2's ROIAlignV2, mmcv's default) was exported half a map cell off, and torchvision's exporter
  only warns ("ROIAlign with aligned=True is only supported in opset >= 16"); onnx/onnx#3428,
  microsoft/onnxruntime#6921. The graph cannot tell which pooler it came from, hence a warning.
- ``ONNX_MAX_MODE`` (warning): ``mode="max"``. ONNX and onnxruntime take, per sample, the max of the
  four *weighted* corner values ``w_i * v_i`` and then the max over the samples; mmcv (and roi_lab's
  ``mode="max"``) the max over the bilinearly *interpolated* samples (microsoft/onnxruntime#6146). With
  onnxruntime installed, the difference is measured on the node's own settings.
- ``ONNX_ADAPTIVE_SAMPLING`` (info): ``sampling_ratio`` 0 is ONNX's adaptive grid, ``ceil(roi_size /
  output_size)`` per box, which is torchvision's ``-1`` (its exporter writes 0 and warns) and mmcv's 0.
- ``ONNX_SAMPLING_OMITTED`` (warning): no ``sampling_ratio`` attribute. The spec's default is 0
  (adaptive), but OpenVINO's ONNX frontend reads a missing one as 1 (openvinotoolkit/openvino#37826).
- ``ONNX_CTM_DEFAULT`` (info): opset >= 16 with no ``coordinate_transformation_mode``: the default is
  ``half_pixel`` (``aligned=True``); an ``aligned=False`` model must write ``output_half_pixel``.
- ``ONNX_NEGATIVE_SAMPLING`` (error): ``sampling_ratio`` < 0, which the spec does not allow.
- ``OPENVINO_MAX_MODE`` (warning): ``mode="max"`` as OpenVINO computes it: the max of the bilinearly
  interpolated samples with 0 as the start value, so ``max(0, mmcv's max)``; neither onnxruntime's nor mmcv's.
- ``OPENVINO_COORDINATES`` (warning): a node whose mapping OpenVINO's ONNX frontend reads otherwise than
  written (a ``coordinate_transformation_mode`` on a node read at opset < 16: onnxruntime refuses the model,
  OpenVINO ignores the attribute), with the shift in map cells and input px.
- ``TRT_PYRAMID_FLAGS`` (warning or info): ``PyramidROIAlign_TRT``'s flags compared with the presets of
  its README (detectron2, maskrcnn-benchmark, the legacy plugin): ``roi_coords_transform``,
  ``roi_coords_absolute``, ``roi_coords_swap``, ``roi_coords_plusone``, ``sampling_ratio``,
  ``fpn_scale`` (224; 158 in the legacy mode).

What OpenVINO computes (``PoolNode.openvino``, shown under every RoiAlign node): its ONNX frontend
(``src/frontends/onnx/frontend/src/op/roi_align.cpp``) builds a ROIAlign-9 with ``aligned_mode``
``asymmetric`` (``x * s``) at opset < 16 or for ``output_half_pixel``, else ``half_pixel_for_nn`` (``x * s -
0.5``): the same mappings as onnxruntime's. ROIAlign-9's own ``half_pixel`` mode is ``(x + 0.5) * s - 0.5``
(the spec, ``operation-specs/detection/roi-align-9.rst``, and the reference,
``src/core/reference/include/openvino/reference/roi_align.hpp``: ``offset_src = 0.5``), half an input pixel
(``0.5 * s`` cells) from torchvision's ``aligned=True``, but no frontend writes it. A missing
``sampling_ratio`` becomes 1. Checked against openvino 2026.4.1 (``tests/fixtures/openvino_roi_align.npz``).

Convention:
    ONNX RoiAlign: ``rois`` ``[K, 4]`` ``(x1, y1, x2, y2)`` in input-image coordinates, ``batch_indices``
    ``[K]``; ``half_pixel`` maps ``x -> x * spatial_scale - 0.5`` (torchvision ``aligned=True``),
    ``output_half_pixel`` ``x -> x * spatial_scale`` (``aligned=False``, RoiAlign-10's only mode). TensorRT
    ``ROIAlign_TRT``: ``coordinate_transformation_mode`` 1 = half_pixel (default), 0 = output_half_pixel;
    ``mode`` 1 = avg (default), 0 = max.

Needs the ``onnx`` package (``pip install 'roi-lab[onnx]'``); the max-mode measurement needs onnxruntime.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from roi_lab._diagnose_context import Finding
from roi_lab.errors import RoiLabError

__all__ = ["ONNX_CODES", "PoolNode", "OnnxInspection", "OnnxModelError", "inspect_onnx"]

ONNX_CODES: tuple[str, ...] = (
    "ONNX_NO_HALF_PIXEL",
    "ONNX_MAX_MODE",
    "ONNX_ADAPTIVE_SAMPLING",
    "ONNX_SAMPLING_OMITTED",
    "ONNX_CTM_DEFAULT",
    "ONNX_NEGATIVE_SAMPLING",
    "OPENVINO_MAX_MODE",
    "OPENVINO_COORDINATES",
    "TRT_PYRAMID_FLAGS",
)

# OpenVINO ROIAlign-9 aligned_mode -> the box mapping (roi-align-9.rst; reference/roi_align.hpp offset_src/dst)
OPENVINO_MAPPINGS: dict[str, str] = {
    "asymmetric": "x * s",
    "half_pixel_for_nn": "x * s - 0.5",
    "half_pixel": "(x + 0.5) * s - 0.5",
}

MAX_MODEL_BYTES = (2 << 30) - 1  # protobuf's limit; a larger model keeps its weights as external data

_POOL_OPS = ("RoiAlign", "ROIAlign_TRT", "PyramidROIAlign_TRT")

# PyramidROIAlign_TRT (plugin/pyramidROIAlignPlugin/README.md): defaults and the compatibility presets
_TRT_PYRAMID_DEFAULTS: dict[str, Any] = {
    "pooled_size": 7,
    "image_size": [1024, 1024],
    "fpn_scale": 224,
    "sampling_ratio": 0,
    "roi_coords_absolute": 1,
    "roi_coords_swap": 0,
    "roi_coords_plusone": 0,
    "roi_coords_transform": 2,
    "legacy": 0,
}
_TRT_FLAGS = ("roi_coords_transform", "roi_coords_plusone", "roi_coords_swap", "roi_coords_absolute",
              "sampling_ratio", "fpn_scale")  # fmt: skip
_TRT_PRESETS: dict[str, tuple[int, ...]] = {  # in the order of _TRT_FLAGS
    "detectron2": (2, 0, 0, 1, 0, 224),
    "maskrcnn-benchmark": (1, 1, 0, 1, 2, 224),
    "legacy plugin (legacy=1)": (-1, 0, 1, 0, 1, 158),
}
_TRT_TRANSFORMS = {-1: "align_corners-like legacy", 0: "asymmetric (no offset)", 1: "output_half_pixel",
                   2: "half_pixel"}  # fmt: skip


class OnnxModelError(RoiLabError):
    """A file that is not a readable ONNX model, or the ``onnx`` package missing."""


@dataclass(frozen=True)
class PoolNode:
    """One ROI pooling node of the model.

    Attributes:
        name (str): the node's name (``"<unnamed #i>"`` when it has none).
        op_type (str): ``"RoiAlign"``, ``"ROIAlign_TRT"`` or ``"PyramidROIAlign_TRT"``.
        graph (str): where it is: ``"main"``, ``"main/<If node>.then_branch"``, ``"function <name>"``.
        opset (int | None): the ONNX opset the node is read with (None for a plugin node).
        coordinate_transformation_mode (str): ``"half_pixel"`` or ``"output_half_pixel"`` (for the
            pyramid plugin: its ``roi_coords_transform`` in words).
        ctm_explicit (bool): the mode is written on the node (else it is the opset's or plugin's default).
        sampling_ratio (int): 0 = adaptive.
        sampling_explicit (bool): the attribute is written on the node.
        mode (str): ``"avg"`` or ``"max"``.
        spatial_scale (float | None): None for the pyramid plugin (it picks a level per box).
        output_size ((int, int)): (PH, PW).
        flags (dict): the pyramid plugin's flags (defaults filled in); empty otherwise.
    """

    name: str
    op_type: str
    graph: str
    opset: int | None
    coordinate_transformation_mode: str
    ctm_explicit: bool
    sampling_ratio: int
    sampling_explicit: bool
    mode: str
    spatial_scale: float | None
    output_size: tuple[int, int]
    flags: dict[str, Any] = field(default_factory=dict)

    @property
    def aligned(self) -> bool:
        """torchvision's ``aligned`` this node computes (``half_pixel``)."""
        return self.coordinate_transformation_mode == "half_pixel"

    @property
    def openvino(self) -> dict[str, Any] | None:
        """What OpenVINO's ONNX frontend makes of this RoiAlign node (None for the TensorRT plugin nodes).

        Returns:
            dict: ``op`` ("ROIAlign-9"), ``aligned_mode`` and its ``mapping`` (of ``x``, at scale ``s``),
            ``sampling_ratio`` (a missing one read as 1), ``mode``, ``shift_cells`` / ``shift_px``: how far
            its box mapping is from the one the node writes (``x * s - 0.5`` for half_pixel, ``x * s``
            otherwise), in map cells and input px; and ``differs``: what it computes otherwise than
            onnxruntime, in words (empty when nothing).
        """
        if self.op_type != "RoiAlign":
            return None
        reads_ctm = self.opset is not None and self.opset >= 16  # opset_16::roi_align; opset_1 ignores it
        mode = "half_pixel_for_nn" if reads_ctm and self.coordinate_transformation_mode != "output_half_pixel" else (
            "asymmetric")  # fmt: skip
        shift = (-0.5 if mode == "half_pixel_for_nn" else 0.0) - (-0.5 if self.aligned else 0.0)  # cells
        ratio = self.sampling_ratio if self.sampling_explicit else 1
        differs = []
        if shift:
            differs.append(f"box mapping {OPENVINO_MAPPINGS[mode]}, not the written "
                           f"{self.coordinate_transformation_mode}")
        if not self.sampling_explicit:
            differs.append("sampling_ratio 1, not ONNX's default 0 (adaptive)")
        if self.mode == "max":
            differs.append("max over interpolated samples, from 0")
        scale = self.spatial_scale or 1.0
        return {"op": "ROIAlign-9", "aligned_mode": mode, "mapping": OPENVINO_MAPPINGS[mode], "sampling_ratio": ratio,
                "mode": self.mode, "shift_cells": shift, "shift_px": shift / scale, "differs": differs}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_size"] = list(self.output_size)
        d["openvino"] = self.openvino
        return d

    def __str__(self) -> str:
        where = f"{self.op_type} {self.name!r}" + ("" if self.graph == "main" else f" in {self.graph}")
        opset = f"opset {self.opset}" if self.opset is not None else "TensorRT plugin"
        ctm = self.coordinate_transformation_mode + ("" if self.ctm_explicit else " (default)")
        ratio = f"{self.sampling_ratio}" + (" adaptive" if self.sampling_ratio == 0 else "")
        ratio += "" if self.sampling_explicit else " (default)"
        scale = "per level" if self.spatial_scale is None else f"{self.spatial_scale:g}"
        text = (f"{where}: {opset}, coordinate_transformation_mode={ctm}, sampling_ratio={ratio}, mode={self.mode}, "
                f"spatial_scale={scale}, output={self.output_size[0]}x{self.output_size[1]}")  # fmt: skip
        if self.flags:
            shown = ("pooled_size", "sampling_ratio", "roi_coords_transform")  # already in the line
            text += ", " + ", ".join(f"{k}={v}" for k, v in self.flags.items() if k not in shown)
        return text


@dataclass
class OnnxInspection:
    """What :func:`inspect_onnx` found: the model's opset, its pooling nodes and the findings."""

    source: str
    opset: int | None
    producer: str
    nodes: list[PoolNode]
    findings: list[Finding]

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "opset": self.opset,
            "producer": self.producer,
            "nodes": [n.to_dict() for n in self.nodes],
            "findings": [f.to_dict() for f in self.findings],
            "has_errors": self.has_errors,
        }

    def summary(self) -> str:
        head = f"{self.source}: ONNX opset {self.opset}" + (f", produced by {self.producer}" if self.producer else "")
        lines = [head, f"{len(self.nodes)} ROI pooling node{'s' if len(self.nodes) != 1 else ''}"]
        for n in self.nodes:
            lines.append(f"  {n}")
            ov = n.openvino
            if ov is not None:
                lines.append(f"    OpenVINO reads it as {ov['op']} aligned_mode={ov['aligned_mode']} "
                             f"({ov['mapping']}), sampling_ratio={ov['sampling_ratio']}, mode={ov['mode']}: "
                             + ("; ".join(ov["differs"]) if ov["differs"] else "as onnxruntime"))  # fmt: skip
        lines += [str(f) for f in self.findings]
        if not self.nodes:
            lines.append("No RoiAlign, ROIAlign_TRT or PyramidROIAlign_TRT node: nothing to check.")
        elif not self.findings:
            lines.append("OK: no known export trap in these nodes.")
        return "\n".join(lines)


def inspect_onnx(model: Any, *, measure: bool = True, source: str | None = None) -> OnnxInspection:
    """The ROI pooling nodes of an ONNX model and the export traps they show.

    Args:
        model: a path to a ``.onnx`` file, its bytes, or an ``onnx.ModelProto``.
        measure: run the ``mode="max"`` nodes' settings through onnxruntime (when installed) and state
            how far ONNX's max is from mmcv's on a random map.
        source: the name shown in the report (default: the path, or ``"<bytes>"``).

    Returns:
        OnnxInspection: ``nodes`` in graph order, ``findings`` (codes in :data:`ONNX_CODES`).

    Raises:
        OnnxModelError: the file cannot be read, is not an ONNX model, or ``onnx`` is not installed.

    Example:
        >>> import onnx
        >>> from onnx import helper
        >>> node = helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], output_height=7, output_width=7,
        ...                         sampling_ratio=2, spatial_scale=0.25)
        >>> graph = helper.make_graph([node], "g", [], [])
        >>> report = inspect_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]))
        >>> print(report.nodes[0].coordinate_transformation_mode, [f.code for f in report.findings])
        output_half_pixel ['ONNX_NO_HALF_PIXEL']
    """
    onnx = _import_onnx()
    proto, source = _load(onnx, model, source)
    opsets = {o.domain: o.version for o in proto.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx"))
    nodes = []
    for node, where, node_opset in _walk(proto, opset):
        try:
            nodes.append(_pool_node(onnx, node, where, node_opset))
        except (TypeError, ValueError, OverflowError) as exc:  # an attribute of another type than the spec's
            raise OnnxModelError(
                "inspect_onnx",
                expected=f"{node.op_type} attributes of the types its spec gives (ints, floats, strings)",
                got=f"node {node.name or node.op_type!r} in {where}: {type(exc).__name__}: {str(exc)[:160]}",
                fix="re-export the model; a hand-edited node must follow the operator's schema",
            ) from None
    findings: list[Finding] = []
    for node in nodes:
        findings += _findings(node, measure)
    return OnnxInspection(source, opset, f"{proto.producer_name} {proto.producer_version}".strip(), nodes, findings)


# ------------------------------------------------------------------------------------------------ loading


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise OnnxModelError(
            "roi-lab inspect",
            expected="the onnx package",
            got="it is not installed",
            fix="pip install 'roi-lab[onnx]'",
        ) from None
    return onnx


def _load(onnx: Any, model: Any, source: str | None) -> tuple[Any, str]:
    if isinstance(model, onnx.ModelProto):
        return model, source or "<ModelProto>"
    if isinstance(model, (bytes, bytearray)):
        data, source = bytes(model), source or "<bytes>"
    elif isinstance(model, (str, os.PathLike)):
        from roi_lab._io import FileRefused, read_bounded

        source = source or os.fspath(model)
        try:
            data = read_bounded(model, limit=MAX_MODEL_BYTES, what="ONNX model", where="inspect_onnx")
        except FileRefused as exc:
            raise OnnxModelError("inspect_onnx", expected="a readable .onnx file", got=f"{source}: {exc.reason}",
                                 fix=exc.fix or "pass the path of the exported model") from None  # fmt: skip
    else:
        raise OnnxModelError("inspect_onnx", expected="a path, bytes or onnx.ModelProto",
                             got=type(model).__name__, fix="pass the path of the .onnx file")  # fmt: skip
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX model
        raise OnnxModelError("inspect_onnx", expected="an ONNX model (protobuf ModelProto)",
                             got=f"{source}: {type(exc).__name__}: {str(exc)[:200]}",
                             fix="pass the file torch.onnx.export wrote") from None  # fmt: skip
    if not proto.graph.node and not proto.opset_import:
        raise OnnxModelError("inspect_onnx", expected="an ONNX model (protobuf ModelProto)",
                             got=f"{source}: no graph and no opset (not an ONNX file?)",
                             fix="pass the file torch.onnx.export wrote")  # fmt: skip
    return proto, source


def _walk(proto: Any, opset: int | None):
    """(node, where, opset) for every pooling node: main graph, subgraphs, local functions."""
    stack = [(proto.graph, "main", opset)]
    for fn in proto.functions:
        fn_opsets = {o.domain: o.version for o in fn.opset_import}
        stack.append((fn, f"function {fn.name}", fn_opsets.get("", fn_opsets.get("ai.onnx", opset))))
    while stack:
        graph, where, version = stack.pop(0)
        for i, node in enumerate(graph.node):
            if node.op_type in _POOL_OPS:
                yield node, where, version
            for attr in node.attribute:
                label = f"{where}/{node.name or node.op_type + f' #{i}'}.{attr.name}"
                if attr.type == attr.GRAPH:
                    stack.append((attr.g, label, version))
                stack.extend((g, f"{label}[{j}]", version) for j, g in enumerate(attr.graphs))


def _pool_node(onnx: Any, node: Any, where: str, opset: int | None) -> PoolNode:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.type != a.GRAPH}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    name = node.name or f"<unnamed {node.op_type}>"
    ratio = int(attrs.get("sampling_ratio", 0))
    if node.op_type == "RoiAlign":
        explicit = "coordinate_transformation_mode" in attrs
        default_ctm = "half_pixel" if opset is not None and opset >= 16 else "output_half_pixel"
        ctm = str(attrs.get("coordinate_transformation_mode", default_ctm))
        return PoolNode(name, node.op_type, where, opset, ctm, explicit, ratio, "sampling_ratio" in attrs,
                        str(attrs.get("mode", "avg")), float(attrs.get("spatial_scale", 1.0)),
                        (int(attrs.get("output_height", 1)), int(attrs.get("output_width", 1))))  # fmt: skip
    if node.op_type == "ROIAlign_TRT":
        ctm = "half_pixel" if int(attrs.get("coordinate_transformation_mode", 1)) == 1 else "output_half_pixel"
        return PoolNode(name, node.op_type, where, None, ctm, "coordinate_transformation_mode" in attrs, ratio,
                        "sampling_ratio" in attrs, "avg" if int(attrs.get("mode", 1)) == 1 else "max",
                        float(attrs.get("spatial_scale", 1.0)),
                        (int(attrs.get("output_height", 1)), int(attrs.get("output_width", 1))))  # fmt: skip
    flags = {k: attrs.get(k, v) for k, v in _TRT_PYRAMID_DEFAULTS.items()}
    flags["image_size"] = list(flags["image_size"])
    if int(flags["legacy"]) == 1:  # the plugin's legacy switch sets the original plugin's flags
        flags.update(zip(_TRT_FLAGS, _TRT_PRESETS["legacy plugin (legacy=1)"], strict=True))
    transform = int(flags["roi_coords_transform"])
    size = int(flags["pooled_size"])
    return PoolNode(name, node.op_type, where, None, _TRT_TRANSFORMS.get(transform, f"unknown ({transform})"),
                    "roi_coords_transform" in attrs, int(flags["sampling_ratio"]), "sampling_ratio" in attrs, "avg",
                    None, (size, size), flags)  # fmt: skip


# ----------------------------------------------------------------------------------------------- findings


def _findings(node: PoolNode, measure: bool) -> list[Finding]:
    if node.op_type == "PyramidROIAlign_TRT":
        return [_trt_pyramid_finding(node)]
    out: list[Finding] = []
    label = f"{node.op_type} {node.name!r}"
    if node.op_type == "RoiAlign" and node.opset is not None and node.opset < 16:
        scale = node.spatial_scale or 1.0
        out.append(Finding(
            "ONNX_NO_HALF_PIXEL", "warning",
            f"{label} is read as RoiAlign-10 (opset {node.opset}), which has no half-pixel mode: it maps x to "
            "x * spatial_scale (torchvision aligned=False). If the PyTorch pooler used aligned=True (detectron2's "
            "ROIAlignV2, mmcv's default), this model pools half a map cell off; torchvision's exporter only warns "
            '"ROIAlign with aligned=True is only supported in opset >= 16" (onnx/onnx#3428, '
            "microsoft/onnxruntime#6921).",
            f"opset {node.opset} < 16, no coordinate_transformation_mode; half a cell at spatial_scale {scale:g} "
            f"is {0.5 / scale:g} input px",
            "re-export with torch.onnx.export(..., opset_version=16) or later: torchvision then writes "
            'coordinate_transformation_mode="half_pixel" for aligned=True',
        ))  # fmt: skip
    ov = node.openvino
    if ov is not None and ov["shift_cells"]:
        out.append(Finding(
            "OPENVINO_COORDINATES", "warning",
            f"{label} writes coordinate_transformation_mode={node.coordinate_transformation_mode} at opset "
            f"{node.opset}, where RoiAlign has no such attribute: onnxruntime refuses the model (INVALID_GRAPH), "
            f"OpenVINO's ONNX frontend ignores it and computes {ov['aligned_mode']} ({ov['mapping']}), "
            f"{_num(abs(ov['shift_cells']))} map cell off from what the attribute says.",
            f"opset {node.opset} < 16, coordinate_transformation_mode written; OpenVINO ROIAlign-9 aligned_mode="
            f"{ov['aligned_mode']}; {_num(abs(ov['shift_cells']))} cell at spatial_scale "
            f"{_num(node.spatial_scale or 1)} is {_num(abs(ov['shift_px']))} input px",
            "re-export at opset 16 or later, where the attribute exists (torch.onnx.export(..., opset_version=16))",
        ))  # fmt: skip
    if node.mode == "max":
        outputs = _max_mode_outputs(node) if measure and node.op_type == "RoiAlign" else None
        out.append(_max_mode_finding(node, label, outputs))
        if ov is not None:
            out.append(_openvino_max_finding(node, label, outputs))
    if node.sampling_ratio < 0:
        out.append(Finding(
            "ONNX_NEGATIVE_SAMPLING", "error",
            f"{label} has sampling_ratio {node.sampling_ratio}: ONNX allows 0 (adaptive) or a positive grid.",
            f"sampling_ratio={node.sampling_ratio}",
            "write sampling_ratio=0 for torchvision's -1 (adaptive), as torchvision's exporter does",
        ))  # fmt: skip
    elif not node.sampling_explicit and node.op_type == "RoiAlign":
        out.append(Finding(
            "ONNX_SAMPLING_OMITTED", "warning",
            f"{label} has no sampling_ratio attribute: ONNX's default is 0 (adaptive, ceil(roi_size / output_size) "
            "samples per bin), but OpenVINO's ONNX frontend reads a missing one as 1, one sample per bin "
            "(openvinotoolkit/openvino#37826).",
            "sampling_ratio not written on the node; OpenVINO builds ROIAlign-9 with sampling_ratio=1 (openvino "
            "2026.4.1, recorded in tests/fixtures/openvino_roi_align.npz)",
            "write the attribute explicitly (sampling_ratio=0 for adaptive) so that every runtime reads the same",
        ))  # fmt: skip
    elif node.sampling_ratio == 0:
        out.append(Finding(
            "ONNX_ADAPTIVE_SAMPLING", "info",
            f"{label} samples adaptively (sampling_ratio 0: ceil(roi_size / output_size) points per bin and axis, "
            "so big boxes cost more). That is torchvision's sampling_ratio=-1 (its exporter writes 0 and warns "
            '"ONNX export for RoIAlign with a non-zero sampling_ratio is not supported") and mmcv\'s 0.',
            "sampling_ratio=0",
            "nothing to fix if the PyTorch pooler used -1 (torchvision) or 0 (mmcv); a fixed grid (e.g. 2, "
            "torchvision's Mask R-CNN) must be written as such",
        ))  # fmt: skip
    if node.op_type == "RoiAlign" and node.opset is not None and node.opset >= 16 and not node.ctm_explicit:
        out.append(Finding(
            "ONNX_CTM_DEFAULT", "info",
            f"{label} has no coordinate_transformation_mode: at opset {node.opset} the default is half_pixel "
            "(torchvision aligned=True).",
            f"opset {node.opset}, attribute not written",
            'an aligned=False model must write coordinate_transformation_mode="output_half_pixel"',
        ))  # fmt: skip
    return out


def _num(v: float) -> str:
    return f"{v:g}"


def _max_mode_finding(node: PoolNode, label: str, outputs: Any) -> Finding:
    evidence = f"mode=max, sampling_ratio={node.sampling_ratio}, {node.coordinate_transformation_mode}"
    if isinstance(outputs, str):
        evidence += f"; {outputs}"
    elif outputs is not None:
        ort_out, mmcv_out, version = outputs
        diff = (ort_out - mmcv_out).abs()
        evidence += (f"; measured with onnxruntime {version} on a seeded N(0, 1) 24 x 24 map, 4 boxes: "
                     f"|ONNX max - mmcv max| up to {float(diff.max()):.3g}, mean {float(diff.mean()):.3g} "
                     f"(map std 1)")  # fmt: skip
    return Finding(
        "ONNX_MAX_MODE", "warning",
        f"{label} uses mode=max: ONNX / onnxruntime take the max of the four weighted corner values of each sample "
        "(max_i w_i * v_i), not the max over bilinearly interpolated samples as mmcv's RoIAlign(pool_mode='max') "
        "does (microsoft/onnxruntime#6146), so the exported model does not reproduce the PyTorch one.",
        evidence,
        "pool with mode='avg' if the model allows, or replace the node by a GridSample / interpolation subgraph "
        "followed by ReduceMax",
    )  # fmt: skip


def _openvino_max_finding(node: PoolNode, label: str, outputs: Any) -> Finding:
    evidence = "OpenVINO ROIAlign-9 mode=max: pooled = 0, then pooled = max(pooled, sample) over the interpolated " \
        "samples (src/core/reference/include/openvino/reference/roi_align.hpp; the CPU plugin's roi_align.cpp alike)"
    if isinstance(outputs, tuple):
        ort_out, mmcv_out, version = outputs
        ov_out = mmcv_out.clamp(min=0)  # [K, C, PH, PW], as openvino 2026.4.1 computed it on the recorded models
        evidence += (f"; on the map of ONNX_MAX_MODE, modelled as max(0, mmcv max): |OpenVINO - onnxruntime {version}| "
                     f"up to {float((ov_out - ort_out).abs().max()):.3g}, |OpenVINO - mmcv| up to "
                     f"{float((ov_out - mmcv_out).abs().max()):.3g} ({100 * float((mmcv_out < 0).float().mean()):.0f}% "
                     "of the bins have only negative samples)")  # fmt: skip
    return Finding(
        "OPENVINO_MAX_MODE", "warning",
        f"{label} uses mode=max, which OpenVINO computes as the max of the bilinearly interpolated samples starting "
        "from 0: mmcv's max where a bin has a positive sample, 0 where all its samples are negative; so OpenVINO, "
        "onnxruntime and mmcv give three different results (equal for OpenVINO and mmcv after a ReLU).",
        evidence,
        "pool with mode='avg' if the model allows; else compare each runtime's output on real inputs before "
        "deploying",
    )  # fmt: skip


def _max_mode_outputs(node: PoolNode) -> tuple[Any, Any, str] | str:
    """onnxruntime's and mmcv's max on a seeded N(0, 1) map with the node's own attributes, or why not."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "not measured (onnxruntime is not installed)"
    import numpy as np
    import torch
    from onnx import TensorProto, helper

    from roi_lab.ops.roi_align import roi_align

    ph, pw = node.output_size
    scale = node.spatial_scale or 1.0
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 24, 24, generator=gen)
    cells = torch.tensor([[2.0, 3, 14, 12], [0.5, 0.5, 20, 22], [5, 6, 9, 18], [1.2, 7.7, 3.3, 9.9]])
    boxes = cells / scale  # [4, 4] input px, inside the 24 x 24 map
    attrs: dict[str, Any] = {"mode": "max", "output_height": ph, "output_width": pw,
                             "sampling_ratio": max(node.sampling_ratio, 0), "spatial_scale": scale}  # fmt: skip
    opset = max(node.opset or 16, 10)
    if opset >= 16:
        attrs["coordinate_transformation_mode"] = node.coordinate_transformation_mode
    one = helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], **attrs)
    graph = helper.make_graph(
        [one], "max_mode",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape)),
         helper.make_tensor_value_info("rois", TensorProto.FLOAT, [4, 4]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime warns about its own max mode on every session; we say it
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        theirs = session.run(None, {"x": x.numpy(), "rois": boxes.numpy(), "idx": np.zeros(4, np.int64)})[0]
    except Exception as exc:  # an onnxruntime that refuses these settings: say so, do not fail the report
        return f"not measured (onnxruntime: {str(exc).splitlines()[0][:160]})"
    rois = torch.cat([torch.zeros(4, 1), boxes], 1)
    ours = roi_align(x, rois, (ph, pw), scale, node.sampling_ratio, node.aligned, mode="max")  # [4, 4, PH, PW]
    return torch.from_numpy(theirs), ours, ort.__version__


def _trt_pyramid_finding(node: PoolNode) -> Finding:
    values = tuple(int(node.flags[k]) for k in _TRT_FLAGS)
    matches = [name for name, preset in _TRT_PRESETS.items() if preset == values]
    shown = ", ".join(f"{k}={v}" for k, v in zip(_TRT_FLAGS, values, strict=True))
    notes = []
    if node.flags["roi_coords_swap"]:
        notes.append("rois read as (y1, x1, y2, x2) (TensorFlow order)")
    if not node.flags["roi_coords_absolute"]:
        notes.append("rois read as normalized [0, 1]")
    if node.flags["roi_coords_plusone"]:
        notes.append("+1 added to widths and heights")
    if int(node.flags["fpn_scale"]) != 224:
        notes.append(f"fpn_scale {node.flags['fpn_scale']}: levels change at sqrt(area) = "
                     f"{int(node.flags['fpn_scale']) / 2:g}, {node.flags['fpn_scale']}, "
                     f"{2 * int(node.flags['fpn_scale'])} px, not 112, 224, 448")  # fmt: skip
    transform = int(node.flags["roi_coords_transform"])
    if transform != 2:
        notes.append(f"roi_coords_transform {transform} ({_TRT_TRANSFORMS.get(transform, 'unknown')}), not half_pixel")
    preset = f"matches the {matches[0]} preset" if matches else "matches none of the README's presets"
    severity = "info" if matches and matches[0] == "detectron2" else "warning"
    return Finding(
        "TRT_PYRAMID_FLAGS", severity,
        f"PyramidROIAlign_TRT {node.name!r} {preset}" + (f": {'; '.join(notes)}." if notes else "."),
        shown + f", image_size={node.flags['image_size']}",
        "compare with the pooler the model was trained with: detectron2 is roi_coords_transform=2, plusone=0, swap=0, "
        "absolute=1, sampling_ratio=0, fpn_scale=224; maskrcnn-benchmark 1, 1, 0, 1, 2, 224 "
        "(plugin/pyramidROIAlignPlugin/README.md)",
    )
