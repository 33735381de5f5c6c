"""Validation shared by the ops: each check raises a :mod:`roi_lab.errors` error that says what was
expected, what was given and how to fix it. Kept tiny and cheap: they run on every call."""

from __future__ import annotations

import torch
from torch import Tensor

from roi_lab.errors import DeviceMismatchError, DTypeError, InputValueError, ShapeError, describe

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_feature_map(input: Tensor, op: str, name: str = "input") -> None:
    """``input`` must be a floating Tensor[N, C, H, W]."""
    if not isinstance(input, Tensor) or input.dim() != 4:
        raise ShapeError(
            f"{op}({name}=...)",
            expected="a feature map Tensor[N, C, H, W]",
            got=describe(input),
            fix="add the batch dimension with x[None] for a single image [C, H, W]"
            if isinstance(input, Tensor) and input.dim() == 3
            else "pass the backbone's output, shaped [N, C, H, W]",
        )
    if input.dtype not in FLOAT_DTYPES:
        raise DTypeError(
            f"{op}({name}=...)",
            expected="a floating feature map (float16, bfloat16, float32 or float64)",
            got=describe(input),
            fix=f"convert it first, e.g. {name}.float()",
        )


def check_finite(t: Tensor, op: str, name: str) -> None:
    """No NaN or inf in ``t`` (torchvision segfaults or returns garbage on them)."""
    if t.numel() and not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()
        row = int(bad[0, 0]) if bad.dim() > 1 else int(bad[0])
        raise InputValueError(
            f"{op}({name}=...)",
            expected="finite coordinates",
            got=f"{int((~torch.isfinite(t)).sum())} NaN/inf values, the first in row {row}: "
            f"{t[row].tolist() if t.dim() > 1 else t[row].item()}",
            fix=f"drop or repair those rows before pooling, e.g. {name} = {name}[torch.isfinite({name}).all(1)]",
        )


def check_same_device(a: Tensor, b: Tensor, op: str, name_a: str, name_b: str) -> None:
    """Both tensors on one device, naming both devices."""
    if a.device != b.device:
        raise DeviceMismatchError(
            f"{op}",
            expected=f"{name_a} and {name_b} on the same device",
            got=f"{name_a} on {a.device} and {name_b} on {b.device}",
            fix=f"move them together, e.g. {name_b} = {name_b}.to({name_a}.device)",
        )


def pair_size(size: int | tuple[int, int] | list[int], op: str, name: str) -> tuple[int, int]:
    """An int or an (h, w) pair of positive ints."""
    if isinstance(size, Tensor):
        size = size.tolist()
    if isinstance(size, int) and not isinstance(size, bool):
        pair: tuple = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        pair = tuple(size)
    else:
        raise ShapeError(
            f"{op}({name}=...)",
            expected="an int or an (height, width) pair",
            got=describe(size),
            fix=f"pass e.g. {name}=7 or {name}=(7, 7)",
        )
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise InputValueError(
            f"{op}({name}=...)",
            expected="positive integer sizes",
            got=describe(size),
            fix=f"pass e.g. {name}=(7, 7); a size must be at least 1",
        )
    return int(pair[0]), int(pair[1])
