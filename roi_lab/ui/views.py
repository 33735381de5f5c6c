"""What the pages display, as plain numpy: the glue between roi_lab's results and the figure builders.

No streamlit, no plotly, no op math: slicing, unit conversions for drawing, channel views.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from roi_lab.ui.figures import reduce_channels, shared_range, symmetric_range

__all__ = [
    "PanelData",
    "intended_feature",
    "panel_data",
    "reference_indices",
    "Verdict",
    "verdicts",
    "CropViews",
    "crop_views",
    "channel_map",
    "channel_projection",
    "parse_size",
    "parse_shape",
    "parse_scale",
    "crops_npz",
    "rois_text",
    "looks_like_code",
]


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float64)


def intended_feature(boxes_image: np.ndarray, stride: float) -> np.ndarray:
    """Boxes ndarray[K, 4] xyxy image px -> feature sample coordinates ``x / stride - 0.5``.

    Example:
        >>> intended_feature(np.array([[64.0, 32.0, 192.0, 160.0]]), 16).tolist()
        [[3.5, 1.5, 11.5, 9.5]]
    """
    return np.asarray(boxes_image, dtype=np.float64).reshape(-1, 4) / float(stride) - 0.5


@dataclass(frozen=True)
class PanelData:
    """One variant's geometry for its panel (focus box only where a figure shows one box)."""

    kind: str
    title: str
    description: str
    regions_feature: np.ndarray  # [K, 4] feature sample coordinates
    region_image: np.ndarray  # [4] focus box, image px
    points_image: np.ndarray  # [P, 2] focus box, image px, NaN padding dropped
    outside_fraction: float  # focus box
    iou: float  # focus box
    outside_all: np.ndarray  # [K]
    iou_all: np.ndarray  # [K]
    polygon_image: np.ndarray | None = None  # [4, 2] focus box: the turned region (rotated family), image px
    polygon_meant: np.ndarray | None = None  # [4, 2] focus box: the turned box meant, image px


def panel_data(variant: Any, focus: int) -> PanelData:
    """Pull what a panel draws out of a ``roi_lab.geometry.Variant``."""
    pts = _np(variant.points_image)[focus]
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    outside = _np(variant.outside_fraction)
    iou = _np(variant.iou)
    polygon, meant = getattr(variant, "polygon_image", None), getattr(variant, "polygon_meant", None)
    return PanelData(
        kind=variant.kind.value,
        title=variant.title,
        description=variant.description,
        regions_feature=_np(variant.boxes_feature),
        region_image=_np(variant.region_image)[focus],
        points_image=pts,
        outside_fraction=float(outside[focus]),
        iou=float(iou[focus]),
        outside_all=outside,
        iou_all=iou,
        polygon_image=None if polygon is None else _np(polygon)[focus],
        polygon_meant=None if meant is None else _np(meant)[focus],
    )


def reference_indices(variants: list[Any]) -> list[int]:
    """The index of the variant each one is compared with (``Variant.reference``; your settings, 0, by default).

    Example:
        >>> import torch
        >>> from roi_lab.geometry import VariantKind, make_variants
        >>> vs = make_variants(torch.tensor([[64., 32., 192., 160.]]), image_size=(256, 256),
        ...                    feature_size=(16, 16), stride=16)
        >>> refs = reference_indices(vs)
        >>> refs[0], refs[-1] == [v.kind for v in vs].index(VariantKind.ROTATED)
        (0, True)
    """
    where = {getattr(v, "kind", None): i for i, v in enumerate(variants)}
    return [where.get(getattr(v, "reference", None), 0) for v in variants]


@dataclass(frozen=True)
class Verdict:
    """One variant's verdict for the box shown, in numbers and in words (the overview's tile text).

    Attributes:
        kind, title (str): the variant.
        iou (float): IoU of the sampled region with the box meant.
        outside (float): share of the samples that fall off the map (they read zeros).
        off_px (float): how far the sampled region's edges are from the box's, at most, in
            original-image px (the table's units).
        crop_diff (float): max |crop - your settings' crop| over the range of yours (NaN if refused).
        level (str): ``"ref"`` (your settings, sound), ``"ok"``, ``"warn"`` or ``"bad"``, from the
            geometry alone (IoU, outside, off_px), so it never contradicts the numbers it shows.
        headline (str): ``"IoU 0.89 · 0% outside"``.
        words (str): how far off and what that does, e.g. ``"edges off by up to 8 px; crop differs by 31%"``.
    """

    kind: str
    title: str
    iou: float
    outside: float
    off_px: float
    crop_diff: float
    level: str
    headline: str
    words: str


def _relative_diff(crop: np.ndarray, ref: np.ndarray) -> float:
    if not (np.all(np.isfinite(crop)) and np.all(np.isfinite(ref))):
        return float("nan")
    span = float(ref.max() - ref.min()) if ref.size else 0.0
    return float(np.abs(crop - ref).max() / (span if span > 0 else max(float(np.abs(ref).max()), 1e-12)))


def verdicts(variants: list[Any], focus: int, maps: np.ndarray, scale: float = 1.0,
             errors: dict[str, str] | None = None) -> list[Verdict]:
    """Every variant's verdict for box ``focus``; variant 0 is the user's own settings (the reference).

    Args:
        variants (list[Variant]): from ``roi_lab.geometry.make_variants`` (boxes in working-image px).
        focus (int): the box shown.
        maps (ndarray[V, PH, PW]): one channel view of each variant's crop of that box (NaN: refused).
        scale (float): working / original image size (offsets are reported in original px).
        errors (dict[str, str]): kind -> message, for variants whose op refused the input.

    Example:
        >>> import torch
        >>> from roi_lab.geometry import make_variants
        >>> vs = make_variants(torch.tensor([[64., 32., 192., 160.]]), image_size=(256, 256),
        ...                    feature_size=(16, 16), stride=16)
        >>> v = verdicts(vs, 0, np.zeros((len(vs), 7, 7)))
        >>> v[0].level, v[0].headline, v[1].level, v[1].words
        ('ref', 'IoU 1.00 · 0% outside', 'bad', 'edges off by up to 2,880 px; reads zeros there')
    """
    errors = errors or {}
    refs = reference_indices(variants)
    out = []
    for i, var in enumerate(variants):
        j = refs[i]
        polygon, meant = getattr(var, "polygon_image", None), getattr(var, "polygon_meant", None)
        if polygon is not None and meant is not None:  # turned boxes: how far the corners are from the meant ones
            off = float(np.nanmax(np.linalg.norm(_np(polygon)[focus] - _np(meant)[focus], axis=1)))
        else:
            off = float(np.nanmax(np.abs(_sorted(_np(var.region_image)[focus]) - _np(var.boxes_meant)[focus])))
        off /= max(scale, 1e-12)
        iou = float(_np(var.iou)[focus])
        outside = float(_np(var.outside_fraction)[focus])
        diff = _relative_diff(maps[i], maps[j])
        kind = var.kind.value
        headline = f"IoU {iou:.2f} · {outside:.0%} outside"
        if kind in errors:
            level, words = "bad", "the op refused this input (see the details)"
        elif i == 0:
            level = "warn" if getattr(var, "settings_note", "") else "ref"
            words = (f"legacy: edges off by up to {off:,.0f} px (half a cell)" if level == "warn"
                     else "the reference: every crop is compared with this one")
        elif j == i:
            level, words = "ref", "the rotated reference: the angle mix-ups are compared with this one"
        else:
            level = ("bad" if iou < 0.5 or outside >= 0.5 else
                     "warn" if iou < 0.95 or outside > 0.02 else "ok")
            if np.isfinite(diff) and diff < 1e-6 and abs(iou - float(_np(variants[j].iou)[focus])) < 1e-6:
                words = f"same as {'your settings' if j == 0 else 'the rotated reference'} for this box"
            elif polygon is not None:
                words = f"corners off by up to {off:,.0f} px"
                if outside >= 0.99:
                    words += "; reads zeros there"
                elif np.isfinite(diff):
                    words += f"; crop differs by {diff:.0%}"
            else:
                words = f"edges off by up to {off:,.0f} px"
                if outside >= 0.99:
                    words += "; reads zeros there"
                elif np.isfinite(diff):
                    words += f"; crop differs by {diff:.0%}"
        out.append(Verdict(kind, var.title, iou, outside, off, diff, level, headline, words))
    return out


def _sorted(b: np.ndarray) -> np.ndarray:
    return np.array([min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])])


@dataclass(frozen=True)
class CropViews:
    """One channel view of every variant's crop of one box, with shared color ranges."""

    maps: np.ndarray  # [V, PH, PW]
    diffs: np.ndarray  # [V, PH, PW] map - map of the variant's reference (your settings, index 0, by default)
    zmin: float
    zmax: float
    zabs: float  # symmetric range of the diffs


def crop_views(crops: np.ndarray, view: str | None = None, index: int = 0,
               refs: list[int] | None = None) -> CropViews:
    """One channel view of every variant's crop (variant 0 = CORRECT), the differences, shared ranges.

    Args:
        crops (ndarray[V, C, PH, PW] | ndarray[V, PH, PW]): full crops, reduced here with ``view``; or
            maps already reduced (``view=None``).
        refs (list[int] | None): the variant each one's difference is taken to (:func:`reference_indices`);
            None: variant 0 for all.

    Example:
        >>> c = np.zeros((2, 3, 2, 2)); c[1] += 1.0
        >>> v = crop_views(c, "mean")
        >>> (v.zmin, v.zmax, v.zabs, v.diffs[1].tolist())
        (0.0, 1.0, 1.0, [[1.0, 1.0], [1.0, 1.0]])
    """
    maps = np.asarray(crops, dtype=np.float32) if view is None else reduce_channels(crops, view, index)  # [V, PH, PW]
    diffs = maps - (maps[:1] if refs is None else maps[np.asarray(refs, dtype=np.int64)])
    zmin, zmax = shared_range(list(maps))
    return CropViews(maps=maps, diffs=diffs, zmin=zmin, zmax=zmax, zabs=symmetric_range(list(diffs)))


def channel_projection(features: Any, view: str, index: int = 0) -> tuple[Any, float]:
    """The channel view as ``weights @ feature + bias``: (Tensor[C] float32, float), for crops that are not
    linear in the channels (RoIPool's max), whose view must be taken of the full crop.

    ``channel_map(features, view, index)`` equals ``einsum("c,nchw->nhw", weights, features) + bias`` (up to
    rounding); an all-zero feature (off the map) projects to ``bias``.

    Example:
        >>> import torch
        >>> w, b = channel_projection(torch.arange(8.0).view(1, 2, 2, 2), "mean")
        >>> w.tolist(), b
        ([0.5, 0.5], 0.0)
    """
    import torch

    from roi_lab.ui.figures import first_component

    x = features.detach().to("cpu", torch.float32)
    c = x.shape[1]
    if view == "mean":
        return torch.full((c,), 1.0 / c), 0.0
    if view == "index":
        return torch.nn.functional.one_hot(torch.tensor(int(np.clip(index, 0, c - 1))), c).float(), 0.0
    if view == "pca":
        data = x[0].reshape(c, -1).T.double().numpy()  # [h*w, C]
        mean = data.mean(0)
        axis = first_component(data - mean[None])
        return torch.from_numpy(axis.astype(np.float32)), float(-(mean @ axis))
    raise ValueError(f"channel_projection expects view 'mean', 'index' or 'pca'; got {view!r}.")


def channel_map(features: Any, view: str, index: int = 0) -> Any:
    """One channel view of a feature map Tensor[1, C, h, w] as Tensor[1, 1, h, w] (float32, CPU).

    ``"mean"``: mean over channels; ``"index"``: channel ``index``; ``"pca"``: the projection of the
    centred pixels on the map's first principal axis (sign: largest loading positive), so 0 is the
    mean feature, which is also what an out-of-map sample reads. ``"max"`` is not linear, so it has
    no map: take the max of the full crops instead.

    Example:
        >>> import torch
        >>> f = torch.arange(8.0).view(1, 2, 2, 2)
        >>> channel_map(f, "mean").flatten().tolist(), channel_map(f, "index", 1).flatten().tolist()
        ([2.0, 3.0, 4.0, 5.0], [4.0, 5.0, 6.0, 7.0])
    """
    import torch

    from roi_lab.ui.figures import first_component

    x = features.detach().to("cpu", torch.float32)
    c = x.shape[1]
    if view == "mean":
        return x.mean(1, keepdim=True)
    if view == "index":
        return x[:, int(np.clip(index, 0, c - 1))][:, None].clone()
    if view == "pca":
        data = x[0].reshape(c, -1).T.double().numpy()  # [h*w, C]
        data = data - data.mean(0, keepdims=True)
        proj = data @ first_component(data)  # [h*w]
        return torch.from_numpy(proj.astype(np.float32)).view(1, 1, *x.shape[-2:])
    raise ValueError(f"channel_map expects view 'mean', 'index' or 'pca'; got {view!r}.")


def parse_shape(text: str, n: int, name: str = "shape") -> tuple[int, ...]:
    """``"1, 256, 50, 64"`` / ``"(1, 256, 50, 64)"`` / ``"450x600"`` text -> ``n`` positive ints, in order.

    Raises:
        ValueError: with a message that says what was expected.

    Example:
        >>> parse_shape("torch.Size([1, 256, 50, 64])", 4), parse_shape("37 x 50", 2)
        ((1, 256, 50, 64), (37, 50))
    """
    import re

    body = re.sub(r"^\s*(torch\.)?size", "", str(text).strip().lower())
    parts = [p for p in re.split(r"[\s,x×()\[\]]+", body) if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != n or min(values) <= 0:
        example = "450, 600" if n == 2 else "1, 256, 50, 64"
        raise ValueError(f"{name} expects {n} positive integers like '{example}'; got {text!r}.")
    return values


def parse_size(text: str, name: str = "size") -> tuple[int, int]:
    """``"450, 600"`` -> (450, 600): two positive ints (see :func:`parse_shape`)."""
    a, b = parse_shape(text, 2, name)
    return a, b


def parse_scale(text: str) -> float | None:
    """``""`` -> None (the op's default), ``"1/16"`` or ``"0.0625"`` -> 0.0625. No eval.

    Example:
        >>> parse_scale(""), parse_scale("1/16"), parse_scale("0.25")
        (None, 0.0625, 0.25)
    """
    text = str(text).strip()
    if not text:
        return None
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"spatial_scale expects a number like 0.0625 or 1/16; got {text!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"spatial_scale expects a positive finite number; got {text!r}.")
    return value


def rois_text(boxes_image: Any, limit: int = 3) -> str:
    """Boxes ndarray[K, 4] as the repr torch prints for rois Tensor[K, 5] (batch index 0), first ``limit`` rows.

    Example:
        >>> print(rois_text([[10, 20, 30, 40.5]]))
        tensor([[0., 10., 20., 30., 40.5]])
    """
    rows = _np(boxes_image).reshape(-1, 4)[:limit]

    def num(v: float) -> str:
        return f"{v:.0f}." if float(v).is_integer() else f"{v:g}"

    body = ",\n        ".join("[" + ", ".join(["0."] + [num(v) for v in r]) + "]" for r in rows)
    return f"tensor([{body}])"


def crops_npz(kinds: list[str], crops: np.ndarray, box_image: Any, settings: dict[str, Any]) -> bytes:
    """The crops of every variant for one box as a compressed .npz file's bytes.

    Arrays: ``kinds`` [V] str, ``crops`` [V, C, PH, PW] float32 (NaN where the op refused the input),
    ``box_image`` [4] xyxy model-input px, and the settings as 0-d arrays.
    """
    import io

    buf = io.BytesIO()
    np.savez_compressed(
        buf, kinds=np.asarray(kinds), crops=crops, box_image=_np(box_image).reshape(4),
        **{k: np.asarray(v) for k, v in settings.items()},
    )
    return buf.getvalue()


_CODE_START = re.compile(
    r"^\s*(#|[A-Za-z_][\w.\[\]:]*(\s*,\s*[A-Za-z_][\w.\[\]:]*)*\s*=[^=]|[A-Za-z_][\w.]*\(|import \w"
    r"|from [\w.]+ import |for \w+ in .*:)")


def looks_like_code(text: str) -> bool:
    """True when a fix reads as Python (an assignment, a call, an import), False for a sentence.

    Used to show code with syntax highlighting and sentences as plain text.

    Example:
        >>> looks_like_code("rois = torch.cat([idx, boxes], 1)"), looks_like_code("roi_align(x, b, 7)")
        (True, True)
        >>> looks_like_code("boxes_norm, idx = to_tf_boxes(b, (H, W))"), looks_like_code("so that x = 16")
        (True, False)
        >>> looks_like_code("resize or pad the image to a multiple of 16 (e.g. 800 x 1008) before the backbone")
        False
        >>> looks_like_code("pool small boxes from a finer level: torchvision.ops.MultiScaleRoIAlign assigns them")
        False
    """
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return bool(_CODE_START.match(first))
