"""The app's session-state keys, their defaults, and the few functions that change canonical state.

Two kinds of keys:

- canonical state, never bound to a widget: the image (bytes, hash, name), the box table, and
  notes for the user. Pages read it; callbacks here change it.
- widget values that must survive a page switch. Streamlit drops a widget's key when a page without
  that widget runs, so the value lives in a plain key ``K.X`` and the widget uses ``w_`` + ``K.X``:
  :func:`bind` copies the plain value into the widget key before the widget is drawn and its
  ``on_change`` copies the widget's value back. Tests set the plain keys.

Convention:
    The box table (``K.BOXES``) holds xyxy boxes in pixels of the *original* image (the numbers of
    the user's annotation files), continuous coordinates: pixel ``(i, j)`` covers ``[j, j + 1) x
    [i, i + 1)``, ``(0, 0)`` is the top-left corner of the top-left pixel and ``x2``/``y2`` are
    exclusive (a box over columns 10..19 has ``x1 = 10, x2 = 20``): torchvision's convention. The
    model sees the image resized to at most ``K.MAX_SIDE`` px (``WorkingImage.scale``); the pages
    scale the boxes with it (:func:`roi_lab.ui.source.boxes_for_model`).

    The table is the user's: loading a new image never silently replaces boxes the user drew, typed
    or imported (``K.BOXES_ORIGIN == "user"``); it keeps them and offers the new image's boxes
    instead (``K.BOX_OFFER``). Starter or sample boxes the user never touched are replaced.

    A capture file (``K.SOURCE == "capture"``) is one more image: its frame is the padded batch the
    model's boxes are in, shown at scale 1, so the table's numbers are the numbers the model passed
    (:mod:`roi_lab.ui.captured`). Its boxes follow the same rule as a new image's.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import streamlit as st

from roi_lab.ui import boxtable, guard

__all__ = [
    "K",
    "DEFAULTS",
    "DEFAULT_MAX_SIDE",
    "PERSISTED",
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
    "edit_rows",
    "add_notes",
    "accept_offer",
    "handle_selection",
    "handle_edits",
    "import_boxes",
    "default_device",
    "use_capture",
    "apply_capture_view",
    "capture_view",
    "source_changed",
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
    BOXES = "boxes"  # list of rows, see roi_lab.ui.boxtable: xyxy px of the ORIGINAL image
    BOXES_REV = "boxes_rev"  # bumped on every table change: versions the editor and chart keys
    BOXES_NOTES = "boxes_notes"  # [(level, message)] from the last table change
    BOXES_ORIGIN = "boxes_origin"  # "user" | "starter" | "sample:<name>" | "empty": may a new image replace them?
    BOX_OFFER = "box_offer"  # None or {"label", "rows", "origin"}: boxes a new image brought, not applied
    IMAGE_NOTE = "image_note"  # what the last new image did to the box table (shown on the image page)
    IMPORT_SEEN = "boxes_import_seen"  # id of the last box file handled
    CALLBACK_ERROR = "callback_error"  # message of a callback that failed (shown once by the next run)
    CAPTURE_BYTES = "capture_bytes"  # bytes of the opened capture file (roi_lab.load_capture reads them), or None
    CAPTURE_HASH = "capture_hash"  # sha1 of CAPTURE_BYTES: the cache key of the parsed capture
    CAPTURE_NAME = "capture_name"  # the capture file's name, for captions
    CAPTURE_ERROR = "capture_error"  # message of the last refused capture file (the previous state stays)
    CAPTURE_SEEN = "capture_seen"  # id of the last capture upload handled
    # widget values, canonical: a widget is drawn with key widget_key(K.X) and synced back (see bind)
    SAMPLE = "sample"
    SOURCE = "source"  # "sample" | "upload" | "capture" (roi_lab.ui.source reads it)
    CAPTURE_CALL = "capture_call"  # the captured call shown (index into cap.calls)
    CAPTURE_IMAGE = "capture_image"  # the image of that call's batch
    CAPTURE_LEVEL = "capture_level"  # multi-scale poolers: the level whose map is shown
    CAPTURE_ONLY_LEVEL = "capture_only_level"  # multi-scale poolers: only the boxes sent to that level
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
    BOX_ANGLE = "box_angle"  # degrees, counter-clockwise: the rotated variants turn every box by it
    CHANNEL_VIEW = "channel_view"
    CHANNEL_INDEX = "channel_index"
    FOCUS_BOX = "focus_box"
    DETAIL_KIND = "detail_kind"  # the variant whose details Side by side shows
    SHOW_DETAILS = "show_details"  # Side by side draws the details (on demand: they cost browser time)
    # per-render widget keys (versioned by BOXES_REV, so a new table resets them)
    EDITOR_PREFIX = "boxes_editor_"
    CHART_PREFIX = "boxes_chart_"
    SIDE_CHART_PREFIX = "side_chart_"


def default_device() -> str:
    """CUDA when this machine has it (the backbone then runs on the GPU), else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


DEFAULTS: dict[str, Any] = {
    K.SOURCE: "sample",
    K.SAMPLE: None,
    K.BACKBONE: "resnet50",
    K.STAGE: "C4",
    K.DEVICE: None,  # filled by init_state with default_device()
    K.WEIGHTS: "auto",
    K.WEIGHTS_PATH: "",
    K.SUMMARY: "mean",
    K.BOX_FORMAT: "xyxy",
    K.BOX_SPACE: "absolute",
    K.OUTPUT_SIZE: 7,
    K.SAMPLING_RATIO: 2,
    K.ALIGNED: True,
    K.BOX_ANGLE: 30,
    K.CHANNEL_VIEW: "mean",
    K.CHANNEL_INDEX: 0,
    K.FOCUS_BOX: 0,
    K.DETAIL_KIND: "image_space_boxes",
    K.SHOW_DETAILS: False,
    K.CAPTURE_CALL: 0,
    K.CAPTURE_IMAGE: 0,
    K.CAPTURE_LEVEL: 0,
    K.CAPTURE_ONLY_LEVEL: True,
}
WIDGET_PREFIX = "w_"
#: What a browser refresh restores (roi_lab.ui.persist): the image, the capture file, the table and every setting.
PERSISTED: tuple[str, ...] = (
    K.IMAGE_BYTES, K.IMAGE_HASH, K.IMAGE_NAME, K.IMAGE_SAMPLE, K.MAX_SIDE, K.BOXES, K.BOXES_ORIGIN,
    K.CAPTURE_BYTES, K.CAPTURE_HASH, K.CAPTURE_NAME,
    *DEFAULTS,
)


def _env_max_side() -> int:
    try:
        return max(32, int(os.environ.get("ROI_LAB_MAX_SIDE", DEFAULT_MAX_SIDE)))
    except ValueError:
        return DEFAULT_MAX_SIDE


def init_state() -> None:
    """Set every key's default once per session: from the URL's saved session when there is one (a browser
    refresh), else the defaults and the default sample image."""
    from roi_lab.ui import persist

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
        K.BOXES_ORIGIN: "empty",
        K.BOX_OFFER: None,
        K.IMAGE_NOTE: None,
        K.IMPORT_SEEN: None,
        K.CALLBACK_ERROR: None,
        K.CAPTURE_BYTES: None,
        K.CAPTURE_HASH: None,
        K.CAPTURE_NAME: None,
        K.CAPTURE_ERROR: None,
        K.CAPTURE_SEEN: None,
    }
    fresh = K.IMAGE_HASH not in ss
    restored = persist.restore() if fresh else False
    for key, value in {**canonical, **DEFAULTS}.items():
        if key not in ss:
            ss[key] = value
    if ss[K.DEVICE] is None:
        ss[K.DEVICE] = default_device()
    if fresh and not restored and ss[K.IMAGE_BYTES] is None:
        from roi_lab.ui import loaders

        samples = loaders.sample_names()
        if samples:
            ss[K.SAMPLE] = loaders.default_sample(samples)
            load_sample_into_state(ss[K.SAMPLE])


def widget_key(key: str, kind: str = "") -> str:
    """The widget key that shows the plain state key ``key`` (``kind`` tells apart two widget types that
    show the same value, e.g. pills for a few boxes and a selectbox for many)."""
    return WIDGET_PREFIX + key + (f"_{kind}" if kind else "")


def sync(key: str, kind: str = "") -> None:
    """Copy a widget's value back to its plain key (an ``on_change`` callback)."""
    st.session_state[key] = st.session_state[widget_key(key, kind)]


def bind(key: str, then: Any = None, kind: str = "") -> dict[str, Any]:
    """Widget kwargs (``key``, ``on_change``) for a widget showing the plain state key ``key``.

    Call it right before drawing the widget: it copies the plain value into the widget key.
    ``then`` is an extra callback run after the value is synced. The callback is guarded
    (:func:`roi_lab.ui.guard.callback`): whatever it raises becomes a message, never a traceback.
    """
    st.session_state[widget_key(key, kind)] = st.session_state[key]

    def on_change() -> None:
        sync(key, kind)
        if then is not None:
            then()

    return {"key": widget_key(key, kind), "on_change": guard.callback(on_change)}


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


def set_rows(rows: list[dict[str, Any]], notes: list[boxtable.Note] | None = None, origin: str = "user") -> None:
    """Replace the box table (rows in original-image px), bump its revision (fresh editor/chart widgets),
    keep the notes and say where the rows came from (``"user"`` unless a new image brought them)."""
    ss = st.session_state
    ss[K.BOXES] = rows
    ss[K.BOXES_REV] = int(ss.get(K.BOXES_REV, 0)) + 1
    ss[K.BOXES_NOTES] = list(notes or [])
    ss[K.BOXES_ORIGIN] = origin if rows else "empty"
    ss[K.BOX_OFFER] = None
    n = len(rows)
    if int(ss.get(K.FOCUS_BOX, 0) or 0) >= max(n, 1):
        ss[K.FOCUS_BOX] = 0


def edit_rows(rows: list[dict[str, Any]], notes: list[boxtable.Note]) -> None:
    """The user changed the table (drawn, typed, imported, cleared): the rows are theirs from now on."""
    set_rows(rows, notes, origin="user")
    st.session_state[K.IMAGE_NOTE] = None


def add_notes(notes: list[boxtable.Note]) -> None:
    """Add notes for the Boxes page without changing the table."""
    st.session_state[K.BOXES_NOTES] = list(st.session_state.get(K.BOXES_NOTES, [])) + list(notes)


def _offer_or_replace(rows: list[dict[str, Any]], origin: str, what: str, image: str) -> None:
    """A new image brought ``rows``: replace the table unless it holds the user's own boxes; then keep
    those and offer ``rows`` (never silently wipe what the user drew, typed or imported)."""
    ss = st.session_state
    mine = ss.get(K.BOXES_ORIGIN) == "user" and ss.get(K.BOXES)
    if not mine:
        note = f"New image {image}: the box table now holds {what}."
        replaced = bool(ss.get(K.BOXES))
        set_rows(rows, [("info", note)], origin=origin)
        ss[K.IMAGE_NOTE] = note if replaced else None  # the first image of a session replaces nothing
        return
    n = len(ss[K.BOXES])
    note = (f"New image {image}: your {n} box{'es' if n != 1 else ''} were kept (same pixel numbers, now on "
            f"this image). Use the button to take {what} instead.")
    ss[K.BOXES_REV] = int(ss.get(K.BOXES_REV, 0)) + 1
    ss[K.BOXES_NOTES] = [("info", note)]
    ss[K.IMAGE_NOTE] = note
    ss[K.BOX_OFFER] = {"label": f"Replace my {n} boxes with {what}", "rows": rows, "origin": origin}


def accept_offer() -> None:
    """Apply the boxes a new image brought (the button next to the note of :func:`_offer_or_replace`)."""
    offer = st.session_state.get(K.BOX_OFFER)
    if offer:
        note = f"Done: {offer['label'][0].lower()}{offer['label'][1:]}."
        set_rows(list(offer["rows"]), [("info", note)], origin=offer["origin"])
        st.session_state[K.IMAGE_NOTE] = note


def load_sample_into_state(name: str, *, replace_boxes: bool = False) -> None:
    """Load a bundled sample as the current image; its known boxes (if any) fill the table unless the table
    holds the user's own boxes (then they are offered). ``replace_boxes`` (the preset button) replaces always."""
    from roi_lab.ui import loaders

    sample = loaders.sample_info(name)
    data = loaders.sample_bytes(name)
    title = sample.title if getattr(sample, "title", None) else name
    set_image(data, title, sample=name)
    working = loaders.working_image(st.session_state[K.IMAGE_HASH], st.session_state[K.MAX_SIDE], data)
    if sample.boxes_image is not None and len(sample.boxes_image):
        rows = boxtable.rows_from_boxes(sample.boxes_image.double(), list(sample.labels or []))
        what, origin = f"the sample's {len(rows)} known boxes", f"sample:{name}"
    else:
        rows, what, origin = default_rows(working.original_size), "two starter boxes", "starter"
    if replace_boxes:
        set_rows(rows, [("info", f"Loaded {what}.")], origin=origin)
    else:
        _offer_or_replace(rows, origin, what, title)


def default_rows(image_size: tuple[int, int]) -> list[dict[str, Any]]:
    """Two starter boxes for an image without known boxes (so the comparison page has something)."""
    h, w = image_size
    return boxtable.rows_from_boxes(
        [[w * 0.25, h * 0.25, w * 0.6, h * 0.7], [w * 0.55, h * 0.15, w * 0.85, h * 0.45]], ["box 1", "box 2"]
    )


def use_upload(data: bytes, name: str) -> bool:
    """Try an uploaded file as the new image; on failure keep everything and store the message.

    Whatever decoding or resizing raises becomes the message (a RoiLabError's text, or the exception's
    type and text for anything else): an upload never ends in a traceback.

    Returns:
        bool: True when the upload became the current image.
    """
    from roi_lab.backbone import MIN_IMAGE_SIDE
    from roi_lab.ui import loaders

    ss = st.session_state
    digest = hashlib.sha1(data).hexdigest()
    try:
        working = loaders.working_image(digest, ss[K.MAX_SIDE], data)
    except Exception as e:  # ImageDecodeError: not an image, truncated, too many pixels; or anything else
        ss[K.IMAGE_ERROR] = f"{name}: {guard.message(e)}"
        return False
    h, w = working.original_size
    wh, ww = working.size
    if min(h, w) < MIN_IMAGE_SIDE or min(wh, ww) < MIN_IMAGE_SIDE:
        resized = f"; resized for the model (longer side {ss[K.MAX_SIDE]} px) it would be {ww} x {wh}" if (
            (wh, ww) != (h, w)) else ""
        ss[K.IMAGE_ERROR] = (
            f"{name}: the backbones expect an image of at least {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels; "
            f"got {w} x {h} (W x H){resized}.\nFix: upload a larger (or less elongated) image."
        )
        return False
    set_image(data, name, sample=None)
    _offer_or_replace(default_rows(working.original_size), "starter", "two starter boxes", name)
    return True


def handle_selection(chart_key: str, image_size: tuple[int, int]) -> bool:
    """Append the boxes of the chart's box selection (``event["selection"]["box"]``) to the table.

    ``image_size`` is the original image's (H, W): the charts' axes are original-image pixels. The
    ``on_select`` callback calls this; the page calls it too before drawing the chart, which picks up
    a selection set through ``st.session_state`` (as tests do). Any handled selection bumps the table
    revision, so the next chart is a fresh widget with an empty selection.

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
    edit_rows(rows, notes)
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
    edit_rows(rows, notes)
    return True


def import_boxes(data: bytes, name: str, file_format: str, image_size: tuple[int, int]) -> bool:
    """Replace the table with the boxes of a box file, or refuse and keep the table.

    A file that fails to read (whatever ``read_boxes`` raises) or holds no boxes at all (an empty file,
    an SVG, a COCO file without annotations) leaves the table unchanged, with a note that says why:
    an import never silently empties the table.

    Returns:
        bool: True when the table was replaced.
    """
    from roi_lab.boxes import read_boxes

    kept = "the table is unchanged"
    try:
        labeled = read_boxes(data, file_format, image_size=image_size)
        boxes = labeled.boxes_image
        n = len(boxes)
    except Exception as e:  # BoxFileError and friends; anything else the reader raises on odd input
        add_notes([("error", f"{name} was not imported; {kept}.\n\n{guard.message(e)}")])
        return False
    if n == 0:
        add_notes([("warning", f"{name} holds no boxes (format {file_format!r}), so it was not imported; {kept}. "
                               "Fix: check the file and the import format; use 'Clear all boxes' to empty the table.")])
        return False
    rows = boxtable.rows_from_boxes(boxes, list(labeled.labels))
    edit_rows(rows, [("info", f"Imported {n} box{'es' if n != 1 else ''} from {name}.")])
    return True


# ----------------------------------------------------------------------------- capture files
def capture_view() -> Any:
    """The capture view the state selects (``roi_lab.ui.captured.View``), indices not yet checked."""
    from roi_lab.ui.captured import View

    ss = st.session_state
    return View(int(ss.get(K.CAPTURE_CALL) or 0), int(ss.get(K.CAPTURE_IMAGE) or 0),
                int(ss.get(K.CAPTURE_LEVEL) or 0), bool(ss.get(K.CAPTURE_ONLY_LEVEL, True)))


def _set_capture_view(view: Any) -> None:
    ss = st.session_state
    ss[K.CAPTURE_CALL], ss[K.CAPTURE_IMAGE] = view.call, view.image
    ss[K.CAPTURE_LEVEL], ss[K.CAPTURE_ONLY_LEVEL] = (view.level or 0), view.only_level


def use_capture(data: bytes, name: str) -> bool:
    """Try an uploaded capture file as the source; on failure keep everything and store the message.

    The file is checked against the app's size limit (``roi_lab.ui.captured.capture_limit``) before it is
    read, then read by ``roi_lab.load_capture`` (regular file, size cap, ``torch.load(weights_only=True)``,
    every field type-checked). Whatever that raises becomes the message: a hostile or broken file never
    ends in a traceback, and the image, boxes and settings stay as they were.

    Returns:
        bool: True when the capture became the source (its default view applied: see :func:`apply_capture_view`).
    """
    from roi_lab.ui import captured, loaders

    ss = st.session_state
    limit = captured.capture_limit()
    if len(data) > limit:
        ss[K.CAPTURE_ERROR] = f"{name}: {guard.message(captured.too_large(name, len(data), limit))}"
        return False
    digest = hashlib.sha1(data).hexdigest()
    try:
        cap = loaders.capture_file(digest, limit, data)
        if not cap.calls:
            raise captured.no_calls(name)
        view = captured.default_view(cap)
    except Exception as e:  # CaptureFileError, or anything a hand-made file makes the reader raise
        ss[K.CAPTURE_ERROR] = f"{name}: {guard.message(captured.renamed(e, name))}"
        return False
    ss[K.CAPTURE_BYTES], ss[K.CAPTURE_HASH], ss[K.CAPTURE_NAME] = data, digest, name
    ss[K.CAPTURE_ERROR] = None
    ss[K.SOURCE] = "capture"
    _set_capture_view(view)
    apply_capture_view()
    return True


def apply_capture_view() -> None:
    """The capture view in the state became current: its boxes fill the table (a table of the user's own
    boxes is kept and the capture's offered, as for a new image) and the call's output size, sampling ratio
    and ``aligned`` become the settings of "your call"."""
    from roi_lab.ui import captured, source

    ss = st.session_state
    src = source.capture_source()
    if src is None:
        return
    cap, view = src.capture(), src.view
    _set_capture_view(view)  # clamped to what the capture has
    call = cap.calls[view.call]
    frame, _ = captured.frame_size(cap, call)
    settings = captured.settings_of(call, (int(ss[K.OUTPUT_SIZE]), int(ss[K.SAMPLING_RATIO]), bool(ss[K.ALIGNED])))
    ss[K.OUTPUT_SIZE], ss[K.SAMPLING_RATIO], ss[K.ALIGNED] = settings.output_size, settings.sampling_ratio, \
        settings.aligned
    ss[K.FOCUS_BOX] = 0
    try:
        rows, _ = captured.table_rows(call, view, frame)
    except ValueError as e:
        add_notes([("warning", f"The box table is unchanged: {e}.")])
        return
    level = captured.level_name(call, view) if view.only_level else None
    what = (f"call #{call.index}'s {len(rows)} box{'es' if len(rows) != 1 else ''}"
            + (f" pooled from level {level}" if level is not None else "")
            + (f" of image {view.image}" if captured.num_images(call) > 1 else ""))
    _offer_or_replace(rows, f"capture:{ss[K.CAPTURE_HASH][:12]}", what, f"{ss[K.CAPTURE_NAME]} (call #{call.index})")


def source_changed() -> None:
    """The image source radio changed: to a loaded capture, its view applies; away from a capture whose boxes
    fill the table, the current image's own boxes come back (the user's own boxes are never replaced)."""
    ss = st.session_state
    if ss[K.SOURCE] == "capture":
        if ss.get(K.CAPTURE_BYTES) is not None:
            apply_capture_view()
        return
    if not str(ss.get(K.BOXES_ORIGIN, "")).startswith("capture:") or ss.get(K.IMAGE_BYTES) is None:
        return
    if ss.get(K.IMAGE_SAMPLE):
        load_sample_into_state(ss[K.IMAGE_SAMPLE])
    else:
        from roi_lab.ui import loaders

        working = loaders.working_image(ss[K.IMAGE_HASH], ss[K.MAX_SIDE], ss[K.IMAGE_BYTES])
        _offer_or_replace(default_rows(working.original_size), "starter", "two starter boxes", ss[K.IMAGE_NAME])
