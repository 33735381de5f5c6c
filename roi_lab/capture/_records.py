"""What a capture keeps per call (:class:`CapturedCall`) and per image batch (:class:`CapturedImages`).

Findings are computed on first access, from the recorded boxes and the map's shape, dtype and device (the map
itself is not needed), with :func:`roi_lab.diagnose`: once per single-map call, once per pyramid level (the
boxes that went there, on that level's map and scale) for multi-scale poolers, plus once for the pyramid's
level sizes against the image (``NON_DIVISIBLE_STRIDE``, ``FPN_LEVEL_SIZES``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from roi_lab._display import CapturedCallDisplay
from roi_lab.diagnose import Finding, _fmt, _fmt_scale, diagnose

SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


@dataclass
class CapturedImages:
    """One output of torchvision's ``GeneralizedRCNNTransform``: the batch the following calls' boxes refer to.

    Attributes:
        index (int): position in ``cap.images``.
        where (str): the code that called the transform (``module.qualname (file:line)``).
        image_size ((H, W)): the padded batch size, the frame of the boxes and of the feature maps.
        image_sizes (list[(H, W)]): each image after resizing, before padding.
        original_sizes (list[(H, W)]): each image as given to the model.
        mean, std (list[float] | None): the transform's normalization (to show ``tensor`` as an image).
        tensor (Tensor[N, 3, H, W] | None): the normalized batch, kept only with ``keep_features=True``.
        dropped (str | None): why ``tensor`` was not kept, when it was asked for.
    """

    index: int
    where: str
    image_size: tuple[int, int]
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    mean: list[float] | None = None
    std: list[float] | None = None
    tensor: Tensor | None = field(default=None, repr=False)
    dropped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (no tensors), for JSON."""
        return {
            "index": self.index,
            "where": self.where,
            "image_size": list(self.image_size),
            "image_sizes": [list(s) for s in self.image_sizes],
            "original_sizes": [list(s) for s in self.original_sizes],
            "mean": self.mean,
            "std": self.std,
            "tensor_kept": self.tensor is not None,
            "dropped": self.dropped,
        }


@dataclass
class CapturedCall(CapturedCallDisplay):
    """One recorded ROI pooling call.

    Attributes:
        index (int): position in ``cap.calls``.
        op (str): what was called, e.g. ``"torchvision.ops.MultiScaleRoIAlign"``, ``"torchvision.ops.roi_align"``,
            ``"torch.ops.torchvision.roi_align"`` (a direct op call), ``"roi_lab.crop_and_resize"``.
        where (str): the caller, ``module.qualname (file:line)``, past torch's and the ops' own frames.
        feature_shape (tuple | None): the map's shape; for multi-scale poolers the first (finest) level's.
        feature_dtype (str | None): e.g. ``"float32"``.
        device (str | None): the map's device, e.g. ``"cpu"``, ``"cuda:0"``.
        boxes (Tensor | list[Tensor] | None): the boxes as passed, copied to CPU (same dtype); None when
            dropped for ``max_bytes`` (the findings were computed before).
        box_format (str): ``"rois [K,5]"``, ``"list"`` (one Tensor[L, 4] per image), ``"boxes [K,4]"``
            (crop_and_resize) or ``"tensor [..]"`` with the shape of anything else.
        output_size ((PH, PW) | None), spatial_scale (float | None), sampling_ratio (int | None),
        aligned (bool | None): the op's parameters (None where the op has none, or for multi-scale scales).
        image_size ((H, W) | None): the image the boxes refer to, used by the findings.
        image_size_source (str): ``"capture(image_size=...)"``, ``"GeneralizedRCNNTransform"``,
            ``"pooler image_shapes"`` or ``"unknown"``.
        image_sizes (list[(H, W)] | None): per image (the transform's, or a pooler's ``image_shapes``).
        scales (list[float] | None): multi-scale poolers: each level's spatial scale.
        level_names (list[str] | None): multi-scale poolers: the feature-map keys pooled from.
        level_shapes (list[tuple] | None): multi-scale poolers: each level's map shape.
        levels (Tensor[K] int64 | None): multi-scale poolers: the level index (into ``level_names``) of each
            box, in the order of the concatenated boxes.
        box_indices (Tensor[K] | None): crop_and_resize's image index per box.
        extra (dict): op-specific parameters (``mode``, ``method``, ``pool_mode``, ``canonical_scale``, ...).
        error (str | None): ``"Type: message"`` when the op raised (the exception still reached the caller).
        explanation (dict | None): :func:`roi_lab.explain_error` on that error (code, framework, cause, fix).
        features (Tensor | list[Tensor] | None): a CPU copy of the map(s), only with ``keep_features=True`` and
            within ``max_bytes``.
        dropped (str | None): what of this call was not kept, and why.
        images (int | None): index into ``cap.images`` of the batch these boxes refer to.
        findings (list[Finding]): :func:`roi_lab.diagnose` on this call (a property, computed once).
    """

    index: int
    op: str
    where: str
    feature_shape: tuple[int, ...] | None = None
    feature_dtype: str | None = None
    device: str | None = None
    boxes: Any = field(default=None, repr=False)
    box_format: str = "?"
    output_size: tuple[int, int] | None = None
    spatial_scale: float | None = None
    sampling_ratio: int | None = None
    aligned: bool | None = None
    image_size: tuple[int, int] | None = None
    image_size_source: str = "unknown"
    image_sizes: list[tuple[int, int]] | None = None
    scales: list[float] | None = None
    level_names: list[str] | None = None
    level_shapes: list[tuple[int, ...]] | None = None
    levels: Tensor | None = field(default=None, repr=False)
    box_indices: Tensor | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    explanation: dict[str, str] | None = None
    features: Any = field(default=None, repr=False)
    dropped: str | None = None
    images: int | None = None
    _findings: list[Finding] | None = field(default=None, repr=False, compare=False)

    @property
    def findings(self) -> list[Finding]:
        """:func:`roi_lab.diagnose` on this call's boxes and map geometry: errors first."""
        if self._findings is None:
            self._findings = compute_findings(self)
        return self._findings

    @property
    def num_boxes(self) -> int | None:
        """K, the number of boxes passed (None when they were not a tensor or list of tensors)."""
        b = self.boxes
        if isinstance(b, Tensor):
            return int(b.shape[0]) if b.dim() >= 1 else 1
        if isinstance(b, list) and all(isinstance(t, Tensor) for t in b):
            return sum(int(t.shape[0]) if t.dim() >= 1 else 1 for t in b)
        return None

    def level_counts(self) -> list[int] | None:
        """Multi-scale poolers: how many boxes went to each level."""
        if self.levels is None or self.level_names is None:
            return None
        return [int((self.levels == i).sum()) for i in range(len(self.level_names))]

    def describe(self) -> str:
        """One line: the boxes, the map(s), the parameters and where the image size came from."""
        k = self.num_boxes
        parts = [f"{k if k is not None else '?'} boxes ({self.box_format})"]
        dtype = f"{self.feature_dtype} on {self.device}" if self.feature_dtype else "map not a tensor"
        if self.level_names is not None:
            counts = self.level_counts()
            levels = []
            for i, name in enumerate(self.level_names):
                scale = _fmt_scale(self.scales[i]) if self.scales and i < len(self.scales) else "?"
                levels.append(f"{name!r} {scale}: {counts[i] if counts else '?'}")
            parts.append("levels " + ", ".join(levels))
            if self.level_shapes:
                parts.append("maps " + " .. ".join(_hw(s) for s in (self.level_shapes[0], self.level_shapes[-1])))
            parts.append(dtype)
        else:
            shape = list(self.feature_shape) if self.feature_shape is not None else "?"
            parts.append(f"map {shape} {dtype}")
            if self.spatial_scale is not None:
                parts.append(f"spatial_scale {_fmt_scale(self.spatial_scale)}")
        if self.output_size is not None:
            parts.append(f"output {self.output_size[0]} x {self.output_size[1]}")
        if self.sampling_ratio is not None:
            parts.append(f"sampling_ratio {self.sampling_ratio}")
        if self.aligned is not None:
            parts.append(f"aligned {self.aligned}")
        if self.image_size is not None:
            parts.append(f"image {self.image_size[0]} x {self.image_size[1]} ({self.image_size_source})")
        else:
            parts.append("image size unknown")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (no tensors: boxes and maps as shapes), for JSON and the app."""
        b = self.boxes
        if isinstance(b, Tensor):
            boxes_shape: Any = list(b.shape)
        elif isinstance(b, list):
            boxes_shape = [list(t.shape) if isinstance(t, Tensor) else None for t in b]
        else:
            boxes_shape = None
        return {
            "index": self.index,
            "op": self.op,
            "where": self.where,
            "feature_shape": list(self.feature_shape) if self.feature_shape is not None else None,
            "feature_dtype": self.feature_dtype,
            "device": self.device,
            "num_boxes": self.num_boxes,
            "boxes_shape": boxes_shape,
            "box_format": self.box_format,
            "output_size": list(self.output_size) if self.output_size is not None else None,
            "spatial_scale": self.spatial_scale,
            "sampling_ratio": self.sampling_ratio,
            "aligned": self.aligned,
            "image_size": list(self.image_size) if self.image_size is not None else None,
            "image_size_source": self.image_size_source,
            "image_sizes": [list(s) for s in self.image_sizes] if self.image_sizes is not None else None,
            "scales": self.scales,
            "level_names": self.level_names,
            "level_shapes": [list(s) for s in self.level_shapes] if self.level_shapes is not None else None,
            "level_counts": self.level_counts(),
            "extra": dict(self.extra),
            "error": self.error,
            "explanation": self.explanation,
            "features_kept": self.features is not None,
            "dropped": self.dropped,
            "images": self.images,
            "findings": [f.to_dict() for f in self.findings],
        }


def _hw(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape[-2:])


def _stand_in(shape: tuple[int, ...] | None, dtype: str | None) -> Any:
    """What diagnose needs of a map: its shape, dtype and device; one element of memory, not the map."""
    if shape is None:
        return None
    torch_dtype = getattr(torch, dtype, None) if dtype else None
    if len(shape) != 4 or not isinstance(torch_dtype, torch.dtype) or any(d <= 0 for d in shape):
        return tuple(shape)
    return torch.empty((1, 1, 1, 1), dtype=torch_dtype).expand(*shape)


def _error_finding(call: CapturedCall, findings: list[Finding]) -> Finding | None:
    """The op raised: a finding for it, unless the diagnoser already named the same error."""
    if call.error is None:
        return None
    e = call.explanation
    code = e["code"] if e else "OP_ERROR"
    if any(f.severity == "error" and f.code == code for f in findings):
        return None
    return Finding(
        code,
        "error",
        f"{call.op} raised {call.error}",
        f"explained as {code} ({e['framework']}): {e['cause']}" if e else "roi-lab does not recognise this error text",
        e["fix"] if e else "read the error message; `roi-lab explain` takes the whole traceback",
    )


def _level_findings(call: CapturedCall) -> list[Finding] | None:
    """Multi-scale poolers: diagnose the boxes of each level on that level's map and scale."""
    boxes, levels, scales, shapes = call.boxes, call.levels, call.scales, call.level_shapes
    if not (isinstance(boxes, list) and levels is not None and scales and shapes and len(scales) == len(shapes)):
        return None
    if not all(isinstance(b, Tensor) and b.dim() == 2 and b.shape[1] == 4 for b in boxes):
        return None
    if not boxes or sum(len(b) for b in boxes) != len(levels):
        return None
    flat = torch.cat(boxes)  # [K, 4] in the boxes' own dtype, so a dtype mismatch with the map still shows
    batch = torch.cat([torch.full((len(b), 1), float(i), dtype=flat.dtype) for i, b in enumerate(boxes)])
    rois = torch.cat([batch, flat], 1)  # [K, 5]
    names = call.level_names or [str(i) for i in range(len(scales))]
    pyramid = [tuple(shape) for shape in shapes]
    # the pyramid's own findings (its sizes against the image), once, whether or not a level got boxes
    found: list[Finding] = diagnose([], image_size=call.image_size, features=_stand_in(pyramid[0], call.feature_dtype),
                                    pyramid=pyramid)  # fmt: skip
    for level, (scale, shape) in enumerate(zip(scales, shapes, strict=True)):
        ids = torch.nonzero(levels == level).flatten()
        if len(ids) == 0:
            continue
        per_level = diagnose(
            rois[ids],
            image_size=call.image_size,
            features=_stand_in(tuple(shape), call.feature_dtype),
            spatial_scale=scale,
            pyramid=pyramid,
        )
        prefix = f"level {names[level]!r} (spatial_scale {_fmt_scale(scale)}, map {_hw(shape)}, {len(ids)} boxes): "
        for f in per_level:
            if any(g.code == f.code and g.message == f.message for g in found):
                continue  # the pyramid's findings, found above, or one message on several levels
            found.append(Finding(f.code, f.severity, f.message, prefix + f.evidence, f.fix))
    return found


def compute_findings(call: CapturedCall) -> list[Finding]:
    """:func:`roi_lab.diagnose` on one captured call (per level for multi-scale poolers), errors first."""
    findings: list[Finding] = []
    if call.boxes is not None:
        if call.level_names is not None:
            per_level = _level_findings(call)
            if per_level is not None:
                findings = per_level
            elif call.scales:  # boxes not a list of Tensor[L, 4]: read them on the finest level
                shape = call.level_shapes[0] if call.level_shapes else call.feature_shape
                findings = diagnose(
                    call.boxes,
                    image_size=call.image_size,
                    features=_stand_in(shape, call.feature_dtype),
                    spatial_scale=call.scales[0],
                )
        elif call.op == "roi_lab.crop_and_resize":
            findings = diagnose(
                call.boxes,
                image_size=call.image_size,
                features=_stand_in(call.feature_shape, call.feature_dtype),
                op="crop_and_resize",
                box_indices=call.box_indices,
            )
        else:
            findings = diagnose(
                call.boxes,
                image_size=call.image_size,
                features=_stand_in(call.feature_shape, call.feature_dtype),
                spatial_scale=call.spatial_scale,
            )
    extra = _error_finding(call, findings)
    if extra is not None:
        findings = [extra, *findings]
    return sorted(findings, key=lambda f: SEVERITY_RANK.get(f.severity, 3))


def size_text(nbytes: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{_fmt(round(nbytes, 1))} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return f"{nbytes} GiB"  # pragma: no cover


def nbytes(x: Any) -> int:
    """Bytes held by a tensor or a list of tensors."""
    if isinstance(x, Tensor):
        return x.element_size() * x.nelement()
    if isinstance(x, (list, tuple)):
        return sum(nbytes(t) for t in x)
    return 0
