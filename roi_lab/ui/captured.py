"""A capture file in the app: the image, boxes, feature map and parameters of one recorded call. No streamlit.

A capture (:func:`roi_lab.load_capture`) holds calls; the app shows one :class:`View` of it at a time: a
call, an image of its batch and, for multi-scale poolers, a pyramid level (the boxes the pooler sent to it,
or every box of the image on that level's map). Everything here turns a :class:`~roi_lab.capture.CapturedCall`
into what the pages already draw: an RGB image, boxes in its pixels, one feature map ``[1, C, h, w]``, its
stride, and the call's own output size, sampling ratio and ``aligned``.

Convention:
    The boxes of a torchvision detection model's calls are xyxy pixels of the padded batch
    (``cap.images[call.images].image_size``): the frame of the captured image tensor and of the feature
    maps. The app shows that batch image at its own size (scale 1), so the box table's numbers are the
    numbers the model passed. Without a captured image the frame is the call's ``image_size`` (or, when
    unknown, the map's size times its stride) and the image is a blank canvas of that size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from roi_lab.errors import RoiLabError

__all__ = [
    "CaptureDataMissing",
    "MAX_TABLE_BOXES",
    "CANVAS_GRAY",
    "View",
    "CallBoxes",
    "default_view",
    "valid_view",
    "call_label",
    "level_label",
    "num_images",
    "call_boxes",
    "table_rows",
    "frame_size",
    "image_of",
    "canvas",
    "map_shape",
    "feature_map",
    "spatial_scale_of",
    "nominal_stride",
    "Settings",
    "settings_of",
    "missing",
    "panel_of_call",
    "capture_limit",
    "too_large",
    "no_calls",
    "renamed",
    "level_name",
    "checked_frame",
    "regions_feature",
    "size_text",
    "blank_map",
    "scale_text",
    "call_notes",
]

MAX_TABLE_BOXES = 100  # boxes the table takes from a call (a detector passes 1000 proposals; the findings cover all)
CANVAS_GRAY = 236  # the blank canvas drawn when the capture holds no image


class CaptureDataMissing(RoiLabError):
    """The capture does not hold what a page needs (the feature maps, the boxes): what it holds, and how to
    capture the rest."""


@dataclass(frozen=True)
class View:
    """What the app shows of a capture.

    Attributes:
        call (int): index into ``cap.calls``.
        image (int): the image of the call's batch.
        level (int | None): multi-scale poolers: the level (index into ``call.level_names``) whose map is shown.
        only_level (bool): multi-scale poolers: only the boxes the pooler sent to that level (else every box
            of the image, on that level's map).
    """

    call: int
    image: int = 0
    level: int | None = None
    only_level: bool = True


@dataclass(frozen=True)
class CallBoxes:
    """Boxes of one image of a call, xyxy in the frame's pixels.

    Attributes:
        boxes (Tensor[K, 4] float64): xyxy, as passed (crop_and_resize: converted, see :func:`call_boxes`).
        index (Tensor[K] int64): each box's position in the call's concatenated boxes (``call.levels`` order).
        levels (Tensor[K] int64 | None): multi-scale poolers: the level each box went to.
        total (int): boxes of this image before the level filter and the table's cap.
        notes (list[str]): what was converted, filtered or left out.
    """

    boxes: Tensor
    index: Tensor
    levels: Tensor | None
    total: int
    notes: list[str] = field(default_factory=list)


def _is_multi(call: Any) -> bool:
    return bool(call.level_names) and bool(call.scales)


def _box_count(call: Any, level: int, image: int = 0) -> int:
    try:
        b = call_boxes(call, View(call.index, image, level, True), cap_rows=False)
    except Exception:  # noqa: BLE001 - a label must never fail
        return 0
    return len(b.boxes)


def default_view(cap: Any) -> View:
    """The view a freshly opened capture starts on: the first call with an error finding (else the first call
    with boxes, else call 0), image 0 and, for multi-scale poolers, the level that got the most boxes."""
    calls = list(cap.calls)
    if not calls:
        return View(0)
    pick = next((c for c in calls if any(f.severity == "error" for f in c.findings)), None)
    pick = pick or next((c for c in calls if c.num_boxes), calls[0])
    level = None
    if _is_multi(pick):
        counts = [_box_count(pick, i) for i in range(len(pick.level_names))]
        level = int(np.argmax(counts)) if counts else 0
    return View(pick.index, 0, level, True)


def valid_view(cap: Any, view: View) -> View:
    """``view`` with every index clamped to what the capture has (a restored or hand-set view may point past it)."""
    calls = list(cap.calls)
    if not calls:
        return View(0)
    if not 0 <= view.call < len(calls):
        return default_view(cap)
    call = calls[view.call]
    image = view.image if 0 <= view.image < num_images(call) else 0
    level = None
    if _is_multi(call):
        level = view.level if view.level is not None and 0 <= view.level < len(call.level_names) else 0
    return View(view.call, image, level, bool(view.only_level))


def _short_where(where: str) -> str:
    """``"a.b.C.forward (path/to/file.py:12)"`` -> ``"C.forward (file.py:12)"``."""
    head, _, tail = str(where).partition(" (")
    parts = head.split(".")
    name = ".".join(parts[-2:]) if len(parts) >= 2 else head
    loc = tail.rstrip(")").rsplit("/", 1)[-1]
    return f"{name} ({loc})" if loc else name


def call_label(call: Any) -> str:
    """One line per call for a picker: ``"#0 torchvision.ops.roi_align in MyPool.forward (detect.py:12): 1 error"``."""
    sev = [f.severity for f in call.findings]
    counts = [f"{sev.count(s)} {s}{'s' if sev.count(s) != 1 else ''}" for s in ("error", "warning") if sev.count(s)]
    k = call.num_boxes
    text = f"#{call.index} {call.op} in {_short_where(call.where)}: {k if k is not None else '?'} boxes"
    return text + (f"; {', '.join(counts)}" if counts else "; no error or warning")


def level_label(call: Any, level: int, image: int = 0) -> str:
    """``"'0': 1/4, map 32 x 48, 45 boxes"`` for a level picker."""
    name = call.level_names[level]
    scale = call.scales[level] if level < len(call.scales) else None
    shape = call.level_shapes[level] if call.level_shapes and level < len(call.level_shapes) else None
    parts = [f"{name!r}"]
    if scale:
        parts.append(f"1/{_num(1 / scale)}" if scale < 1 else _num(scale))
    if shape is not None:
        parts.append(f"map {shape[-2]} x {shape[-1]}")
    if call.levels is not None:
        n = _box_count(call, level, image)
        parts.append(f"{n} box{'es' if n != 1 else ''}")
    return f"{parts[0]}: {', '.join(parts[1:])}" if len(parts) > 1 else parts[0]


def _num(v: float) -> str:
    return str(int(round(v))) if abs(v - round(v)) < 1e-6 else f"{v:.4g}"


def num_images(call: Any) -> int:
    """How many images the call's batch holds (its map's N; else the boxes list's length; else 1)."""
    if call.feature_shape and len(call.feature_shape) == 4 and call.feature_shape[0] > 0:
        return int(call.feature_shape[0])
    if isinstance(call.boxes, list) and call.boxes:
        return len(call.boxes)
    return 1


def call_boxes(call: Any, view: View, frame: tuple[int, int] | None = None, *, cap_rows: bool = True) -> CallBoxes:
    """The boxes of ``view.image`` (and of ``view.level`` when ``view.only_level``), xyxy, at most
    :data:`MAX_TABLE_BOXES` of them (the first ones, in the order passed) when ``cap_rows``.

    rois ``[K, 5]`` are split by their batch-index column, a list by position; a plain ``[K, 4]`` (what
    ``crop_and_resize`` and a missing batch-index column pass) belongs to image 0, or to ``box_indices``.
    ``crop_and_resize``'s boxes are (y1, x1, y2, x2) normalized: they become xyxy pixels of ``frame``
    (``x * W``, ``y * H``), the usual meaning of normalized boxes.

    Raises:
        ValueError: the call kept no boxes (dropped for ``max_bytes``), or they are not boxes of 4 coordinates.
    """
    b = call.boxes
    notes: list[str] = []
    if b is None:
        raise ValueError(f"call #{call.index} kept no boxes ({call.dropped or 'none were passed'})")
    if isinstance(b, list):
        if not b or not all(isinstance(t, Tensor) and t.dim() == 2 and t.shape[1] == 4 for t in b):
            raise ValueError(f"call #{call.index}'s boxes are not a list of Tensor[L, 4] ({call.box_format})")
        sizes = [len(t) for t in b]
        image = min(view.image, len(b) - 1)
        start = sum(sizes[:image])
        boxes = b[image].double()
        index = torch.arange(start, start + sizes[image])
    elif isinstance(b, Tensor) and b.dim() == 2 and b.shape[1] == 5:
        rows = b.double()
        keep = rows[:, 0] == float(view.image)
        index = torch.nonzero(keep).flatten()
        boxes = rows[index, 1:]
    elif isinstance(b, Tensor) and b.dim() == 2 and b.shape[1] == 4:
        rows = b.double()
        if call.box_indices is not None and len(call.box_indices) == len(rows):
            index = torch.nonzero(call.box_indices.long() == view.image).flatten()
        else:
            index = torch.arange(len(rows)) if view.image == 0 else torch.zeros(0, dtype=torch.int64)
        boxes = rows[index]
        if call.op == "roi_lab.crop_and_resize":
            h, w = frame if frame is not None else (1, 1)
            y1, x1, y2, x2 = boxes.unbind(1)
            boxes = torch.stack([x1 * w, y1 * h, x2 * w, y2 * h], 1)
            notes.append(f"crop_and_resize's boxes are (y1, x1, y2, x2) normalized: the table shows them as "
                         f"xyxy pixels of the {h} x {w} frame (x * W, y * H).")
        else:
            notes.append("The boxes were passed as Tensor[K, 4] without a batch-index column: the table takes "
                         "them as boxes of image 0.")
    else:
        shape = list(b.shape) if isinstance(b, Tensor) else type(b).__name__
        raise ValueError(f"call #{call.index}'s boxes are {shape}, not boxes of 4 coordinates the table can hold")
    levels = None
    if call.levels is not None and len(call.levels) == (call.num_boxes or -1):
        levels = call.levels.long()[index]
    total = len(boxes)
    if _is_multi(call) and view.only_level and view.level is not None and levels is not None:
        keep = levels == view.level
        boxes, index, levels = boxes[keep], index[keep], levels[keep]
    if cap_rows and len(boxes) > MAX_TABLE_BOXES:
        notes.append(f"The table holds the first {MAX_TABLE_BOXES} of these {len(boxes)} boxes (in the order "
                     "passed); the call's findings cover all of them.")
        boxes, index = boxes[:MAX_TABLE_BOXES], index[:MAX_TABLE_BOXES]
        levels = levels[:MAX_TABLE_BOXES] if levels is not None else None
    return CallBoxes(boxes, index, levels, total, notes)


def table_rows(call: Any, view: View, frame: tuple[int, int] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The box table's rows for ``view`` (xyxy frame pixels), labelled with each box's position in the call
    and, for multi-scale poolers, the level it went to; and the notes of :func:`call_boxes`."""
    from roi_lab.ui.boxtable import rows_from_boxes

    b = call_boxes(call, view, frame)
    names = call.level_names or []
    labels = []
    for j, i in enumerate(b.index.tolist()):
        level = int(b.levels[j]) if b.levels is not None else None
        labels.append(f"#{i}" + (f" L{names[level]}" if level is not None and level < len(names) else ""))
    return rows_from_boxes(b.boxes, labels), b.notes


def frame_size(cap: Any, call: Any) -> tuple[tuple[int, int], str]:
    """(H, W) of the frame the call's boxes are in, and where it came from.

    The captured image batch's size; else the call's ``image_size``; else the first map's size times the
    stride of its scale; else the extent of the boxes.
    """
    images = _images(cap, call)
    if images is not None and images.tensor is not None and images.tensor.dim() == 4:
        return (int(images.tensor.shape[-2]), int(images.tensor.shape[-1])), "the captured image batch"
    if call.image_size is not None:
        return (int(call.image_size[0]), int(call.image_size[1])), f"the call's image size ({call.image_size_source})"
    shape = map_shape(call, View(call.index, 0, 0 if _is_multi(call) else None))
    scale = call.scales[0] if _is_multi(call) else call.spatial_scale
    if shape is not None and scale and scale > 0:
        return ((max(1, round(shape[-2] / scale)), max(1, round(shape[-1] / scale))),
                "the map's size / its spatial_scale (the image size was not recorded)")
    try:
        b = call_boxes(call, View(call.index), None, cap_rows=False).boxes
        if len(b) and bool(torch.isfinite(b).all()):
            return ((max(1, math.ceil(float(b[:, 3].max()))), max(1, math.ceil(float(b[:, 2].max())))),
                    "the extent of the boxes (neither the image size nor a map was recorded)")
    except ValueError:
        pass
    return (256, 256), "a placeholder (nothing in the capture says the image size)"


def _images(cap: Any, call: Any) -> Any:
    if call.images is None or not 0 <= call.images < len(cap.images):
        return None
    return cap.images[call.images]


def image_of(cap: Any, call: Any, image: int = 0) -> np.ndarray | None:
    """The captured batch image ``image`` of ``call``, un-normalized to ndarray[H, W, 3] uint8 RGB (None when the
    capture kept no image tensor).

    ``CapturedImages.tensor`` is the transform's output, ``(x - mean) / std`` of an image in [0, 1]; this is
    ``x = tensor * std + mean``, clamped to [0, 1], times 255. Without mean and std the tensor is taken as
    an image in [0, 1] (or [0, 255] when its values say so).
    """
    images = _images(cap, call)
    t = images.tensor if images is not None else None
    if t is None or t.dim() != 4 or t.shape[1] != 3 or not 0 <= image < t.shape[0]:
        return None
    x = t[image].detach().to(torch.float32)  # [3, H, W]
    if images.mean is not None and images.std is not None and len(images.mean) == 3 and len(images.std) == 3:
        x = x * torch.tensor(images.std).view(3, 1, 1) + torch.tensor(images.mean).view(3, 1, 1)
    elif float(x.max()) > 1.5:
        x = x / 255.0
    x = torch.nan_to_num(x, nan=0.0).clamp(0, 1)
    return np.ascontiguousarray((x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())  # [H, W, 3]


def canvas(size: tuple[int, int]) -> np.ndarray:
    """A blank light-gray ndarray[H, W, 3] uint8: where the boxes are drawn when the capture holds no image."""
    h, w = (max(1, int(size[0])), max(1, int(size[1])))
    return np.full((h, w, 3), CANVAS_GRAY, np.uint8)


def map_shape(call: Any, view: View) -> tuple[int, ...] | None:
    """The shape of the map ``view`` shows (N, C, h, w), known also when the maps were not kept."""
    if _is_multi(call) and call.level_shapes and view.level is not None and view.level < len(call.level_shapes):
        return tuple(call.level_shapes[view.level])
    return tuple(call.feature_shape) if call.feature_shape is not None else None


def feature_map(call: Any, view: View) -> Tensor | None:
    """The kept map of ``view``: Tensor[1, C, h, w] float32 (CPU), or None when the capture kept no maps."""
    f = call.features
    if f is None:
        return None
    if isinstance(f, list):
        level = view.level if view.level is not None else 0
        f = f[level] if 0 <= level < len(f) else None
    if not isinstance(f, Tensor) or f.dim() != 4 or not 0 <= view.image < f.shape[0]:
        return None
    return f[view.image : view.image + 1].detach().to("cpu", torch.float32).contiguous()


def spatial_scale_of(call: Any, view: View) -> float | None:
    """The scale the call applied to the boxes of ``view``: the level's for a multi-scale pooler."""
    if _is_multi(call):
        level = view.level if view.level is not None else 0
        return float(call.scales[level]) if level < len(call.scales) else None
    return float(call.spatial_scale) if call.spatial_scale is not None else None


def nominal_stride(call: Any, view: View, frame: tuple[int, int]) -> float:
    """The stride of the map ``view`` shows, in frame pixels per cell.

    A multi-scale pooler's own scale for the level (torchvision infers it from the sizes:
    ``2 ** round(log2(h / H))``). A single map: from the frame and map sizes the same way, so a call whose
    ``spatial_scale`` is wrong does not make the map's stride wrong; without a map shape, ``1 / spatial_scale``.
    """
    if _is_multi(call):
        scale = spatial_scale_of(call, view)
        if scale and scale > 0:
            return _round_stride(1 / scale)
    shape = map_shape(call, view)
    if shape is not None and len(shape) >= 2 and min(shape[-2:]) > 0:
        ratios = [frame[0] / shape[-2], frame[1] / shape[-1]]
        return float(2 ** round(math.log2(max(min(ratios), 1e-9))))
    scale = spatial_scale_of(call, view)
    return _round_stride(1 / scale) if scale and scale > 0 else 1.0


def _round_stride(s: float) -> float:
    return float(round(s)) if abs(s - round(s)) < 1e-6 else float(s)


@dataclass(frozen=True)
class Settings:
    """The call's parameters as the app's controls hold them (output size PH = PW, sampling ratio 0..4)."""

    output_size: int
    sampling_ratio: int
    aligned: bool
    notes: tuple[str, ...] = ()


OUTPUT_RANGE = (2, 28)  # the app's output-size slider
SAMPLING_RANGE = (0, 4)  # the app's sampling-ratio slider (0: adaptive)


def settings_of(call: Any, current: tuple[int, int, bool]) -> Settings:
    """The call's output size, sampling ratio and ``aligned`` for the app's controls; ``current`` fills what the
    call has not (a crop_and_resize has no ``aligned``), and the notes say what the controls cannot hold."""
    out, ratio, aligned = current
    notes = []
    if call.output_size is not None:
        ph, pw = (int(call.output_size[0]), int(call.output_size[1]))
        out = min(max(ph, OUTPUT_RANGE[0]), OUTPUT_RANGE[1])
        if ph != pw or out != ph:
            notes.append(f"The call's output size is {ph} x {pw}; the app's controls show {out} x {out}.")
    if call.sampling_ratio is not None:
        r = int(call.sampling_ratio)
        ratio = 0 if r <= 0 else min(r, SAMPLING_RANGE[1])
        if r > SAMPLING_RANGE[1]:
            notes.append(f"The call's sampling_ratio is {r}; the app's control goes up to {SAMPLING_RANGE[1]}.")
    if call.aligned is not None:
        aligned = bool(call.aligned)
    return Settings(int(out), int(ratio), bool(aligned), tuple(notes))


def missing(cap: Any, call: Any) -> list[str]:
    """What this capture does not hold for ``call``, and how to get it (empty when image and maps are there)."""
    out = []
    images = _images(cap, call)
    if call.features is None:
        why = f" ({call.dropped})" if call.dropped and "features" in call.dropped else ""
        out.append(
            f"No feature maps{why}: the crops, Side by side and the reproduction on your map need them. Capture "
            "with `roi_lab.capture(keep_features=True)` (and a `max_bytes` that holds them)."
        )
    if images is None:
        out.append(
            "No image batch: this call did not follow a torchvision GeneralizedRCNNTransform, so the boxes are "
            "drawn on a blank canvas of the frame's size. Pass `roi_lab.capture(image_size=...)` for the size; the "
            "image itself is kept for torchvision detection models with `keep_features=True`."
        )
    elif images.tensor is None:
        why = f" ({images.dropped})" if images.dropped else ""
        out.append(
            f"No image{why}: the boxes are drawn on a blank canvas of the batch's size. Capture with "
            "`roi_lab.capture(keep_features=True)` to keep the transformed image batch."
        )
    if call.boxes is None:
        out.append(f"No boxes ({call.dropped or 'none were passed'}): only the recorded findings remain. Capture "
                   "with a larger `max_bytes`.")
    return out


_PANELS = {  # scale the call used / the map's own scale -> the Side-by-side panel that shows that call
    1.0: "Your settings",
    0.5: "Stride x2",
    2.0: "Stride x1/2",
}


def panel_of_call(call: Any, view: View, stride: float) -> tuple[str | None, str]:
    """Which Side-by-side panel is the call as it ran, and a sentence saying so.

    "Your settings" uses ``spatial_scale = 1 / stride`` of the map; a call with another scale is one of the
    other panels (image-space boxes at 1.0, stride x2, x1/2) or none of them.
    """
    scale = spatial_scale_of(call, view)
    if scale is None or stride <= 0:
        return None, "The call has no spatial_scale (crop_and_resize): compare it with the TF panel."
    want = 1.0 / stride
    shown = _num(1 / scale) if scale < 1 else None
    said = f"1/{shown}" if shown else _num(scale)
    if abs(scale - 1.0) < 1e-9 and stride != 1:
        return ("Image-space boxes, spatial_scale=1",
                f"Your call ran with spatial_scale 1 on this stride-{_num(stride)} map: that is the panel "
                f"\"Image-space boxes, spatial_scale=1\". \"Your settings\" shows spatial_scale 1/{_num(stride)}, the "
                "map's own scale, with the call's other parameters.")
    ratio = scale / want
    for r, title in _PANELS.items():
        if abs(ratio - r) < 1e-6:
            if title == "Your settings":
                return title, (f"Your call's spatial_scale {said} is the map's own (stride {_num(stride)}): "
                               "\"Your settings\" is the call as it ran.")
            return title, (f"Your call ran with spatial_scale {said} on this stride-{_num(stride)} map: that is the "
                           f"panel \"{title}\". \"Your settings\" shows spatial_scale 1/{_num(stride)}, the map's own "
                           "scale, with the call's other parameters.")
    return None, (f"Your call ran with spatial_scale {said} on this stride-{_num(stride)} map (x{ratio:.3g} the map's "
                  f"own 1/{_num(stride)}); no panel shows exactly that scale. \"Your settings\" uses 1/{_num(stride)}.")


# --------------------------------------------------------------------------------------------- intake
DEFAULT_LIMIT_MB = 200  # Streamlit's default upload limit; .streamlit/config.toml sets server.maxUploadSize to it
LIMIT_ENV = "ROI_LAB_CAPTURE_MAX_MB"
MAX_FRAME_PIXELS = 25_000_000  # a blank canvas larger than this is refused (a hand-made file may declare any size)


def capture_limit() -> int:
    """The largest capture file the app reads, in bytes: ``ROI_LAB_CAPTURE_MAX_MB`` MiB (default 200)."""
    import os

    try:
        mb = float(os.environ.get(LIMIT_ENV, DEFAULT_LIMIT_MB))
    except ValueError:
        mb = DEFAULT_LIMIT_MB
    return int(max(mb, 0.0) * (1 << 20)) if math.isfinite(mb) else DEFAULT_LIMIT_MB << 20


def size_text(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    from roi_lab.capture._records import size_text as text

    return text(n)


def too_large(name: str, n: int, limit: int) -> RoiLabError:
    """The error for a capture file over the app's limit (checked before anything reads it)."""
    from roi_lab.capture import CaptureFileError

    return CaptureFileError(
        f"the app's capture intake ({name!r})",
        expected=f"a capture file of at most {size_text(limit)} (the app's limit, {LIMIT_ENV})",
        got=f"a file of {size_text(n)}",
        fix="capture less: `roi_lab.capture(keep_features=True, max_bytes=100 << 20)` keeps at most 100 MiB of "
        f"tensors, and a smaller input size (min_size) makes smaller maps; or start the app with {LIMIT_ENV}=<MiB> "
        "(and Streamlit's server.maxUploadSize) if this machine has the memory",
    )


def no_calls(name: str) -> RoiLabError:
    from roi_lab.capture import CaptureFileError

    return CaptureFileError(
        f"the app's capture intake ({name!r})",
        expected="a capture with at least one recorded ROI pooling call",
        got="a capture without calls",
        fix="run the model inside the with-block: `with roi_lab.capture(keep_features=True) as cap: model(images)`; "
        "TorchScript'ed models are not seen",
    )


def renamed(exc: Exception, name: str) -> Exception:
    """A CaptureFileError naming the uploaded file instead of the private temporary file it was read from."""
    from roi_lab.capture import CaptureFileError

    if isinstance(exc, CaptureFileError) and exc.where.startswith("load_capture("):
        return CaptureFileError(f"load_capture({name!r})", expected=exc.expected, got=exc.got, fix=exc.fix)
    return exc


def level_name(call: Any, view: View) -> str | None:
    """The level ``view`` shows, by its name (``"'0'"``), or None for a single-map call."""
    if not _is_multi(call) or view.level is None or view.level >= len(call.level_names):
        return None
    return repr(call.level_names[view.level])


def checked_frame(cap: Any, call: Any) -> tuple[int, int]:
    """:func:`frame_size`, refused when a blank canvas of it would be too large to draw.

    Raises:
        CaptureDataMissing: the frame has more than :data:`MAX_FRAME_PIXELS` pixels.
    """
    (h, w), where = frame_size(cap, call)
    if h * w > MAX_FRAME_PIXELS:
        raise CaptureDataMissing(
            f"call #{call.index}'s frame",
            expected=f"an image size of at most {MAX_FRAME_PIXELS:,} pixels to draw the boxes on",
            got=f"{h} x {w} ({where})",
            fix="capture with keep_features=True (the image batch is then kept) or with capture(image_size=(H, W))",
        )
    return h, w


def regions_feature(boxes: Any, scale: float, aligned: bool) -> np.ndarray:
    """Where roi_align with ``spatial_scale=scale`` really samples boxes (ndarray or Tensor[K, 4] xyxy):
    ndarray[K, 4] in feature sample coordinates (``roi_lab.geometry.roi_align_sample_points``' region)."""
    from roi_lab.geometry import roi_align_sample_points

    b = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).reshape(-1, 4)
    if not len(b):
        return np.zeros((0, 4))
    region, _, _ = roi_align_sample_points(b, float(scale), (1, 1), 1, bool(aligned))
    return region.numpy()


MAX_BLANK_CELLS = 4_000_000


def blank_map(shape: tuple[int, ...] | None) -> np.ndarray | None:
    """A zero ndarray[h, w] of a map's recorded shape, to draw boxes on when the map was not kept (None when the
    shape is unknown or implausibly large)."""
    if shape is None or len(shape) < 2 or min(shape[-2:]) <= 0 or shape[-2] * shape[-1] > MAX_BLANK_CELLS:
        return None
    return np.zeros((int(shape[-2]), int(shape[-1])), np.float32)


def scale_text(scale: float | None) -> str:
    """``0.0625`` -> ``"1/16"``, ``1.0`` -> ``"1"``, None -> ``"none"``.

    Example:
        >>> scale_text(0.0625), scale_text(1.0), scale_text(0.3), scale_text(None)
        ('1/16', '1', '0.3', 'none')
    """
    if scale is None:
        return "none"
    if 0 < scale < 1 and abs(1 / scale - round(1 / scale)) < 1e-6:
        return f"1/{round(1 / scale)}"
    return _num(scale)


def call_notes(call: Any, view: View, frame: tuple[int, int], stride: float) -> list[str]:
    """What the app made of this call: which Side-by-side panel is the call as it ran, how the table holds its
    boxes, and what the app's controls cannot hold of its parameters."""
    notes = []
    align_like = any(name in call.op for name in ("roi_align", "RoIAlign", "ROIPooler", "crop_and_resize"))
    if not align_like or "ps_roi" in call.op:
        notes.append(f"{call.op} is not roi_align: Side by side shows how roi_align (and crop_and_resize) would read "
                     "these boxes on this map; the geometry of the boxes and the scale is the same.")
    notes.append(panel_of_call(call, view, stride)[1])
    try:
        notes.extend(call_boxes(call, view, frame).notes)
    except ValueError as e:
        notes.append(f"The box table cannot hold this call's boxes: {e}.")
    notes.extend(settings_of(call, (7, 2, True)).notes)
    return notes
