"""The app's session-state keys, their defaults, and the few functions that change canonical state.

Two kinds of keys:

- canonical state, never bound to a widget: the image (bytes, hash, name), the box table, and
  notes for the user. Pages read it; callbacks here change it.
- widget values that must survive a page switch. Streamlit drops a widget's key when a page without
  that widget runs, so the value lives in a plain key ``K.X`` and the widget uses ``w_`` + ``K.X``:
  :func:`bind` copies the plain value into the widget key before the widget is drawn and its
  ``on_change`` copies the widget's value back. Tests set the plain keys.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import streamlit as st

from roi_lab.ui import boxtable

__all__ = [
    "K",
    "DEFAULTS",
    "DEFAULT_MAX_SIDE",
    "init_state",
    "bind",
    "sync",
    "widget_key",
    "image_ready",
    "set_image",
    "use_upload",
    "load_sample_into_state",
    "default_rows",
    "set_rows",
    "add_notes",
    "handle_selection",
    "handle_edits",
]

DEFAULT_MAX_SIDE = 800


class K:
    """Session-state key names (one place; tests import them too)."""

    # canonical, not bound to widgets
    IMAGE_BYTES = "image_bytes"  # bytes of the current image file (sample or upload)
    IMAGE_HASH = "image_hash"  # sha1 of IMAGE_BYTES: the cache key of everything derived from the image
    IMAGE_NAME = "image_name"  # file or sample name, for captions
    IMAGE_SAMPLE = "image_sample"  # sample name when the image is a bundled sample, else None
    IMAGE_ERROR = "image_error"  # message of the last refused upload (the previous image stays)
    UPLOAD_SEEN = "upload_seen"  # id of the last upload handled, so a rerun does not reload it
    MAX_SIDE = "max_side"  # the working image's longer side (env ROI_LAB_MAX_SIDE overrides 800)
    BOXES = "boxes"  # list of rows, see roi_lab.ui.boxtable: xyxy px of the working image
    BOXES_REV = "boxes_rev"  # bumped on every table change: versions the editor and chart keys
    BOXES_NOTES = "boxes_notes"  # [(level, message)] from the last table change
    # widget values, canonical: a widget is drawn with key widget_key(K.X) and synced back (see bind)
    SAMPLE = "sample"
    SOURCE = "source"  # "sample" | "upload"
    BACKBONE = "backbone"
    STAGE = "stage"
    DEVICE = "device"
    WEIGHTS = "weights"  # "auto" | "none" | "path"
    WEIGHTS_PATH = "weights_path"
    SUMMARY = "summary_kind"  # feature summary kind on page 1
    BOX_FORMAT = "box_format"
    BOX_SPACE = "box_space"
    OUTPUT_SIZE = "output_size"
    SAMPLING_RATIO = "sampling_ratio"
    ALIGNED = "aligned"
    CHANNEL_VIEW = "channel_view"
    CHANNEL_INDEX = "channel_index"
    FOCUS_BOX = "focus_box"
    # per-render widget keys (versioned by BOXES_REV, so a new table resets them)
    EDITOR_PREFIX = "boxes_editor_"
    CHART_PREFIX = "boxes_chart_"


DEFAULTS: dict[str, Any] = {
    K.SOURCE: "sample",
    K.SAMPLE: None,
    K.BACKBONE: "resnet50",
    K.STAGE: "C4",
    K.DEVICE: "cpu",
    K.WEIGHTS: "auto",
    K.WEIGHTS_PATH: "",
    K.SUMMARY: "mean",
    K.BOX_FORMAT: "xyxy",
    K.BOX_SPACE: "absolute",
    K.OUTPUT_SIZE: 7,
    K.SAMPLING_RATIO: 2,
    K.ALIGNED: True,
    K.CHANNEL_VIEW: "mean",
    K.CHANNEL_INDEX: 0,
    K.FOCUS_BOX: 0,
}
WIDGET_PREFIX = "w_"


def _env_max_side() -> int:
    try:
        return max(32, int(os.environ.get("ROI_LAB_MAX_SIDE", DEFAULT_MAX_SIDE)))
    except ValueError:
        return DEFAULT_MAX_SIDE


def init_state() -> None:
    """Set every key's default once per session; loads the default sample image when there is one."""
    ss = st.session_state
    canonical = {
        K.IMAGE_BYTES: None,
        K.IMAGE_HASH: None,
        K.IMAGE_NAME: None,
        K.IMAGE_SAMPLE: None,
        K.IMAGE_ERROR: None,
        K.UPLOAD_SEEN: None,
        K.MAX_SIDE: _env_max_side(),
        K.BOXES: [],
        K.BOXES_REV: 0,
        K.BOXES_NOTES: [],
    }
    fresh = K.IMAGE_HASH not in ss
    for key, value in {**canonical, **DEFAULTS}.items():
        if key not in ss:
            ss[key] = value
    if fresh and ss[K.IMAGE_BYTES] is None:
        from roi_lab.ui import loaders

        samples = loaders.sample_names()
        if samples:
            ss[K.SAMPLE] = loaders.default_sample(samples)
            load_sample_into_state(ss[K.SAMPLE])


def widget_key(key: str) -> str:
    """The widget key that shows the plain state key ``key``."""
    return WIDGET_PREFIX + key


def sync(key: str) -> None:
    """Copy a widget's value back to its plain key (an ``on_change`` callback)."""
    st.session_state[key] = st.session_state[widget_key(key)]


def bind(key: str, then: Any = None) -> dict[str, Any]:
    """Widget kwargs (``key``, ``on_change``) for a widget showing the plain state key ``key``.

    Call it right before drawing the widget: it copies the plain value into the widget key.
    ``then`` is an extra callback run after the value is synced.
    """
    st.session_state[widget_key(key)] = st.session_state[key]

    def on_change() -> None:
        sync(key)
        if then is not None:
            then()

    return {"key": widget_key(key), "on_change": on_change}


def image_ready() -> bool:
    """True when the session holds an image (only images that decoded are ever stored)."""
    return st.session_state.get(K.IMAGE_BYTES) is not None


def set_image(data: bytes, name: str, sample: str | None = None) -> None:
    """Make ``data`` the current image (the caller has decoded it once to check it)."""
    ss = st.session_state
    ss[K.IMAGE_BYTES] = data
    ss[K.IMAGE_HASH] = hashlib.sha1(data).hexdigest()
    ss[K.IMAGE_NAME] = name
    ss[K.IMAGE_SAMPLE] = sample
    ss[K.IMAGE_ERROR] = None


def set_rows(rows: list[dict[str, Any]], notes: list[boxtable.Note] | None = None) -> None:
    """Replace the box table, bump its revision (fresh editor/chart widgets) and keep the notes."""
    ss = st.session_state
    ss[K.BOXES] = rows
    ss[K.BOXES_REV] = int(ss.get(K.BOXES_REV, 0)) + 1
    ss[K.BOXES_NOTES] = list(notes or [])
    n = len(rows)
    if int(ss.get(K.FOCUS_BOX, 0) or 0) >= max(n, 1):
        ss[K.FOCUS_BOX] = 0


def add_notes(notes: list[boxtable.Note]) -> None:
    """Add notes for the Boxes page without changing the table."""
    st.session_state[K.BOXES_NOTES] = list(st.session_state.get(K.BOXES_NOTES, [])) + list(notes)


def load_sample_into_state(name: str) -> None:
    """Load a bundled sample as the current image; its known boxes (if any) become the table."""
    from roi_lab.ui import loaders

    sample = loaders.sample_info(name)
    data = loaders.sample_bytes(name)
    set_image(data, sample.title if getattr(sample, "title", None) else name, sample=name)
    working = loaders.working_image(st.session_state[K.IMAGE_HASH], st.session_state[K.MAX_SIDE], data)
    if sample.boxes_image is not None and len(sample.boxes_image):
        rows = boxtable.rows_from_boxes(sample.boxes_image.double() * working.scale, list(sample.labels or []))
        set_rows(rows, [("info", f"Loaded the {len(rows)} known boxes of the sample.")])
    else:
        set_rows(default_rows(working.size), [("info", "Two starter boxes; draw your own on the Boxes page.")])


def default_rows(image_size: tuple[int, int]) -> list[dict[str, Any]]:
    """Two starter boxes for an image without known boxes (so the comparison page has something)."""
    h, w = image_size
    return boxtable.rows_from_boxes(
        [[w * 0.25, h * 0.25, w * 0.6, h * 0.7], [w * 0.55, h * 0.15, w * 0.85, h * 0.45]], ["box 1", "box 2"]
    )


def use_upload(data: bytes, name: str) -> bool:
    """Try an uploaded file as the new image; on failure keep everything and store the message.

    Returns:
        bool: True when the upload became the current image.
    """
    from roi_lab.errors import RoiLabError
    from roi_lab.ui import loaders

    ss = st.session_state
    digest = hashlib.sha1(data).hexdigest()
    try:
        working = loaders.working_image(digest, ss[K.MAX_SIDE], data)
    except RoiLabError as e:  # ImageDecodeError: not an image, truncated, or too many pixels
        ss[K.IMAGE_ERROR] = f"{name}: {e}"
        return False
    from roi_lab.backbone import MIN_IMAGE_SIDE

    if min(working.original_size) < MIN_IMAGE_SIDE:
        h, w = working.original_size
        ss[K.IMAGE_ERROR] = (
            f"{name}: the backbones expect an image of at least {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels; "
            f"got {w} x {h} (W x H).\nFix: upload a larger image."
        )
        return False
    set_image(data, name, sample=None)
    set_rows(default_rows(working.size), [("info", f"New image {name}: the box table was reset to starter boxes.")])
    return True


def handle_selection(chart_key: str, image_size: tuple[int, int]) -> bool:
    """Append the boxes of the chart's box selection (``event["selection"]["box"]``) to the table.

    The ``on_select`` callback calls this; the page calls it too before drawing the chart, which
    picks up a selection set through ``st.session_state`` (as tests do). Any handled selection
    bumps the table revision, so the next chart is a fresh widget with an empty selection.

    Returns:
        bool: True when a selection was handled.
    """
    event = st.session_state.get(chart_key)
    try:
        rects = list(event["selection"]["box"]) if event is not None else []
    except (KeyError, TypeError):
        rects = []
    if not rects:
        return False
    rows, notes = boxtable.append_selection(st.session_state[K.BOXES], rects, image_size)
    added = len(rows) - len(st.session_state[K.BOXES])
    if added:
        notes = [("info", f"Added {added} box{'es' if added > 1 else ''} from the selection.")] + notes
        usable, _, _ = boxtable.usable_boxes(rows, image_size)
        st.session_state[K.FOCUS_BOX] = len(usable) - 1  # show the new box in the crops
    set_rows(rows, notes)
    return True


def handle_edits(editor_key: str, fmt: str, space: str, image_size: tuple[int, int]) -> bool:
    """Apply the box editor's edit state (``edited_rows`` / ``added_rows`` / ``deleted_rows``) to the table.

    Called from the editor's ``on_change`` and, like :func:`handle_selection`, by the page before it
    draws the editor. Bumps the revision, so the next editor starts from the new table.
    """
    edits = st.session_state.get(editor_key)
    if not boxtable.has_edits(edits):
        return False
    rows, notes = boxtable.apply_edits(st.session_state[K.BOXES], edits, fmt, space, image_size)
    set_rows(rows, notes)
    return True
