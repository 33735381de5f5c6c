"""The diagnoser's rules: one small unit per code, each a detector over the shared context.

Private to :mod:`roi_lab.diagnose`, which exposes the table as :data:`roi_lab.diagnose.RULES`. Each rule
is a function ``(ctx: Context) -> Iterator[Hit]`` registered with :func:`_rule`: it reads the pre-computed
:class:`~roi_lab._diagnose_context.Context` (parsed boxes, finite rows, batch layout, map and image
geometry, the placement verdict) and yields the findings of its own code, message templates included.
The table order is the order in which findings of one severity are listed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from roi_lab._diagnose_context import (
    _TOL_CELLS,
    Context,
    Hit,
    PyramidGeo,
    Rule,
    _fmt,
    _fmt_scale,
    _Geo,
    _row,
    _rows_list,
    axis_over,
    batch_layout,
    placement,
    pyramid_geo,
    roi_geo,
    stride_rule,
    stride_text,
)

_RULES: list[Rule] = []
_BOTH = ("roi_align", "crop_and_resize")
_ALIGN = ("roi_align",)
_CROP = ("crop_and_resize",)

Detector = Callable[[Context], Iterator[Hit]]


def _rule(code: str, summary: str, ops: tuple[str, ...] = _BOTH, source: str = "") -> Callable[[Detector], Detector]:
    """Register the decorated detector as the rule for ``code`` (in definition order)."""

    def register(check: Detector) -> Detector:
        _RULES.append(Rule(code, summary, ops, check, source))
        return check

    return register


def _read_only(code: str, summary: str, ops: tuple[str, ...] = _BOTH) -> None:
    """A code found while reading the inputs (``Context.read_findings``): a rule without a detector."""
    _RULES.append(Rule(code, summary, ops, None))


# --------------------------------------------------------------------------------------------- reading

_read_only("BAD_RANK", "boxes, features or image_size of the wrong rank, or not readable as numbers")
_read_only("BOX_COLUMNS", "boxes with a number of columns the op does not take")
_read_only("MISSING_BATCH_INDEX", "roi_align given Tensor[K, 4]: the batch-index column is missing", _ALIGN)


# --------------------------------------------------------------------------------------------- tensors


@_rule("DTYPE_MISMATCH", "boxes that are not floating point, or not in the feature map's dtype (roi_align)",
       source="torchvision/csrc/ops/cpu/roi_align_kernel.cpp: 'input should have the same type as rois'")  # fmt: skip
def _dtype_mismatch(ctx: Context) -> Iterator[Hit]:
    if ctx.boxes is None:
        return
    feat = ctx.feat
    for t in ctx.boxes.tensors:
        name = "boxes"
        dtype = str(t.dtype).replace("torch.", "")
        if not (t.is_floating_point()):
            yield Hit(
                "error",
                f"The boxes are {dtype}; {ctx.op} needs floating-point boxes"
                + (" of the feature map's dtype." if ctx.op == "roi_align" else " (TensorFlow takes float32)."),
                f"boxes dtype = {dtype}"
                + (f", features dtype = {str(feat.dtype).replace('torch.', '')}" if feat is not None else ""),
                f"{name} = {name}.to(features.dtype)" if ctx.op == "roi_align" else f"{name} = {name}.float()",
            )
        elif ctx.op == "roi_align" and feat is not None and feat.dtype != t.dtype:
            fdt = str(feat.dtype).replace("torch.", "")
            yield Hit(
                "error",
                "The boxes and the feature map have different dtypes; torchvision.ops.roi_align raises "
                "(torchvision 0.29: RuntimeError 'input should have the same type as rois'), for the list form too.",
                f"boxes dtype = {dtype}, features dtype = {fdt}",
                "boxes = boxes.to(features.dtype)",
            )


@_rule("DEVICE_MISMATCH", "boxes (or box_indices) on another device than the feature map")
def _device_mismatch(ctx: Context) -> Iterator[Hit]:
    if ctx.boxes is None or ctx.feat is None:
        return
    feat = ctx.feat
    for t in ctx.boxes.tensors:
        if t.device != feat.device:
            yield Hit(
                "error",
                f"The boxes and the feature map are on different devices; {ctx.op} needs both on one device.",
                f"boxes on {t.device}, features on {feat.device}",
                "boxes = boxes.to(features.device)",
            )
    box_indices = ctx.box_indices
    if isinstance(box_indices, Tensor) and box_indices.device != feat.device:
        yield Hit(
            "error",
            "box_indices and the image tensor are on different devices.",
            f"box_indices on {box_indices.device}, features on {feat.device}",
            "box_indices = box_indices.to(features.device)",
        )


# --------------------------------------------------------------------------------------------- box values


@_rule("NON_FINITE", "boxes holding NaN or inf")
def _non_finite(ctx: Context) -> Iterator[Hit]:
    bx = ctx.boxes
    if bx is None or ctx.finite.all():
        return
    full = bx.coords if bx.batch is None else np.concatenate([bx.batch[:, None], bx.coords], 1)
    ok = ctx.finite
    bad = np.flatnonzero(~ok)
    yield Hit(
        "error",
        "Some boxes hold NaN or inf; ROIAlign returns garbage (or crashes) for them.",
        f"{len(bad)} of {len(ok)} rows are not finite, rows {_rows_list(bad)}; row {bad[0]} = {_row(full[bad[0]])}",
        "keep = torch.isfinite(boxes).all(dim=1); boxes = boxes[keep]",
    )


@_rule("BATCH_INDEX_OUT_OF_RANGE", "batch indices (or box_indices) that name no image of the batch")
def _batch_index(ctx: Context) -> Iterator[Hit]:
    yield from batch_layout(ctx)[1]


def _box_sides(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """(w, h) of the finite boxes, in the op's own column order."""
    c = ctx.coords
    if ctx.op == "roi_align":
        return c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
    return c[:, 3] - c[:, 1], c[:, 2] - c[:, 0]


@_rule("INVERTED_BOX", "boxes with x2 < x1 or y2 < y1 (and (x, y, w, h) boxes read as corners)")
def _inverted_box(ctx: Context) -> Iterator[Hit]:
    if not ctx.checks_boxes:
        return
    c, image = ctx.coords, ctx.image
    w, h = _box_sides(ctx)
    inverted = (w < 0) | (h < 0)
    if not inverted.any():
        return
    k = len(c)
    bad = np.flatnonzero(inverted)
    r = bad[0]
    if ctx.op != "roi_align":
        yield Hit(
            "warning",
            "Some boxes have y2 < y1 or x2 < x1; crop_and_resize then returns a flipped crop, which is "
            "rarely what was meant.",
            f"{len(bad)} of {k} boxes are inverted, rows {_rows_list(bad)}; row {r}: "
            f"y2 - y1 = {_fmt(h[r])}, x2 - x1 = {_fmt(w[r])}",
            "boxes = torch.stack([torch.minimum(y1, y2), torch.minimum(x1, x2), torch.maximum(y1, y2), "
            "torch.maximum(x1, x2)], dim=1)",
        )
        return
    hint = ""
    fix = (
        "boxes = torch.stack([torch.minimum(x1, x2), torch.minimum(y1, y2), torch.maximum(x1, x2), "
        "torch.maximum(y1, y2)], dim=1)"
    )
    if image is not None and np.all(c >= 0):
        # (x, y, w, h) read as (x1, y1, x2, y2): x + w and y + h stay inside the image
        if np.all(c[:, 0] + c[:, 2] <= image[1] * 1.01 + 1) and np.all(c[:, 1] + c[:, 3] <= image[0] * 1.01 + 1):
            hint = "; x + 'x2' and y + 'y2' all stay inside the image: these look like (x, y, w, h) boxes"
            fix = "boxes = torchvision.ops.box_convert(boxes, in_fmt='xywh', out_fmt='xyxy')"
    yield Hit(
        "error",
        "Some boxes have x2 < x1 or y2 < y1; roi_align does not reorder them: it pools a 1-cell strip "
        "(aligned=False) or a mirrored region (aligned=True).",
        f"{len(bad)} of {k} boxes are inverted, rows {_rows_list(bad)}; row {r}: "
        f"x2 - x1 = {_fmt(w[r])}, y2 - y1 = {_fmt(h[r])}{hint}",
        fix,
    )


@_rule("DEGENERATE_BOX", "boxes of zero width or height (often padding rows)")
def _degenerate_box(ctx: Context) -> Iterator[Hit]:
    if not ctx.checks_boxes:
        return
    c = ctx.coords
    w, h = _box_sides(ctx)
    degenerate = (w >= 0) & (h >= 0) & ((w == 0) | (h == 0))
    if not degenerate.any():
        return
    bad = np.flatnonzero(degenerate)
    zeros = int((np.abs(c[bad]).sum(1) == 0).sum())
    r = bad[0]
    yield Hit(
        "warning",
        "Some boxes have zero width or height; they pool a single line of the map (or nothing useful).",
        f"{len(bad)} of {len(c)} boxes have zero width or height, rows {_rows_list(bad)}; row {r} = {_row(c[r])}"
        + (f"; {zeros} of them all zeros (padding rows?)" if zeros else ""),
        "keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]); boxes = boxes[keep]",
    )


# --------------------------------------------------------------------------------------------- placement


@_rule("NORMALIZED_AS_PIXELS", "boxes normalized to [0, 1] passed to roi_align as pixels", _ALIGN)
def _normalized_as_pixels(ctx: Context) -> Iterator[Hit]:
    p, r = placement(ctx), roi_geo(ctx)
    if p is None or p.kind != "normalized":
        return
    g = r.g
    allc = np.concatenate([g.xs.ravel(), g.ys.ravel()])
    yield Hit(
        "error" if p.strong else "info",
        "The boxes are normalized to [0, 1] but roi_align reads pixels: every box lands inside the first "
        "cell of the map."
        + ("" if p.strong else " (Few boxes: they may also be genuinely tiny boxes at the map's origin.)"),
        f"all coordinates lie in [0, 1] (max x = {_fmt(g.xs.max())}, max y = {_fmt(g.ys.max())}) on a "
        f"{_fmt(g.Hi)} x {_fmt(g.Wi)} image; x (W, H) they would span up to {_fmt(g.xs.max() * g.Wi)} x "
        f"{_fmt(g.ys.max() * g.Hi)} px; at spatial_scale {r.s_text} they reach {_fmt(allc.max() * r.s)} cells",
        f"boxes_image = boxes_norm * torch.tensor([{_fmt(g.Wi)}, {_fmt(g.Hi)}, {_fmt(g.Wi)}, {_fmt(g.Hi)}]); "
        f"roi_align(features, rois, output_size, spatial_scale={r.good_scale})",
    )


def _crop_pixels(ctx: Context) -> tuple[bool, bool, bool] | None:
    """crop_and_resize boxes that are pixels: (pixels, fit as (y1, x1, y2, x2), fit only as (x1, y1, x2, y2))."""
    g = ctx.geo
    if ctx.op != "crop_and_resize" or g is None:
        return None
    allc = np.concatenate([g.xs.ravel(), g.ys.ravel()])
    if not (allc.max() > 1.5 or allc.min() < -0.5):
        return False, False, False
    tf_fits = g.xs.min() >= -1 and g.ys.min() >= -1 and g.xs.max() <= g.Wi + 1 and g.ys.max() <= g.Hi + 1
    sw_fits = g.xs.min() >= -1 and g.ys.min() >= -1 and g.ys.max() <= g.Wi + 1 and g.xs.max() <= g.Hi + 1
    return True, tf_fits, sw_fits


def exact_tf_normalization(g: _Geo) -> str:
    """The fix for pixel boxes given to crop_and_resize: the normalization that samples each box edge to edge.

    crop_and_resize samples ``y_norm * (h - 1)`` of the tensor it crops (h: that tensor's height), and image
    coordinate ``y`` is sample coordinate ``y / s - 0.5`` on a stride-``s`` map (cell centres at
    ``(i + 0.5) * s``), so ``y_norm = (y / s - 0.5) / (h - 1)``; ``roi_lab.geometry.tf_boxes_for_feature_map``
    computes the same. Dividing by the *image's* ``(H - 1)`` is right only for the image itself, and for
    pixel indices (integer = pixel centre) rather than continuous coordinates.
    """
    if g.Hf == g.Hi and g.Wf == g.Wi:  # the image itself (stride 1)
        hw = f"[{_fmt(g.Hi)} - 1, {_fmt(g.Wi)} - 1, {_fmt(g.Hi)} - 1, {_fmt(g.Wi)} - 1]"
        return (f"boxes_norm = (boxes - 0.5) / torch.tensor({hw})  # (y1, x1, y2, x2) continuous px; for pixel "
                "indices (TF's convention) drop the - 0.5")
    _, s = stride_text(g)
    hw = f"[{g.Hf - 1}, {g.Wf - 1}, {g.Hf - 1}, {g.Wf - 1}]"
    return (f"boxes_norm = (boxes / {_fmt(s)} - 0.5) / torch.tensor({hw})  # (y1, x1, y2, x2) image px onto the "
            f"{g.Hf} x {g.Wf} map at stride {_fmt(s)}: samples from edge to edge of each box, not / (image size - 1)")


@_rule("PIXELS_AS_NORMALIZED", "pixel boxes passed to crop_and_resize, which takes normalized ones", _CROP,
       source="tensorflow/core/kernels/image/crop_and_resize_op.cc: y = y1 * (h - 1) + ...")  # fmt: skip
def _pixels_as_normalized(ctx: Context) -> Iterator[Hit]:
    found = _crop_pixels(ctx)
    if found is None or not found[0]:
        return
    _, tf_fits, sw_fits = found
    g = ctx.geo
    allc = np.concatenate([g.xs.ravel(), g.ys.ravel()])
    where = (
        f"as pixels they fit the {_fmt(g.Hi)} x {_fmt(g.Wi)} image in (y1, x1, y2, x2) order"
        if tf_fits
        else f"as pixels they fit the {_fmt(g.Hi)} x {_fmt(g.Wi)} image only in (x1, y1, x2, y2) order"
        if sw_fits and g.Hi != g.Wi
        else f"they exceed even the {_fmt(g.Hi)} x {_fmt(g.Wi)} image as pixels"
    )
    yield Hit(
        "error",
        "crop_and_resize expects normalized boxes (y * (H - 1) gives the pixel) but these are pixels: "
        "the crops land far outside the image and come back as extrapolation_value.",
        f"max coordinate = {_fmt(allc.max())} > 1 (normalized boxes lie in [0, 1]); max y = "
        f"{_fmt(g.ys.max())}, max x = {_fmt(g.xs.max())}; {where}",
        exact_tf_normalization(g),
    )


@_rule("DOUBLE_SCALED", "boxes already divided by the stride and scaled by spatial_scale again", _ALIGN)
def _double_scaled(ctx: Context) -> Iterator[Hit]:
    p, r = placement(ctx), roi_geo(ctx)
    if p is None or p.kind != "double_scaled":
        return
    g = r.g
    fill_x, fill_y = g.xs.max() / g.Wf, g.ys.max() / g.Hf
    yield Hit(
        "warning" if p.strong else "info",
        "The boxes look like feature-map pixels already, and spatial_scale shrinks them again: they "
        "land in the top-left corner of the map."
        + ("" if p.strong else " (Only 1-2 boxes: they may also be small image boxes in the corner.)"),
        f"all {len(g.xs)} boxes lie within the {g.Hf} x {g.Wf} map (max x = {_fmt(g.xs.max())}, "
        f"max y = {_fmt(g.ys.max())}: {round(100 * fill_x)}% x {round(100 * fill_y)}% of it); "
        f"spatial_scale {r.s_text} shrinks them to x <= {_fmt(g.xs.max() * r.s)}, "
        f"y <= {_fmt(g.ys.max() * r.s)} ({r.stride_words})",
        "roi_align(features, rois_feature, output_size, spatial_scale=1.0)  # boxes already divided by "
        "the stride; or pass the image-pixel boxes with spatial_scale=" + r.good_scale,
    )


@_rule("IMAGE_SPACE_BOXES", "image-pixel boxes with spatial_scale left at 1", _ALIGN)
def _image_space_boxes(ctx: Context) -> Iterator[Hit]:
    p, r = placement(ctx), roi_geo(ctx)
    if p is None or p.kind != "image_space":
        return
    g, stride = r.g, r.stride
    yield Hit(
        "error",
        "The boxes are in image pixels but spatial_scale is 1, so roi_align reads them as feature-map "
        "cells: they overflow the map and pool the wrong region.",
        f"{axis_over(g, 1, 1)} at spatial_scale {r.s_text}; {_fmt(g.xs.max())} * {_fmt_scale(1 / stride)}"
        f" = {_fmt(g.xs.max() / stride)} and {_fmt(g.ys.max())} * {_fmt_scale(1 / stride)} = "
        f"{_fmt(g.ys.max() / stride)} fit"
        + (" (with x and y exchanged)" if p.swapped else "")
        + f" ({r.stride_words})",
        r.scale_fix,
    )


@_rule("WRONG_STRIDE", "a spatial_scale that does not match the map's stride", _ALIGN)
def _wrong_stride(ctx: Context) -> Iterator[Hit]:
    p, r = placement(ctx), roi_geo(ctx)
    if p is None or p.kind not in ("wrong_stride_fits", "wrong_stride"):
        return
    g, s, stride = r.g, r.s, r.stride
    if p.kind == "wrong_stride_fits":
        used = max(g.Wi * s / g.Wf, g.Hi * s / g.Hf)
        yield Hit(
            "error" if p.inside else "warning",
            f"spatial_scale {r.s_text} does not match the feature map: it maps the image onto "
            f"{round(100 * used)}% of the map's extent, so the boxes are pooled from the wrong place."
            + (
                ""
                if p.inside
                else " The boxes also exceed the image: if they are pixels of a larger original "
                "image, pass that image's size as image_size."
            ),
            f"{r.stride_words}, so spatial_scale should be {_fmt_scale(1 / stride)}; image width {_fmt(g.Wi)} * "
            f"{_fmt_scale(s)} = {_fmt(g.Wi * s)} vs map width {g.Wf}, height {_fmt(g.Hi)} * {_fmt_scale(s)} = "
            f"{_fmt(g.Hi * s)} vs map height {g.Hf} (off by {_fmt(1 / (s * stride))}x)",
            r.scale_fix,
        )
        return
    yield Hit(
        "error",
        f"spatial_scale {r.s_text} does not match the feature map's stride: the boxes overflow the map "
        "at that scale but fit at the map's own scale.",
        f"{axis_over(g, s, s)} at spatial_scale {r.s_text}; {r.stride_words}: {_fmt(g.xs.max())} * "
        f"{_fmt_scale(1 / stride)} = {_fmt(g.xs.max() / stride)} fits"
        + (" (with x and y exchanged)" if p.swapped else "")
        + f" (scale off by {_fmt(s * stride)}x)",
        r.scale_fix,
    )


_SWAP_WORDS = "(y1, x1, y2, x2) was passed where roi_align expects (x1, y1, x2, y2)"
_SWAP_FIX = "rois = rois[:, [0, 2, 1, 4, 3]]  # (b, y1, x1, y2, x2) -> (b, x1, y1, x2, y2)"


@_rule("YX_SWAPPED", "(y1, x1, y2, x2) boxes where (x1, y1, x2, y2) is expected, or the other way round")
def _yx_swapped(ctx: Context) -> Iterator[Hit]:
    if ctx.op == "crop_and_resize":
        found = _crop_pixels(ctx)
        g = ctx.geo
        if found is None or not found[0] or not (found[2] and not found[1] and g.Hi != g.Wi):
            return
        yield Hit(
            "error",
            "The boxes are in (x1, y1, x2, y2) order; crop_and_resize expects (y1, x1, y2, x2).",
            "read as (y1, x1, y2, x2): "
            + (
                f"max y = {_fmt(g.ys.max())} > image height {_fmt(g.Hi)}"
                if g.ys.max() > g.Hi + 1
                else f"max x = {_fmt(g.xs.max())} > image width {_fmt(g.Wi)}"
            )
            + f"; exchanged: max y = {_fmt(g.xs.max())} <= height {_fmt(g.Hi)} and max x = {_fmt(g.ys.max())} "
            f"<= width {_fmt(g.Wi)}",
            "boxes = boxes[:, [1, 0, 3, 2]]  # (x1, y1, x2, y2) -> (y1, x1, y2, x2)",
        )
        return
    p, r = placement(ctx), roi_geo(ctx)
    if p is None:
        return
    g = r.g
    if p.kind == "yx_map":
        c, frame, W, H = r.s, f"map cells at spatial_scale {r.s_text}", g.Wf, g.Hf
    elif p.kind == "yx_map_s1":
        c, frame, W, H = 1.0, "map cells at spatial_scale 1", g.Wf, g.Hf
    elif p.kind in ("image_space", "wrong_stride") and p.swapped:
        c, frame, W, H = 1.0, "image pixels", g.Wi, g.Hi
    else:
        return
    xm, ym = g.xs.max() * c, g.ys.max() * c
    over = f"max x = {_fmt(xm)} > width {_fmt(W)}" if xm > W else f"max y = {_fmt(ym)} > height {_fmt(H)}"
    yield Hit(
        "error",
        f"The boxes fit only with x and y exchanged: {_SWAP_WORDS}.",
        f"in {frame}: {over}; exchanged, x reaches {_fmt(ym)} of width {_fmt(W)} and y reaches {_fmt(xm)} "
        f"of height {_fmt(H)}",
        _SWAP_FIX,
    )


@_rule("OUT_OF_BOUNDS", "boxes that leave the map (roi_align) or [0, 1] (crop_and_resize) unexplained")
def _out_of_bounds(ctx: Context) -> Iterator[Hit]:
    if ctx.op == "crop_and_resize":
        yield from _crop_out_of_bounds(ctx)
        return
    if ctx.checks_boxes and ctx.shape is not None and not ctx.image_given and ctx.scale is not None:
        yield from _map_bounds(ctx.coords, ctx.shape[2], ctx.shape[3], ctx.scale)
        return
    p, r = placement(ctx), roi_geo(ctx)
    if p is None or p.kind != "out_of_bounds":
        return
    g, s = r.g, r.s
    outside = (
        (g.xs.min(1) * s < -_TOL_CELLS)
        | (g.xs.max(1) * s > g.Wf + _TOL_CELLS)
        | (g.ys.min(1) * s < -_TOL_CELLS)
        | (g.ys.max(1) * s > g.Hf + _TOL_CELLS)
    )
    beyond_image = g.xs.max() > 1.25 * g.Wi or g.ys.max() > 1.25 * g.Hi  # far past the image, not a margin
    yield Hit(
        "warning",
        "Some boxes reach outside the feature map by more than one cell; roi_align zero-fills those "
        "samples, so their features fade towards zero."
        + (
            " They exceed the image too: are they pixels of a larger (original) image?"
            if beyond_image and not r.s_is_1
            else ""
        ),
        f"{int(outside.sum())} of {len(outside)} boxes; at spatial_scale {r.s_text}: {axis_over(g, s, s)} "
        f"(map {g.Hf} x {g.Wf}, image {_fmt(g.Hi)} x {_fmt(g.Wi)})",
        f"boxes = torchvision.ops.clip_boxes_to_image(boxes, ({_fmt(g.Hi)}, {_fmt(g.Wi)}))"
        + (
            "  # if they belong to the original image, rescale first: boxes * (new_size / original_size)"
            if beyond_image and not r.s_is_1
            else ""
        ),
    )


def _crop_out_of_bounds(ctx: Context) -> Iterator[Hit]:
    found = _crop_pixels(ctx)
    if found is None or found[0]:
        return
    g = ctx.geo
    ty = 1.5 / max(g.Hf - 1, 1)  # 1.5 px of the cropped tensor: (H - 1) vs H normalization stays quiet
    tx = 1.5 / max(g.Wf - 1, 1)
    outside = (g.ys.min(1) < -ty) | (g.ys.max(1) > 1 + ty) | (g.xs.min(1) < -tx) | (g.xs.max(1) > 1 + tx)
    if outside.any():
        yield Hit(
            "warning",
            "Some normalized boxes reach outside [0, 1] by more than 1.5 pixels; crop_and_resize fills those "
            "samples with extrapolation_value.",
            f"{int(outside.sum())} of {len(outside)} boxes; y in [{_fmt(g.ys.min())}, {_fmt(g.ys.max())}], "
            f"x in [{_fmt(g.xs.min())}, {_fmt(g.xs.max())}] (1.5 pixels of the {g.Hf} x {g.Wf} input = "
            f"{_fmt(ty)} x {_fmt(tx)})",
            "boxes = boxes.clamp(0, 1)",
        )


def _map_bounds(coords: np.ndarray, Hf: int, Wf: int, s: float) -> Iterator[Hit]:
    """Without an image size: boxes that leave the map at ``spatial_scale`` (the cause cannot be named)."""
    g = _Geo(coords[:, [0, 2]], coords[:, [1, 3]], Hf, Wf, math.nan, math.nan)
    if g.fits(s, s):
        return
    xs, ys, tol = g.xs * s, g.ys * s, _TOL_CELLS
    partly = (xs.min(1) < -tol) | (xs.max(1) > Wf + tol) | (ys.min(1) < -tol) | (ys.max(1) > Hf + tol)
    beyond = (xs.min(1) > Wf + tol) | (ys.min(1) > Hf + tol) | (xs.max(1) < -tol) | (ys.max(1) < -tol)
    yield Hit(
        "error" if beyond.any() else "warning",
        "Some boxes reach outside the feature map at this spatial_scale"
        + (", some lie entirely outside it: roi_align pools only zeros for those" if beyond.any() else "")
        + ". Without image_size the diagnoser cannot tell image-space boxes from a wrong stride.",
        f"{int(partly.sum())} of {len(partly)} boxes leave the {Hf} x {Wf} map by more than one cell, "
        f"{int(beyond.sum())} entirely; at spatial_scale {_fmt_scale(s)}: {axis_over(g, s, s)}",
        "pass image_size=(H, W), the image the boxes refer to, to name the cause; spatial_scale should be the "
        "map size over the image size, e.g. 1 / 16",
    )


@_rule("SUBCELL_ROI", "boxes under one cell of the map (roi_align) or one pixel of the input (crop_and_resize)")
def _subcell_roi(ctx: Context) -> Iterator[Hit]:
    if ctx.op == "crop_and_resize":
        found = _crop_pixels(ctx)
        if found is None or found[0] or not ctx.proper.any() or any(_crop_out_of_bounds(ctx)):
            return
        g, coords, proper = ctx.geo, ctx.coords, ctx.proper
        h = (coords[proper, 2] - coords[proper, 0]) * (g.Hf - 1)
        w = (coords[proper, 3] - coords[proper, 1]) * (g.Wf - 1)
        small = ((h < 1) & (g.Hf > 1)) | ((w < 1) & (g.Wf > 1))
        if small.any():
            yield Hit(
                "info",
                "Some boxes span less than one pixel of the cropped tensor; their crops are nearly constant.",
                f"{int(small.sum())} of {len(small)} boxes; smallest {_fmt(h.min())} x {_fmt(w.min())} px of the "
                f"{g.Hf} x {g.Wf} input",
                "crop from a finer feature map or the image itself for small boxes",
            )
        return
    p, r = placement(ctx), roi_geo(ctx)
    if p is None or p.kind != "fits" or not ctx.proper.any():
        return
    coords, proper, s = ctx.coords, ctx.proper, r.s
    w = (coords[proper, 2] - coords[proper, 0]) * s
    h = (coords[proper, 3] - coords[proper, 1]) * s
    small = (w < 1) | (h < 1)
    if small.any():
        i = int(np.argmin(np.minimum(w, h)))
        yield Hit(
            "info",
            "Some boxes are smaller than one feature cell after scaling; their pooled features come from a "
            "single cell (blurry, sensitive to the half-pixel offset).",
            f"{int(small.sum())} of {len(small)} boxes are under 1 cell at spatial_scale {_fmt_scale(s)}; smallest "
            f"{_fmt(w[i] / s)} x {_fmt(h[i] / s)} -> {_fmt(w[i])} x {_fmt(h[i])} cells",
            "pool small boxes from a finer level: torchvision.ops.MultiScaleRoIAlign assigns them by size; "
            "or use sampling_ratio=2 and aligned=True",
        )


@_rule("NON_DIVISIBLE_STRIDE", "an image size that is not a multiple of the map's stride (with a pyramid: of the "
       "coarsest level's)", _ALIGN,
       source="facebookresearch/detectron2#1840; torchvision GeneralizedRCNNTransform(size_divisible=32); "
       "detectron2 ImageList.from_tensors(images, backbone.size_divisibility)")  # fmt: skip
def _non_divisible_stride(ctx: Context) -> Iterator[Hit]:
    pg = pyramid_geo(ctx)
    if pg is not None:  # the whole pyramid speaks for the map: its coarsest stride decides
        if pg.not_divisible:
            yield _pyramid_not_divisible(pg)
        return
    if ctx.shape is None or ctx.image is None:
        return
    Hi, Wi = ctx.image
    Hf, Wf = ctx.shape[2], ctx.shape[3]
    sy, sx = stride_rule(Hi, Hf), stride_rule(Wi, Wf)
    if sy is None or sy != sx or sx < 2:
        return
    s = sx
    if int(Hi) % s == 0 and int(Wi) % s == 0:
        return
    dy, dx = Hf * s - Hi, Wf * s - Wi
    yield Hit(
        "info",
        f"The image is not a multiple of the stride {s}; with spatial_scale 1/{s} the map's far edge drifts from "
        "the image edge, so boxes near the right/bottom are pooled slightly off.",
        f"image {_fmt(Hi)} x {_fmt(Wi)} / {s} = {_fmt(Hi / s)} x {_fmt(Wi / s)}; the map has {Hf} x "
        f"{Wf} cells; {Hf} * {s} = {_fmt(Hf * s)}, {Wf} * {s} = {_fmt(Wf * s)}: drift {_fmt(dy)} px "
        f"(y), {_fmt(dx)} px (x)",
        f"resize or pad the image to a multiple of {s} (e.g. {_fmt(math.ceil(Hi / s) * s)} x "
        f"{_fmt(math.ceil(Wi / s) * s)}) before the backbone; spatial_scale=1 / {s} is then exact",
    )


_PAD_FIX = (
    "pad the image (bottom/right, so the boxes keep their coordinates) to a multiple of {s}, here {h} x {w}, "
    "before the backbone: torchvision's GeneralizedRCNNTransform(size_divisible=32) does, detectron2 pads to "
    "backbone.size_divisibility (32 for its FPN) in ImageList.from_tensors; then every level is image / stride"
)


def _level(pg: PyramidGeo, i: int) -> str:
    return f"level {i}" + ("" if pg.strides is None else f" (stride {pg.strides[i]})")


_MAX_TOP_DOWN_CELLS = 1 << 20  # a map side up to this is checked cell by cell (8 MiB of indices)


def _top_down(pg: PyramidGeo) -> str:
    """What an FPN's top-down sum does with the first (coarsest) pair of levels that does not halve exactly."""
    level, axis, fine, coarse = max(pg.breaks, key=lambda b: (b[0], b[1] == "x"))  # the top-down path meets it first
    dim = 3 if axis == "x" else 2
    text = (f"{_level(pg, level)} has {fine} cells on {axis} and {_level(pg, level + 1)} {coarse}, not {fine} / 2: "
            f"detectron2's FPN (F.interpolate(scale_factor=2) + add, and any FPN written that way) raises "
            f"'The size of tensor a ({fine}) must match the size of tensor b ({2 * coarse}) at non-singleton "
            f"dimension {dim}' (facebookresearch/detectron2#1840); torchvision's FeaturePyramidNetwork and mmdet's "
            "FPN resize the coarser map to the finer one's size instead")  # fmt: skip
    if fine > _MAX_TOP_DOWN_CELLS:  # no real map is that large; the index tensors below would be
        return text
    # torchvision's FeaturePyramidNetwork and mmdet's FPN: F.interpolate(top, size=lateral.shape[-2:]), nearest;
    # the same call here tells which coarse cell each fine cell reads, against x2 nearest (cell j // 2)
    src = F.interpolate(torch.arange(coarse, dtype=torch.float32).view(1, 1, 1, -1), size=(1, fine), mode="nearest")
    sized = src.flatten().long()  # [fine]
    doubled = (torch.arange(fine) // 2).clamp(max=coarse - 1)  # [fine]
    off = (sized != doubled).nonzero().flatten()
    cells = int((sized - doubled).abs().max()) if len(off) else 0
    px = "" if pg.strides is None else f" = {cells * pg.strides[level + 1]} px"
    if len(off) == 0:
        return text + ", which here reads the same cells as x2 nearest (cell j // 2): no shift"
    return text + (f", so from cell {int(off[0])} on its top-down features come from another coarse cell than x2 "
                   f"nearest's (up to {cells} cell{'s' if cells > 1 else ''}{px} off)")  # fmt: skip


def _pyramid_not_divisible(pg: PyramidGeo) -> Hit:
    assert pg.strides is not None and pg.image is not None  # not_divisible says so
    Hi, Wi = pg.image
    s, (hc, wc) = pg.strides[-1], pg.sizes[-1]
    maps = ", ".join(f"{h} x {w}" for h, w in pg.sizes)
    strides = ", ".join(str(t) for t in pg.strides)
    drift = max(hc - Hi / s, wc - Wi / s)  # cells the coarsest map reaches past the image
    ceil = all((h, w) == (math.ceil(Hi / t), math.ceil(Wi / t)) for (h, w), t in zip(pg.sizes, pg.strides, strict=True))
    rounding = "ceil" if ceil else "floor or ceil"
    message = (
        f"The image is not a multiple of the coarsest stride {s}, so the pyramid's maps are not image / stride: "
        + (_top_down(pg) + ". The" if pg.breaks else "the levels still halve exactly, but the")
        + f" coarsest map reaches {_fmt(drift)} cells ({_fmt(drift * s)} px) past the image: its effective "
        f"stride is {_fmt(Hi / hc)} x {_fmt(Wi / wc)} px, not {s}, so a scale taken as map / image instead of 1/{s} "
        "maps boxes at the far edge that far off."
    )
    return Hit(
        "warning" if pg.breaks else "info",
        message,
        f"image {_fmt(Hi)} x {_fmt(Wi)}: {_fmt(Hi)} / {s} = {_fmt(Hi / s)}, {_fmt(Wi)} / {s} = {_fmt(Wi / s)}; "
        f"levels {maps} at strides {strides} ({rounding} of image / stride each); {hc} * {s} = {hc * s}, {wc} * {s} = "
        f"{wc * s} px",
        _PAD_FIX.format(s=s, h=_fmt(math.ceil(Hi / s) * s), w=_fmt(math.ceil(Wi / s) * s)),
    )


@_rule("FPN_LEVEL_SIZES", "pyramid levels that do not halve exactly, or that do not cover the image at their "
       "stride", _ALIGN,
       source="facebookresearch/detectron2#1840; torchvision/ops/feature_pyramid_network.py")  # fmt: skip
def _fpn_level_sizes(ctx: Context) -> Iterator[Hit]:
    pg = pyramid_geo(ctx)
    if pg is None:
        return
    if pg.too_small and pg.strides is not None and pg.image is not None:
        level, axis, cells, low = pg.too_small[0]
        s = pg.strides[level]
        px = pg.image[0] if axis == "y" else pg.image[1]
        yield Hit(
            "error",
            f"{_level(pg, level)} is smaller than the image at its stride: its map cannot be this image's, so "
            "boxes near the far edge fall off it (image_size of another image, or levels that are not "
            "consecutive strides).",
            f"{_level(pg, level)}: {cells} cells on {axis}, but image {_fmt(px)} / {s} = {_fmt(px / s)} needs at "
            f"least {low}; levels " + ", ".join(f"{h} x {w}" for h, w in pg.sizes),
            "pass the size of the image the backbone saw as image_size (the padded batch), and the pyramid's "
            "levels finest first, one per stride",
        )
    if pg.breaks and not pg.not_divisible:  # with a non-divisible image, NON_DIVISIBLE_STRIDE says this
        yield Hit(
            "warning",
            "The pyramid's levels do not halve exactly: " + _top_down(pg) + ".",
            "levels " + ", ".join(f"{h} x {w}" for h, w in pg.sizes) + " (finest first); "
            + "; ".join(f"{fine} != 2 * {coarse} ({axis}, levels {level}-{level + 1})"
                        for level, axis, fine, coarse in pg.breaks),
            "pad the input to a multiple of the coarsest stride (32 for P2-P5, 64 with P6) before the backbone: "
            "torchvision's GeneralizedRCNNTransform(size_divisible=32), detectron2's backbone.size_divisibility",
        )  # fmt: skip


# the pooler defaults each framework trains with: (aligned, sampling_ratio, what sets them)
POOLER_DEFAULTS: dict[str, tuple[bool, int, str]] = {
    "torchvision": (False, -1, "torchvision.ops.roi_align / RoIAlign (its detection models: sampling_ratio=2)"),
    "mmcv": (True, 0, "mmcv.ops.RoIAlign (mmdet's RoIAlign configs)"),
    "detectron2": (True, 0, "detectron2 ROIPooler(pooler_type='ROIAlignV2')"),
}


@_rule("MIXED_DEFAULTS", "pooler options of another framework than the one the head was trained with", _ALIGN,
       source="torchvision/ops/roi_align.py; mmcv/ops/roi_align.py; detectron2/modeling/poolers.py")  # fmt: skip
def _mixed_defaults(ctx: Context) -> Iterator[Hit]:
    if ctx.convention is None or ctx.aligned is None:
        return
    aligned, ratio, where = POOLER_DEFAULTS[ctx.convention]
    given = f"aligned={ctx.aligned}" + ("" if ctx.sampling_ratio is None else f", sampling_ratio={ctx.sampling_ratio}")
    scale = ctx.scale if ctx.scale else 1.0
    if bool(ctx.aligned) != aligned:
        other = [n for n, d in POOLER_DEFAULTS.items() if d[0] == bool(ctx.aligned)]
        yield Hit(
            "warning",
            f"The head was trained with {ctx.convention}'s pooler ({where}: aligned={aligned}), but this call "
            f"uses aligned={ctx.aligned}, {' / '.join(other)}'s default: every box is pooled half a feature cell "
            "off from what the head learned.",
            f"{given} against {ctx.convention}'s aligned={aligned}, sampling_ratio={ratio}; half a cell at "
            f"spatial_scale {_fmt_scale(scale)} is {_fmt(0.5 / scale)} image px",
            f"roi_align(features, rois, output_size, spatial_scale, sampling_ratio={ratio}, aligned={aligned})  "
            f"# {ctx.convention}'s defaults",
        )
    elif ctx.sampling_ratio is not None and ratio <= 0 < ctx.sampling_ratio:
        yield Hit(
            "info",
            f"{ctx.convention}'s pooler samples adaptively (sampling_ratio={ratio}: ceil(box / bin) points per "
            f"bin); this call samples a fixed {ctx.sampling_ratio} x {ctx.sampling_ratio} grid, which differs "
            "slightly on boxes larger than the output size in cells.",
            f"{given} against {ctx.convention}'s sampling_ratio={ratio}",
            f"roi_align(..., sampling_ratio={ratio}, aligned={aligned})  # {ctx.convention}'s defaults",
        )


RULES: tuple[Rule, ...] = tuple(_RULES)
