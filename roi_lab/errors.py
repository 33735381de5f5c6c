"""One small exception hierarchy for every user-facing error of ROI Lab.

Each error carries what was expected, what was given and how to fix it as attributes, so the
diagnoser and the app can render them, and its message reads like einops'/kornia's::

    ShapeError: roi_align expects boxes as Tensor[K, 5] (batch_index, x1, y1, x2, y2) or a list
    of Tensor[L, 4]; got Tensor[12, 4] float32 on cpu.
    Fix: add the batch-index column, e.g. torch.cat([torch.zeros(12, 1), boxes], 1), or pass [boxes].

The hierarchy (every class carries ``where`` / ``expected`` / ``got`` / ``fix``)::

    ValueError
    └── RoiLabError                        base: catch this for any ROI Lab input error
        ├── ShapeError (+ AssertionError)  wrong rank / shape / number of columns
        ├── InputValueError                wrong values: NaN/inf, index out of range, size < 1, too large
        ├── DeviceMismatchError            two tensors on different devices
        ├── DTypeError                     a dtype the op cannot compute in
        ├── ImageDecodeError               bytes that are not a (safe) image
        ├── BoxFileError                   a malformed COCO / VOC / YOLO / JSON box file
        └── NotSupportedError (+ RuntimeError)
                                           a valid request the op does not support: second
                                           derivatives of ``mode="max"``, an ONNX export that
                                           cannot be faithful

Every error is a :class:`ValueError`, so ``except ValueError`` code keeps working. Two classes also
derive from the builtin that the framework they replace raises there, so code written against
torchvision keeps catching them:

- :class:`ShapeError` is an :class:`AssertionError` too: torchvision checks box shapes with
  ``torch._assert``, and callers write ``except AssertionError``.
- :class:`NotSupportedError` is a :class:`RuntimeError` too: torchvision raises ``RuntimeError("double
  backwards on roi_align not supported")`` and the ONNX exporters raise ``RuntimeError`` subclasses.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "RoiLabError",
    "ShapeError",
    "InputValueError",
    "DeviceMismatchError",
    "DTypeError",
    "ImageDecodeError",
    "BoxFileError",
    "NotSupportedError",
    "describe",
    "clip",
    "short_repr",
    "MAX_FIELD_CHARS",
]


class RoiLabError(ValueError):
    """Base class: ``where`` expects ``expected``; got ``got``. Fix: ``fix``.

    Attributes:
        where (str): the function or field that refused the input, e.g. ``"roi_align"``.
        expected (str): what it expects, in words and shapes.
        got (str): what it was given (see :func:`describe`).
        fix (str): how to fix it, often a code snippet.
    """

    def __init__(self, where: str, *, expected: str, got: str, fix: str = "") -> None:
        # every field may quote user input (a 10 MB line, a long path): each is clipped to MAX_FIELD_CHARS
        where, expected, got, fix = (clip(str(v)) for v in (where, expected, got, fix))
        self.where, self.expected, self.got, self.fix = where, expected, got, fix
        message = f"{where} expects {expected}; got {got}."
        if fix:
            message += f"\nFix: {fix}"
        super().__init__(message)

    def to_dict(self) -> dict[str, str]:
        """The error as plain data, for JSON output and the app."""
        return {
            "type": type(self).__name__,
            "where": self.where,
            "expected": self.expected,
            "got": self.got,
            "fix": self.fix,
            "message": str(self),
        }


class ShapeError(RoiLabError, AssertionError):
    """A tensor or list has the wrong rank, shape or number of columns.

    Also an :class:`AssertionError`, like torchvision's ``torch._assert`` box-shape checks:

    Example:
        >>> issubclass(ShapeError, AssertionError) and issubclass(ShapeError, ValueError)
        True
    """


class InputValueError(RoiLabError):
    """Values are wrong: NaN/inf coordinates, an index out of range, a non-positive size."""


class DeviceMismatchError(RoiLabError):
    """Two tensors that must live on one device do not."""


class DTypeError(RoiLabError):
    """A dtype that the op cannot compute in (e.g. an integer feature map)."""


class NotSupportedError(RoiLabError, RuntimeError):
    """A well-formed request that the op does not support (rather than compute it wrongly): e.g. the
    second derivative of ``roi_align(mode="max")``, or an ONNX export that would not be faithful.
    Also a :class:`RuntimeError`, which torchvision and the ONNX exporters raise for these."""


class ImageDecodeError(RoiLabError):
    """Uploaded bytes are not a decodable image, or the image is too large."""


class BoxFileError(RoiLabError):
    """A COCO / VOC / YOLO / JSON box file is malformed."""


#: The longest field (where / expected / got / fix) of an error message; longer text is cut in the middle.
MAX_FIELD_CHARS = 1000


def clip(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, keeping its start and end and saying how much was left out.

    Example:
        >>> clip("a" * 50 + "b" * 50, 60)
        'aaaaaaaaaaaaaaaaaaaaa... [73 characters left out] ...bbbbbb'
    """
    if len(text) <= limit:
        return text
    reserved = len(f"... [{len(text)} characters left out] ...")  # the note is never longer than this
    tail = max((limit - reserved) // 4, 0)
    head = max(limit - reserved - tail, 0)
    return f"{text[:head]}... [{len(text) - head - tail} characters left out] ...{text[len(text) - tail:]}"


class _BoundedRepr(reprlib.Repr):
    """``reprlib`` with limits wide enough that short values read as ``repr`` does, but bounded work for
    huge or deeply nested ones, and no exception from ints beyond Python's 4300-digit ``str`` limit."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxset = 6, 30, 30, 10, 10
        self.maxstring, self.maxother, self.maxlong = 200, 200, 200

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 600:  # ~180 digits; str() of 4300+ digits raises ValueError
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            return super().repr_instance(x, level)
        except Exception:  # a __repr__ that raises, or recursion
            return f"<{type(x).__name__} object>"


_REPR = _BoundedRepr()


def short_repr(x: Any, limit: int = 60) -> str:
    """``repr(x)`` in at most ``limit`` characters, at bounded cost for huge, deeply nested or odd values.

    Example:
        >>> short_repr([[1, 2]] * 1000, 30)
        '[[1, 2], [1, 2], [1, 2], [1...'
        >>> short_repr(10 ** 5000)
        '<int of 16610 bits>'
    """
    text = _REPR.repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(x: Any) -> str:
    """A short description of a value for error messages.

    Example:
        >>> import torch
        >>> describe(torch.zeros(12, 4))
        'Tensor[12, 4] float32 on cpu'
        >>> describe([torch.zeros(3, 4), torch.zeros(2, 4)])
        'a list of 2 tensors [Tensor[3, 4], Tensor[2, 4]]'
        >>> describe((7, 7))
        'tuple (7, 7)'
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None  # type: ignore[assignment]
    if torch is not None and isinstance(x, torch.Tensor):
        dims = ", ".join(str(d) for d in x.shape)
        return f"Tensor[{dims}] {str(x.dtype).replace('torch.', '')} on {x.device}"
    if hasattr(x, "shape") and hasattr(x, "dtype"):  # numpy arrays
        dims = ", ".join(str(d) for d in x.shape)
        return f"array[{dims}] {x.dtype}"
    if isinstance(x, (list, tuple)) and x and all(torch is not None and isinstance(t, torch.Tensor) for t in x):
        shown = ", ".join("Tensor[" + ", ".join(str(d) for d in t.shape) + "]" for t in x[:4])
        more = ", ..." if len(x) > 4 else ""
        return f"a {type(x).__name__} of {len(x)} tensors [{shown}{more}]"
    return f"{type(x).__name__} {short_repr(x)}"
