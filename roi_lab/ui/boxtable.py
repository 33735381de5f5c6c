"""The app's box table: one canonical list of rows, shown and edited in the user's own box format.

Pure data (no streamlit): the Boxes page keeps ``rows`` in ``st.session_state`` and calls these
functions from its ``on_change`` / ``on_select`` callbacks, so everything here is tested directly.

Convention:
    A row is ``{"label": str, "x1": float|None, "y1": ..., "x2": ..., "y2": ...}``: xyxy in pixels of
    the *original* image (the numbers of the user's annotation files; the model sees the image
    resized, and ``roi_lab.ui.source.boxes_for_model`` scales the boxes with it), continuous
    coordinates, exclusive ends: ``(0, 0)`` is the top-left corner of the top-left pixel, and a box
    over columns 10..19 has ``x1 = 10, x2 = 20``. A row that is not complete yet (a new table row being typed in a
    format other than xyxy) keeps ``None`` coordinates and a ``"draft"``: the four values the user
    typed, in their format and space, until all four are numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "FORMATS",
    "SPACES",
    "COORDS",
    "Note",
    "columns_for",
    "new_row",
    "rows_from_boxes",
    "row_status",
    "to_display",
    "apply_edits",
    "has_edits",
    "append_selection",
    "usable_boxes",
    "signature",
]

FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh", "yxyx")
SPACES: tuple[str, ...] = ("absolute", "normalized")
COORDS: tuple[str, ...] = ("x1", "y1", "x2", "y2")
_COLUMNS: dict[str, tuple[str, str, str, str]] = {
    "xyxy": ("x1", "y1", "x2", "y2"),
    "xywh": ("x", "y", "w", "h"),
    "cxcywh": ("cx", "cy", "w", "h"),
    "yxyx": ("y1", "x1", "y2", "x2"),
}
_SPACE_OF = {"absolute": "image", "normalized": "normalized"}
MIN_SELECTION_PX = 1.0

Note = tuple[str, str]  # (level: "error" | "warning" | "info", message)


def columns_for(fmt: str) -> tuple[str, str, str, str]:
    """The four coordinate column names of a box format, e.g. ``("cx", "cy", "w", "h")``."""
    return _COLUMNS[fmt]


def new_row(label: str = "box", coords: Sequence[float] | None = None) -> dict[str, Any]:
    """A canonical row; ``coords`` are xyxy original-image pixels (``None`` = incomplete)."""
    values = [None] * 4 if coords is None else [float(v) for v in coords]
    return {"label": str(label), **dict(zip(COORDS, values, strict=True)), "draft": None}


def rows_from_boxes(boxes_image: Any, labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows from xyxy image-pixel boxes (Tensor[K, 4], ndarray or nested lists) and labels."""
    arr = np.asarray(boxes_image.cpu() if hasattr(boxes_image, "cpu") else boxes_image, dtype=np.float64)
    arr = arr.reshape(-1, 4)
    labels = list(labels) if labels is not None else []
    return [new_row(labels[i] if i < len(labels) else f"box {i + 1}", arr[i].tolist()) for i in range(len(arr))]


def _next_label(rows: Sequence[Mapping[str, Any]]) -> str:
    """``"box N"`` with the smallest N > len(rows) that no row uses yet."""
    used = {str(r.get("label", "")) for r in rows}
    n = len(rows) + 1
    while f"box {n}" in used:
        n += 1
    return f"box {n}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _coords(row: Mapping[str, Any]) -> list[Any]:
    return [row.get(c) for c in COORDS]


def row_status(row: Mapping[str, Any], image_size: tuple[int, int]) -> str:
    """One word-ish status: ``ok``, ``incomplete``, ``not finite``, ``zero or negative size``, ``outside the image``.

    Example:
        >>> row_status(new_row("a", [10, 10, 20, 20]), (100, 100))
        'ok'
        >>> row_status(new_row("a", [10, 10, 10, 20]), (100, 100))
        'zero or negative size'
        >>> row_status(new_row("a", [90, 10, 120, 20]), (100, 100))
        'partly outside the image'
    """
    values = _coords(row)
    if any(v is None for v in values):
        return "incomplete"
    if not all(_finite(v) for v in values):
        return "not finite"
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        return "zero or negative size"
    h, w = image_size
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        return "outside the image"
    if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
        return "partly outside the image"
    return "ok"


def _convert(values: Sequence[float], *, src: tuple[str, str], dst: tuple[str, str], image_size) -> list[float]:
    from roi_lab.boxes import convert_boxes

    out = convert_boxes(
        [list(values)],
        src_format=src[0],
        src_space=_SPACE_OF[src[1]],
        dst_format=dst[0],
        dst_space=_SPACE_OF[dst[1]],
        image_size=image_size,
    )
    return [float(v) for v in out.double()[0].tolist()]


def _display_values(row: Mapping[str, Any], fmt: str, space: str, image_size) -> list[float | None]:
    values = _coords(row)
    if all(_finite(v) for v in values):
        return _convert(values, src=("xyxy", "absolute"), dst=(fmt, space), image_size=image_size)
    draft = row.get("draft")
    if draft and draft.get("format") == fmt and draft.get("space") == space:
        return list(draft["values"])
    return [v if _finite(v) else None for v in values] if (fmt, space) == ("xyxy", "absolute") else [None] * 4


def to_display(rows: Sequence[Mapping[str, Any]], fmt: str, space: str, image_size: tuple[int, int]) -> pd.DataFrame:
    """The table as the user sees it: ``label``, four coordinates in ``fmt``/``space``, ``status``."""
    cols = columns_for(fmt)
    records = []
    for row in rows:
        shown = _display_values(row, fmt, space, image_size)
        status = row_status(row, image_size)
        records.append({"label": row.get("label", ""), **dict(zip(cols, shown, strict=True)), "status": status})
    frame = pd.DataFrame.from_records(records, columns=["label", *cols, "status"])
    for c in cols:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    frame["label"] = frame["label"].astype("string")
    return frame


def has_edits(state: Any) -> bool:
    """True when a ``st.data_editor`` edit state holds any edited, added or deleted row."""
    if not isinstance(state, Mapping):
        return False
    return bool(state.get("edited_rows") or state.get("added_rows") or state.get("deleted_rows"))


def _number(value: Any) -> tuple[float | None, str | None]:
    """(number or None for an empty cell, error text) for one typed cell value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool):
        return None, f"{value!r} is not a number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"{value!r} is not a number"
    if math.isnan(number):
        return None, None  # an emptied cell arrives as NaN from pandas
    if not math.isfinite(number):
        return None, f"{value!r} is not a finite number"
    return number, None


def _row_from_values(label: str, values: list[float | None], fmt: str, space: str, image_size) -> dict[str, Any]:
    if all(v is not None for v in values):
        return new_row(label, _convert(values, src=(fmt, space), dst=("xyxy", "absolute"), image_size=image_size))
    row = new_row(label)
    row["draft"] = {"format": fmt, "space": space, "values": values}
    return row


def _apply_changes(
    base_label: str, base: list[float | None], changes: Mapping[str, Any], cols, where: str, notes: list[Note]
) -> tuple[str, list[float | None]]:
    label, values = base_label, list(base)
    for column, value in changes.items():
        if column == "label":
            label = "" if value is None else str(value)
        elif column in cols:
            number, error = _number(value)
            if error:
                notes.append(("error", f"{where}, column {column}: {error}; that cell keeps its old value."))
            else:
                values[cols.index(column)] = number
        # the status column is read-only; anything else is ignored
    return label, values


def apply_edits(
    rows: Sequence[Mapping[str, Any]],
    edit_state: Mapping[str, Any],
    fmt: str,
    space: str,
    image_size: tuple[int, int],
) -> tuple[list[dict[str, Any]], list[Note]]:
    """Apply a ``st.data_editor`` edit state (made on :func:`to_display`'s table) to the canonical rows.

    Edited and deleted row positions refer to the table the editor was given; added rows go last.
    Text or infinite values are refused cell by cell with an error note; other cells still apply.

    Returns:
        (rows, notes): the new canonical rows, and notes for the page to show.

    Example:
        >>> rows = [new_row("a", [10, 20, 30, 40])]
        >>> new, notes = apply_edits(rows, {"edited_rows": {0: {"w": 50}}}, "xywh", "absolute", (100, 100))
        >>> [new[0][c] for c in COORDS], notes
        ([10.0, 20.0, 60.0, 40.0], [])
    """
    cols = columns_for(fmt)
    notes: list[Note] = []
    out = [dict(r) for r in rows]
    for key, changes in (edit_state.get("edited_rows") or {}).items():
        i = int(key)
        if not 0 <= i < len(out) or not isinstance(changes, Mapping):
            continue
        base = _display_values(out[i], fmt, space, image_size)
        label, values = _apply_changes(out[i].get("label", ""), base, changes, cols, f"Row {i + 1}", notes)
        if values != base or label != out[i].get("label"):
            out[i] = _row_from_values(label, values, fmt, space, image_size)
    deleted = {int(i) for i in (edit_state.get("deleted_rows") or [])}
    out = [r for i, r in enumerate(out) if i not in deleted]
    for added in edit_state.get("added_rows") or []:
        if not isinstance(added, Mapping):
            continue
        where = f"New row {len(out) + 1}"
        label, values = _apply_changes(_next_label(out), [None] * 4, added, cols, where, notes)
        out.append(_row_from_values(label, values, fmt, space, image_size))
    return out, notes


def append_selection(
    rows: Sequence[Mapping[str, Any]], boxes: Iterable[Mapping[str, Any]], image_size: tuple[int, int]
) -> tuple[list[dict[str, Any]], list[Note]]:
    """Append the rectangles of a Plotly box selection (``event["selection"]["box"]``) as rows.

    Each rectangle is ``{"x": [x0, x1], "y": [y0, y1], ...}`` in the figure's axis units, which the
    Boxes page makes image pixels. Corners are sorted and clipped to the image.

    Example:
        >>> new, _ = append_selection([], [{"x": [30, 10], "y": [5, 25]}], (100, 100))
        >>> [new[0][c] for c in COORDS]
        [10.0, 5.0, 30.0, 25.0]
    """
    h, w = image_size
    out = [dict(r) for r in rows]
    notes: list[Note] = []
    for rect in boxes:
        try:
            xs = [float(v) for v in rect["x"]]
            ys = [float(v) for v in rect["y"]]
        except (KeyError, TypeError, ValueError):
            notes.append(("warning", f"Ignored a selection without x/y corners: {rect!r}."))
            continue
        if len(xs) < 2 or len(ys) < 2 or not all(math.isfinite(v) for v in xs + ys):
            notes.append(("warning", f"Ignored a selection without two finite corners: {rect!r}."))
            continue
        x1, x2 = max(0.0, min(xs)), min(float(w), max(xs))
        y1, y2 = max(0.0, min(ys)), min(float(h), max(ys))
        if x2 - x1 < MIN_SELECTION_PX or y2 - y1 < MIN_SELECTION_PX:
            notes.append(("warning", "Ignored a selection smaller than one pixel (or outside the image)."))
            continue
        out.append(new_row(_next_label(out), [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]))
    return out, notes


def usable_boxes(
    rows: Sequence[Mapping[str, Any]], image_size: tuple[int, int]
) -> tuple[np.ndarray, list[str], list[Note]]:
    """The rows the ops can use, as ndarray[K, 4] float64 xyxy image px, their labels and notes.

    Incomplete, non-finite and zero-size rows are left out with a warning; boxes (partly) outside
    the image are kept (seeing what that does is the point) with an info note.
    """
    keep: list[list[float]] = []
    labels: list[str] = []
    notes: list[Note] = []
    for i, row in enumerate(rows):
        status = row_status(row, image_size)
        name = f"Row {i + 1} ({row.get('label', '')})"
        if status in ("incomplete", "not finite", "zero or negative size"):
            notes.append(("warning", f"{name} is {status}: left out until fixed."))
            continue
        if status != "ok":
            notes.append(("info", f"{name} is {status}."))
        keep.append([float(v) for v in _coords(row)])
        labels.append(str(row.get("label", "")))
    return np.asarray(keep, dtype=np.float64).reshape(-1, 4), labels, notes


def signature(boxes_image: np.ndarray) -> tuple[tuple[float, float, float, float], ...]:
    """A hashable, rounded form of boxes for cache keys."""
    return tuple(tuple(round(float(v), 3) for v in b) for b in np.asarray(boxes_image).reshape(-1, 4))
