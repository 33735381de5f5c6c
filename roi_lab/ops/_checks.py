"""Validation shared by the ops: each check raises a :mod:`roi_lab.errors` error that says what was
expected, what was given and how to fix it. Kept tiny and cheap: they run on every call.

Two kinds, kept apart so that compiled graphs never branch on tensor values:

- *static* checks read only types, shapes, dtypes, devices and Python scalars. They run in the
  public wrappers, in the registered ops' fake (meta) implementations and in their real ones, so
  ``torch.compile`` / ``torch.export`` hit them at trace time;
- *data* checks (:func:`check_finite`, :func:`check_output_budget`, the ops' index checks) read
  tensor values and run only inside the registered ops' real implementations: in eager mode they
  raise the same errors as ever, and in a compiled graph they run when the op does.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch
from torch import Tensor

import roi_lab.ops as _ops_package
from roi_lab.errors import DeviceMismatchError, DTypeError, InputValueError, ShapeError, describe

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_feature_map(input: Tensor, op: str, name: str = "input", what: str = "a feature map") -> None:
    """``input`` must be a floating Tensor[N, C, H, W] with H, W >= 1 (N and C may be 0)."""
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
    if input.shape[2] == 0 or input.shape[3] == 0:  # torchvision segfaults here
        raise ShapeError(
            f"{op}({name}=...)",
            expected=f"{what} with at least one row and one column",
            got=describe(input),
            fix="check the image or feature map that reaches the op; an empty one has nothing to crop",
        )


def check_real_dtype(t: Tensor, op: str, name: str, expected: str) -> None:
    """Coordinates must be real numbers: bool and complex tensors are refused, not silently cast."""
    if t.dtype == torch.bool or t.is_complex():
        raise DTypeError(
            f"{op}({name}=...)",
            expected=expected,
            got=describe(t),
            fix=f"pass real coordinates, e.g. {name}.real.float() for complex ones"
            if t.is_complex()
            else f"a bool tensor holds no coordinates; check what is passed as {name}",
        )


def check_finite(t: Tensor, op: str, name: str) -> None:
    """No NaN or inf in ``t`` (torchvision segfaults or returns garbage on them). A data check."""
    if t.numel() and t.is_floating_point() and not bool(torch.isfinite(t).all()):
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


def check_output_budget(shape: tuple[int, ...], op: str, fix: str) -> None:
    """The output Tensor[K, C, PH, PW] may hold at most ``roi_lab.ops.MAX_OUTPUT_ELEMENTS`` elements,
    counting C as at least 1 (the kernels plan every bin of every box even without channels). A data
    check: it runs in the real implementation, where every size is a plain int."""
    budget = _ops_package.MAX_OUTPUT_ELEMENTS
    size = math.prod(shape[:1] + (max(shape[1], 1),) + shape[2:])
    if size > budget:
        dims = ", ".join(str(d) for d in shape)
        raise InputValueError(
            f"{op}(...)",
            expected=f"an output of at most roi_lab.ops.MAX_OUTPUT_ELEMENTS = {budget} elements "
            f"({budget * 4 / 2**30:.0f} GiB in float32)",
            got=f"an output Tensor[{dims}] of {size} elements",
            fix=f"{fix}; or raise roi_lab.ops.MAX_OUTPUT_ELEMENTS if that much memory is really meant",
        )


def _is_bool(value: object) -> bool:
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")


def as_int(value: object) -> int | None:
    """``value`` as a Python int if it is an integer scalar (int, numpy integer, 0-d integer tensor),
    else None. Bools are not integers here."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # the common case first: plain Python ints (also under torch.compile)
    if _is_bool(value) or (isinstance(value, Tensor) and (value.dim() != 0 or value.dtype == torch.bool)):
        return None
    if isinstance(value, numbers.Integral) or isinstance(value, Tensor) or hasattr(value, "__index__"):
        try:
            return operator.index(value)
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def as_float(value: object) -> float | None:
    """``value`` as a Python float if it is a real scalar (int, float, numpy scalar, 0-d real tensor),
    else None. Bools are not numbers here."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # the common case first (also under torch.compile)
    if _is_bool(value):
        return None
    if isinstance(value, Tensor):
        if value.dim() != 0 or value.dtype == torch.bool or value.is_complex():
            return None
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def pair_size(size: int | tuple[int, int] | list[int], op: str, name: str) -> tuple[int, int]:
    """An int or an (h, w) pair of positive ints (numpy integers and 0-d integer tensors included)."""
    if (isinstance(size, Tensor) or type(size).__module__ == "numpy") and getattr(size, "ndim", 0) == 1:
        size = size.tolist()  # a 1-d tensor or numpy array of two sizes
    if as_int(size) is not None:
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
    ints = tuple(as_int(v) for v in pair)
    if not all(v is not None and v > 0 for v in ints):
        raise InputValueError(
            f"{op}({name}=...)",
            expected="positive integer sizes",
            got=describe(size),
            fix=f"pass e.g. {name}=(7, 7); a size must be at least 1",
        )
    return ints[0], ints[1]
