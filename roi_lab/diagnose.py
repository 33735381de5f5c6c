"""Find what is wrong with boxes before they reach ROIAlign / CropAndResize.

:func:`diagnose` inspects what a user is about to pass to the op (boxes, the feature map or its shape,
the image size the boxes should refer to, ``spatial_scale``) and returns :class:`Finding` objects: a code,
a severity, a message, the *evidence* (the numbers that convinced it) and a *fix* (a code snippet). It never
raises on odd input: garbage boxes are reported, not thrown back.

The inference, in short: the map's stride follows from ``image_size`` and the map size; the scale the user
passes maps boxes onto the map. When the boxes overflow the map at that scale but fit at ``map / image``,
they are image pixels with the wrong scale (``IMAGE_SPACE_BOXES`` for scale 1, ``WRONG_STRIDE`` otherwise);
when they fit only with x and y exchanged, ``YX_SWAPPED``; when they already fill the map and are scaled
again, ``DOUBLE_SCALED``; coordinates all in [0, 1] are normalized boxes passed as pixels, and so on.
A correct input gives no error or warning (``info`` findings such as ``SUBCELL_ROI`` may remain).

Convention:
    ``op="roi_align"``: torchvision / detectron2 / mmcv. Boxes are (x1, y1, x2, y2) in pixels of the image
    ``image_size`` = (H, W), as ``Tensor[K, 5]`` (batch_index, x1, y1, x2, y2) or a list of ``Tensor[L, 4]``
    (one per image); the op maps them onto the map with ``spatial_scale`` (``None`` = torchvision's
    default 1.0). A box may reach one cell past the map's border: torchvision samples up to there.
    ``op="crop_and_resize"``: TensorFlow. Boxes are normalized (y1, x1, y2, x2), y mapped to
    ``y * (H - 1)`` of the cropped tensor, with ``box_indices`` (``Tensor[K]`` int) naming the image.

Limits (what ranges alone cannot tell, so nothing or only an ``info`` is said):
    - a yx swap on a square image (or a nearly square one: the swap must explain an overflow of more than two
      cells and 10 %), and any swap of normalized crop_and_resize boxes;
    - image-pixel boxes with spatial_scale 1 that all lie inside a map-sized corner of the image;
    - feature-cell boxes scaled again when only one or two boxes fill the map (``DOUBLE_SCALED`` as info);
    - a single sub-cell box at the map's origin with spatial_scale 1 (``NORMALIZED_AS_PIXELS`` as info);
    - boxes in pixels of a different image than ``image_size`` (resized without rescaling the boxes) show up only
      when they leave the map (``OUT_OF_BOUNDS``); the ``aligned`` half-pixel offset is invisible in the boxes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from roi_lab.errors import InputValueError, short_repr

__all__ = ["CODES", "SEVERITIES", "Finding", "diagnose", "has_errors"]

CODES: tuple[str, ...] = (
    "MISSING_BATCH_INDEX",
    "BOX_COLUMNS",
    "BAD_RANK",
    "IMAGE_SPACE_BOXES",
    "WRONG_STRIDE",
    "DOUBLE_SCALED",
    "YX_SWAPPED",
    "NORMALIZED_AS_PIXELS",
    "PIXELS_AS_NORMALIZED",
    "INVERTED_BOX",
    "DEGENERATE_BOX",
    "OUT_OF_BOUNDS",
    "SUBCELL_ROI",
    "BATCH_INDEX_OUT_OF_RANGE",
    "NON_FINITE",
    "DTYPE_MISMATCH",
    "DEVICE_MISMATCH",
    "NON_DIVISIBLE_STRIDE",
)
SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
OPS: tuple[str, ...] = ("roi_align", "crop_and_resize")

# How far past the map's border (in cells) a box may reach before it counts as out of bounds: torchvision
# samples points in [-1, W] and zero-fills beyond, so one cell is where output starts to be lost.
_TOL_CELLS = 1.0
# Beyond these the arithmetic of the checks would overflow (10**400 is no float; 1 / 1e-320 is inf): sizes are
# tensor sizes (torch indexes with int64, kernels with int32), scales map pixels to cells (1/64 to 4 in practice).
_MAX_SIZE = 2**31 - 1
_MIN_SCALE, _MAX_SCALE = 1e-6, 1e6


@dataclass(frozen=True)
class Finding:
    """One thing :func:`diagnose` noticed about the inputs.

    Attributes:
        code (str): one of :data:`CODES`, e.g. ``"IMAGE_SPACE_BOXES"``.
        severity (str): ``"error"`` (the op will fail or pool the wrong region), ``"warning"`` (probably
            wrong), ``"info"`` (worth knowing, not a bug).
        message (str): what is wrong, in one or two sentences.
        evidence (str): the numbers that convinced the diagnoser.
        fix (str): a code snippet that fixes it.
    """

    code: str
    severity: str
    message: str
    evidence: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        """The finding as plain data, for JSON output and the app."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.severity.upper()} {self.code}: {self.message}\n  evidence: {self.evidence}\n  fix: {self.fix}"


def has_errors(findings: Sequence[Finding]) -> bool:
    """True when any finding has severity ``"error"`` (the CLI exits 1 then).

    Example:
        >>> has_errors([Finding("SUBCELL_ROI", "info", "m", "e", "f")])
        False
        >>> has_errors([Finding("BAD_RANK", "error", "m", "e", "f")])
        True
    """
    return any(f.severity == "error" for f in findings)


# --------------------------------------------------------------------------------------------- formatting


def _fmt(v: float) -> str:
    """A number for evidence text: integers without a point, others with 4 significant digits."""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if abs(v - round(v)) < 1e-9 and abs(v) < 1e15:
        return str(int(round(v)))
    return f"{v:.4g}"


def _fmt_scale(s: float) -> str:
    """``0.0625`` -> ``"1/16"``; other scales as numbers."""
    if s > 0 and s < 1:
        inv = 1.0 / s
        if abs(inv - round(inv)) < 1e-6 * inv:
            return f"1/{int(round(inv))}"
    return _fmt(s)


def _py_scale(s: float) -> str:
    """The scale as Python source: ``1 / 16`` or ``0.0635``."""
    text = _fmt_scale(s)
    return text.replace("/", " / ") if "/" in text else text


def _row(a: np.ndarray) -> str:
    return "[" + ", ".join(_fmt(v) for v in a.tolist()) + "]"


def _rows_list(idx: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    return shown + (", ..." if len(idx) > limit else "")


# --------------------------------------------------------------------------------------------- input parsing


@dataclass
class _Ctx:
    op: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, code: str, severity: str, message: str, evidence: str, fix: str) -> None:
        if code not in CODES or severity not in SEVERITIES:  # pragma: no cover - programming error
            raise AssertionError(f"unknown code/severity {code}/{severity}")
        if any(f.code == code and f.message == message for f in self.findings):
            return  # e.g. the same dtype problem in every tensor of a list
        self.findings.append(Finding(code, severity, message, evidence, fix))


def _dims(n: int) -> str:
    return f"{n} dimension" + ("" if n == 1 else "s")


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _parse_features(features: Any, ctx: _Ctx) -> tuple[tuple[int, int, int, int] | None, Tensor | None]:
    """(N, C, H, W) or None, and the tensor itself when one was given."""
    tensor = features if isinstance(features, Tensor) else None
    try:
        shape = tuple(int(d) for d in (features.shape if tensor is not None else features))
        ok_types = tensor is not None or all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in features
        )
    except Exception:
        shape, ok_types = (), False
    if ok_types and len(shape) == 4 and all(0 < d <= _MAX_SIZE for d in shape):
        return (shape[0], shape[1], shape[2], shape[3]), tensor
    what = f"Tensor{_shape_text(shape)}" if tensor is not None else short_repr(features)
    if ok_types and len(shape) == 4 and all(d > 0 for d in shape):
        ctx.add(
            "BAD_RANK",
            "error",
            f"`features` sizes must be at most {_MAX_SIZE:,} (2**31 - 1); the map-dependent checks were skipped.",
            f"features = {what}",
            "pass the real shape, e.g. features=tuple(features.shape)",
        )
        return None, tensor
    if ok_types and len(shape) == 3 and all(d > 0 for d in shape):
        ctx.add(
            "BAD_RANK",
            "error",
            "The feature map is 3-D; roi_align and crop_and_resize need a batch dimension: [N, C, H, W].",
            f"features = {what}: 3 dimensions, expected 4 (N, C, H, W); read as N = 1",
            "features = features[None]  # [C, H, W] -> [1, C, H, W]",
        )
        return (1, shape[0], shape[1], shape[2]), tensor
    ctx.add(
        "BAD_RANK",
        "error",
        "`features` must be the feature tensor [N, C, H, W] or its shape (N, C, H, W) with positive sizes; "
        "the map-dependent checks were skipped.",
        f"features = {what}",
        "diagnose(boxes, image_size=(H, W), features=features)  # or features=(1, 256, 50, 68)",
    )
    return None, tensor


def _parse_image_size(image_size: Any, ctx: _Ctx) -> tuple[float, float] | None:
    try:
        if isinstance(image_size, Tensor):
            image_size = image_size.tolist()
        if isinstance(image_size, (int, float, np.number)) and not isinstance(image_size, bool):
            pair = (float(image_size), float(image_size))
        else:
            items = list(image_size)
            if len(items) != 2 or any(isinstance(v, (bool, str)) for v in items):
                raise ValueError
            pair = (float(items[0]), float(items[1]))
        if all(math.isfinite(v) and 1 <= v <= _MAX_SIZE for v in pair):
            return pair
    except Exception:
        pass
    ctx.add(
        "BAD_RANK",
        "error",
        f"`image_size` must be the (H, W) of the image the boxes refer to, two numbers from 1 to {_MAX_SIZE:,} "
        "pixels; the image-space checks were skipped.",
        f"image_size = {short_repr(image_size)}",
        "diagnose(boxes, image_size=image.shape[-2:], features=features)",
    )
    return None


@dataclass
class _Boxes:
    """Boxes read into float64 numpy: ``coords`` [K, 4] in the op's column order, ``batch`` [K] or None."""

    coords: np.ndarray
    batch: np.ndarray | None
    form: str  # "rois" (Tensor[K, 5]), "list" (list of [L, 4]), "plain" ([K, 4])
    tensors: list[Tensor]
    n_list: int = 0


def _numeric(x: Any, name: str, ctx: _Ctx) -> np.ndarray | None:
    """Any array-like as a float64 array, or None after reporting why it is not one."""
    if isinstance(x, Tensor):
        if x.device.type == "meta":
            return None
        if x.dtype == torch.bool or x.is_complex():
            ctx.add(
                "DTYPE_MISMATCH",
                "error",
                f"{name} are {str(x.dtype).replace('torch.', '')}; box coordinates must be real numbers.",
                f"{name} dtype = {x.dtype}",
                f"{name} = {name}.float()",
            )
            return None
        return x.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists (numpy >= 1.24 refuses them)
        ctx.add(
            "BAD_RANK",
            "error",
            f"{name} is not a rectangular array: the rows have different lengths.",
            f"numpy could not stack it: {str(exc).splitlines()[0][:120]}",
            f"give every box the same number of coordinates, e.g. {name} = torch.tensor([[x1, y1, x2, y2], ...])",
        )
        return None
    if arr.dtype == object:
        ctx.add(
            "BAD_RANK",
            "error",
            f"{name} is not a rectangular numeric array (ragged rows, None or mixed objects).",
            f"{name} = {short_repr(x, 80)}",
            f"{name} = torch.tensor([[x1, y1, x2, y2], ...], dtype=torch.float32)",
        )
        return None
    if arr.dtype.kind not in "iuf":
        kind = {"U": "text (str)", "S": "bytes", "b": "bool", "c": "complex", "M": "datetime"}.get(arr.dtype.kind)
        ctx.add(
            "DTYPE_MISMATCH",
            "error",
            f"{name} hold {kind or arr.dtype} values, not numbers.",
            f"{name} = {short_repr(x, 80)} (dtype {arr.dtype})",
            f"parse the numbers first, e.g. {name} = torch.tensor([[float(v) for v in row] for row in rows])",
        )
        return None
    return arr.astype(np.float64)


def _parse_boxes(boxes: Any, ctx: _Ctx) -> _Boxes | None:
    op = ctx.op
    is_seq = isinstance(boxes, (list, tuple))
    if is_seq and not boxes and op == "roi_align":  # an empty list of per-image boxes: roi_align returns [0, C, h, w]
        return _Boxes(np.zeros((0, 4)), np.zeros(0), "list", [], n_list=0)
    if is_seq and boxes and all(isinstance(b, (Tensor, np.ndarray)) for b in boxes):
        if op == "crop_and_resize":
            ctx.add(
                "BAD_RANK",
                "error",
                "crop_and_resize takes one Tensor[K, 4] of boxes plus box_indices, not a list of tensors.",
                f"boxes = a list of {len(boxes)} tensors",
                "boxes = torch.cat(list_of_boxes); box_indices = torch.cat("
                "[torch.full((len(b),), i, dtype=torch.int32) for i, b in enumerate(list_of_boxes)])",
            )
            return None
        parts, batch = [], []
        for i, b in enumerate(boxes):
            arr = _numeric(b, "boxes", ctx)
            if arr is None:
                if isinstance(b, Tensor) and b.device.type == "meta":
                    continue
                return None
            if arr.ndim != 2 or arr.shape[1] != 4:
                if arr.ndim == 2:
                    ctx.add(
                        "BOX_COLUMNS",
                        "error",
                        f"roi_align takes a list of Tensor[L, 4] (x1, y1, x2, y2), one per image; element {i} has "
                        f"{arr.shape[1]} columns.",
                        f"boxes[{i}].shape = {_shape_text(arr.shape)}: {arr.shape[1]} columns, expected 4",
                        "boxes = [b[:, -4:] for b in boxes]  # if the list holds rois with a batch-index column, "
                        "pass torch.cat(boxes) instead",
                    )
                else:
                    ctx.add(
                        "BAD_RANK",
                        "error",
                        f"roi_align takes a list of 2-D Tensor[L, 4]; element {i} is {arr.ndim}-D.",
                        f"boxes[{i}].shape = {_shape_text(arr.shape)} ({_dims(arr.ndim)}, expected 2)",
                        f"boxes[{i}] = boxes[{i}].reshape(-1, 4)",
                    )
                return None
            parts.append(arr.reshape(-1, 4))
            batch.append(np.full(len(parts[-1]), float(i)))
        tensors = [b for b in boxes if isinstance(b, Tensor)]
        coords = np.concatenate(parts) if parts else np.zeros((0, 4))
        bidx = np.concatenate(batch) if batch else np.zeros(0)
        return _Boxes(coords, bidx, "list", tensors, n_list=len(boxes))

    arr = _numeric(boxes, "boxes", ctx)
    tensors = [boxes] if isinstance(boxes, Tensor) else []
    if arr is None:
        if isinstance(boxes, Tensor) and boxes.device.type == "meta":
            return _Boxes(np.zeros((0, 4)), None, "meta", tensors)
        return None
    expect = (
        "Tensor[K, 5] (batch_index, x1, y1, x2, y2) or a list of Tensor[L, 4]"
        if op == "roi_align"
        else ("Tensor[K, 4] (y1, x1, y2, x2), normalized")
    )
    if arr.ndim != 2:
        if arr.ndim == 1 and arr.shape[0] in (4, 5):
            fix = f"boxes = boxes[None]  # one box -> [1, {arr.shape[0]}]"
        elif arr.ndim == 3 and arr.shape[-1] == 4 and op == "roi_align":
            fix = "boxes = list(boxes)  # [N, L, 4] -> a list of N Tensor[L, 4], one per image"
        elif arr.ndim == 3 and arr.shape[-1] == 4:
            fix = (
                "box_indices = torch.arange(boxes.shape[0]).repeat_interleave(boxes.shape[1]).int(); "
                "boxes = boxes.reshape(-1, 4)"
            )
        else:
            fix = "boxes = boxes.reshape(-1, 4)  # if it holds x1, y1, x2, y2 per box"
        ctx.add(
            "BAD_RANK",
            "error",
            f"{op} expects boxes as {expect}; got a {arr.ndim}-D array.",
            f"boxes.shape = {_shape_text(arr.shape)} ({_dims(arr.ndim)}, expected 2)",
            fix,
        )
        return None
    k, cols = arr.shape
    if op == "roi_align":
        if cols == 5:
            return _Boxes(arr[:, 1:5].copy(), arr[:, 0].copy(), "rois", tensors)
        if cols == 4:
            ctx.add(
                "MISSING_BATCH_INDEX",
                "error",
                "roi_align was given Tensor[K, 4]; a tensor of boxes needs the batch index in front: "
                "Tensor[K, 5] (batch_index, x1, y1, x2, y2). torchvision raises for this.",
                f"boxes.shape = [{k}, 4]: 4 columns, expected 5 (or a list of Tensor[L, 4])",
                f"rois = torch.cat([torch.zeros({k}, 1), boxes], dim=1)  # all boxes on image 0; "
                "or roi_align(features, [boxes], ...)",
            )
            return _Boxes(arr.copy(), np.zeros(k), "plain", tensors)
        hint = ""
        if cols == 6:
            hint = " Six columns often mean (batch_index, x1, y1, x2, y2, score) or (x1, y1, x2, y2, score, class)."
        ctx.add(
            "BOX_COLUMNS",
            "error",
            f"roi_align expects boxes as {expect}; got {cols} columns.{hint}",
            f"boxes.shape = [{k}, {cols}]: {cols} columns, expected 5 (or 4 in a list)",
            "rois = boxes[:, :5]  # keep (batch_index, x1, y1, x2, y2); or [boxes[:, :4]] for (x1, y1, x2, y2, ...)",
        )
        return None
    if cols == 4:
        return _Boxes(arr.copy(), None, "plain", tensors)
    hint = " Five columns look like torchvision rois (batch_index, x1, y1, x2, y2)." if cols == 5 else ""
    fix = (
        "box_indices = rois[:, 0].int(); boxes_norm = (rois[:, [2, 1, 4, 3]] / stride - 0.5) / "
        "torch.tensor([h - 1, w - 1, h - 1, w - 1])  # h, w: the cropped map's size"
        if cols == 5
        else "boxes = boxes[:, :4]  # keep (y1, x1, y2, x2)"
    )
    ctx.add(
        "BOX_COLUMNS",
        "error",
        f"crop_and_resize expects boxes as {expect}; got {cols} columns.{hint}",
        f"boxes.shape = [{k}, {cols}]: {cols} columns, expected 4",
        fix,
    )
    return None


# --------------------------------------------------------------------------------------------- checks


def _check_dtype_device(bx: _Boxes, feat: Tensor | None, box_indices: Any, ctx: _Ctx) -> None:
    for t in bx.tensors:
        name = "boxes"
        dtype = str(t.dtype).replace("torch.", "")
        if not (t.is_floating_point()):
            ctx.add(
                "DTYPE_MISMATCH",
                "error",
                f"The boxes are {dtype}; {ctx.op} needs floating-point boxes"
                + (" of the feature map's dtype." if ctx.op == "roi_align" else " (TensorFlow takes float32)."),
                f"boxes dtype = {dtype}"
                + (f", features dtype = {str(feat.dtype).replace('torch.', '')}" if feat is not None else ""),
                f"{name} = {name}.to(features.dtype)" if ctx.op == "roi_align" else f"{name} = {name}.float()",
            )
        elif ctx.op == "roi_align" and feat is not None and feat.dtype != t.dtype:
            fdt = str(feat.dtype).replace("torch.", "")
            ctx.add(
                "DTYPE_MISMATCH",
                "error",
                "The boxes and the feature map have different dtypes; torchvision.ops.roi_align raises "
                "(torchvision 0.29: RuntimeError 'input should have the same type as rois'), for the list form too.",
                f"boxes dtype = {dtype}, features dtype = {fdt}",
                "boxes = boxes.to(features.dtype)",
            )
        if feat is not None and t.device != feat.device:
            ctx.add(
                "DEVICE_MISMATCH",
                "error",
                f"The boxes and the feature map are on different devices; {ctx.op} needs both on one device.",
                f"boxes on {t.device}, features on {feat.device}",
                "boxes = boxes.to(features.device)",
            )
    if isinstance(box_indices, Tensor) and feat is not None and box_indices.device != feat.device:
        ctx.add(
            "DEVICE_MISMATCH",
            "error",
            "box_indices and the image tensor are on different devices.",
            f"box_indices on {box_indices.device}, features on {feat.device}",
            "box_indices = box_indices.to(features.device)",
        )


def _check_finite(bx: _Boxes, ctx: _Ctx) -> np.ndarray:
    """Report NaN/inf rows; return the mask of finite rows."""
    full = bx.coords if bx.batch is None else np.concatenate([bx.batch[:, None], bx.coords], 1)
    ok = np.isfinite(full).all(1)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        ctx.add(
            "NON_FINITE",
            "error",
            "Some boxes hold NaN or inf; ROIAlign returns garbage (or crashes) for them.",
            f"{len(bad)} of {len(ok)} rows are not finite, rows {_rows_list(bad)}; row {bad[0]} = {_row(full[bad[0]])}",
            "keep = torch.isfinite(boxes).all(dim=1); boxes = boxes[keep]",
        )
    return ok


def _check_batch(bx: _Boxes, n: int | None, box_indices: Any, finite: np.ndarray, ctx: _Ctx) -> bool:
    """Batch indices (roi_align rois / list, crop_and_resize box_indices). False: the box layout is unreliable."""
    if ctx.op == "roi_align":
        if bx.form == "list":
            if n is not None and bx.n_list > n and bx.coords.shape[0] and bx.batch.max() >= n:
                ctx.add(
                    "BATCH_INDEX_OUT_OF_RANGE",
                    "error",
                    "The list holds more box tensors than the feature map has images: list position i is the "
                    "batch index.",
                    f"len(boxes) = {bx.n_list} (batch indices 0..{bx.n_list - 1}) but features has N = {n}",
                    "pass one Tensor[L, 4] per image of the batch: len(boxes) == features.shape[0]",
                )
            return True
        if bx.form != "rois":
            return True
        idx = bx.batch[finite]
        if idx.size == 0:
            return True
        frac = np.abs(idx - np.round(idx)) > 1e-6
        layout_ok = frac.mean() <= 0.5
        last = bx.coords[finite][:, 3]
        hint = ""
        if np.all(np.abs(last - np.round(last)) < 1e-6) and np.all(last >= 0) and (n is None or np.all(last < n)):
            hint = "; the last column holds valid batch indices: is the batch index last instead of first?"
        elif np.all((last >= 0) & (last <= 1)) and np.any(np.abs(last - np.round(last)) > 1e-6):
            hint = "; the last column lies in [0, 1]: is it (x1, y1, x2, y2, score)?"
        if frac.any():
            bad = np.flatnonzero(frac)
            ctx.add(
                "BATCH_INDEX_OUT_OF_RANGE",
                "error",
                "The first column of the rois must be the integer batch index of each box.",
                f"{len(bad)} of {len(idx)} batch indices are not whole numbers, e.g. {_fmt(idx[bad[0]])}{hint}",
                "rois = rois[:, [4, 0, 1, 2, 3]]  # if the batch index is last"
                if hint.startswith("; the last column holds")
                else "rois = torch.cat([batch_index[:, None].to(boxes.dtype), boxes_xyxy], dim=1)",
            )
            return layout_ok
        out = (idx < 0) | (idx >= n if n is not None else np.zeros_like(idx, dtype=bool))
        if out.any():
            layout_ok = out.mean() <= 0.5
            ctx.add(
                "BATCH_INDEX_OUT_OF_RANGE",
                "error",
                "Some batch indices do not name an image of the feature map (valid: 0 to N - 1).",
                (
                    f"batch indices range {_fmt(idx.min())}..{_fmt(idx.max())} but features has N = {n}"
                    if n is not None
                    else f"batch indices range {_fmt(idx.min())}..{_fmt(idx.max())}; negative ones are invalid"
                )
                + (hint if not layout_ok else ""),
                "rois = rois[:, [4, 0, 1, 2, 3]]  # if the batch index is last"
                if hint.startswith("; the last column holds") and not layout_ok
                else "rois[:, 0] = rois[:, 0].clamp(0, features.shape[0] - 1)  # after finding why they are off",
            )
        return layout_ok
    # crop_and_resize
    if box_indices is None:
        return True
    try:
        if isinstance(box_indices, Tensor):
            is_int = not box_indices.is_floating_point() and box_indices.dtype != torch.bool
            vals = box_indices.detach().to("cpu", torch.float64).numpy() if box_indices.device.type != "meta" else None
        else:
            arr = np.asarray(box_indices)
            is_int = arr.dtype.kind in "iu"
            vals = arr.astype(np.float64) if arr.dtype.kind in "iuf" else None
    except Exception:
        vals, is_int = None, False
    k = bx.coords.shape[0]
    if vals is None or vals.ndim != 1 or vals.shape[0] != k:
        ctx.add(
            "BATCH_INDEX_OUT_OF_RANGE",
            "error",
            "box_indices must be a 1-D integer tensor with one image index per box.",
            f"box_indices = {short_repr(box_indices)} for {k} boxes"
            + (f" (shape {_shape_text(vals.shape)})" if vals is not None else ""),
            f"box_indices = torch.zeros({k}, dtype=torch.int32)  # all boxes from image 0",
        )
        return True
    bad_int = ~np.isfinite(vals) | (np.abs(vals - np.round(vals)) > 1e-6)
    out = (vals < 0) | (vals >= (n if n is not None else np.inf))
    if bad_int.any() or out.any():
        ctx.add(
            "BATCH_INDEX_OUT_OF_RANGE",
            "error",
            "Some box_indices do not name an image of the batch (valid: whole numbers 0 to N - 1).",
            f"box_indices range {_fmt(np.nanmin(vals))}..{_fmt(np.nanmax(vals))}"
            + (f" but the image batch has N = {n}" if n is not None else "")
            + (f"; {int(bad_int.sum())} are not whole numbers" if bad_int.any() else ""),
            "box_indices = box_indices.int()  # and check which image each box belongs to",
        )
    elif not is_int:
        ctx.add(
            "BATCH_INDEX_OUT_OF_RANGE",
            "warning",
            "box_indices hold whole numbers but in a floating dtype; TensorFlow requires int32.",
            f"box_indices dtype = {getattr(box_indices, 'dtype', type(box_indices).__name__)}",
            "box_indices = box_indices.to(torch.int32)",
        )
    return True


def _check_shape_of_boxes(c: np.ndarray, image: tuple[float, float] | None, ctx: _Ctx) -> np.ndarray:
    """INVERTED_BOX and DEGENERATE_BOX; returns the mask of proper boxes (positive width and height)."""
    if ctx.op == "roi_align":
        x1, y1, x2, y2 = c.T
        names = ("x", "y")
    else:
        y1, x1, y2, x2 = c.T
        names = ("x", "y")
    w, h = x2 - x1, y2 - y1
    inverted = (w < 0) | (h < 0)
    degenerate = ~inverted & ((w == 0) | (h == 0))
    k = len(c)
    if inverted.any():
        bad = np.flatnonzero(inverted)
        hint = ""
        fix = (
            "boxes = torch.stack([torch.minimum(x1, x2), torch.minimum(y1, y2), torch.maximum(x1, x2), "
            "torch.maximum(y1, y2)], dim=1)"
        )
        if ctx.op == "roi_align" and image is not None and np.all(c >= 0):
            # (x, y, w, h) read as (x1, y1, x2, y2): x + w and y + h stay inside the image
            if np.all(c[:, 0] + c[:, 2] <= image[1] * 1.01 + 1) and np.all(c[:, 1] + c[:, 3] <= image[0] * 1.01 + 1):
                hint = "; x + 'x2' and y + 'y2' all stay inside the image: these look like (x, y, w, h) boxes"
                fix = "boxes = torchvision.ops.box_convert(boxes, in_fmt='xywh', out_fmt='xyxy')"
        r = bad[0]
        if ctx.op == "roi_align":
            ctx.add(
                "INVERTED_BOX",
                "error",
                "Some boxes have x2 < x1 or y2 < y1; roi_align does not reorder them: it pools a 1-cell strip "
                "(aligned=False) or a mirrored region (aligned=True).",
                f"{len(bad)} of {k} boxes are inverted, rows {_rows_list(bad)}; row {r}: "
                f"{names[0]}2 - {names[0]}1 = {_fmt(w[r])}, {names[1]}2 - {names[1]}1 = {_fmt(h[r])}{hint}",
                fix,
            )
        else:
            ctx.add(
                "INVERTED_BOX",
                "warning",
                "Some boxes have y2 < y1 or x2 < x1; crop_and_resize then returns a flipped crop, which is "
                "rarely what was meant.",
                f"{len(bad)} of {k} boxes are inverted, rows {_rows_list(bad)}; row {r}: "
                f"y2 - y1 = {_fmt(h[r])}, x2 - x1 = {_fmt(w[r])}",
                "boxes = torch.stack([torch.minimum(y1, y2), torch.minimum(x1, x2), torch.maximum(y1, y2), "
                "torch.maximum(x1, x2)], dim=1)",
            )
    if degenerate.any():
        bad = np.flatnonzero(degenerate)
        zeros = int((np.abs(c[bad]).sum(1) == 0).sum())
        r = bad[0]
        ctx.add(
            "DEGENERATE_BOX",
            "warning",
            "Some boxes have zero width or height; they pool a single line of the map (or nothing useful).",
            f"{len(bad)} of {k} boxes have zero width or height, rows {_rows_list(bad)}; row {r} = {_row(c[r])}"
            + (f"; {zeros} of them all zeros (padding rows?)" if zeros else ""),
            "keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]); boxes = boxes[keep]",
        )
    return ~inverted & ~degenerate


@dataclass
class _Geo:
    xs: np.ndarray  # [K, 2] x1, x2 (finite rows)
    ys: np.ndarray  # [K, 2]
    Hf: int
    Wf: int
    Hi: float
    Wi: float

    def reach(self, cx: float, cy: float, swap: bool = False) -> tuple[float, float, float, float]:
        """(min x, max x, min y, max y) in map cells, x scaled by cx and y by cy (swap: columns exchanged)."""
        xs, ys = (self.ys, self.xs) if swap else (self.xs, self.ys)
        return xs.min() * cx, xs.max() * cx, ys.min() * cy, ys.max() * cy

    def fits(self, cx: float, cy: float, swap: bool = False, tol: float = _TOL_CELLS) -> bool:
        x0, x1, y0, y1 = self.reach(cx, cy, swap)
        return x0 >= -tol and y0 >= -tol and x1 <= self.Wf + tol and y1 <= self.Hf + tol


def _stride_rule(image: float, cells: int) -> int | None:
    """The integer stride S with cells == floor or ceil(image / S), preferring powers of two."""
    if image != int(image):
        return None
    image = int(image)
    for s in (1, 2, 4, 8, 16, 32, 64, 128):
        if cells in (image // s, -(-image // s)):
            return s
    for s in range(3, 129):
        if cells in (image // s, -(-image // s)):
            return s
    return None


def _stride_text(g: _Geo) -> tuple[str, float]:
    """How the stride was inferred, in words, and the stride to suggest (nominal when known)."""
    sy, sx = _stride_rule(g.Hi, g.Hf), _stride_rule(g.Wi, g.Wf)
    ey, ex = g.Hi / g.Hf, g.Wi / g.Wf
    if sy is not None and sy == sx:
        return f"image {_fmt(g.Hi)} x {_fmt(g.Wi)} on a {g.Hf} x {g.Wf} map: stride {sx}", float(sx)
    e = math.sqrt(ex * ey)
    nominal = 2.0 ** round(math.log2(e)) if e > 0 else 1.0
    if abs(e / nominal - 1) > 0.15:
        nominal = e
    return (
        f"image {_fmt(g.Hi)} x {_fmt(g.Wi)} on a {g.Hf} x {g.Wf} map: effective stride {_fmt(ey)} x {_fmt(ex)}",
        nominal,
    )


def _scale_matches_image(s: float, g: _Geo) -> bool:
    """Does spatial_scale ``s`` map the image onto the map (within rounding and padding)?"""
    for image, cells in ((g.Hi, g.Hf), (g.Wi, g.Wf)):
        r = s * image / cells
        if not (0.75 <= r <= 1.34 or abs(image * s - cells) <= 1.5):
            return False
    return True


def _axis_over(g: _Geo, cx: float, cy: float, swap: bool = False) -> str:
    """Which coordinate overflows the map at scales (cx, cy), in words with the numbers."""
    xs, ys = (g.ys, g.xs) if swap else (g.xs, g.ys)
    parts = []
    for name, vals, c, size, dim in (("x", xs, cx, g.Wf, "width"), ("y", ys, cy, g.Hf, "height")):
        hi, lo = vals.max(), vals.min()
        if hi * c > size + _TOL_CELLS:
            col = int(np.argmax(vals.max(0))) + 1
            parts.append(
                f"max {name}{col} = {_fmt(hi)}"
                + (f" * {_fmt_scale(c)} = {_fmt(hi * c)}" if c != 1 else "")
                + f" > map {dim} {size}"
            )
        if lo * c < -_TOL_CELLS:
            parts.append(
                f"min {name} = {_fmt(lo)}" + (f" * {_fmt_scale(c)} = {_fmt(lo * c)}" if c != 1 else "") + " < 0"
            )
    return "; ".join(parts)


def _roi_align_geometry(g: _Geo, s: float, proper: np.ndarray, coords: np.ndarray, ctx: _Ctx) -> None:
    stride_words, stride = _stride_text(g)
    s_text = _fmt_scale(s) + (" (torchvision's default)" if s == 1 else "")
    s_is_1 = abs(s - 1.0) < 1e-12
    s_img = _scale_matches_image(s, g)
    cx_img, cy_img = g.Wf / g.Wi, g.Hf / g.Hi  # image px -> map cells, exact per axis
    e = min(g.Wi / g.Wf, g.Hi / g.Hf)
    square = g.Hf == g.Wf and g.Hi == g.Wi
    good_scale = _py_scale(1 / stride)
    scale_fix = f"roi_align(features, rois, output_size, spatial_scale={good_scale})  # {stride_words}"

    # 1. normalized boxes passed as pixels
    allc = np.concatenate([g.xs.ravel(), g.ys.ravel()])
    fractional = np.any(np.abs(allc - np.round(allc)) > 1e-6)
    if (
        allc.min() >= -1e-6
        and allc.max() <= 1 + 1e-6
        and fractional
        and min(g.Hi, g.Wi) >= 16
        and (s_img or min(g.Hf, g.Wf) >= 8)
    ):
        # With a scale that maps the image onto the map, [0, 1] means "inside the first image pixel": only
        # normalized boxes do that. With spatial_scale 1 and boxes in feature cells, a few sub-cell boxes at the
        # origin are possible, so it takes 3+ boxes spread over the unit square to call it an error.
        distinct = len(np.unique(np.concatenate([g.xs, g.ys], 1), axis=0))
        spread = min(np.ptp(g.xs), np.ptp(g.ys))
        strong = s_img or (distinct >= 3 and spread >= 0.5)
        ctx.add(
            "NORMALIZED_AS_PIXELS",
            "error" if strong else "info",
            "The boxes are normalized to [0, 1] but roi_align reads pixels: every box lands inside the first "
            "cell of the map."
            + ("" if strong else " (Few boxes: they may also be genuinely tiny boxes at the map's origin.)"),
            f"all coordinates lie in [0, 1] (max x = {_fmt(g.xs.max())}, max y = {_fmt(g.ys.max())}) on a "
            f"{_fmt(g.Hi)} x {_fmt(g.Wi)} image; x (W, H) they would span up to {_fmt(g.xs.max() * g.Wi)} x "
            f"{_fmt(g.ys.max() * g.Hi)} px; at spatial_scale {s_text} they reach {_fmt(allc.max() * s)} cells",
            f"boxes_image = boxes_norm * torch.tensor([{_fmt(g.Wi)}, {_fmt(g.Hi)}, {_fmt(g.Wi)}, {_fmt(g.Hi)}]); "
            f"roi_align(features, rois, output_size, spatial_scale={good_scale})",
        )
        return

    explained = False
    if g.fits(s, s):
        if s_img and not s_is_1 and e >= 2 and g.fits(1, 1):
            fill_x, fill_y = g.xs.max() / g.Wf, g.ys.max() / g.Hf
            distinct = len(np.unique(np.concatenate([g.xs, g.ys], 1), axis=0))
            strong = distinct >= 3 and fill_x >= 0.5 and fill_y >= 0.5 and e >= 3
            weak = fill_x >= 0.75 and fill_y >= 0.75 and e >= 3
            if strong or weak:
                ctx.add(
                    "DOUBLE_SCALED",
                    "warning" if strong else "info",
                    "The boxes look like feature-map pixels already, and spatial_scale shrinks them again: they "
                    "land in the top-left corner of the map."
                    + ("" if strong else " (Only 1-2 boxes: they may also be small image boxes in the corner.)"),
                    f"all {len(g.xs)} boxes lie within the {g.Hf} x {g.Wf} map (max x = {_fmt(g.xs.max())}, "
                    f"max y = {_fmt(g.ys.max())}: {round(100 * fill_x)}% x {round(100 * fill_y)}% of it); "
                    f"spatial_scale {s_text} shrinks them to x <= {_fmt(g.xs.max() * s)}, "
                    f"y <= {_fmt(g.ys.max() * s)} ({stride_words})",
                    "roi_align(features, rois_feature, output_size, spatial_scale=1.0)  # boxes already divided by "
                    "the stride; or pass the image-pixel boxes with spatial_scale=" + good_scale,
                )
                explained = True
        elif not s_img and not (s_is_1 and e >= 1.5):
            inside = g.fits(cx_img, cy_img)
            used = max(g.Wi * s / g.Wf, g.Hi * s / g.Hf)
            ctx.add(
                "WRONG_STRIDE",
                "error" if inside else "warning",
                f"spatial_scale {s_text} does not match the feature map: it maps the image onto "
                f"{round(100 * used)}% of the map's extent, so the boxes are pooled from the wrong place."
                + (
                    ""
                    if inside
                    else " The boxes also exceed the image: if they are pixels of a larger original "
                    "image, pass that image's size as image_size."
                ),
                f"{stride_words}, so spatial_scale should be {_fmt_scale(1 / stride)}; image width {_fmt(g.Wi)} * "
                f"{_fmt_scale(s)} = {_fmt(g.Wi * s)} vs map width {g.Wf}, height {_fmt(g.Hi)} * {_fmt_scale(s)} = "
                f"{_fmt(g.Hi * s)} vs map height {g.Hf} (off by {_fmt(1 / (s * stride))}x)",
                scale_fix,
            )
            explained = True
    else:
        swap_words = "(y1, x1, y2, x2) was passed where roi_align expects (x1, y1, x2, y2)"
        swap_fix = "rois = rois[:, [0, 2, 1, 4, 3]]  # (b, y1, x1, y2, x2) -> (b, x1, y1, x2, y2)"

        def big_over(c: float) -> bool:
            # a swap is only believed when it explains a clear overflow, not a box a cell or two past the edge
            return g.xs.max() * c - g.Wf > max(2.0, 0.1 * g.Wf) or g.ys.max() * c - g.Hf > max(2.0, 0.1 * g.Hf)

        def add_yx(c: float, frame: str, W: float, H: float) -> None:
            xm, ym = g.xs.max() * c, g.ys.max() * c
            over = f"max x = {_fmt(xm)} > width {_fmt(W)}" if xm > W else f"max y = {_fmt(ym)} > height {_fmt(H)}"
            ctx.add(
                "YX_SWAPPED",
                "error",
                f"The boxes fit only with x and y exchanged: {swap_words}.",
                f"in {frame}: {over}; exchanged, x reaches {_fmt(ym)} of width {_fmt(W)} and y reaches {_fmt(xm)} "
                f"of height {_fmt(H)}",
                swap_fix,
            )

        fit_img = g.fits(cx_img, cy_img)
        fit_img_swapped = not square and not fit_img and big_over(1 / stride) and g.fits(cx_img, cy_img, swap=True)
        if s_img:
            if not square and big_over(s) and g.fits(s, s, swap=True):
                add_yx(s, f"map cells at spatial_scale {s_text}", g.Wf, g.Hf)
                explained = True
        elif s_is_1 and e >= 1.5:
            if fit_img or fit_img_swapped:
                ctx.add(
                    "IMAGE_SPACE_BOXES",
                    "error",
                    "The boxes are in image pixels but spatial_scale is 1, so roi_align reads them as feature-map "
                    "cells: they overflow the map and pool the wrong region.",
                    f"{_axis_over(g, 1, 1)} at spatial_scale {s_text}; {_fmt(g.xs.max())} * {_fmt_scale(1 / stride)}"
                    f" = {_fmt(g.xs.max() / stride)} and {_fmt(g.ys.max())} * {_fmt_scale(1 / stride)} = "
                    f"{_fmt(g.ys.max() / stride)} fit"
                    + (" (with x and y exchanged)" if fit_img_swapped else "")
                    + f" ({stride_words})",
                    scale_fix,
                )
                if fit_img_swapped:
                    add_yx(1.0, "image pixels", g.Wi, g.Hi)
                explained = True
            elif not square and big_over(1.0) and g.fits(1, 1, swap=True):
                add_yx(1.0, "map cells at spatial_scale 1", g.Wf, g.Hf)
                explained = True
        elif fit_img or fit_img_swapped:
            ctx.add(
                "WRONG_STRIDE",
                "error",
                f"spatial_scale {s_text} does not match the feature map's stride: the boxes overflow the map "
                "at that scale but fit at the map's own scale.",
                f"{_axis_over(g, s, s)} at spatial_scale {s_text}; {stride_words}: {_fmt(g.xs.max())} * "
                f"{_fmt_scale(1 / stride)} = {_fmt(g.xs.max() / stride)} fits"
                + (" (with x and y exchanged)" if fit_img_swapped else "")
                + f" (scale off by {_fmt(s * stride)}x)",
                scale_fix,
            )
            if fit_img_swapped:
                add_yx(1.0, "image pixels", g.Wi, g.Hi)
            explained = True
        if not explained:
            x0, x1, y0, y1 = g.reach(s, s)
            outside = (
                (g.xs.min(1) * s < -_TOL_CELLS)
                | (g.xs.max(1) * s > g.Wf + _TOL_CELLS)
                | (g.ys.min(1) * s < -_TOL_CELLS)
                | (g.ys.max(1) * s > g.Hf + _TOL_CELLS)
            )
            beyond_image = g.xs.max() > 1.25 * g.Wi or g.ys.max() > 1.25 * g.Hi  # far past the image, not a margin
            ctx.add(
                "OUT_OF_BOUNDS",
                "warning",
                "Some boxes reach outside the feature map by more than one cell; roi_align zero-fills those "
                "samples, so their features fade towards zero."
                + (
                    " They exceed the image too: are they pixels of a larger (original) image?"
                    if beyond_image and not s_is_1
                    else ""
                ),
                f"{int(outside.sum())} of {len(outside)} boxes; at spatial_scale {s_text}: {_axis_over(g, s, s)} "
                f"(map {g.Hf} x {g.Wf}, image {_fmt(g.Hi)} x {_fmt(g.Wi)})",
                f"boxes = torchvision.ops.clip_boxes_to_image(boxes, ({_fmt(g.Hi)}, {_fmt(g.Wi)}))"
                + (
                    "  # if they belong to the original image, rescale first: boxes * (new_size / original_size)"
                    if beyond_image and not s_is_1
                    else ""
                ),
            )
            explained = True

    # sub-cell boxes, only when the scale is believed
    if explained or not proper.any():
        return
    w = (coords[proper, 2] - coords[proper, 0]) * s
    h = (coords[proper, 3] - coords[proper, 1]) * s
    small = (w < 1) | (h < 1)
    if small.any():
        i = int(np.argmin(np.minimum(w, h)))
        ctx.add(
            "SUBCELL_ROI",
            "info",
            "Some boxes are smaller than one feature cell after scaling; their pooled features come from a "
            "single cell (blurry, sensitive to the half-pixel offset).",
            f"{int(small.sum())} of {len(small)} boxes are under 1 cell at spatial_scale {_fmt_scale(s)}; smallest "
            f"{_fmt(w[i] / s)} x {_fmt(h[i] / s)} -> {_fmt(w[i])} x {_fmt(h[i])} cells",
            "pool small boxes from a finer level: torchvision.ops.MultiScaleRoIAlign assigns them by size; "
            "or use sampling_ratio=2 and aligned=True",
        )


def _exact_tf_normalization(g: _Geo) -> str:
    """The fix for pixel boxes given to crop_and_resize: the normalization that samples each box edge to edge.

    crop_and_resize samples ``y_norm * (h - 1)`` of the tensor it crops (h: that tensor's height), and image
    coordinate ``y`` is sample coordinate ``y / s - 0.5`` on a stride-``s`` map (cell centres at
    ``(i + 0.5) * s``), so ``y_norm = (y / s - 0.5) / (h - 1)``; ``roi_lab.geometry.tf_boxes_for_feature_map``
    computes the same. Dividing by the *image's* ``(H - 1)`` is right only for the image itself, and for
    pixel indices (integer = pixel centre) rather than continuous coordinates.
    """
    if g.Hf == g.Hi and g.Wf == g.Wi:  # the image itself (stride 1)
        hw = f"[{_fmt(g.Hi)} - 1, {_fmt(g.Wi)} - 1, {_fmt(g.Hi)} - 1, {_fmt(g.Wi)} - 1]"
        return (f"boxes_norm = (boxes - 0.5) / torch.tensor({hw})  # (y1, x1, y2, x2) continuous px; for pixel "
                "indices (TF's convention) drop the - 0.5")
    _, s = _stride_text(g)
    hw = f"[{g.Hf - 1}, {g.Wf - 1}, {g.Hf - 1}, {g.Wf - 1}]"
    return (f"boxes_norm = (boxes / {_fmt(s)} - 0.5) / torch.tensor({hw})  # (y1, x1, y2, x2) image px onto the "
            f"{g.Hf} x {g.Wf} map at stride {_fmt(s)}: samples from edge to edge of each box, not / (image size - 1)")


def _crop_geometry(g: _Geo, proper: np.ndarray, coords: np.ndarray, ctx: _Ctx) -> None:
    # coords are (y1, x1, y2, x2); g.xs / g.ys already hold x and y
    allc = np.concatenate([g.xs.ravel(), g.ys.ravel()])
    if allc.max() > 1.5 or allc.min() < -0.5:
        tf_fits = g.xs.min() >= -1 and g.ys.min() >= -1 and g.xs.max() <= g.Wi + 1 and g.ys.max() <= g.Hi + 1
        sw_fits = g.xs.min() >= -1 and g.ys.min() >= -1 and g.ys.max() <= g.Wi + 1 and g.xs.max() <= g.Hi + 1
        where = (
            f"as pixels they fit the {_fmt(g.Hi)} x {_fmt(g.Wi)} image in (y1, x1, y2, x2) order"
            if tf_fits
            else f"as pixels they fit the {_fmt(g.Hi)} x {_fmt(g.Wi)} image only in (x1, y1, x2, y2) order"
            if sw_fits and g.Hi != g.Wi
            else f"they exceed even the {_fmt(g.Hi)} x {_fmt(g.Wi)} image as pixels"
        )
        ctx.add(
            "PIXELS_AS_NORMALIZED",
            "error",
            "crop_and_resize expects normalized boxes (y * (H - 1) gives the pixel) but these are pixels: "
            "the crops land far outside the image and come back as extrapolation_value.",
            f"max coordinate = {_fmt(allc.max())} > 1 (normalized boxes lie in [0, 1]); max y = "
            f"{_fmt(g.ys.max())}, max x = {_fmt(g.xs.max())}; {where}",
            _exact_tf_normalization(g),
        )
        if sw_fits and not tf_fits and g.Hi != g.Wi:
            ctx.add(
                "YX_SWAPPED",
                "error",
                "The boxes are in (x1, y1, x2, y2) order; crop_and_resize expects (y1, x1, y2, x2).",
                "read as (y1, x1, y2, x2): "
                + (
                    f"max y = {_fmt(g.ys.max())} > image height {_fmt(g.Hi)}"
                    if g.ys.max() > g.Hi + 1
                    else f"max x = {_fmt(g.xs.max())} > image width {_fmt(g.Wi)}"
                )
                + f"; exchanged: max y = {_fmt(g.xs.max())} <= height {_fmt(g.Hi)} and max x = {_fmt(g.ys.max())} "
                f"<= width {_fmt(g.Wi)}",
                "boxes = boxes[:, [1, 0, 3, 2]]  # (x1, y1, x2, y2) -> (y1, x1, y2, x2)",
            )
        return
    ty = 1.5 / max(g.Hf - 1, 1)  # 1.5 px of the cropped tensor: (H - 1) vs H normalization stays quiet
    tx = 1.5 / max(g.Wf - 1, 1)
    outside = (g.ys.min(1) < -ty) | (g.ys.max(1) > 1 + ty) | (g.xs.min(1) < -tx) | (g.xs.max(1) > 1 + tx)
    if outside.any():
        ctx.add(
            "OUT_OF_BOUNDS",
            "warning",
            "Some normalized boxes reach outside [0, 1] by more than 1.5 pixels; crop_and_resize fills those "
            "samples with extrapolation_value.",
            f"{int(outside.sum())} of {len(outside)} boxes; y in [{_fmt(g.ys.min())}, {_fmt(g.ys.max())}], "
            f"x in [{_fmt(g.xs.min())}, {_fmt(g.xs.max())}] (1.5 pixels of the {g.Hf} x {g.Wf} input = "
            f"{_fmt(ty)} x {_fmt(tx)})",
            "boxes = boxes.clamp(0, 1)",
        )
        return
    if not proper.any():
        return
    h = (coords[proper, 2] - coords[proper, 0]) * (g.Hf - 1)
    w = (coords[proper, 3] - coords[proper, 1]) * (g.Wf - 1)
    small = ((h < 1) & (g.Hf > 1)) | ((w < 1) & (g.Wf > 1))
    if small.any():
        ctx.add(
            "SUBCELL_ROI",
            "info",
            "Some boxes span less than one pixel of the cropped tensor; their crops are nearly constant.",
            f"{int(small.sum())} of {len(small)} boxes; smallest {_fmt(h.min())} x {_fmt(w.min())} px of the "
            f"{g.Hf} x {g.Wf} input",
            "crop from a finer feature map or the image itself for small boxes",
        )


def _map_bounds(coords: np.ndarray, Hf: int, Wf: int, s: float, ctx: _Ctx) -> None:
    """Without an image size: boxes that leave the map at ``spatial_scale`` (the cause cannot be named)."""
    g = _Geo(coords[:, [0, 2]], coords[:, [1, 3]], Hf, Wf, math.nan, math.nan)
    if g.fits(s, s):
        return
    xs, ys, tol = g.xs * s, g.ys * s, _TOL_CELLS
    partly = (xs.min(1) < -tol) | (xs.max(1) > Wf + tol) | (ys.min(1) < -tol) | (ys.max(1) > Hf + tol)
    beyond = (xs.min(1) > Wf + tol) | (ys.min(1) > Hf + tol) | (xs.max(1) < -tol) | (ys.max(1) < -tol)
    ctx.add(
        "OUT_OF_BOUNDS",
        "error" if beyond.any() else "warning",
        "Some boxes reach outside the feature map at this spatial_scale"
        + (", some lie entirely outside it: roi_align pools only zeros for those" if beyond.any() else "")
        + ". Without image_size the diagnoser cannot tell image-space boxes from a wrong stride.",
        f"{int(partly.sum())} of {len(partly)} boxes leave the {Hf} x {Wf} map by more than one cell, "
        f"{int(beyond.sum())} entirely; at spatial_scale {_fmt_scale(s)}: {_axis_over(g, s, s)}",
        "pass image_size=(H, W), the image the boxes refer to, to name the cause; spatial_scale should be the "
        "map size over the image size, e.g. 1 / 16",
    )


def _check_divisible(g: _Geo, ctx: _Ctx) -> None:
    sy, sx = _stride_rule(g.Hi, g.Hf), _stride_rule(g.Wi, g.Wf)
    if sy is None or sy != sx or sx < 2:
        return
    s = sx
    if int(g.Hi) % s == 0 and int(g.Wi) % s == 0:
        return
    dy, dx = g.Hf * s - g.Hi, g.Wf * s - g.Wi
    ctx.add(
        "NON_DIVISIBLE_STRIDE",
        "info",
        f"The image is not a multiple of the stride {s}; with spatial_scale 1/{s} the map's far edge drifts from "
        "the image edge, so boxes near the right/bottom are pooled slightly off.",
        f"image {_fmt(g.Hi)} x {_fmt(g.Wi)} / {s} = {_fmt(g.Hi / s)} x {_fmt(g.Wi / s)}; the map has {g.Hf} x "
        f"{g.Wf} cells; {g.Hf} * {s} = {_fmt(g.Hf * s)}, {g.Wf} * {s} = {_fmt(g.Wf * s)}: drift {_fmt(dy)} px "
        f"(y), {_fmt(dx)} px (x)",
        f"resize or pad the image to a multiple of {s} (e.g. {_fmt(math.ceil(g.Hi / s) * s)} x "
        f"{_fmt(math.ceil(g.Wi / s) * s)}) before the backbone; spatial_scale=1 / {s} is then exact",
    )


# --------------------------------------------------------------------------------------------- entry point


def _quiet_overflow(fn: Callable[..., list[Finding]]) -> Callable[..., list[Finding]]:
    """Run ``fn`` with numpy's overflow / invalid warnings off: extreme coordinates become inf and are reported."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> list[Finding]:
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)

    return wrapper


@_quiet_overflow
def diagnose(
    boxes: Any,
    *,
    image_size: Any = None,
    features: Any,
    op: str = "roi_align",
    spatial_scale: float | None = None,
    box_indices: Any = None,
) -> list[Finding]:
    """Inspect what is about to be passed to ROIAlign / CropAndResize and report what looks wrong.

    Args:
        boxes: what the op will get. ``op="roi_align"``: Tensor[K, 5] (batch_index, x1, y1, x2, y2) or a list
            of Tensor[L, 4] (x1, y1, x2, y2) per image. ``op="crop_and_resize"``: Tensor[K, 4] normalized
            (y1, x1, y2, x2). numpy arrays and nested lists are read too; anything else is reported.
        image_size ((H, W)): the image whose pixel coordinates the boxes should be in (an int means square).
            For a padded batch, the padded size (padding at the bottom/right keeps coordinates).
            ``None`` when unknown: only what the map and boxes show is checked then (roi_align: boxes
            leaving the map at ``spatial_scale``, ``OUT_OF_BOUNDS``; crop_and_resize: the map is the image).
        features (Tensor[N, C, H, W] | (N, C, H, W)): the map the op pools from, or its shape. A tensor also
            gives its dtype and device.
        op (str): ``"roi_align"`` (torchvision / detectron2 / mmcv) or ``"crop_and_resize"`` (TensorFlow).
        spatial_scale (float | None): what is passed to roi_align; None means torchvision's default 1.0.
        box_indices (Tensor[K] int | None): crop_and_resize's image index per box.

    Returns:
        list[Finding]: errors first, then warnings, then infos; empty when nothing looks wrong.

    Raises:
        InputValueError: only for an unknown ``op`` name (a typo in the call, not in the data). Odd boxes,
            features or image sizes are reported as findings, never raised.

    Convention:
        roi_align: x1, y1, x2, y2 in image pixels times ``spatial_scale`` = feature-map cells; a box may reach
        one cell past the map border before it counts as out of bounds (torchvision samples in [-1, W]).
        crop_and_resize: normalized y1, x1, y2, x2, pixel = y * (H - 1) of the cropped tensor.

    Example:
        >>> import torch
        >>> rois = torch.tensor([[0.0, 100.0, 50.0, 900.0, 600.0]])
        >>> [f.code for f in diagnose(rois, image_size=(800, 1024), features=(1, 256, 50, 64))]
        ['IMAGE_SPACE_BOXES']
        >>> diagnose(rois, image_size=(800, 1024), features=(1, 256, 50, 64), spatial_scale=1 / 16)
        []
    """
    op_name = op.lower().replace("-", "_") if isinstance(op, str) else None
    if op_name not in OPS:
        raise InputValueError(
            "diagnose(op=...)", expected='"roi_align" or "crop_and_resize"', got=short_repr(op), fix='op="roi_align"'
        )
    ctx = _Ctx(op_name)
    shape, feat = _parse_features(features, ctx)
    image = _parse_image_size(image_size, ctx) if image_size is not None else None
    if image is None and image_size is None and op_name == "crop_and_resize" and shape is not None:
        image = (float(shape[2]), float(shape[3]))  # normalized boxes refer to the cropped tensor itself
    scale = 1.0
    if op_name == "roi_align" and spatial_scale is not None:
        try:
            scale = float(spatial_scale)
            if not (math.isfinite(scale) and _MIN_SCALE <= scale <= _MAX_SCALE):
                raise ValueError
        except Exception:
            ctx.add(
                "WRONG_STRIDE",
                "error",
                f"spatial_scale must be one positive float between {_MIN_SCALE:g} and {_MAX_SCALE:g} (image pixels "
                "-> feature cells, e.g. 1/16).",
                f"spatial_scale = {short_repr(spatial_scale)}",
                "roi_align(features, rois, output_size, spatial_scale=features.shape[-1] / image_width)",
            )
            scale = None
    try:
        bx = _parse_boxes(boxes, ctx)
    except Exception as exc:  # defensive: exotic objects whose __len__/__array__ raise
        ctx.add(
            "BAD_RANK",
            "error",
            "The boxes could not be read as an array of numbers.",
            f"reading them raised {type(exc).__name__}: {str(exc)[:100]}",
            "boxes = torch.tensor([[x1, y1, x2, y2], ...], dtype=torch.float32)",
        )
        bx = None
    if bx is not None:
        _check_dtype_device(bx, feat, box_indices if op_name == "crop_and_resize" else None, ctx)
        finite = _check_finite(bx, ctx)
        n = shape[0] if shape is not None else None
        layout_ok = _check_batch(bx, n, box_indices if op_name == "crop_and_resize" else None, finite, ctx)
        coords = bx.coords[finite]
        if layout_ok and len(coords):
            proper = _check_shape_of_boxes(coords, image, ctx)
            if shape is not None and image is not None:
                if op_name == "roi_align":
                    g = _Geo(coords[:, [0, 2]], coords[:, [1, 3]], shape[2], shape[3], image[0], image[1])
                    if scale is not None:
                        _roi_align_geometry(g, scale, proper, coords, ctx)
                else:
                    g = _Geo(coords[:, [1, 3]], coords[:, [0, 2]], shape[2], shape[3], image[0], image[1])
                    _crop_geometry(g, proper, coords, ctx)
            elif shape is not None and image_size is None and op_name == "roi_align" and scale is not None:
                _map_bounds(coords, shape[2], shape[3], scale, ctx)
    if op_name == "roi_align" and shape is not None and image is not None:
        _check_divisible(_Geo(np.zeros((1, 2)), np.zeros((1, 2)), shape[2], shape[3], image[0], image[1]), ctx)
    rank = {sev: i for i, sev in enumerate(SEVERITIES)}
    return sorted(ctx.findings, key=lambda f: rank[f.severity])
