"""The shared, pre-computed context of :func:`roi_lab.diagnose.diagnose` and the reading of its inputs.

Private to :mod:`roi_lab.diagnose`. :func:`build_context` reads what the user is about to pass to the op
(features or their shape, image size, boxes, spatial_scale, box indices) once, into a :class:`Context` that
every rule of :data:`roi_lab.diagnose.RULES` reads: the parsed boxes, the finite rows, the batch layout, the
map and image geometry, and the one placement verdict of the stride inference (which explanation the box
ranges support). What cannot be read at all is reported while reading (``Context.read_findings``, the codes
``BAD_RANK``, ``BOX_COLUMNS``, ``MISSING_BATCH_INDEX``, and ``DTYPE_MISMATCH`` / ``WRONG_STRIDE`` for values
that are no numbers), like a linter's syntax errors; everything else is a rule's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from roi_lab._display import FindingDisplay
from roi_lab.errors import short_repr

SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
OPS: tuple[str, ...] = ("roi_align", "crop_and_resize")

# How far past the map's border (in cells) a box may reach before it counts as out of bounds: torchvision
# samples points in [-1, W] and zero-fills beyond, so one cell is where output starts to be lost.
_TOL_CELLS = 1.0
# Beyond these the arithmetic of the checks would overflow (10**400 is no float; 1 / 1e-320 is inf): sizes are
# tensor sizes (torch indexes with int64, kernels with int32), scales map pixels to cells (1/64 to 4 in practice).
_MAX_SIZE = 2**31 - 1
_MIN_SCALE, _MAX_SCALE = 1e-6, 1e6
_MAX_LEVELS = 16  # pyramid levels: strides up to 2**15 times the finest; FPNs have 4 to 6


@dataclass(frozen=True)
class Finding(FindingDisplay):
    """One thing :func:`~roi_lab.diagnose.diagnose` noticed about the inputs.

    Attributes:
        code (str): one of :data:`~roi_lab.diagnose.CODES`, e.g. ``"IMAGE_SPACE_BOXES"``.
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


Finding.__module__ = "roi_lab.diagnose"  # the public home of the class (its repr, its docs)


class Hit(NamedTuple):
    """What a rule's detector yields: one finding of the rule's own code, before the code is attached."""

    severity: str
    message: str
    evidence: str
    fix: str


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


def _dims(n: int) -> str:
    return f"{n} dimension" + ("" if n == 1 else "s")


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _parse_features(features: Any, ctx: Context) -> tuple[tuple[int, int, int, int] | None, Tensor | None]:
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


def _parse_image_size(image_size: Any, ctx: Context) -> tuple[float, float] | None:
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


def _numeric(x: Any, name: str, ctx: Context) -> np.ndarray | None:
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


def _parse_boxes(boxes: Any, ctx: Context) -> _Boxes | None:
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


def _parse_pyramid(pyramid: Any, ctx: Context) -> list[tuple[int, int]] | None:
    """The (H, W) of every pyramid level, finest first, or None after reporting why they cannot be read.

    Each level is a Tensor[N, C, H, W] (or [C, H, W]), a shape (N, C, H, W) or a size (H, W); a dict (the
    FPN's output) is read in its order, as torchvision's MultiScaleRoIAlign does.
    """
    levels = list(pyramid.values()) if isinstance(pyramid, dict) else pyramid
    sizes: list[tuple[int, int]] = []
    try:
        if isinstance(levels, (Tensor, str, bytes)) or not 2 <= len(levels) <= _MAX_LEVELS:
            raise ValueError
        for level in levels:
            dims = tuple(level.shape) if isinstance(level, Tensor) else tuple(level)
            if len(dims) not in (2, 3, 4) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims
            ):
                raise ValueError
            h, w = int(dims[-2]), int(dims[-1])
            if not (0 < h <= _MAX_SIZE and 0 < w <= _MAX_SIZE):
                raise ValueError
            sizes.append((h, w))
        return sizes
    except Exception:
        pass
    ctx.add(
        "BAD_RANK",
        "error",
        f"`pyramid` must be the feature pyramid's levels, finest first, 2 to {_MAX_LEVELS}: a list (or dict) of "
        "Tensor[N, C, H, W], (N, C, H, W) shapes or (H, W) sizes; the pyramid checks were skipped.",
        f"pyramid = {short_repr(pyramid)}",
        "diagnose(..., pyramid=[p2, p3, p4, p5])  # or pyramid=[(200, 272), (100, 136), (50, 68), (25, 34)]",
    )
    return None


# --------------------------------------------------------------------------------------------- checks


# --------------------------------------------------------------------------------------------- the context


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


@dataclass
class Context:
    """Everything the rules read, computed once per :func:`~roi_lab.diagnose.diagnose` call.

    Attributes:
        op (str): ``"roi_align"`` or ``"crop_and_resize"``.
        read_findings (list[Finding]): what reading the inputs found (in reading order).
        shape ((N, C, H, W) | None), feat (Tensor | None): the map's shape and the map when a tensor was given.
        image ((H, W) | None): the image the boxes refer to (for crop_and_resize without image_size: the map).
        image_given (bool): whether ``image_size`` was passed.
        scale (float | None): roi_align's spatial_scale (1.0 when not given; None when unreadable).
        spatial_scale_given: the argument as passed (None: torchvision's default).
        boxes (_Boxes | None): the parsed boxes; None when unreadable.
        box_indices: crop_and_resize's image index per box, as passed.
        finite (np.ndarray[K] bool): rows without NaN / inf; ``coords`` holds those rows.
        layout_ok (bool): whether the box layout (column order) is believed; geometry runs only then.
        proper (np.ndarray bool): rows of ``coords`` with positive width and height.
        geo (_Geo | None): the box ranges on map and image, when both sizes are known.
        aligned, sampling_ratio, convention: the call's options and the framework the head was trained with
            (None when not given): the convention rules read them.
        pyramid (list[(H, W)] | None): the sizes of every level of the feature pyramid the map belongs to,
            finest first (None when not given): the pyramid rules read them through :func:`pyramid_geo`.
    """

    op: str
    read_findings: list[Finding] = field(default_factory=list)
    shape: tuple[int, int, int, int] | None = None
    feat: Tensor | None = None
    image: tuple[float, float] | None = None
    image_given: bool = False
    scale: float | None = 1.0
    spatial_scale_given: Any = None
    boxes: _Boxes | None = None
    box_indices: Any = None
    finite: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    layout_ok: bool = False
    proper: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    geo: _Geo | None = None
    aligned: bool | None = None
    sampling_ratio: int | None = None
    convention: str | None = None
    pyramid: list[tuple[int, int]] | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def add(self, code: str, severity: str, message: str, evidence: str, fix: str) -> None:
        """Report what reading the inputs found (the reading stage's findings)."""
        if severity not in SEVERITIES:  # pragma: no cover - programming error
            raise AssertionError(f"unknown severity {severity}")
        self.read_findings.append(Finding(code, severity, message, evidence, fix))

    def cached(self, key: str, compute: Any) -> Any:
        """``compute()`` once per context: the analyses several rules share."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def checks_boxes(self) -> bool:
        """Whether the box-value rules run: readable boxes in a believed layout, at least one finite row."""
        return self.boxes is not None and self.layout_ok and len(self.coords) > 0


def _read_scale(spatial_scale: Any, ctx: Context) -> float | None:
    if ctx.op != "roi_align" or spatial_scale is None:
        return 1.0
    try:
        scale = float(spatial_scale)
        if not (math.isfinite(scale) and _MIN_SCALE <= scale <= _MAX_SCALE):
            raise ValueError
        return scale
    except Exception:
        ctx.add(
            "WRONG_STRIDE",
            "error",
            f"spatial_scale must be one positive float between {_MIN_SCALE:g} and {_MAX_SCALE:g} (image pixels "
            "-> feature cells, e.g. 1/16).",
            f"spatial_scale = {short_repr(spatial_scale)}",
            "roi_align(features, rois, output_size, spatial_scale=features.shape[-1] / image_width)",
        )
        return None


def build_context(
    boxes: Any,
    *,
    op: str,
    features: Any,
    image_size: Any = None,
    spatial_scale: Any = None,
    box_indices: Any = None,
    aligned: bool | None = None,
    sampling_ratio: int | None = None,
    convention: str | None = None,
    pyramid: Any = None,
) -> Context:
    """Read the inputs into the context every rule shares (``op`` already normalised)."""
    ctx = Context(op, spatial_scale_given=spatial_scale, aligned=aligned, sampling_ratio=sampling_ratio,
                  convention=convention, image_given=image_size is not None)  # fmt: skip
    ctx.shape, ctx.feat = _parse_features(features, ctx)
    ctx.pyramid = _parse_pyramid(pyramid, ctx) if pyramid is not None else None
    ctx.image = _parse_image_size(image_size, ctx) if image_size is not None else None
    if ctx.image is None and image_size is None and op == "crop_and_resize" and ctx.shape is not None:
        ctx.image = (float(ctx.shape[2]), float(ctx.shape[3]))  # normalized boxes refer to the cropped tensor itself
    ctx.scale = _read_scale(spatial_scale, ctx)
    if op == "crop_and_resize":
        ctx.box_indices = box_indices
    try:
        ctx.boxes = _parse_boxes(boxes, ctx)
    except Exception as exc:  # defensive: exotic objects whose __len__/__array__ raise
        ctx.add(
            "BAD_RANK",
            "error",
            "The boxes could not be read as an array of numbers.",
            f"reading them raised {type(exc).__name__}: {str(exc)[:100]}",
            "boxes = torch.tensor([[x1, y1, x2, y2], ...], dtype=torch.float32)",
        )
        ctx.boxes = None
    bx = ctx.boxes
    if bx is None:
        return ctx
    full = bx.coords if bx.batch is None else np.concatenate([bx.batch[:, None], bx.coords], 1)
    ctx.finite = np.isfinite(full).all(1)
    ctx.coords = bx.coords[ctx.finite]
    ctx.layout_ok = batch_layout(ctx)[0]
    if ctx.checks_boxes:
        c = ctx.coords
        if op == "roi_align":
            w, h = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
        else:
            h, w = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
        ctx.proper = (w > 0) & (h > 0)
        if ctx.shape is not None and ctx.image is not None:
            if op == "roi_align":
                ctx.geo = _Geo(c[:, [0, 2]], c[:, [1, 3]], ctx.shape[2], ctx.shape[3], ctx.image[0], ctx.image[1])
            else:
                ctx.geo = _Geo(c[:, [1, 3]], c[:, [0, 2]], ctx.shape[2], ctx.shape[3], ctx.image[0], ctx.image[1])
    return ctx


# --------------------------------------------------------------------------------------------- batch layout


def batch_layout(ctx: Context) -> tuple[bool, list[Hit]]:
    """Whether the box layout is believed, and the BATCH_INDEX_OUT_OF_RANGE hits that decide it.

    Shared by the context (the geometry rules run only on a believed layout) and the
    ``BATCH_INDEX_OUT_OF_RANGE`` rule, which reports the hits.
    """
    return ctx.cached("batch", lambda: _batch_layout(ctx))


def _batch_layout(ctx: Context) -> tuple[bool, list[Hit]]:
    bx, finite, hits = ctx.boxes, ctx.finite, []
    n = ctx.shape[0] if ctx.shape is not None else None
    if bx is None:
        return False, hits
    if ctx.op == "roi_align":
        if bx.form == "list":
            if n is not None and bx.n_list > n and bx.coords.shape[0] and bx.batch is not None and bx.batch.max() >= n:
                hits.append(Hit(
                    "error",
                    "The list holds more box tensors than the feature map has images: list position i is the "
                    "batch index.",
                    f"len(boxes) = {bx.n_list} (batch indices 0..{bx.n_list - 1}) but features has N = {n}",
                    "pass one Tensor[L, 4] per image of the batch: len(boxes) == features.shape[0]",
                ))  # fmt: skip
            return True, hits
        if bx.form != "rois":
            return True, hits
        idx = bx.batch[finite]
        if idx.size == 0:
            return True, hits
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
            hits.append(Hit(
                "error",
                "The first column of the rois must be the integer batch index of each box.",
                f"{len(bad)} of {len(idx)} batch indices are not whole numbers, e.g. {_fmt(idx[bad[0]])}{hint}",
                "rois = rois[:, [4, 0, 1, 2, 3]]  # if the batch index is last"
                if hint.startswith("; the last column holds")
                else "rois = torch.cat([batch_index[:, None].to(boxes.dtype), boxes_xyxy], dim=1)",
            ))  # fmt: skip
            return layout_ok, hits
        out = (idx < 0) | (idx >= n if n is not None else np.zeros_like(idx, dtype=bool))
        if out.any():
            layout_ok = out.mean() <= 0.5
            hits.append(Hit(
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
            ))  # fmt: skip
        return layout_ok, hits
    # crop_and_resize
    box_indices = ctx.box_indices
    if box_indices is None:
        return True, hits
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
        hits.append(Hit(
            "error",
            "box_indices must be a 1-D integer tensor with one image index per box.",
            f"box_indices = {short_repr(box_indices)} for {k} boxes"
            + (f" (shape {_shape_text(vals.shape)})" if vals is not None else ""),
            f"box_indices = torch.zeros({k}, dtype=torch.int32)  # all boxes from image 0",
        ))  # fmt: skip
        return True, hits
    bad_int = ~np.isfinite(vals) | (np.abs(vals - np.round(vals)) > 1e-6)
    out = (vals < 0) | (vals >= (n if n is not None else np.inf))
    if bad_int.any() or out.any():
        hits.append(Hit(
            "error",
            "Some box_indices do not name an image of the batch (valid: whole numbers 0 to N - 1).",
            f"box_indices range {_fmt(np.nanmin(vals))}..{_fmt(np.nanmax(vals))}"
            + (f" but the image batch has N = {n}" if n is not None else "")
            + (f"; {int(bad_int.sum())} are not whole numbers" if bad_int.any() else ""),
            "box_indices = box_indices.int()  # and check which image each box belongs to",
        ))  # fmt: skip
    elif not is_int:
        hits.append(Hit(
            "warning",
            "box_indices hold whole numbers but in a floating dtype; TensorFlow requires int32.",
            f"box_indices dtype = {getattr(box_indices, 'dtype', type(box_indices).__name__)}",
            "box_indices = box_indices.to(torch.int32)",
        ))  # fmt: skip
    return True, hits


# --------------------------------------------------------------------------------------------- map geometry


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


def axis_over(g: _Geo, cx: float, cy: float, swap: bool = False) -> str:
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


@dataclass(frozen=True)
class RoiGeo:
    """The roi_align geometry the placement rules share: the map's stride and how the scale relates to it."""

    g: _Geo
    s: float
    stride_words: str
    stride: float
    s_text: str
    s_is_1: bool
    s_img: bool
    cx_img: float
    cy_img: float
    e: float
    square: bool
    good_scale: str
    scale_fix: str


@dataclass(frozen=True)
class Placement:
    """The one explanation the box ranges support (roi_align with an image size), decided once.

    ``kind`` is ``"normalized"`` (normalized boxes read as pixels; nothing else is said), ``"double_scaled"``,
    ``"wrong_stride_fits"`` (the boxes fit at a scale that does not map the image onto the map),
    ``"yx_map"`` (they fit the map only with x and y exchanged), ``"image_space"`` (image px at scale 1),
    ``"yx_map_s1"`` (feature cells at scale 1, x and y exchanged), ``"wrong_stride"`` (they overflow at the
    scale given but fit at the map's own), ``"out_of_bounds"`` (none of these explains the overflow), or
    ``"fits"`` (nothing to explain: the sub-cell check may speak).
    """

    kind: str
    strong: bool = False  # normalized / double_scaled: enough evidence for the firmer severity
    inside: bool = False  # wrong_stride_fits: the boxes fit at the image's own scale
    swapped: bool = False  # image_space / wrong_stride: they fit only with x and y exchanged


def roi_geo(ctx: Context) -> RoiGeo | None:
    """The roi_align geometry, or None without map, image, scale or believed boxes."""
    if ctx.op != "roi_align" or ctx.geo is None or ctx.scale is None:
        return None

    def compute() -> RoiGeo:
        g, s = ctx.geo, ctx.scale
        stride_words, stride = _stride_text(g)
        good_scale = _py_scale(1 / stride)
        return RoiGeo(
            g=g,
            s=s,
            stride_words=stride_words,
            stride=stride,
            s_text=_fmt_scale(s) + (" (torchvision's default)" if s == 1 else ""),
            s_is_1=abs(s - 1.0) < 1e-12,
            s_img=_scale_matches_image(s, g),
            cx_img=g.Wf / g.Wi,
            cy_img=g.Hf / g.Hi,
            e=min(g.Wi / g.Wf, g.Hi / g.Hf),
            square=g.Hf == g.Wf and g.Hi == g.Wi,
            good_scale=good_scale,
            scale_fix=f"roi_align(features, rois, output_size, spatial_scale={good_scale})  # {stride_words}",
        )

    return ctx.cached("roi_geo", compute)


def big_over(r: RoiGeo, c: float) -> bool:
    """A swap is only believed when it explains a clear overflow, not a box a cell or two past the edge."""
    g = r.g
    return g.xs.max() * c - g.Wf > max(2.0, 0.1 * g.Wf) or g.ys.max() * c - g.Hf > max(2.0, 0.1 * g.Hf)


def placement(ctx: Context) -> Placement | None:
    """The placement verdict of roi_align boxes (None when :func:`roi_geo` is None)."""
    r = roi_geo(ctx)
    return None if r is None else ctx.cached("placement", lambda: _placement(r))


def _placement(r: RoiGeo) -> Placement:
    g, s = r.g, r.s
    allc = np.concatenate([g.xs.ravel(), g.ys.ravel()])
    fractional = np.any(np.abs(allc - np.round(allc)) > 1e-6)
    if (
        allc.min() >= -1e-6
        and allc.max() <= 1 + 1e-6
        and fractional
        and min(g.Hi, g.Wi) >= 16
        and (r.s_img or min(g.Hf, g.Wf) >= 8)
    ):
        # With a scale that maps the image onto the map, [0, 1] means "inside the first image pixel": only
        # normalized boxes do that. With spatial_scale 1 and boxes in feature cells, a few sub-cell boxes at the
        # origin are possible, so it takes 3+ boxes spread over the unit square to call it an error.
        distinct = len(np.unique(np.concatenate([g.xs, g.ys], 1), axis=0))
        spread = min(np.ptp(g.xs), np.ptp(g.ys))
        return Placement("normalized", strong=r.s_img or (distinct >= 3 and spread >= 0.5))
    if g.fits(s, s):
        if r.s_img and not r.s_is_1 and r.e >= 2 and g.fits(1, 1):
            fill_x, fill_y = g.xs.max() / g.Wf, g.ys.max() / g.Hf
            distinct = len(np.unique(np.concatenate([g.xs, g.ys], 1), axis=0))
            strong = distinct >= 3 and fill_x >= 0.5 and fill_y >= 0.5 and r.e >= 3
            weak = fill_x >= 0.75 and fill_y >= 0.75 and r.e >= 3
            return Placement("double_scaled", strong=strong) if strong or weak else Placement("fits")
        if not r.s_img and not (r.s_is_1 and r.e >= 1.5):
            return Placement("wrong_stride_fits", inside=g.fits(r.cx_img, r.cy_img))
        return Placement("fits")
    fit_img = g.fits(r.cx_img, r.cy_img)
    fit_img_swapped = (not r.square and not fit_img and big_over(r, 1 / r.stride)
                       and g.fits(r.cx_img, r.cy_img, swap=True))  # fmt: skip
    if r.s_img:
        if not r.square and big_over(r, s) and g.fits(s, s, swap=True):
            return Placement("yx_map")
    elif r.s_is_1 and r.e >= 1.5:
        if fit_img or fit_img_swapped:
            return Placement("image_space", swapped=fit_img_swapped)
        if not r.square and big_over(r, 1.0) and g.fits(1, 1, swap=True):
            return Placement("yx_map_s1")
    elif fit_img or fit_img_swapped:
        return Placement("wrong_stride", swapped=fit_img_swapped)
    return Placement("out_of_bounds")


def stride_rule(image: float, cells: int) -> int | None:
    """The map's integer stride on one axis (see :func:`_stride_rule`), for the rules."""
    return _stride_rule(image, cells)


def stride_text(g: _Geo) -> tuple[str, float]:
    """How the stride was inferred, in words, and the stride to suggest (for the rules)."""
    return _stride_text(g)


# --------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One diagnoser code: its detector over the shared :class:`Context` and what it is about.

    Attributes:
        code (str): the code of every finding the rule makes.
        summary (str): what it catches, in one line.
        ops (tuple[str, ...]): the ops whose calls it checks (``"roi_align"``, ``"crop_and_resize"``).
        check (Callable[[Context], Iterable[Hit]] | None): the detector; it reads the context and yields
            one :class:`Hit` per finding (the message templates live in it). ``None`` for the codes found
            while reading the inputs (``Context.read_findings``).
        source (str): where the convention it checks is defined (a framework's source or spec), or ``""``.
    """

    code: str
    summary: str
    ops: tuple[str, ...]
    check: Any = None
    source: str = ""


Rule.__module__ = "roi_lab.diagnose"


# --------------------------------------------------------------------------------------------- pyramid geometry


@dataclass(frozen=True)
class PyramidGeo:
    """The feature pyramid's geometry the pyramid rules share, computed once (:func:`pyramid_geo`).

    Attributes:
        sizes (list[(H, W)]): each level's map size, finest first.
        strides (list[int] | None): each level's nominal stride, ``s0 * 2**l`` with ``s0`` the power of two
            nearest to image / finest map (FPN levels are consecutive); None without an image size.
        image ((H, W) | None): the image size given.
        from_image (bool): every level is ``floor`` or ``ceil`` of image / stride on both axes: the maps were
            computed from this image, unpadded (ceil: torchvision's and detectron2's ResNets).
        too_small (list[(level, axis, cells, expected)]): levels whose map is smaller than ``floor(image /
            stride)`` on an axis (``"y"`` or ``"x"``): they do not cover the image.
        breaks (list[(level, axis, cells, coarser_cells)]): consecutive levels where the finer map is not
            exactly twice the coarser, finest pair first.
    """

    sizes: list[tuple[int, int]]
    strides: list[int] | None
    image: tuple[float, float] | None
    from_image: bool
    too_small: list[tuple[int, str, int, int]]
    breaks: list[tuple[int, str, int, int]]

    @property
    def not_divisible(self) -> bool:
        """The image (the maps' own) is not a multiple of the coarsest stride."""
        if not self.from_image or self.strides is None or self.image is None:
            return False
        s = self.strides[-1]
        return self.image[0] % s != 0 or self.image[1] % s != 0


def pyramid_geo(ctx: Context) -> PyramidGeo | None:
    """The pyramid geometry of the call, or None when no (readable) ``pyramid`` was given."""
    if ctx.pyramid is None:
        return None
    return ctx.cached("pyramid", lambda: _pyramid_geo(ctx.pyramid, ctx.image))


def _pyramid_geo(sizes: list[tuple[int, int]], image: tuple[float, float] | None) -> PyramidGeo:
    breaks = [
        (level, axis, fine, coarse)
        for level in range(len(sizes) - 1)
        for axis, fine, coarse in (("y", sizes[level][0], sizes[level + 1][0]), ("x", sizes[level][1],
                                                                                 sizes[level + 1][1]))
        if fine != 2 * coarse
    ]  # fmt: skip
    if image is None:
        return PyramidGeo(sizes, None, None, False, [], breaks)
    Hi, Wi = image
    ratio = Wi / sizes[0][1] if Wi >= Hi else Hi / sizes[0][0]  # the longer side, as infer_scales
    s0 = 2 ** max(0, round(math.log2(ratio))) if ratio > 0 else 1
    strides = [s0 * 2**level for level in range(len(sizes))]
    from_image, too_small = True, []
    for level, ((h, w), s) in enumerate(zip(sizes, strides, strict=True)):
        for axis, cells, px in (("y", h, Hi), ("x", w, Wi)):
            low, high = math.floor(px / s), math.ceil(px / s)
            from_image &= cells in (low, high)
            if cells < low:
                too_small.append((level, axis, cells, low))
    return PyramidGeo(sizes, strides, image, from_image, too_small, breaks)
