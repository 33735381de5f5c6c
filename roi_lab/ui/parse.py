"""Read boxes pasted as text: JSON, a Python list, or a ``torch.tensor`` / ``numpy.array`` repr. No eval.

Pure data (no streamlit), used by the Diagnose page.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["ParsedBoxes", "parse_boxes_text", "BoxTextError"]

_WRAPPER = re.compile(r"^\s*(?:[\w.]*\s*=\s*)?(?:torch\.)?(?:tensor|Tensor|array|np\.array|numpy\.array)\s*\(", re.S)
_DTYPE = re.compile(r"dtype\s*=\s*(?:torch\.|np\.|numpy\.)?(\w+)")
_DEVICE = re.compile(r"device\s*=\s*['\"]([\w:]+)['\"]")
_TOKEN = re.compile(r"-?inf\b|\bnan\b|-?\d+\.(?!\d)|\bTrue\b|\bFalse\b|\bNone\b", re.I)
_ALLOWED = re.compile(r"^[\s\d.eE+\-,\[\]()a-zA-Z]*$")


class BoxTextError(ValueError):
    """Pasted text that is not a list of numbers; the message says what was expected and how to fix it."""


class ParsedBoxes(dict):
    """``{"values": nested list of floats, "dtype": str | None, "device": str | None}``."""


def _normalise_token(match: re.Match[str]) -> str:
    token = match.group(0)
    low = token.lower()
    if low == "nan":
        return "NaN"
    if low == "inf":
        return "Infinity"
    if low == "-inf":
        return "-Infinity"
    if low in ("true", "false"):
        return low
    if low == "none":
        return "null"
    return token + "0"  # "1." -> "1.0"


def _outer_brackets(text: str) -> str:
    start = text.find("[")
    if start < 0:
        raise BoxTextError(
            "pasted boxes expect a bracketed list like [[x1, y1, x2, y2], ...] or tensor([[...]]); "
            f"got {text[:60]!r}.\nFix: paste the printed tensor or a JSON list of boxes."
        )
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "[":
            depth += 1
        elif text[i] == "]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    raise BoxTextError(
        f"pasted boxes expect balanced brackets; got {depth} unclosed '['.\nFix: paste the whole printed value."
    )


def _check_numbers(value: Any) -> None:
    if isinstance(value, list):
        for v in value:
            _check_numbers(v)
        return
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BoxTextError(
            f"pasted boxes expect numbers only; got {value!r}.\nFix: remove labels and other text from the list."
        )


def parse_boxes_text(text: str) -> ParsedBoxes:
    """Parse pasted boxes without evaluating anything.

    Accepts JSON (``[[1, 2, 3, 4]]`` or ``{"boxes": [...]}``), and the reprs that PyTorch and NumPy
    print: ``tensor([[1., 2., nan, 4.]], device='cuda:0', dtype=torch.float16)``, ``array([[...]])``.

    Returns:
        ParsedBoxes: ``values`` (nested list of floats, NaN/inf kept), ``dtype`` and ``device`` when
        the repr names them.

    Raises:
        BoxTextError: not a bracketed list of numbers.

    Example:
        >>> parse_boxes_text("tensor([[1., 2., 3., nan]], device='cuda:0')")["values"]
        [[1.0, 2.0, 3.0, nan]]
        >>> parse_boxes_text('{"boxes": [[0, 0, 5, 5]]}')["values"]
        [[0, 0, 5, 5]]
    """
    if not isinstance(text, str) or not text.strip():
        raise BoxTextError("pasted boxes expect some text; got nothing.\nFix: paste e.g. [[10, 20, 50, 60]].")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise BoxTextError(
                f"pasted JSON expects valid syntax; got {e.msg} at line {e.lineno}.\nFix: check commas and quotes."
            ) from None
        boxes = obj.get("boxes") if isinstance(obj, dict) else None
        if not isinstance(boxes, list):
            raise BoxTextError('pasted JSON expects a "boxes" list; got keys ' f"{sorted(obj)[:6]}.\nFix: use "
                               '{"boxes": [[x1, y1, x2, y2], ...]}.')
        _check_numbers(boxes)
        return ParsedBoxes(values=boxes, dtype=None, device=None)
    dtype = device = None
    if _WRAPPER.match(stripped):
        m = _DTYPE.search(stripped)
        dtype = m.group(1) if m else None
        m = _DEVICE.search(stripped)
        device = m.group(1) if m else None
    if "[" not in stripped and stripped.startswith("("):  # a Python tuple of tuples
        stripped = stripped.replace("(", "[").replace(")", "]")
    body = _outer_brackets(stripped)
    if not _ALLOWED.match(body):
        raise BoxTextError(
            f"pasted boxes expect numbers, commas and brackets; got {body[:60]!r}.\n"
            "Fix: paste only the printed tensor or list."
        )
    body = body.replace("(", "[").replace(")", "]")
    body = _TOKEN.sub(_normalise_token, body)
    body = re.sub(r",\s*\]", "]", body)  # trailing commas of Python lists
    try:
        values = json.loads(body)
    except json.JSONDecodeError as e:
        raise BoxTextError(
            f"pasted boxes expect a list of numbers; got {e.msg} near {body[max(0, e.pos - 10) : e.pos + 10]!r}.\n"
            "Fix: paste the printed tensor, e.g. tensor([[1., 2., 3., 4.]])."
        ) from None
    _check_numbers(values)
    values = _floats(values) if dtype or "." in body else values
    return ParsedBoxes(values=values, dtype=dtype, device=device)


def _floats(value: Any) -> Any:
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return float(value) if not (isinstance(value, float) and math.isnan(value)) else value
