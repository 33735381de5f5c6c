"""Box formats, coordinate spaces, and box files (COCO, Pascal VOC, YOLO, plain JSON).

Every box that reaches ROIAlign or CropAndResize is four numbers whose meaning depends on two choices:
the *format* (which four numbers) and the *space* (which unit). This module names both, converts
between any two, builds the inputs the ops want, and reads and writes the common box files.

Convention:
    Image pixels are continuous coordinates: pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``, so
    a box ``(0, 0, W, H)`` covers the whole ``H x W`` image, and ``x2 - x1`` is the width (ends are
    exclusive, no ``+ 1``). The spaces scale that same continuous coordinate:

    - ``image``: image pixels.
    - ``feature``: image pixels / stride (what ``roi_align(..., spatial_scale=1)`` expects when the
      boxes were divided by the stride beforehand).
    - ``normalized``: ``x / W``, ``y / H`` (YOLO, most of PyTorch land).
    - ``normalized_minus_one``: ``x / (W - 1)``, ``y / (H - 1)``: what ``tf.image.crop_and_resize``
      samples at (it maps ``y`` to ``y * (H - 1)``); Matterport Mask R-CNN normalizes like this.

    Formats: ``xyxy`` (x1, y1, x2, y2), ``yxyx`` (y1, x1, y2, x2: TensorFlow), ``xywh`` (x1, y1, w, h:
    COCO), ``cxcywh`` (centre x, centre y, w, h: YOLO, DETR).
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor

from roi_lab._io import FileRefused, loads_json, read_bounded
from roi_lab._limits import MAX_BOX_FILE_BYTES, MAX_BOXES
from roi_lab.errors import BoxFileError, InputValueError, ShapeError, clip, describe

__all__ = [
    "BoxFormat",
    "BoxSpace",
    "LabeledBoxes",
    "convert_boxes",
    "as_boxes",
    "to_rois",
    "to_tf_boxes",
    "read_boxes",
    "write_boxes",
]


class BoxFormat(str, Enum):
    """Which four numbers a box row holds."""

    XYXY = "xyxy"
    YXYX = "yxyx"
    XYWH = "xywh"
    CXCYWH = "cxcywh"


class BoxSpace(str, Enum):
    """Which unit the four numbers are in (see the module's Convention)."""

    IMAGE = "image"
    FEATURE = "feature"
    NORMALIZED = "normalized"
    NORMALIZED_MINUS_ONE = "normalized_minus_one"


class LabeledBoxes(NamedTuple):
    """Boxes read from a file: ``boxes_image`` Tensor[K, 4] xyxy image px (float32) and one label each."""

    boxes_image: Tensor
    labels: list[str]


DEFAULT_LABEL = "object"


# ----------------------------------------------------------------------------------------------
# API-edge normalisation
# ----------------------------------------------------------------------------------------------


_E = TypeVar("_E", bound=Enum)


def _enum(value: Any, enum: type[_E], where: str, name: str) -> _E:
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        try:
            return enum(value.strip().lower())
        except ValueError:
            pass
    choices = ", ".join(repr(m.value) for m in enum)
    raise InputValueError(
        f"{where}({name}=...)",
        expected=f"one of {choices} (or {enum.__name__}.<NAME>)",
        got=describe(value),
        fix=f"pass e.g. {name}={next(iter(enum)).value!r}",
    )


def _size_pair(size: Any, where: str, name: str, *, integer: bool = True) -> tuple[Any, Any]:
    """A positive number or an (h, w) pair of them, as two ints (``integer``) or two floats."""
    if isinstance(size, Tensor):
        size = size.tolist()
    if isinstance(size, numbers.Real) and not isinstance(size, bool):
        size = (size, size)
    ok = isinstance(size, (tuple, list)) and len(size) == 2
    if ok:
        for v in size:
            try:
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
                    ok = False
                elif integer and float(v) != int(v):  # type: ignore[call-overload]  # a numbers.Real has __int__
                    ok = False
            except OverflowError:  # an int beyond float range (e.g. 10**400 from a JSON file)
                ok = False
    if not ok:
        kind = "positive integers" if integer else "positive numbers"
        raise InputValueError(
            f"{where}({name}=...)",
            expected=f"a positive number or an (height, width) pair of {kind}",
            got=describe(size),
            fix={
                "image_size": "pass image_size=(800, 1000) (height first)",
                "feature_size": "pass feature_size=features.shape[-2:]",
            }.get(name, f"pass e.g. {name}=16"),
        )
    return (int(size[0]), int(size[1])) if integer else (float(size[0]), float(size[1]))


def as_boxes(boxes: Any, where: str = "convert_boxes", name: str = "boxes") -> Tensor:
    """Turn a Tensor, ndarray or nested list into a floating Tensor[K, 4], with clear errors.

    float64 stays float64; every other dtype becomes float32. A tensor keeps its device.

    Example:
        >>> as_boxes([[0, 0, 10, 20]])
        tensor([[ 0.,  0., 10., 20.]])
    """
    if isinstance(boxes, (str, bytes)):
        raise ShapeError(
            f"{where}({name}=...)",
            expected="boxes as a Tensor[K, 4], an array or a nested list of numbers",
            got=describe(boxes),
            fix="read box files with roi_lab.read_boxes(path); pass numbers here, e.g. [[10, 20, 110, 220]]",
        )
    if isinstance(boxes, Tensor):
        t = boxes
    elif isinstance(boxes, np.ndarray):
        if boxes.dtype.kind not in "biuf":
            raise ShapeError(
                f"{where}({name}=...)",
                expected="a numeric array",
                got=describe(boxes),
                fix="convert it first, e.g. np.asarray(boxes, dtype=np.float32)",
            )
        t = torch.from_numpy(np.ascontiguousarray(boxes))
    elif isinstance(boxes, (list, tuple)):
        if len(boxes) and all(isinstance(b, Tensor) for b in boxes):
            raise ShapeError(
                f"{where}({name}=...)",
                expected="one Tensor[K, 4]",
                got=describe(boxes),
                fix="concatenate the per-image boxes first, e.g. torch.cat(boxes), or convert each one",
            )
        rows = list(boxes)
        for i, row in enumerate(rows):
            if isinstance(row, Tensor):
                row = row.tolist()
            if not isinstance(row, (list, tuple, np.ndarray)) or len(row) != 4:
                got = f"row {i} = {row!r}" if not isinstance(row, (list, tuple)) else f"row {i} with {len(row)} values"
                raise ShapeError(
                    f"{where}({name}=...)",
                    expected="a list of rows with 4 numbers each",
                    got=got,
                    fix="give every box exactly four numbers, e.g. [[x1, y1, x2, y2], ...]; "
                    "wrap a single box in a list: [[10, 20, 110, 220]]",
                )
            for j, v in enumerate(row):
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                    raise ShapeError(
                        f"{where}({name}=...)",
                        expected="numbers",
                        got=f"{describe(v)} at row {i}, column {j}",
                        fix="convert the values to numbers first, e.g. float(v)",
                    )
        t = torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float32).reshape(-1, 4)
    else:
        raise ShapeError(
            f"{where}({name}=...)",
            expected="boxes as a Tensor[K, 4], an array or a nested list of numbers",
            got=describe(boxes),
            fix="pass e.g. torch.tensor([[10., 20., 110., 220.]])",
        )
    if t.dim() != 2 or t.shape[1] != 4:
        fix = "pass Tensor[K, 4]"
        if t.dim() == 1 and t.numel() == 4:
            fix = f"add the box dimension: {name}[None]"
        elif t.dim() == 2 and t.shape[1] == 5:
            fix = f"drop the batch-index column: {name}[:, 1:]"
        raise ShapeError(f"{where}({name}=...)", expected="boxes as Tensor[K, 4]", got=describe(t), fix=fix)
    if t.dtype == torch.bool or t.is_complex():
        raise ShapeError(f"{where}({name}=...)", expected="real-valued boxes", got=describe(t), fix=f"{name}.float()")
    t = t if t.dtype == torch.float64 else t.float()
    if t.numel() and not bool(torch.isfinite(t).all()):
        bad = ~torch.isfinite(t)
        row = int(bad.any(1).nonzero()[0, 0])
        raise InputValueError(
            f"{where}({name}=...)",
            expected="finite coordinates",
            got=f"{int(bad.sum())} NaN/inf values, the first in row {row}: {t[row].tolist()}",
            fix=f"drop or repair those rows first, e.g. {name} = {name}[torch.isfinite({name}).all(1)]",
        )
    return t


# ----------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------


def _to_xyxy(b: Tensor, fmt: BoxFormat) -> Tensor:
    if fmt is BoxFormat.XYXY:
        return b.clone()
    if fmt is BoxFormat.YXYX:
        return b[:, [1, 0, 3, 2]]
    if fmt is BoxFormat.XYWH:
        return torch.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1)
    cx, cy, w, h = b.unbind(1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def _from_xyxy(b: Tensor, fmt: BoxFormat) -> Tensor:
    if fmt is BoxFormat.XYXY:
        return b
    if fmt is BoxFormat.YXYX:
        return b[:, [1, 0, 3, 2]]
    x1, y1, x2, y2 = b.unbind(1)
    if fmt is BoxFormat.XYWH:
        return torch.stack([x1, y1, x2 - x1, y2 - y1], 1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1)


def _space_unit(space: BoxSpace, image_size: Any, stride: Any, role: str) -> tuple[float, float]:
    """Image pixels per unit of ``space`` along (y, x)."""
    if space is BoxSpace.IMAGE:
        return 1.0, 1.0
    if space is BoxSpace.FEATURE:
        if stride is None:
            raise InputValueError(
                "convert_boxes(stride=...)",
                expected=f"a stride to convert {role} feature-pixel boxes",
                got="stride=None",
                fix="pass stride=16 (or (sy, sx)): feature px = image px / stride",
            )
        return _size_pair(stride, "convert_boxes", "stride", integer=False)
    if image_size is None:
        raise InputValueError(
            "convert_boxes(image_size=...)",
            expected=f"image_size=(H, W) to convert {role} {space.value} boxes",
            got="image_size=None",
            fix="pass image_size=(height, width) of the image the boxes belong to",
        )
    h, w = _size_pair(image_size, "convert_boxes", "image_size")
    if space is BoxSpace.NORMALIZED:
        return float(h), float(w)
    if h < 2 or w < 2:
        raise InputValueError(
            "convert_boxes(image_size=...)",
            expected="height and width of at least 2 for normalized_minus_one (it divides by size - 1)",
            got=f"image_size=({h}, {w})",
            fix="use space='normalized' for 1-pixel images",
        )
    return float(h - 1), float(w - 1)


def convert_boxes(
    boxes: Any,
    *,
    src_format: BoxFormat | str = "xyxy",
    dst_format: BoxFormat | str = "xyxy",
    src_space: BoxSpace | str = "image",
    dst_space: BoxSpace | str = "image",
    image_size: tuple[int, int] | None = None,
    stride: float | tuple[float, float] | None = None,
) -> Tensor:
    """Convert boxes between any two formats and spaces.

    Args:
        boxes (Tensor[K, 4] | ndarray | list): boxes in ``src_format`` / ``src_space``.
        src_format, dst_format (BoxFormat | str): ``"xyxy"``, ``"yxyx"``, ``"xywh"`` or ``"cxcywh"``.
        src_space, dst_space (BoxSpace | str): ``"image"``, ``"feature"``, ``"normalized"`` or
            ``"normalized_minus_one"``.
        image_size ((H, W) | None): needed by the normalized spaces.
        stride (float | (sy, sx) | None): needed by the feature space.

    Returns:
        Tensor[K, 4]: float32 (float64 if the input was), on the input tensor's device.

    Convention:
        Continuous coordinates, exclusive ends (see the module docstring); a space change scales
        x and y, nothing is shifted by half a pixel here (ROIAlign's ``aligned`` shift is the op's
        business, see :mod:`roi_lab.geometry`).

    Example:
        >>> convert_boxes([[10, 20, 50, 60]], dst_format="cxcywh", dst_space="normalized", image_size=(100, 200))
        tensor([[0.1500, 0.4000, 0.2000, 0.4000]])
        >>> convert_boxes([[32, 16, 64, 48]], dst_space="feature", stride=16)
        tensor([[2., 1., 4., 3.]])
    """
    src_format = _enum(src_format, BoxFormat, "convert_boxes", "src_format")
    dst_format = _enum(dst_format, BoxFormat, "convert_boxes", "dst_format")
    src_space = _enum(src_space, BoxSpace, "convert_boxes", "src_space")
    dst_space = _enum(dst_space, BoxSpace, "convert_boxes", "dst_space")
    b = as_boxes(boxes)
    xyxy = _to_xyxy(b, src_format)
    if src_space is not dst_space:
        sy, sx = _space_unit(src_space, image_size, stride, "source")
        dy, dx = _space_unit(dst_space, image_size, stride, "destination")
        scale = torch.tensor([sx / dx, sy / dy, sx / dx, sy / dy], dtype=torch.float64, device=b.device)
        xyxy = (xyxy.double() * scale).to(b.dtype)
    return _from_xyxy(xyxy, dst_format).contiguous()


def to_rois(boxes: Tensor | Sequence[Tensor], batch_index: int | Tensor = 0) -> Tensor:
    """Build torchvision's ``rois`` Tensor[K, 5] (batch_index, x1, y1, x2, y2).

    Args:
        boxes (Tensor[K, 4] | list[Tensor[L, 4]]): xyxy boxes; a list gives the boxes of image ``i``
            at position ``i`` (then ``batch_index`` must stay 0).
        batch_index (int | Tensor[K]): the image each box belongs to.

    Returns:
        Tensor[K, 5]: same dtype and device as the boxes.

    Example:
        >>> to_rois(torch.tensor([[1., 2., 3., 4.]]), batch_index=2)
        tensor([[2., 1., 2., 3., 4.]])
        >>> to_rois([torch.zeros(1, 4), torch.ones(1, 4)])[:, 0]
        tensor([0., 1.])
    """
    if isinstance(boxes, (list, tuple)) and all(isinstance(b, Tensor) for b in boxes):
        if not (isinstance(batch_index, int) and batch_index == 0):
            raise InputValueError(
                "to_rois(batch_index=...)",
                expected="the default batch_index=0 when boxes is a per-image list (the position is the index)",
                got=describe(batch_index),
                fix="pass either a list of per-image boxes, or one Tensor[K, 4] with batch_index",
            )
        parts = [as_boxes(b, "to_rois", f"boxes[{i}]") for i, b in enumerate(boxes)]
        if not parts:
            return torch.zeros(0, 5)
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in parts) else torch.float32
        return torch.cat(
            [
                torch.cat([torch.full((len(p), 1), float(i), dtype=dtype, device=p.device), p.to(dtype)], 1)
                for i, p in enumerate(parts)
            ]
        )
    b = as_boxes(boxes, "to_rois")
    if isinstance(batch_index, Tensor):
        if batch_index.dim() != 1 or len(batch_index) != len(b):
            raise ShapeError(
                "to_rois(batch_index=...)",
                expected=f"an int or a Tensor[{len(b)}] (one image index per box)",
                got=describe(batch_index),
                fix="pass batch_index=0 for a single image, or one index per box",
            )
        idx = batch_index.to(device=b.device, dtype=b.dtype)[:, None]
    elif isinstance(batch_index, (int, np.integer)) and not isinstance(batch_index, bool) and batch_index >= 0:
        idx = torch.full((len(b), 1), float(batch_index), dtype=b.dtype, device=b.device)
    else:
        raise InputValueError(
            "to_rois(batch_index=...)",
            expected="a non-negative int or a Tensor[K]",
            got=describe(batch_index),
            fix="pass batch_index=0 for the first image of the batch",
        )
    return torch.cat([idx, b], 1)


def to_tf_boxes(
    boxes_image: Any, image_size: tuple[int, int], box_indices: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Build ``tf.image.crop_and_resize``'s ``(boxes, box_indices)`` from xyxy image-pixel boxes.

    Args:
        boxes_image (Tensor[K, 4]): xyxy boxes in image pixels.
        image_size ((H, W)): the image the boxes belong to.
        box_indices (Tensor[K] | None): image index per box; default all zeros.

    Returns:
        (Tensor[K, 4], Tensor[K]): ``boxes_norm`` as (y1, x1, y2, x2) / (size - 1) and int32 indices.

    Convention:
        crop_and_resize samples row ``y_norm * (H - 1)``, so dividing by ``size - 1`` puts the first
        and last samples exactly at the given coordinates (corner-aligned; no half-pixel shift).

    Example:
        >>> to_tf_boxes(torch.tensor([[0., 0., 100., 50.]]), (51, 101))
        (tensor([[0., 0., 1., 1.]]), tensor([0], dtype=torch.int32))
    """
    b = as_boxes(boxes_image, "to_tf_boxes", "boxes_image")
    boxes_norm = convert_boxes(b, dst_format="yxyx", dst_space="normalized_minus_one", image_size=image_size)
    if box_indices is None:
        idx = torch.zeros(len(b), dtype=torch.int32, device=b.device)
    else:
        idx = torch.as_tensor(box_indices, device=b.device).to(torch.int32).reshape(-1)
        if len(idx) != len(b):
            raise ShapeError(
                "to_tf_boxes(box_indices=...)",
                expected=f"one index per box, Tensor[{len(b)}]",
                got=describe(box_indices),
                fix="pass None for a single image, or torch.zeros(K, dtype=torch.int32)",
            )
    return boxes_norm, idx


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------

_FILE_FORMATS = ("coco", "voc", "yolo", "json")


def _num(v: float) -> str:
    """Shortest text that reads back to the same float32/float64 value."""
    s = repr(float(v))
    return s[:-2] if s.endswith(".0") else s


def _file_error(where: str, expected: str, got: str, fix: str) -> BoxFileError:
    return BoxFileError(f"read_boxes ({where})", expected=expected, got=got, fix=fix)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite_number(v: Any, where: str, fix: str, *, text: bool = False) -> float:
    """``v`` as a float that float32 holds (boxes are returned as float32), or a BoxFileError."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        if isinstance(v, str) and text:
            try:
                v = float(v)
            except ValueError:
                raise _file_error(where, "a number", describe(v), fix) from None
        else:
            raise _file_error(where, "a number", describe(v), fix)
    try:
        x = float(v)
    except OverflowError:  # an int of hundreds of digits
        x = math.inf
    if not math.isfinite(x):
        raise _file_error(where, "a finite number", describe(v), fix)
    if abs(x) > _FLOAT32_MAX:
        raise _file_error(where, f"a number within float32 range (|v| <= {_FLOAT32_MAX:.4g})", describe(v), fix)
    return x


def _check_count(n: int, where: str) -> None:
    if n > MAX_BOXES:
        raise _file_error(where, f"at most {MAX_BOXES:,} boxes (one image's boxes)", f"more than {MAX_BOXES:,}",
                          "split the file per image")


def _label(v: Any, where: str) -> str:
    if v is None:
        return DEFAULT_LABEL
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and (not isinstance(v, int) or v.bit_length() < 64):
        return str(v)
    raise _file_error(where, "a label as text (or a number)", describe(v), 'write labels as strings, e.g. "cat"')


def _is_file(text: str) -> bool:
    """Path(text).is_file(), False for text that cannot be a path (too long a name, a NUL byte)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def _load_source(source: Any) -> tuple[Any, str]:
    """Return (parsed JSON object or text, origin) from a path, text, bytes, dict or list."""
    if isinstance(source, (dict, list)):
        return source, "object"
    if (
        isinstance(source, str)
        and "\n" not in source
        and len(source) < 4096
        and re.search(r"\.(json|xml|txt)\s*$", source, re.IGNORECASE)
        and not _is_file(source.strip())
    ):
        raise BoxFileError(
            "read_boxes(source=...)",
            expected="an existing box file (or the file's text)",
            got=f"{describe(source)}, which is not a file",
            fix="check the path and the working directory",
        )
    if isinstance(source, Path) or (
        isinstance(source, str)
        and "\n" not in source
        and not source.lstrip().startswith(("{", "[", "<"))
        and len(source) < 4096
        and _is_file(source)
    ):
        try:
            source = read_bounded(source, limit=MAX_BOX_FILE_BYTES, what="box file", where="read_boxes(source=...)")
        except FileRefused as e:
            raise BoxFileError(e.where, expected=e.expected, got=e.got, fix=e.fix) from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = bytes(source)
    if isinstance(source, (bytes, str)) and len(source) > MAX_BOX_FILE_BYTES:
        raise BoxFileError(
            "read_boxes(source=...)",
            expected=f"a box file of at most {MAX_BOX_FILE_BYTES / 2**20:.1f} MiB",
            got=f"{len(source):,} {'bytes' if isinstance(source, bytes) else 'characters'}",
            fix="keep one image's boxes in the file (e.g. extract its COCO annotations with pycocotools or jq)",
        )
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise BoxFileError(
                "read_boxes(source=...)",
                expected="UTF-8 text (COCO/JSON, VOC XML or YOLO txt)",
                got=f"bytes that are not UTF-8 (at byte {e.start})",
                fix="save the file as UTF-8 text",
            ) from None
    if isinstance(source, str):
        return source, "text"
    raise BoxFileError(
        "read_boxes(source=...)",
        expected="a path, the file's text or bytes, a COCO/JSON dict, or a list of COCO annotations",
        got=describe(source),
        fix="pass e.g. read_boxes('boxes.json') or read_boxes(Path('labels/img.txt'), image_size=(H, W))",
    )


def _detect(obj: Any) -> str:
    if isinstance(obj, dict):
        return "coco" if "annotations" in obj else "json"
    if isinstance(obj, list):
        return "coco"
    text = obj.lstrip()
    if text.startswith("<"):
        return "voc"
    if text.startswith(("{", "[")):
        return "json-text"
    return "yolo"


def read_boxes(
    source: str | bytes | Path | dict | list,
    fmt: str = "auto",
    image_size: tuple[int, int] | None = None,
    *,
    image_id: Any = None,
) -> LabeledBoxes:
    """Read boxes from a COCO, Pascal VOC, YOLO or plain JSON box file.

    Args:
        source (str | bytes | Path | dict | list): a path, the file's text or bytes, a parsed COCO or
            plain-JSON dict, or a bare list of COCO annotations.
        fmt (str): ``"auto"`` (default: JSON with ``annotations`` or a list is COCO, other JSON is the
            plain format, XML is VOC, anything else YOLO), ``"coco"``, ``"voc"``, ``"yolo"``, ``"json"``.
        image_size ((H, W) | None): needed by YOLO (normalized) and by plain JSON in a normalized space.
        image_id: COCO only: the image whose annotations to read (matched against ``id`` or
            ``file_name``); default the first image of ``images`` (or of the annotations).

    Returns:
        LabeledBoxes: ``boxes_image`` Tensor[K, 4] xyxy image px float32, and ``labels`` (COCO category
        names, VOC object names, YOLO class ids as text; ``"object"`` when a file has none).

    Raises:
        BoxFileError: a malformed file, naming the line / field, what was expected and how to fix it.

    Convention:
        COCO ``bbox`` is [x, y, w, h] in image pixels; VOC ``bndbox`` is xmin/ymin/xmax/ymax in image
        pixels, taken as-is (Pascal VOC's own files are 1-based; detectron2's loader subtracts 1 from
        xmin and ymin, torchvision's does not); YOLO lines are ``class cx cy w h`` normalized by W and H
        (an optional sixth value, a confidence, is ignored).

    Example:
        >>> read_boxes("0 0.5 0.5 0.5 0.5", image_size=(100, 200))
        LabeledBoxes(boxes_image=tensor([[ 50.,  25., 150.,  75.]]), labels=['0'])
    """
    if fmt not in ("auto", *_FILE_FORMATS):
        raise InputValueError(
            "read_boxes(fmt=...)",
            expected="'auto', 'coco', 'voc', 'yolo' or 'json'",
            got=describe(fmt),
            fix="pass fmt='auto' to detect it from the content",
        )
    obj, _ = _load_source(source)
    if fmt == "auto" and isinstance(obj, str) and not obj.strip():
        raise _file_error(
            "auto",
            "a COCO / plain JSON, Pascal VOC XML or YOLO txt box file",
            "an empty file" if not obj else "a file of only whitespace",
            "pick a box file with boxes; an empty YOLO label file (an image without objects) reads as zero boxes "
            "with fmt='yolo'",
        )
    kind = _detect(obj) if fmt == "auto" else fmt
    if kind == "json-text" or (isinstance(obj, str) and kind in ("coco", "json")):
        obj = _parse_json(obj)
        if kind == "json-text":
            kind = _detect(obj)
    if kind == "coco":
        return _read_coco(obj, image_id)
    if kind == "json":
        return _read_plain_json(obj, image_size)
    if not isinstance(obj, str):
        raise _file_error(
            f"{kind}", f"{kind.upper()} text", describe(obj), "pass the file's path or text, or use fmt='auto'"
        )
    if kind == "voc":
        return _read_voc(obj)
    return _read_yolo(obj, image_size)


def _parse_json(text: str) -> Any:
    try:
        return loads_json(text)
    except json.JSONDecodeError as e:
        raise _file_error(
            f"JSON line {e.lineno}, column {e.colno}",
            "valid JSON",
            e.msg,
            "fix the JSON syntax (a trailing comma or a missing quote is typical)",
        ) from None
    except RecursionError:
        raise _file_error("json", "JSON nested at most a few hundred levels deep", "deeper nesting",
                          "box files nest 3 or 4 levels: check how the file was written") from None
    except ValueError:  # json refuses integers of more than 4300 digits (sys.get_int_max_str_digits())
        raise _file_error("json", "numbers of ordinary size", "an integer of thousands of digits",
                          "write coordinates as plain numbers in pixels") from None


def _hashable_id(v: Any, where: str, fix: str) -> Any:
    """A COCO id: an int or a string (JSON gives nothing else hashable that means an id)."""
    if v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise _file_error(where, "an integer id (or a string)", describe(v), fix)


def _read_coco(obj: Any, image_id: Any) -> LabeledBoxes:
    fix_shape = 'COCO is {"images": [...], "annotations": [{"image_id": 1, "bbox": [x, y, w, h], ...}], ...}'
    if isinstance(obj, list):
        anns, images, cats = obj, [], []  # type: list[Any], list[Any], list[Any]
    elif isinstance(obj, dict) and isinstance(obj.get("annotations"), list):
        anns, images, cats = obj["annotations"], obj.get("images") or [], obj.get("categories") or []
    else:
        raise _file_error(
            "coco", "a dict with an 'annotations' list, or a list of annotations", describe(obj), fix_shape
        )
    for key, value in (("images", images), ("categories", cats)):
        if not isinstance(value, list):
            raise _file_error(f"coco field '{key}'", f"a list of {key} dicts", describe(value), fix_shape)
    names: dict[Any, str] = {}
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or "id" not in c:
            raise _file_error(f"coco categories[{i}]", "a dict with 'id' and 'name'", describe(c), fix_shape)
        cid = _hashable_id(c["id"], f"coco categories[{i}].id", fix_shape)
        name = c.get("name")
        names[cid] = _label(cid if name is None else name, f"coco categories[{i}].name")
    wanted = None
    if image_id is not None:
        for img in images:
            if isinstance(img, dict) and image_id in (img.get("id"), img.get("file_name")):
                wanted = img.get("id")
                break
        else:
            wanted = image_id
    elif images:
        if not isinstance(images[0], dict) or "id" not in images[0]:
            raise _file_error("coco images[0]", "a dict with an 'id'", describe(images[0]), fix_shape)
        wanted = images[0]["id"]
    elif anns and isinstance(anns[0], dict):
        wanted = anns[0].get("image_id")
    boxes: list[list[float]] = []
    labels: list[str] = []
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise _file_error(f"coco annotations[{i}]", "a dict with a 'bbox'", describe(a), fix_shape)
        if wanted is not None and a.get("image_id", wanted) != wanted:
            continue
        _check_count(len(boxes) + 1, "coco")
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise _file_error(
                f"coco annotations[{i}].bbox",
                "a list of 4 numbers [x, y, width, height] in image pixels",
                describe(bbox),
                "write bbox as [x_min, y_min, width, height]",
            )
        x, y, w, h = (
            _finite_number(v, f"coco annotations[{i}].bbox[{j}]", "write bbox as 4 finite numbers [x, y, w, h]")
            for j, v in enumerate(bbox)
        )
        if w < 0 or h < 0:
            raise _file_error(
                f"coco annotations[{i}].bbox",
                "a non-negative width and height (COCO bbox is [x, y, width, height], not xyxy)",
                describe(bbox),
                "convert xyxy first: [x1, y1, x2 - x1, y2 - y1]",
            )
        if not (abs(x + w) <= _FLOAT32_MAX and abs(y + h) <= _FLOAT32_MAX):
            raise _file_error(f"coco annotations[{i}].bbox", "x + width and y + height within float32 range",
                              describe(bbox), "write bbox as [x_min, y_min, width, height] in pixels")
        boxes.append([x, y, x + w, y + h])
        cid = _hashable_id(a.get("category_id"), f"coco annotations[{i}].category_id", fix_shape)
        labels.append(names.get(cid, DEFAULT_LABEL if cid is None else str(cid)))
    if image_id is not None and not boxes and anns:
        raise _file_error(
            "coco image_id",
            "an image id or file_name that has annotations",
            describe(image_id),
            "pick one of the ids in 'images', or leave image_id=None for the first image",
        )
    return LabeledBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), labels)


def _read_plain_json(obj: Any, image_size: Any) -> LabeledBoxes:
    fix = 'write {"format": "xyxy", "space": "image", "boxes": [[x1, y1, x2, y2], ...], "labels": ["cat", ...]}'
    if not isinstance(obj, dict) or not isinstance(obj.get("boxes"), list):
        raise _file_error("json", "a dict with a 'boxes' list", describe(obj), fix)
    for key in ("format", "space"):
        value = obj.get(key, "xyxy" if key == "format" else "image")
        enum = BoxFormat if key == "format" else BoxSpace
        if not isinstance(value, str) or value.lower() not in {m.value for m in enum}:
            raise _file_error(
                f"json field '{key}'", "one of " + ", ".join(repr(m.value) for m in enum), describe(value), fix
            )
    rows = obj["boxes"]
    _check_count(len(rows), "json boxes")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 4:
            raise _file_error(f"json boxes[{i}]", "a list of 4 numbers", describe(row), fix)
        for j, v in enumerate(row):
            _finite_number(v, f"json boxes[{i}][{j}]", "write finite numbers (no NaN, Infinity or text)")
    labels = obj.get("labels")
    if labels is None:
        labels = [DEFAULT_LABEL] * len(rows)
    if not isinstance(labels, list) or len(labels) != len(rows):
        raise _file_error(
            "json field 'labels'",
            f"a list of {len(rows)} labels, one per box",
            describe(labels),
            "give one label per box, or leave 'labels' out",
        )
    labels = [_label(v, f"json labels[{i}]") for i, v in enumerate(labels)]
    size = image_size if image_size is not None else obj.get("image_size")
    try:
        boxes = convert_boxes(
            [[float(v) for v in r] for r in rows],
            src_format=obj.get("format", "xyxy"),
            src_space=obj.get("space", "image"),
            image_size=size,
            stride=obj.get("stride"),
        )
    except InputValueError as e:
        raise _file_error("json", e.expected, e.got, e.fix + " (or add it to the file)") from None
    if boxes.numel() and not bool(torch.isfinite(boxes.float()).all()):  # e.g. normalized 3e38 times the width
        raise _file_error("json boxes", "boxes that stay within float32 range in image pixels",
                          "coordinates that overflow once converted", fix)
    return LabeledBoxes(boxes.float(), labels)


def _read_voc(text: str) -> LabeledBoxes:
    import xml.etree.ElementTree as ET

    if re.search(r"<!\s*(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise _file_error(
            "voc",
            "plain Pascal VOC XML without a DOCTYPE or ENTITY declaration (refused: entity-expansion attacks)",
            "a document with <!DOCTYPE or <!ENTITY",
            "remove the DOCTYPE/ENTITY lines; VOC annotations never need them",
        )
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        line, col = e.position
        raise _file_error(f"voc line {line}, column {col}", "well-formed XML", str(e), "fix the XML syntax") from None
    fix = "each <object> needs <name> and <bndbox><xmin/><ymin/><xmax/><ymax/></bndbox> in pixels"
    if root.tag != "annotation":
        raise _file_error(
            "voc",
            "a Pascal VOC document (<annotation> with <object> elements), or a COCO / plain JSON or YOLO txt file",
            f"an XML document whose root element is <{clip(root.tag, 60)}>"
            + (" (an SVG image?)" if root.tag.endswith("svg") else ""),
            "pick the box file (.xml from LabelImg / CVAT 'Pascal VOC' export, .json or .txt)",
        )
    boxes, labels = [], []
    for i, obj in enumerate(root.iter("object")):
        _check_count(i + 1, "voc")
        bb = obj.find("bndbox")
        if bb is None:
            raise _file_error(f"voc object {i}", "a <bndbox> element", "none", fix)
        row = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            el = bb.find(tag)
            if el is None or el.text is None:
                raise _file_error(f"voc object {i} <{tag}>", f"a <{tag}> number", "missing", fix)
            row.append(_finite_number(el.text.strip(), f"voc object {i} <{tag}>", fix, text=True))
        if row[2] < row[0] or row[3] < row[1]:
            raise _file_error(
                f"voc object {i}", "xmax >= xmin and ymax >= ymin", f"bndbox {row}", "swap the inverted coordinates"
            )
        name = obj.findtext("name")
        labels.append(name.strip() if name and name.strip() else DEFAULT_LABEL)
        boxes.append(row)
    return LabeledBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), labels)


_YOLO_CLASS = r"[0-9]{1,18}"  # a class id: ASCII digits that fit an int64
_YOLO_TOLERANCE = 1e-6  # how far past [0, 1] a normalized YOLO value may be (rounding in other writers)
# what a VOC name cannot carry and read back: C0 controls (XML 1.0 forbids them; a carriage return is read back
# as a newline), lone surrogates (not encodable) and the non-characters U+FFFE, U+FFFF
_XML_BAD = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]")


def _row_list(rows: Tensor, limit: int = 5) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return f"{len(rows)} box(es), rows {shown}{', ...' if len(rows) > limit else ''}"


def _check_round_trip(b: Tensor, fmt: str, labels: list[str], h: int, w: int) -> None:
    """Refuse what read_boxes would not read back as written (b: Tensor[K, 4] float64 xyxy image px)."""
    where = "write_boxes(boxes_image=...)"
    big = (b.abs() > _FLOAT32_MAX).any(1).nonzero()[:, 0]
    if len(big):
        raise InputValueError(where, expected="coordinates within float32 range (read_boxes returns float32)",
                              got=f"{_row_list(big)} beyond {_FLOAT32_MAX:.4g}", fix="drop or clip those boxes")
    if fmt in ("coco", "voc"):
        inverted = ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).nonzero()[:, 0]
        if len(inverted):
            raise InputValueError(
                where,
                expected=f"x2 >= x1 and y2 >= y1 for {fmt.upper()} (read_boxes refuses inverted boxes)",
                got=f"{_row_list(inverted)} inverted, the first {b[int(inverted[0])].tolist()}",
                fix="order the corners first: torch.cat([b[:, :2].minimum(b[:, 2:]), b[:, :2].maximum(b[:, 2:])], 1)",
            )
    if fmt == "yolo":
        norm = convert_boxes(b, dst_format="cxcywh", dst_space="normalized", image_size=(h, w))
        out = ((norm < -_YOLO_TOLERANCE) | (norm > 1 + _YOLO_TOLERANCE)).any(1).nonzero()[:, 0]
        if len(out):
            row = int(out[0])
            raise InputValueError(
                where,
                expected="boxes whose YOLO centre and size lie in [0, 1] of the image (read_boxes refuses others)",
                got=f"{_row_list(out)}, the first {b[row].tolist()} -> cx, cy, w, h = "
                f"{[round(v, 4) for v in norm[row].tolist()]} for a {w} x {h} image",
                fix=f"clip the boxes to the image first: boxes.clamp(min=0).minimum(torch.tensor([{w}, {h}, {w}, "
                f"{h}])), or export as json / coco, which keep any box",
            )
    if fmt == "voc":
        for i, name in enumerate(labels):
            if not name.strip() or name != name.strip() or _XML_BAD.search(name):
                raise InputValueError(
                    "write_boxes(labels=...)",
                    expected="VOC names that read back as written: not empty, no leading or trailing spaces, no "
                    "control characters",
                    got=f"labels[{i}] = {clip(repr(name), 80)}",
                    fix="clean the label first, e.g. label.strip(), or export as json / coco",
                )


def _read_yolo(text: str, image_size: Any) -> LabeledBoxes:
    if image_size is None:
        raise _file_error(
            "yolo",
            "image_size=(H, W): YOLO boxes are normalized",
            "image_size=None",
            "pass read_boxes(path, image_size=(height, width))",
        )
    h, w = _size_pair(image_size, "read_boxes", "image_size")
    fix = "each line is 'class cx cy w h' with cx, cy, w, h normalized to [0, 1] by the image width and height"
    rows: list[list[float]] = []
    labels: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (5, 6):
            raise _file_error(f"yolo line {n}", "5 fields 'class cx cy w h'",
                              f"{len(fields)} fields: {clip(line, 120)!r}", fix)
        if not re.fullmatch(_YOLO_CLASS, fields[0]):
            raise _file_error(f"yolo line {n}, field 'class'", "an integer class id", repr(clip(fields[0], 60)), fix)
        _check_count(len(rows) + 1, "yolo")
        vals = []
        for name, v in zip(("cx", "cy", "w", "h"), fields[1:5], strict=True):
            x = _finite_number(v, f"yolo line {n}, field '{name}'", fix, text=True)
            if not -_YOLO_TOLERANCE <= x <= 1 + _YOLO_TOLERANCE:
                raise _file_error(
                    f"yolo line {n}, field '{name}'",
                    "a normalized value in [0, 1]",
                    f"{clip(v, 60)} (pixels?)",
                    "divide by the image width (cx, w) and height (cy, h); " + fix,
                )
            vals.append(x)
        rows.append(vals)
        labels.append(fields[0])
    boxes = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
    boxes = convert_boxes(boxes, src_format="cxcywh", src_space="normalized", image_size=(h, w))
    return LabeledBoxes(boxes.float(), labels)


def write_boxes(
    boxes_image: Any,
    fmt: str = "json",
    *,
    image_size: tuple[int, int],
    labels: list[str] | None = None,
) -> str:
    """Write xyxy image-pixel boxes as a COCO, Pascal VOC, YOLO or plain JSON file's text.

    Args:
        boxes_image (Tensor[K, 4]): xyxy boxes in image pixels.
        fmt (str): ``"coco"``, ``"voc"``, ``"yolo"`` or ``"json"``.
        image_size ((H, W)): written into COCO/VOC/JSON, and used to normalize YOLO.
        labels (list[str] | None): one per box (default ``"object"``). YOLO writes integer-like labels
            as they are and numbers other names in order of first appearance (YOLO keeps names in a
            separate classes file).

    Returns:
        str: the file's text; :func:`read_boxes` reads it back to the same boxes (float32) and labels (YOLO:
        the class ids): what would not read back is refused here, not written.

    Raises:
        InputValueError: a coordinate beyond float32; for COCO and VOC an inverted box (x2 < x1 or y2 < y1); for
            YOLO a box whose normalized centre or size leaves [0, 1] (a centre outside the image, or inverted);
            for VOC a label that is empty, padded with spaces or holds characters XML cannot carry.

    Example:
        >>> print(write_boxes([[10, 20, 30, 60]], "yolo", image_size=(100, 100), labels=["3"]))
        3 0.2 0.4 0.2 0.4
    """
    if fmt not in _FILE_FORMATS:
        raise InputValueError(
            "write_boxes(fmt=...)",
            expected="'coco', 'voc', 'yolo' or 'json'",
            got=describe(fmt),
            fix="pass e.g. fmt='coco'",
        )
    b = as_boxes(boxes_image, "write_boxes", "boxes_image").double().cpu()
    h, w = _size_pair(image_size, "write_boxes", "image_size")
    if labels is None:
        labels = [DEFAULT_LABEL] * len(b)
    if len(labels) != len(b):
        raise InputValueError(
            "write_boxes(labels=...)",
            expected=f"{len(b)} labels, one per box",
            got=describe(labels),
            fix="pass one label per box, or labels=None",
        )
    labels = [str(v) for v in labels]
    rows = b.tolist()
    _check_round_trip(b, fmt, labels, h, w)
    if fmt == "json":
        return json.dumps(
            {"format": "xyxy", "space": "image", "image_size": [h, w], "boxes": rows, "labels": labels}, indent=1
        )
    if fmt == "coco":
        cat_ids: dict[str, int] = {}
        for name in labels:
            cat_ids.setdefault(name, len(cat_ids) + 1)
        anns = [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": cat_ids[name],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
            for i, ((x1, y1, x2, y2), name) in enumerate(zip(rows, labels, strict=True))
        ]
        coco = {
            "images": [{"id": 1, "width": w, "height": h, "file_name": "image"}],
            "annotations": anns,
            "categories": [{"id": cid, "name": name} for name, cid in cat_ids.items()],
        }
        return json.dumps(coco, indent=1)
    if fmt == "voc":
        from xml.sax.saxutils import escape

        parts = [
            "<annotation>",
            f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>",
        ]
        for (x1, y1, x2, y2), name in zip(rows, labels, strict=True):
            parts += [
                "  <object>",
                f"    <name>{escape(name)}</name>",
                f"    <bndbox><xmin>{_num(x1)}</xmin><ymin>{_num(y1)}</ymin>"
                f"<xmax>{_num(x2)}</xmax><ymax>{_num(y2)}</ymax></bndbox>",
                "  </object>",
            ]
        parts.append("</annotation>")
        return "\n".join(parts) + "\n"
    ids: dict[str, int] = {}
    for name in labels:
        if re.fullmatch(_YOLO_CLASS, name):
            ids[name] = int(name)
    for name in labels:
        if name not in ids:
            ids[name] = next(i for i in range(len(labels) + len(ids) + 1) if i not in ids.values())
    cxcywh = convert_boxes(b, dst_format="cxcywh")  # float64 image px
    norm = (cxcywh / torch.tensor([w, h, w, h], dtype=torch.float64)).tolist()
    return "\n".join(f"{ids[name]} " + " ".join(_num(v) for v in row) for row, name in zip(norm, labels, strict=True))
