"""The rois the box ops share: ``Tensor[K, 1 + B]`` rows (batch index first) or a list of ``Tensor[L, B]``.

``roi_align`` and ``roi_pool`` take ``B = 4`` (x1, y1, x2, y2), ``roi_align_rotated`` ``B = 5`` (cx, cy, w,
h, angle). The static checks (shapes, dtypes, devices) run in the wrappers and in the registered ops' fake
implementations; :func:`checked_rois` reads values and runs only in the real implementations (see
:mod:`roi_lab.ops._checks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from roi_lab.errors import InputValueError, ShapeError, describe
from roi_lab.ops._checks import check_finite, check_real_dtype, check_same_device

_REAL_BOXES = "real-valued boxes (floating or integer coordinates)"


@dataclass(frozen=True)
class RoiLayout:
    """What one box row holds: ``columns`` values after the batch index, named ``names``."""

    columns: int
    names: str  # "x1, y1, x2, y2"

    @property
    def row(self) -> str:
        return f"Tensor[K, {self.columns + 1}] (batch_index, {self.names})"

    @property
    def per_image(self) -> str:
        return f"Tensor[L, {self.columns}]"


XYXY = RoiLayout(4, "x1, y1, x2, y2")
ROTATED = RoiLayout(5, "cx, cy, w, h, angle")


def rois_from_boxes(input: Tensor, boxes: Tensor | list[Tensor], op: str, layout: RoiLayout = XYXY) -> Tensor:
    """Shape-check ``boxes`` and return them as rois ``Tensor[K, 1 + B]`` (values are checked by the op).

    A list becomes rows whose coordinates are ``b.to(input.dtype)`` (the cast torchvision requires)
    and whose batch index is exact: the rows are in float32 or wider, never in float16 / bfloat16
    (bfloat16 holds integers exactly only up to 256, float16 up to 2048).
    """
    n = input.shape[0]
    if not isinstance(boxes, (list, tuple)):
        check_rois_tensor(input, boxes, op, layout)
        return boxes.detach()
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != layout.columns:
            raise ShapeError(
                f"{op}(boxes=[...])",
                expected=f"a list with one {layout.per_image} ({layout.names}) per image",
                got=f"item {i} is {describe(b)}",
                fix=f"pass one [L, {layout.columns}] tensor per image, e.g. [boxes_img0, boxes_img1]; use "
                f"torch.zeros(0, {layout.columns}) for an image without boxes",
            )
        check_real_dtype(b, op, "boxes[...]", _REAL_BOXES)
    if len(boxes) > n:
        raise InputValueError(
            f"{op}(boxes=[...])",
            expected=f"at most N={n} tensors, one per image of input",
            got=describe(list(boxes)),
            fix="pass one tensor per image in the batch, in batch order",
        )
    for b in boxes:
        check_same_device(input, b, op, "input", "boxes")
    if not boxes:
        return input.new_zeros(0, layout.columns + 1)
    wide = torch.float64 if input.dtype == torch.float64 or n > 1 << 24 else torch.float32
    return torch.cat(
        [torch.cat([torch.full_like(b[:, :1], i, dtype=wide), b.detach().to(input.dtype).to(wide)], 1)
         for i, b in enumerate(boxes)]
    )  # fmt: skip


def check_rois_tensor(input: Tensor, rois: Tensor, op: str, layout: RoiLayout = XYXY) -> None:
    """``rois`` must be a real ``Tensor[K, 1 + B]`` on ``input``'s device."""
    cols = layout.columns + 1
    if not isinstance(rois, Tensor) or rois.dim() != 2 or rois.shape[1] != cols:
        k = rois.shape[0] if isinstance(rois, Tensor) and rois.dim() >= 1 else "K"
        fix = f"pass boxes as {layout.row} rows or a list of {layout.per_image}"
        if layout is XYXY:
            fix = "pass boxes as Tensor[K, 5] rows (batch_index, x1, y1, x2, y2) or a list of Tensor[L, 4]"
        if isinstance(rois, Tensor) and rois.dim() == 2 and rois.shape[1] == layout.columns:
            fix = f"add the batch-index column, e.g. torch.cat([torch.zeros({k}, 1), boxes], 1), or pass [boxes]"
        elif isinstance(rois, Tensor) and rois.dim() == 1 and rois.shape[0] in (layout.columns, cols):
            fix = "a single box needs a leading box dimension: boxes[None]" + (
                ", and a batch index: torch.cat([torch.zeros(1, 1), boxes[None]], 1), or pass [boxes[None]]"
                if rois.shape[0] == layout.columns
                else ""
            )
        raise ShapeError(
            f"{op}(boxes=...)",
            expected=f"boxes as {layout.row} or a list of {layout.per_image}",
            got=describe(rois),
            fix=fix,
        )
    check_real_dtype(rois, op, "boxes", _REAL_BOXES)
    check_same_device(input, rois, op, "input", "boxes")


def checked_rois(input: Tensor, rois: Tensor, op: str) -> tuple[Tensor, Tensor]:
    """Finite rows with an integer batch index in [0, N), checked in the rois' own dtype (which holds
    the index exactly); returns (batch Tensor[K] int64, boxes Tensor[K, B] in ``input.dtype``). A data check."""
    n = input.shape[0]
    check_finite(rois, op, "boxes")
    if rois.shape[0]:
        index = rois[:, 0]
        bad = (index < 0) | (index >= n)
        if rois.is_floating_point():
            bad |= index != index.round()
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            names = "x1, y1, x2, y2" if rois.shape[1] == 5 else "cx, cy, w, h, angle"
            raise InputValueError(
                f"{op}(boxes=...)",
                expected=f"batch indices in column 0 that are integers in [0, {n - 1}] (input has N={n})",
                got=f"{int(bad.sum())} bad rows, the first is row {row}: {rois[row].tolist()}",
                fix=f"column 0 is the image index in the batch, then {names}; check the column "
                "order and that each box points at an image of this batch",
            )
    boxes = rois[:, 1:].to(input.dtype)  # the cast torchvision requires; it can overflow half precision
    if boxes.numel() and not bool(torch.isfinite(boxes).all()):
        row = int((~torch.isfinite(boxes)).nonzero()[0, 0])
        limit = torch.finfo(input.dtype).max
        raise InputValueError(
            f"{op}(boxes=...)",
            expected=f"coordinates that {input.dtype} (the map's dtype, which boxes are cast to) can hold: "
            f"|x| <= {limit:g}",
            got=f"row {row}: {rois[row].tolist()}",
            fix="check that the boxes are in image px (not scaled up twice), or pool from a float32 map",
        )
    return rois[:, 0].long(), boxes


def check_scale(op: str, scale: float | None, given: object) -> None:
    """``spatial_scale`` must be finite and positive (a static check)."""
    if scale is None or not (math.isfinite(scale) and scale > 0):
        raise InputValueError(
            f"{op}(spatial_scale=...)",
            expected="a finite positive float, feature px per image px (1 / stride)",
            got=describe(given),
            fix="pass spatial_scale=1 / stride, e.g. 1 / 16 for a stride-16 map",
        )
