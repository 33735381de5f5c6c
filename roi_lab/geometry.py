"""Feature-map geometry (strides, drift) and the misconfiguration variants of one set of boxes.

:func:`feature_geometry` says how a feature map sits on its image: the nominal stride of the
backbone, the effective stride the sizes suggest, and how far the two disagree at the far edge.

:func:`make_variants` takes the boxes a user *meant* (xyxy image pixels) and produces each common
way of passing them to ROIAlign / CropAndResize wrongly, with the exact region and sample points the
op then really reads. The app's side-by-side page is built on these :class:`Variant` objects.

Convention:
    Image coordinates are continuous: pixel ``j`` covers ``[j, j + 1)``. Feature cell ``i`` (stride
    ``s``) covers image pixels ``[i * s, (i + 1) * s)``; its centre is image coordinate
    ``(i + 0.5) * s``. Feature *sample* coordinates are the ops' own: integer ``p`` is the centre of
    cell ``p`` (bilinear interpolation reads cells ``floor(p)`` and ``floor(p) + 1``). So a feature
    sample at ``p`` lies at image coordinate ``(p + 0.5) * s``, and image coordinate ``x`` lies at
    feature sample coordinate ``x / s - 0.5``: exactly the shift ROIAlign's ``aligned=True`` applies.
    This holds for every stride-2 stage of a torchvision ResNet (a ``k x k`` conv with padding
    ``k // 2`` keeps cell centres on an even grid), whatever the image size: the *nominal* stride is
    the true cell spacing, and a non-divisible image only adds cells that hang over the far edge.

    ``boxes_feature`` of a ROIAlign variant is ``[x_start, y_start, x_start + roi_w, y_start + roi_h]``
    in feature sample coordinates: the box whose ``PH x PW`` bins are averaged (after the
    ``aligned`` shift and, when not aligned, the minimum size of one cell). For a crop_and_resize
    variant it is the span from the first to the last sample (corner-aligned). An inverted region
    (``x2 < x1``) is kept as the op computes it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, overload

import torch
from torch import Tensor

from roi_lab.boxes import _size_pair as _pair
from roi_lab.boxes import as_boxes, to_rois, to_tf_boxes
from roi_lab.errors import InputValueError, describe

__all__ = [
    "FeatureGeometry",
    "feature_geometry",
    "resnet_feature_size",
    "VariantKind",
    "VARIANT_TITLES",
    "Variant",
    "make_variants",
    "tf_boxes_for_feature_map",
    "crop_image_for_variants",
    "crop_features_for_variants",
    "roi_align_sample_points",
    "crop_and_resize_sample_points",
    "box_iou_pairwise",
]


# ----------------------------------------------------------------------------------------------
# Feature geometry
# ----------------------------------------------------------------------------------------------


@overload
def resnet_feature_size(image_size: int, stride: int) -> int: ...
@overload
def resnet_feature_size(image_size: tuple[int, int], stride: int) -> tuple[int, int]: ...
def resnet_feature_size(image_size: int | tuple[int, int], stride: int) -> int | tuple[int, int]:
    """The feature-map size a torchvision ResNet (or FPN level) gives at ``stride``.

    Every stride-2 stage (the 7x7 stem conv, the max pool, the first conv of layer2-4) maps
    ``n -> floor((n - 1) / 2) + 1 = ceil(n / 2)``, so the size is ``ceil`` applied ``log2(stride)``
    times (not ``ceil(n / stride)`` in general, though the two agree for these stages).

    Args:
        image_size (int | (H, W)): the input size.
        stride (int): a power of two: 4 (C2), 8 (C3), 16 (C4), 32 (C5).

    Returns:
        int | (h, w): the same shape as ``image_size``.

    Example:
        >>> resnet_feature_size((800, 1000), 16)
        (50, 63)
        >>> resnet_feature_size(1000, 32)
        32
    """
    ok = isinstance(stride, numbers.Real) and not isinstance(stride, bool) and float(stride).is_integer()
    if not ok or stride < 1 or int(stride) & (int(stride) - 1):
        raise InputValueError(
            "resnet_feature_size(stride=...)",
            expected="a power-of-two integer stride (1, 2, 4, 8, 16, 32, 64)",
            got=describe(stride),
            fix="ResNet stages have strides 4 (C2), 8 (C3), 16 (C4), 32 (C5)",
        )
    stride = int(stride)
    single = isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool)
    sizes = _pair(image_size, "resnet_feature_size", "image_size", integer=True)
    out = []
    for n in sizes:
        for _ in range(stride.bit_length() - 1):
            n = (n - 1) // 2 + 1
        out.append(n)
    return out[0] if single else (out[0], out[1])


@dataclass(frozen=True)
class FeatureGeometry:
    """How a feature map sits on its image.

    Attributes:
        image_size ((H, W)): image pixels.
        feature_size ((h, w)): feature cells.
        nominal_stride ((sy, sx)): the backbone's stride: the true spacing of the cells in image px.
        effective_stride ((sy, sx)): ``image / feature``; equals the nominal one iff divisible.
        divisible (bool): ``feature * nominal == image`` on both axes.
        drift_px ((dy, dx)): ``feature * nominal - image``: how far past the image edge the far
            edge of the map lands under the nominal stride (positive: cells hang over the edge). It
            is also how wrong a box at the far edge ends up when ``spatial_scale`` is taken from
            the measured ratio instead of the nominal stride.
    """

    image_size: tuple[int, int]
    feature_size: tuple[int, int]
    nominal_stride: tuple[float, float]
    effective_stride: tuple[float, float]
    divisible: bool
    drift_px: tuple[float, float]

    @property
    def spatial_scale(self) -> float | tuple[float, float]:
        """``1 / nominal_stride``: a float when both axes agree, else ``(1 / sy, 1 / sx)``."""
        sy, sx = self.nominal_stride
        return 1.0 / sx if sy == sx else (1.0 / sy, 1.0 / sx)


def feature_geometry(
    image_size: tuple[int, int],
    feature_size: tuple[int, int] | None = None,
    *,
    stride: float | tuple[float, float] | None = None,
) -> FeatureGeometry:
    """Nominal and effective stride, divisibility and far-edge drift of a feature map.

    Args:
        image_size ((H, W)): the image the backbone saw.
        feature_size ((h, w) | None): the map's size; when None, derived from ``stride`` with
            torchvision ResNet's rule (:func:`resnet_feature_size`).
        stride (float | (sy, sx) | None): the nominal stride; when None, inferred per axis as
            ``2 ** round(log2(image / feature))`` like torchvision's ``MultiScaleRoIAlign``.

    Returns:
        FeatureGeometry

    Example:
        >>> g = feature_geometry((800, 1000), stride=16)
        >>> g.feature_size, g.divisible, g.drift_px, g.effective_stride[1]
        ((50, 63), False, (0.0, 8.0), 15.873015873015873)
        >>> feature_geometry((800, 1000), (50, 63)).nominal_stride
        (16.0, 16.0)
    """
    image = _pair(image_size, "feature_geometry", "image_size", integer=True)
    if feature_size is None:
        if stride is None:
            raise InputValueError(
                "feature_geometry(feature_size=..., stride=...)",
                expected="feature_size, or a stride to derive it",
                got="neither",
                fix="pass feature_size=features.shape[-2:] or stride=16",
            )
        nominal = _pair(stride, "feature_geometry", "stride", integer=False)
        if not all(float(s).is_integer() and int(s) & (int(s) - 1) == 0 for s in nominal):
            raise InputValueError(
                "feature_geometry(stride=...)",
                expected="a power-of-two stride to derive the ResNet feature size",
                got=describe(stride),
                fix="pass feature_size=features.shape[-2:] too",
            )
        feat = (resnet_feature_size(image[0], int(nominal[0])), resnet_feature_size(image[1], int(nominal[1])))
    else:
        feat = _pair(feature_size, "feature_geometry", "feature_size", integer=True)
        if stride is None:
            ny, nx = (float(2 ** round(math.log2(i / f))) for i, f in zip(image, feat, strict=True))
            nominal = (ny, nx)
        else:
            nominal = _pair(stride, "feature_geometry", "stride", integer=False)
    effective = (image[0] / feat[0], image[1] / feat[1])
    drift = (feat[0] * nominal[0] - image[0], feat[1] * nominal[1] - image[1])
    return FeatureGeometry(
        image_size=image,
        feature_size=feat,
        nominal_stride=(float(nominal[0]), float(nominal[1])),
        effective_stride=effective,
        divisible=drift[0] == 0 and drift[1] == 0,
        drift_px=(float(drift[0]), float(drift[1])),
    )


# ----------------------------------------------------------------------------------------------
# Exact sample positions of the ops
# ----------------------------------------------------------------------------------------------


def roi_align_sample_points(
    boxes: Tensor,
    spatial_scale: float,
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Where torchvision's ``roi_align`` kernel samples, box by box.

    Args:
        boxes (Tensor[K, 4]): x1, y1, x2, y2 as passed to the op (before ``spatial_scale``).
        spatial_scale (float): the op's scale.
        output_size ((PH, PW)): bins.
        sampling_ratio (int): samples per bin side; ``<= 0`` is the adaptive ``ceil(roi / P)``.
        aligned (bool): the half-pixel shift.

    Returns:
        (Tensor[K, 4], Tensor[K, P, 2], Tensor[K]): float64 (int64 counts): the region
        ``[x_start, y_start, x_end, y_end]``, the (x, y) samples in feature sample coordinates ordered
        ``[PH, PW, SY, SX]`` (rows padded with NaN when the adaptive grid differs between boxes), and the
        number of valid samples per box.

    Convention:
        ``start = x1 * spatial_scale - (0.5 if aligned else 0)``; ``roi = max(x2 * scale - offset - start,
        1)`` when not aligned (no clamp when aligned); ``bin = roi / PW``; sample
        ``x = start + pw * bin + (ix + 0.5) * bin / SX`` (torchvision/csrc/ops/cpu/roi_align_kernel.cpp).

    Example:
        >>> region, pts, n = roi_align_sample_points(torch.tensor([[0., 0., 32., 16.]]), 1 / 16, (1, 2), 1, True)
        >>> region.tolist(), pts.tolist(), n.tolist()
        ([[-0.5, -0.5, 1.5, 0.5]], [[[0.0, 0.0], [1.0, 0.0]]], [2])
    """
    b = boxes.detach().to(torch.float64).cpu()
    ph_n, pw_n = output_size
    offset = 0.5 if aligned else 0.0
    x1 = b[:, 0] * spatial_scale - offset
    y1 = b[:, 1] * spatial_scale - offset
    roi_w = b[:, 2] * spatial_scale - offset - x1
    roi_h = b[:, 3] * spatial_scale - offset - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    region = torch.stack([x1, y1, x1 + roi_w, y1 + roi_h], 1)  # [K, 4]
    bin_w, bin_h = roi_w / pw_n, roi_h / ph_n  # [K]
    if sampling_ratio > 0:
        grid_h = torch.full_like(roi_h, sampling_ratio, dtype=torch.int64)
        grid_w = torch.full_like(roi_w, sampling_ratio, dtype=torch.int64)
    else:
        grid_h = torch.ceil(roi_h / ph_n).to(torch.int64).clamp(min=0)
        grid_w = torch.ceil(roi_w / pw_n).to(torch.int64).clamp(min=0)
    counts = grid_h * grid_w * ph_n * pw_n  # [K]
    p_max = int(counts.max()) if len(b) else 0
    points = torch.full((len(b), p_max, 2), float("nan"), dtype=torch.float64)
    for gh, gw in {(int(h), int(w)) for h, w in zip(grid_h, grid_w, strict=True)}:
        sel = (grid_h == gh) & (grid_w == gw)
        if gh * gw == 0:
            continue
        ph = torch.arange(ph_n, dtype=torch.float64)
        iy = torch.arange(gh, dtype=torch.float64)
        pw = torch.arange(pw_n, dtype=torch.float64)
        ix = torch.arange(gw, dtype=torch.float64)
        ys = (
            y1[sel, None, None]
            + ph[None, :, None] * bin_h[sel, None, None]
            + (iy[None, None, :] + 0.5) * bin_h[sel, None, None] / gh
        )  # [k, PH, SY]
        xs = (
            x1[sel, None, None]
            + pw[None, :, None] * bin_w[sel, None, None]
            + (ix[None, None, :] + 0.5) * bin_w[sel, None, None] / gw
        )  # [k, PW, SX]
        k = int(sel.sum())
        yy = ys[:, :, None, :, None].expand(k, ph_n, pw_n, gh, gw)  # [k, PH, PW, SY, SX]
        xx = xs[:, None, :, None, :].expand(k, ph_n, pw_n, gh, gw)  # [k, PH, PW, SY, SX]
        pts = torch.stack([xx, yy], -1).reshape(k, -1, 2)  # [k, P, 2]
        points[sel, : pts.shape[1]] = pts
    return region, points, counts


def crop_and_resize_sample_points(
    boxes_norm: Tensor, feature_size: tuple[int, int], crop_size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Where ``tf.image.crop_and_resize`` samples, box by box.

    Args:
        boxes_norm (Tensor[K, 4]): (y1, x1, y2, x2) as passed to the op.
        feature_size ((h, w)): the map the op crops from.
        crop_size ((CH, CW)): output size.

    Returns:
        (Tensor[K, 4], Tensor[K, CH * CW, 2]): float64: the xyxy span from the first to the last sample, and
        the (x, y) samples in pixel-centre coordinates, row-major.

    Convention:
        ``y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (CH - 1)``; for ``CH == 1`` the single row is
        at ``0.5 * (y1 + y2) * (h - 1)``. Samples outside ``[0, h - 1]`` return
        ``extrapolation_value`` (tensorflow/core/kernels/image/crop_and_resize_op.cc).

    Example:
        >>> crop_and_resize_sample_points(torch.tensor([[0., 0., 1., 0.5]]), (5, 9), (2, 2))[1]
        tensor([[[0., 0.],
                 [4., 0.],
                 [0., 4.],
                 [4., 4.]]], dtype=torch.float64)
    """
    b = boxes_norm.detach().to(torch.float64).cpu()
    h, w = feature_size
    ch, cw = crop_size
    y1, x1, y2, x2 = (b[:, i] * (h - 1 if i % 2 == 0 else w - 1) for i in range(4))

    def axis(a: Tensor, z: Tensor, n: int) -> Tensor:
        if n == 1:
            return ((a + z) / 2)[:, None]  # [K, 1]
        return a[:, None] + torch.arange(n, dtype=torch.float64) * ((z - a) / (n - 1))[:, None]  # [K, n]

    ys, xs = axis(y1, y2, ch), axis(x1, x2, cw)  # [K, CH], [K, CW]
    k = len(b)
    pts = torch.stack([xs[:, None, :].expand(k, ch, cw), ys[:, :, None].expand(k, ch, cw)], -1)  # [K, CH, CW, 2]
    return torch.stack([x1, y1, x2, y2], 1), pts.reshape(k, ch * cw, 2)


def box_iou_pairwise(a: Tensor, b: Tensor) -> Tensor:
    """IoU of ``a[k]`` with ``b[k]`` (xyxy; inverted boxes are sorted first).

    Example:
        >>> box_iou_pairwise(torch.tensor([[0., 0., 2., 2.]]), torch.tensor([[1., 0., 3., 2.]]))
        tensor([0.3333])
    """

    def norm(t: Tensor) -> Tensor:
        t = t.to(torch.float64)
        return torch.stack(
            [
                torch.minimum(t[:, 0], t[:, 2]),
                torch.minimum(t[:, 1], t[:, 3]),
                torch.maximum(t[:, 0], t[:, 2]),
                torch.maximum(t[:, 1], t[:, 3]),
            ],
            1,
        )

    a, b = norm(a), norm(b)
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-300), torch.zeros_like(union)).float()


def roi_pool_cells(boxes: Tensor, spatial_scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """The cells torchvision's ``roi_pool`` max-pools, box by box.

    Args:
        boxes (Tensor[K, 4]): x1, y1, x2, y2 as passed to the op (before ``spatial_scale``).
        spatial_scale (float): the op's scale.

    Returns:
        (Tensor[K, 4], Tensor[K, P, 2], Tensor[K]): float64 (int64 counts): the quantized region
        ``[start - 0.5, ..., end + 0.5]`` (the cells' outer edges), the (x, y) centres of its cells in
        feature sample coordinates, row-major (NaN padding when boxes cover different numbers of cells),
        and the number of cells per box.

    Convention:
        ``start = round(x1 * spatial_scale)``, ``end = round(x2 * spatial_scale)`` in float32, halves away
        from zero; both ends inclusive: ``roi_w = max(end - start + 1, 1)`` cells ``start .. start + roi_w - 1``
        (torchvision/csrc/ops/cpu/roi_pool_kernel.cpp). The bins ``[floor(pw * roi_w / PW), ceil((pw + 1) *
        roi_w / PW))`` overlap but cover all of them, whatever ``PW``; cells off the map are skipped (a bin
        wholly off it gives 0).

    Example:
        >>> region, cells, n = roi_pool_cells(torch.tensor([[20., 36., 50., 60.]]), 1 / 16)
        >>> region.tolist(), n.tolist(), cells[0, :4].tolist()
        ([[0.5, 1.5, 3.5, 4.5]], [9], [[1.0, 2.0], [2.0, 2.0], [3.0, 2.0], [1.0, 3.0]])
    """
    v = boxes.detach().float().cpu() * torch.tensor(spatial_scale, dtype=torch.float32)  # float32, as the op
    v = v.double()
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)  # [K, 4] C's round (exact: v holds float32 values)
    start, end = q[:, :2], q[:, 2:]  # [K, 2] (x, y)
    size = (end - start + 1).clamp(min=1)  # [K, 2] (roi_w, roi_h)
    region = torch.cat([start - 0.5, start + size - 0.5], 1)  # [K, 4]
    counts = (size[:, 0] * size[:, 1]).long()  # [K]
    p_max = int(counts.max()) if len(q) else 0
    j = torch.arange(p_max, dtype=torch.float64)[None]  # [1, P]: cell j of a box, row-major over its roi_w
    xx, yy = torch.remainder(j, size[:, :1]) + start[:, :1], torch.floor(j / size[:, :1]) + start[:, 1:]  # [K, P]
    cells = torch.stack([xx, yy], -1)  # [K, P, 2]
    cells[j.expand(len(q), -1) >= counts[:, None]] = float("nan")  # boxes cover different numbers of cells
    return region, cells, counts


def rotated_box_corners(rboxes: Tensor) -> Tensor:
    """The four corners of rotated boxes, in the order (-w/2, -h/2), (w/2, -h/2), (w/2, h/2), (-w/2, h/2) of the box.

    Args:
        rboxes (Tensor[K, 5]): cx, cy, w, h and the counter-clockwise angle in **radians**.

    Returns:
        Tensor[K, 4, 2] float64: (x, y) corners.

    Convention:
        Image coordinates, y down; the angle turns the box's x axis towards -y (visually counter-clockwise),
        as detectron2's ``ROIAlignRotated`` samples: ``x = cx + yy * sin + xx * cos``, ``y = cy + yy * cos - xx *
        sin`` for box coordinates ``(xx, yy)``.

    Example:
        >>> rotated_box_corners(torch.tensor([[0., 0., 4., 2., math.pi / 2]])).round().tolist()
        [[[-1.0, 2.0], [-1.0, -2.0], [1.0, -2.0], [1.0, 2.0]]]
    """
    r = rboxes.detach().to(torch.float64).cpu().reshape(-1, 5)
    cx, cy, w, h, theta = r.unbind(1)
    xx = torch.stack([-w, w, w, -w], 1) / 2  # [K, 4]
    yy = torch.stack([-h, -h, h, h], 1) / 2  # [K, 4]
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    return torch.stack([cx[:, None] + yy * sin + xx * cos, cy[:, None] + yy * cos - xx * sin], -1)  # [K, 4, 2]


def _cross(o: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])


def _inside_convex(points: Tensor, poly: Tensor) -> Tensor:
    """points [K, P, 2] inside (or on) the convex quad poly [K, 4, 2] of either orientation: [K, P] bool."""
    a, b = poly, poly.roll(-1, 1)  # [K, 4, 2] edges a -> b
    c = _cross(a[:, None], b[:, None], points[:, :, None])  # [K, P, 4]
    eps = 1e-9 * (poly.abs().amax((1, 2)) + 1)[:, None, None] ** 2
    return (c >= -eps).all(-1) | (c <= eps).all(-1)


def _polygon_area(poly: Tensor) -> Tensor:
    """Shoelace area of polygons [K, 4, 2] (any orientation): [K]."""
    x, y = poly[..., 0], poly[..., 1]
    return 0.5 * (x * y.roll(-1, 1) - x.roll(-1, 1) * y).sum(1).abs()


def rotated_iou_pairwise(a: Tensor, b: Tensor) -> Tensor:
    """IoU of rotated box ``a[k]`` with ``b[k]``: the exact area of the intersection of the two rectangles.

    The intersection of two convex quads is the convex hull of the corners of each inside the other and the
    crossings of their edges; ordered by angle about their mean, its area is the shoelace sum.

    Args:
        a, b (Tensor[K, 5]): cx, cy, w, h, counter-clockwise angle in radians (see :func:`rotated_box_corners`).

    Returns:
        Tensor[K] float32 (0 where the union has no area).

    Example:
        >>> square = torch.tensor([[0., 0., 1., 1., 0.]])
        >>> rotated_iou_pairwise(square, square + torch.tensor([[0., 0., 0., 0., math.pi / 4]]))  # 1 / sqrt(2)
        tensor([0.7071])
    """
    pa, pb = rotated_box_corners(a), rotated_box_corners(b)  # [K, 4, 2]
    k = len(pa)
    # edge crossings: edge i of a (p -> p + r) with edge j of b (q -> q + s)
    p, r = pa[:, :, None], (pa.roll(-1, 1) - pa)[:, :, None]  # [K, 4, 1, 2]
    q, s = pb[:, None], (pb.roll(-1, 1) - pb)[:, None]  # [K, 1, 4, 2]
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]  # [K, 4, 4]
    qp = q - p
    safe = torch.where(denom.abs() > 1e-300, denom, torch.ones_like(denom))
    t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / safe
    u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / safe
    hit = (denom.abs() > 1e-300) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)  # [K, 4, 4]
    crossings = (p + t[..., None] * r).reshape(k, 16, 2)
    points = torch.cat([pa, pb, crossings], 1)  # [K, 24, 2]
    valid = torch.cat([_inside_convex(pa, pb), _inside_convex(pb, pa), hit.reshape(k, 16)], 1)  # [K, 24]
    n = valid.sum(1, keepdim=True).clamp(min=1)
    centre = (points * valid[..., None]).sum(1, keepdim=True) / n[..., None]  # [K, 1, 2]
    angle = torch.atan2(points[..., 1] - centre[..., 1], points[..., 0] - centre[..., 0])
    angle = torch.where(valid, angle, torch.full_like(angle, 10.0))  # invalid points sort last
    order = angle.argsort(1)
    pts = points.gather(1, order[..., None].expand(-1, -1, 2))  # [K, 24, 2]
    ok = valid.gather(1, order)
    pts = torch.where(ok[..., None], pts, pts[:, :1])  # invalid points repeat the first: they add no area
    x, y = pts[..., 0], pts[..., 1]
    inter = 0.5 * (x * y.roll(-1, 1) - x.roll(-1, 1) * y).sum(1).abs()  # [K]
    inter = torch.where(valid.sum(1) >= 3, inter, torch.zeros_like(inter))
    union = _polygon_area(pa) + _polygon_area(pb) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-300), torch.zeros_like(union)).float()


def roi_align_rotated_sample_points(
    rboxes: Tensor, spatial_scale: float, output_size: tuple[int, int], sampling_ratio: int, theta: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Where ``roi_align_rotated`` (detectron2's ROIAlignRotated; mmcv's with ``aligned=True``) samples, box by box.

    Args:
        rboxes (Tensor[K, 5]): cx, cy, w, h (and the angle, not read: ``theta`` is) as passed to the op.
        spatial_scale (float): the op's scale.
        output_size ((PH, PW)): bins.
        sampling_ratio (int): samples per bin side; ``<= 0`` is the adaptive ``ceil(roi / P)``.
        theta (Tensor[K]): the counter-clockwise angle in radians the op turns each box by (after its
            ``angle_unit`` and ``clockwise`` are applied).

    Returns:
        (Tensor[K, 5], Tensor[K, P, 2], Tensor[K]): float64 (int64 counts): the region ``(cx, cy, w, h,
        theta)`` in feature sample coordinates, the (x, y) samples ordered ``[PH, PW, SY, SX]`` (NaN padding
        when the adaptive grid differs between boxes), and the number of samples per box.

    Convention:
        centre ``c * spatial_scale - 0.5``, size ``w * spatial_scale``; box coordinates ``yy = -h / 2 + ph * bin_h +
        (iy + 0.5) * bin_h / SY`` (``xx`` likewise) turned about the centre: ``x = cx + yy * sin + xx * cos``, ``y =
        cy + yy * cos - xx * sin`` (detectron2/layers/csrc/ROIAlignRotated/ROIAlignRotated_cpu.cpp).

    Example:
        >>> region, pts, n = roi_align_rotated_sample_points(torch.tensor([[16., 16., 32., 16., 0.]]), 1 / 16,
        ...                                                  (1, 2), 1, torch.zeros(1))
        >>> region.tolist(), pts.tolist(), n.tolist()
        ([[0.5, 0.5, 2.0, 1.0, 0.0]], [[[0.0, 0.5], [1.0, 0.5]]], [2])
    """
    r = rboxes.detach().to(torch.float64).cpu().reshape(-1, 5)
    th = theta.detach().to(torch.float64).cpu().reshape(-1)
    ph_n, pw_n = output_size
    cx, cy = r[:, 0] * spatial_scale - 0.5, r[:, 1] * spatial_scale - 0.5
    roi_w, roi_h = r[:, 2] * spatial_scale, r[:, 3] * spatial_scale
    region = torch.stack([cx, cy, roi_w, roi_h, th], 1)  # [K, 5]
    if sampling_ratio > 0:
        grid_h = torch.full((len(r),), sampling_ratio, dtype=torch.int64)
        grid_w = grid_h.clone()
    else:
        grid_h = torch.ceil(roi_h / ph_n).to(torch.int64).clamp(min=0)
        grid_w = torch.ceil(roi_w / pw_n).to(torch.int64).clamp(min=0)
    counts = grid_h * grid_w * ph_n * pw_n  # [K]
    p_max = int(counts.max()) if len(r) else 0
    points = torch.full((len(r), p_max, 2), float("nan"), dtype=torch.float64)
    for gh, gw in {(int(h), int(w)) for h, w in zip(grid_h, grid_w, strict=True)}:
        sel = (grid_h == gh) & (grid_w == gw)
        if gh * gw == 0:
            continue
        k = int(sel.sum())
        bin_h, bin_w = (roi_h[sel] / ph_n)[:, None, None], (roi_w[sel] / pw_n)[:, None, None]  # [k, 1, 1]
        yy = -roi_h[sel, None, None] / 2 + torch.arange(ph_n, dtype=torch.float64)[None, :, None] * bin_h \
            + (torch.arange(gh, dtype=torch.float64)[None, None, :] + 0.5) * bin_h / gh  # [k, PH, SY]
        xx = -roi_w[sel, None, None] / 2 + torch.arange(pw_n, dtype=torch.float64)[None, :, None] * bin_w \
            + (torch.arange(gw, dtype=torch.float64)[None, None, :] + 0.5) * bin_w / gw  # [k, PW, SX]
        yy = yy[:, :, None, :, None].expand(k, ph_n, pw_n, gh, gw)  # [k, PH, PW, SY, SX]
        xx = xx[:, None, :, None, :].expand(k, ph_n, pw_n, gh, gw)  # [k, PH, PW, SY, SX]
        cos = torch.cos(th[sel])[:, None, None, None, None]
        sin = torch.sin(th[sel])[:, None, None, None, None]
        x = cx[sel, None, None, None, None] + yy * sin + xx * cos  # [k, PH, PW, SY, SX]
        y = cy[sel, None, None, None, None] + yy * cos - xx * sin  # [k, PH, PW, SY, SX]
        points[sel, : ph_n * pw_n * gh * gw] = torch.stack([x, y], -1).reshape(k, -1, 2)
    return region, points, counts


# ----------------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------------


class VariantKind(str, Enum):
    """The ways the same intended boxes reach the op; values are the lower-case names."""

    CORRECT = "correct"
    IMAGE_SPACE_BOXES = "image_space_boxes"
    WRONG_STRIDE_X2 = "wrong_stride_x2"
    WRONG_STRIDE_HALF = "wrong_stride_half"
    YX_SWAPPED = "yx_swapped"
    NORMALIZED_AS_PIXELS = "normalized_as_pixels"
    PIXELS_AS_NORMALIZED = "pixels_as_normalized"
    DOUBLE_SCALED = "double_scaled"
    ALIGNED_MISMATCH = "aligned_mismatch"
    TF_CROP_AND_RESIZE = "tf_crop_and_resize"
    NON_DIVISIBLE_STRIDE = "non_divisible_stride"
    ROI_POOL = "roi_pool"
    OTHER_DEFAULTS = "other_framework_defaults"
    ROTATED = "rotated"
    RADIANS_AS_DEGREES = "radians_as_degrees"
    DEGREES_AS_RADIANS = "degrees_as_radians"
    CLOCKWISE_FLIPPED = "clockwise_flipped"


#: The rotated family: the boxes turned by ``angle_degrees`` and pooled with ROIAlignRotated (ROTATED, detectron2's
#: convention) and with each angle mix-up; the mix-ups are compared with ROTATED, not with your axis-aligned call.
ROTATED_KINDS = (VariantKind.ROTATED, VariantKind.RADIANS_AS_DEGREES, VariantKind.DEGREES_AS_RADIANS,
                 VariantKind.CLOCKWISE_FLIPPED)


#: One short title per kind, the same whatever the settings (the app uses them as widget labels, which must
#: not change when a setting does). CORRECT is the user's own call: "Your settings", not "correct", because
#: the settings themselves may be off (legacy ``aligned=False``: see :attr:`Variant.settings_note`).
VARIANT_TITLES: dict[VariantKind, str] = {
    VariantKind.CORRECT: "Your settings",
    VariantKind.IMAGE_SPACE_BOXES: "Image-space boxes, spatial_scale=1",
    VariantKind.WRONG_STRIDE_X2: "Stride x2",
    VariantKind.WRONG_STRIDE_HALF: "Stride x1/2",
    VariantKind.YX_SWAPPED: "y/x swapped",
    VariantKind.NORMALIZED_AS_PIXELS: "Normalized boxes as pixels",
    VariantKind.PIXELS_AS_NORMALIZED: "Pixel boxes as normalized (TF)",
    VariantKind.DOUBLE_SCALED: "Scaled twice",
    VariantKind.ALIGNED_MISMATCH: "aligned flipped",
    VariantKind.TF_CROP_AND_RESIZE: "TF crop_and_resize, (size - 1)",
    VariantKind.NON_DIVISIBLE_STRIDE: "Scale from measured sizes",
    VariantKind.ROI_POOL: "RoIPool (quantized)",
    VariantKind.OTHER_DEFAULTS: "Other framework's defaults",
    VariantKind.ROTATED: "Rotated box (detectron2)",
    VariantKind.RADIANS_AS_DEGREES: "Radians read as degrees",
    VariantKind.DEGREES_AS_RADIANS: "Degrees read as radians",
    VariantKind.CLOCKWISE_FLIPPED: "Clockwise flipped",
}


@dataclass
class Variant:
    """One way of passing the intended boxes, and what the op then really samples.

    Attributes:
        kind (VariantKind): which bug (or CORRECT: the user's own settings).
        title (str): ``VARIANT_TITLES[kind]``: the same whatever the settings.
        description (str): ``words``, then the line of user code that produces it (``code``).
        op (str): ``"roi_align"``, ``"crop_and_resize"``, ``"roi_pool"`` or ``"roi_align_rotated"``.
        boxes_passed (Tensor[K, 4] | Tensor[K, 5]): what the code passes, in the op's own format (xyxy for
            roi_align and roi_pool, before ``spatial_scale``; y1, x1, y2, x2 for crop_and_resize; cx, cy, w,
            h, angle in the op's own unit for roi_align_rotated).
        op_kwargs (dict): ``spatial_scale``, ``sampling_ratio``, ``aligned`` (roi_align; roi_align_rotated
            also ``angle_unit``, ``clockwise``), ``spatial_scale`` (roi_pool) or ``box_indices``,
            ``crop_size`` (crop_and_resize).
        boxes_feature (Tensor[K, 4]): xyxy region the op really samples, feature sample coordinates
            (roi_pool: the outer edges of its whole cells; roi_align_rotated: the bounding box of the turned
            region).
        region_image (Tensor[K, 4]): that region in image px (``(p + 0.5) * stride``).
        points_feature (Tensor[K, P, 2]): (x, y) sample positions, feature sample coordinates
            (NaN-padded when the adaptive grid differs between boxes); for roi_pool the centres of the
            cells it max-pools.
        points_image (Tensor[K, P, 2]): the same in image px.
        outside_fraction (Tensor[K]): share of samples that read zero: roi_align and roi_align_rotated
            ``y < -1 or y > h`` (or x likewise); crop_and_resize outside ``[0, h - 1]``; roi_pool the share
            of its cells off the map (skipped; a bin wholly off the map gives 0). 1 for a box with no samples.
        iou (Tensor[K]): IoU of ``region_image`` with the intended box (the rotated family: of the turned
            regions, exact polygon IoU, :func:`rotated_iou_pairwise`).
        code (str): the line of user code alone.
        output_size ((PH, PW)), batch_index (int), stride ((sy, sx)), image_size ((H, W)),
        feature_size ((h, w)): the configuration the variant was made for.
        num_points (Tensor[K]): valid samples per box (the rest of ``points_*`` is NaN padding).
        words (str): the bug in plain words (no code).
        fix (str): the line of code that passes the boxes as meant ("" for CORRECT with sound settings).
        settings_note (str): for CORRECT only, "" or why the user's own settings are off (legacy
            ``aligned=False``), so the app never calls a half-cell-off reference "correct".
        boxes_meant (Tensor[K, 4]): the boxes the user meant, xyxy image px (the same for every variant).
        rotated_region_image (Tensor[K, 5] | None): the rotated family only: the turned region the op
            samples, (cx, cy, w, h, counter-clockwise angle in radians), image px.
        rotated_meant_image (Tensor[K, 5] | None): the rotated family only: the boxes meant turned by the
            angle asked for, same format.
        reference (VariantKind): the variant this one is compared with: CORRECT (your call), or ROTATED for
            the rotated family.

    Convention:
        See the module docstring: feature sample ``p`` is image coordinate ``(p + 0.5) * stride``.
    """

    kind: VariantKind
    title: str
    description: str
    op: str
    boxes_passed: Tensor
    op_kwargs: dict
    boxes_feature: Tensor
    region_image: Tensor
    points_feature: Tensor
    points_image: Tensor
    outside_fraction: Tensor
    iou: Tensor
    code: str = ""
    output_size: tuple[int, int] = (7, 7)
    batch_index: int = 0
    stride: tuple[float, float] = (16.0, 16.0)
    image_size: tuple[int, int] = (0, 0)
    feature_size: tuple[int, int] = (0, 0)
    num_points: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    words: str = ""
    fix: str = ""
    settings_note: str = ""
    boxes_meant: Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    rotated_region_image: Tensor | None = None
    rotated_meant_image: Tensor | None = None
    reference: VariantKind = VariantKind.CORRECT

    @property
    def polygon_image(self) -> Tensor | None:
        """Tensor[K, 4, 2] (x, y) corners of the turned region, image px (None unless rotated)."""
        return None if self.rotated_region_image is None else rotated_box_corners(self.rotated_region_image)

    @property
    def polygon_meant(self) -> Tensor | None:
        """Tensor[K, 4, 2] (x, y) corners of the turned boxes meant, image px (None unless rotated)."""
        return None if self.rotated_meant_image is None else rotated_box_corners(self.rotated_meant_image)

    def _rois(self, boxes: Tensor) -> Tensor:
        return torch.cat([torch.full((len(boxes), 1), float(self.batch_index), dtype=boxes.dtype,
                                     device=boxes.device), boxes], 1)  # [K, 1 + columns]

    def apply(self, features: Tensor, output_size: int | tuple[int, int] | None = None) -> Tensor:
        """Run the op on ``features`` exactly as the buggy code does.

        Args:
            features (Tensor[N, C, h, w]): the feature map.
            output_size (int | (PH, PW) | None): default the size the variant was made with.

        Returns:
            Tensor[K, C, PH, PW]
        """
        size = self.output_size if output_size is None else output_size
        boxes = self.boxes_passed.to(device=features.device, dtype=features.dtype)
        if self.op == "roi_align":
            from roi_lab import roi_align

            return roi_align(features, to_rois(boxes, self.batch_index), size, **self.op_kwargs)
        if self.op == "roi_pool":
            from roi_lab import roi_pool

            return roi_pool(features, to_rois(boxes, self.batch_index), size, **self.op_kwargs)
        if self.op == "roi_align_rotated":
            from roi_lab import roi_align_rotated

            return roi_align_rotated(features, self._rois(boxes), size, **self.op_kwargs)
        from roi_lab import crop_and_resize

        idx = self.op_kwargs["box_indices"].to(features.device)
        return crop_and_resize(features, boxes.float(), idx, size)

    def apply_to_image(self, image: Tensor, output_size: int | tuple[int, int] | None = None) -> Tensor:
        """Crop from the RGB image the region the op really reads on the feature map.

        ROIAlign and RoIPool variants run ``roi_align(image, region_image, spatial_scale=1, sampling_ratio=2,
        aligned=True)`` (``aligned=True`` makes continuous image coordinates exact; for RoIPool that is the
        area of its whole cells). The rotated family runs ``roi_align_rotated`` on ``rotated_region_image``
        likewise (radians, scale 1, ``sampling_ratio=2``). crop_and_resize
        variants run ``crop_and_resize`` on the image with the span of the samples in image pixel
        centres, ``(region_image - 0.5) / (size - 1)``, so the first and last samples are the same
        points as on the map. Samples past the image border read 0 like the op's, but the zero zone
        starts one image pixel out, not one feature cell.

        Args:
            image (Tensor[N, 3, H, W]): float image the features were computed from.
            output_size (int | (PH, PW) | None): default the size the variant was made with.

        Returns:
            Tensor[K, 3, PH, PW]
        """
        size = self.output_size if output_size is None else output_size
        if self.rotated_region_image is not None:
            from roi_lab import roi_align_rotated

            rotated = self.rotated_region_image.to(device=image.device, dtype=image.dtype)
            return roi_align_rotated(image, self._rois(rotated), size, 1.0, 2, True, angle_unit="radians")
        region = self.region_image.to(device=image.device, dtype=image.dtype)
        if self.op in ("roi_align", "roi_pool"):
            from roi_lab import roi_align

            return roi_align(image, to_rois(region, self.batch_index), size, 1.0, 2, True)
        from roi_lab import crop_and_resize

        h, w = image.shape[-2:]
        x1, y1, x2, y2 = (region - 0.5).unbind(1)
        boxes_norm = torch.stack([y1 / max(h - 1, 1), x1 / max(w - 1, 1), y2 / max(h - 1, 1), x2 / max(w - 1, 1)], 1)
        return crop_and_resize(image, boxes_norm, self.op_kwargs["box_indices"].to(image.device), size)


def crop_image_for_variants(
    variants: list[Variant], image: Tensor, output_size: int | tuple[int, int] | None = None
) -> list[Tensor]:
    """``[v.apply_to_image(image, output_size) for v in variants]`` in one op call per op and output size.

    Every ROIAlign (and RoIPool) variant's image crop is ``roi_align(image, rois, size, 1.0, 2, True)`` with
    its own rois, every rotated one's ``roi_align_rotated(image, rois, size, 1.0, 2, True, angle_unit="radians")``
    and every crop_and_resize variant's ``crop_and_resize(image, boxes_norm, box_indices,
    size)`` (see :meth:`Variant.apply_to_image`), so the variants of one op and size share one call on
    their concatenated boxes: the op's fixed cost (validation, sample tables) is paid once, not per
    variant. Each box is sampled on its own: crop_and_resize crops equal the per-variant calls bit for
    bit (a gather per output), roi_align crops to within a few ulp (its matmul buckets depend on the
    other boxes of the call; see ``roi_align``'s batch invariance note).

    Args:
        variants (list[Variant]): from :func:`make_variants`.
        image (Tensor[N, 3, H, W]): float image the features were computed from.
        output_size (int | (PH, PW) | None): default each variant's own size.

    Returns:
        list[Tensor[K, 3, PH, PW]]: one per variant, in order. An op that refuses one variant's
        input raises for its batch; call :meth:`Variant.apply_to_image` per variant to isolate it.
    """
    from roi_lab import crop_and_resize, roi_align, roi_align_rotated

    h, w = image.shape[-2:]

    def align_boxes(v: Variant) -> tuple[Tensor, Tensor | None]:
        return to_rois(v.region_image.to(device=image.device, dtype=image.dtype), v.batch_index), None

    def tf_boxes(v: Variant) -> tuple[Tensor, Tensor | None]:
        x1, y1, x2, y2 = (v.region_image.to(device=image.device, dtype=image.dtype) - 0.5).unbind(1)
        boxes_norm = torch.stack([y1 / max(h - 1, 1), x1 / max(w - 1, 1), y2 / max(h - 1, 1), x2 / max(w - 1, 1)], 1)
        return boxes_norm, v.op_kwargs["box_indices"].to(image.device)

    def rotated_boxes(v: Variant) -> tuple[Tensor, Tensor | None]:
        return v._rois(v.rotated_region_image.to(device=image.device, dtype=image.dtype)), None  # type: ignore[union-attr]

    def run(op: str, size: tuple[int, int], boxes: Tensor, idx: Tensor | None) -> Tensor:
        if op == "roi_align":
            return roi_align(image, boxes, size, 1.0, 2, True)
        if op == "roi_align_rotated":
            return roi_align_rotated(image, boxes, size, 1.0, 2, True, angle_unit="radians")
        return crop_and_resize(image, boxes, idx, size)  # type: ignore[arg-type]  # idx: set for this op

    return _batched_by_call(variants, output_size, "crop_image_for_variants",
                            lambda v: "roi_align" if v.op == "roi_pool" else v.op,
                            {"roi_align": align_boxes, "roi_pool": align_boxes, "crop_and_resize": tf_boxes,
                             "roi_align_rotated": rotated_boxes}, run)


def crop_features_for_variants(
    variants: list[Variant], features: Tensor, output_size: int | tuple[int, int] | None = None
) -> list[Tensor]:
    """``[v.apply(features, output_size) for v in variants]`` in one op call per distinct op call.

    Variants that call the same op with the same settings share one call on their concatenated boxes.
    ROIAlign reads a box at ``box * spatial_scale`` (then the ``aligned`` shift), so a variant's scale
    is folded into its boxes and the call made with ``spatial_scale=1``: the ROIAlign variants need one
    call per (``sampling_ratio``, ``aligned``), crop_and_resize one per crop size. The rotated family folds
    the scale likewise but keeps its angles as passed (one call per ``sampling_ratio``, angle unit and
    ``clockwise``: the op's own degree-to-radian conversion). RoIPool rounds ``box * spatial_scale``, so its
    scale stays in the call. The 17 variants take 8 calls instead of 17. Each box is sampled on its own, so
    the crops equal the per-variant calls: crop_and_resize and roi_pool bit for bit, roi_align and
    roi_align_rotated to within a few ulp (the batch invariance note of ``roi_align``, and the scale
    multiplied before rather than inside the op).

    Args:
        variants (list[Variant]): from :func:`make_variants`.
        features (Tensor[N, C, h, w]): the feature map.
        output_size (int | (PH, PW) | None): default each variant's own size.

    Returns:
        list[Tensor[K, C, PH, PW]]: one per variant, in order. An op that refuses one variant's
        input raises for its batch; call :meth:`Variant.apply` per variant to isolate it.
    """
    from roi_lab import crop_and_resize, roi_align, roi_align_rotated, roi_pool

    def align_boxes(v: Variant) -> tuple[Tensor, Tensor | None]:
        boxes = v.boxes_passed.to(device=features.device, dtype=features.dtype) * float(v.op_kwargs["spatial_scale"])
        return to_rois(boxes, v.batch_index), None  # the scale folded in: the call uses spatial_scale=1

    def tf_boxes(v: Variant) -> tuple[Tensor, Tensor | None]:
        boxes = v.boxes_passed.to(device=features.device, dtype=features.dtype).float()
        return boxes, v.op_kwargs["box_indices"].to(features.device)

    def pool_boxes(v: Variant) -> tuple[Tensor, Tensor | None]:
        return to_rois(v.boxes_passed.to(device=features.device, dtype=features.dtype), v.batch_index), None

    def rotated_boxes(v: Variant) -> tuple[Tensor, Tensor | None]:
        b = v.boxes_passed.to(device=features.device, dtype=features.dtype)
        return v._rois(torch.cat([b[:, :4] * float(v.op_kwargs["spatial_scale"]), b[:, 4:]], 1)), None  # [K, 6]

    def call_key(v: Variant) -> Any:
        kw = v.op_kwargs
        if v.op == "roi_align":
            return (v.op, int(kw["sampling_ratio"]), bool(kw["aligned"]))
        if v.op == "roi_align_rotated":
            return (v.op, int(kw["sampling_ratio"]), kw["angle_unit"], bool(kw["clockwise"]))
        if v.op == "roi_pool":
            return (v.op, float(kw["spatial_scale"]))
        return v.op

    def run(key: Any, size: tuple[int, int], boxes: Tensor, idx: Tensor | None) -> Tensor:
        if key == "crop_and_resize":
            return crop_and_resize(features, boxes, idx, size)  # type: ignore[arg-type]  # idx: set for this op
        if key[0] == "roi_pool":
            return roi_pool(features, boxes, size, spatial_scale=key[1])
        if key[0] == "roi_align_rotated":
            _, sampling_ratio, unit, clockwise = key
            return roi_align_rotated(features, boxes, size, 1.0, sampling_ratio, True, angle_unit=unit,
                                     clockwise=clockwise)
        _, sampling_ratio, aligned = key
        return roi_align(features, boxes, size, spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=aligned)

    return _batched_by_call(variants, output_size, "crop_features_for_variants", call_key,
                            {"roi_align": align_boxes, "crop_and_resize": tf_boxes, "roi_pool": pool_boxes,
                             "roi_align_rotated": rotated_boxes}, run)


def _batched_by_call(variants, output_size, where, call_key, boxes_of, run) -> list[Tensor]:
    """Group ``variants`` by (``call_key(v)``, output size), run each group once on its concatenated
    boxes (``boxes_of[v.op](v)`` -> (boxes, box indices or None)) and split the result back per variant."""
    groups: dict[tuple[Any, tuple[int, int]], list[int]] = {}
    for i, v in enumerate(variants):
        size = _pair(v.output_size if output_size is None else output_size, where, "output_size", integer=True)
        groups.setdefault((call_key(v), size), []).append(i)
    out: list[Tensor | None] = [None] * len(variants)
    for (key, size), members in groups.items():
        parts = [boxes_of[variants[i].op](variants[i]) for i in members]
        boxes = torch.cat([b for b, _ in parts])  # [sum K, 4 or 5]
        idx = None if parts[0][1] is None else torch.cat([x for _, x in parts])  # [sum K]
        crops = run(key, size, boxes, idx)  # [sum K, C, PH, PW]
        for i, c in zip(members, torch.split(crops, [len(b) for b, _ in parts]), strict=True):
            out[i] = c
    return out  # type: ignore[return-value]


def _fmt(v: float) -> str:
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.6g}"


def _turn(degrees: float) -> float:
    """An angle in degrees brought into (-180, 180]."""
    d = math.fmod(degrees, 360.0)
    return d - 360.0 if d > 180 else d + 360.0 if d <= -180 else d


def tf_boxes_for_feature_map(
    boxes_image: Any, feature_size: tuple[int, int], stride: float | tuple[float, float]
) -> Tensor:
    """The ``crop_and_resize`` boxes that make it sample a stride-``s`` feature map exactly over the boxes meant.

    ``crop_and_resize`` samples row ``y_norm * (h - 1)`` of the tensor it crops, corner-aligned: the first
    and last samples land *on* the two normalized coordinates. On a feature map, image coordinate ``y``
    is feature sample coordinate ``y / s - 0.5`` (module Convention), so the normalization that puts the
    first and last samples on the box's edges is::

        y_norm = (y / s - 0.5) / (h - 1)        x_norm = (x / s - 0.5) / (w - 1)

    with ``h, w`` the *feature map's* size. Dividing image pixels by ``(H - 1, W - 1)`` of the *image*
    (Matterport's Mask R-CNN) is right only when the tensor cropped is the image itself and the boxes
    are pixel indices; on a feature map it drifts towards the far edge (``VariantKind.TF_CROP_AND_RESIZE``).

    Args:
        boxes_image (Tensor[K, 4]): xyxy image px (continuous coordinates).
        feature_size ((h, w)): the map ``crop_and_resize`` crops; both at least 2.
        stride (float | (sy, sx)): the map's nominal stride (1 for the image itself).

    Returns:
        Tensor[K, 4] float32: (y1, x1, y2, x2) normalized for ``crop_and_resize(features, boxes, ...)``.

    Convention:
        Corner-aligned: with ``crop_size`` ``(CH, CW)`` the samples run from ``y1 / s - 0.5`` to
        ``y2 / s - 0.5`` in ``CH`` even steps, i.e. from the box's top edge to its bottom edge (not
        bin centres as in ROIAlign).

    Example:
        >>> tf_boxes_for_feature_map(torch.tensor([[8., 8., 160., 80.]]), (10, 20), 16).tolist()
        [[0.0, 0.0, 0.5, 0.5]]
    """
    where = "tf_boxes_for_feature_map"
    b = as_boxes(boxes_image, where, "boxes_image").to(torch.float64)
    h, w = _pair(feature_size, where, "feature_size", integer=True)
    sy, sx = _pair(stride, where, "stride", integer=False)
    if h < 2 or w < 2:
        raise InputValueError(
            f"{where}(feature_size=...)",
            expected="a map of at least 2 x 2 cells (crop_and_resize divides by size - 1)",
            got=f"{h} x {w}",
            fix="use roi_align for 1-cell maps, or crop a larger map",
        )
    x1, y1, x2, y2 = b.unbind(1)
    out = torch.stack(
        [(y1 / sy - 0.5) / (h - 1), (x1 / sx - 0.5) / (w - 1), (y2 / sy - 0.5) / (h - 1), (x2 / sx - 0.5) / (w - 1)], 1
    )  # [K, 4]
    return out.float()


def make_variants(
    boxes_image: Any,
    *,
    image_size: tuple[int, int],
    feature_size: tuple[int, int],
    stride: float | tuple[float, float],
    output_size: int | tuple[int, int] = 7,
    sampling_ratio: int = 2,
    aligned: bool = True,
    batch_index: int = 0,
    angle_degrees: float = 30.0,
) -> list[Variant]:
    """The intended boxes passed with the user's own settings, and passed each common wrong way.

    The first variant (CORRECT, titled "Your settings") is the reference every other one is compared
    with; when those settings are themselves off (legacy ``aligned=False``) its ``settings_note`` says so.

    Args:
        boxes_image (Tensor[K, 4]): the boxes meant, xyxy image px.
        image_size ((H, W)): the image the backbone saw.
        feature_size ((h, w)): the feature map's size.
        stride (float | (s, s)): the map's nominal stride (one value: roi_align has one scale).
        output_size (int | (PH, PW)): bins (roi_align) / crop size (crop_and_resize).
        sampling_ratio (int): roi_align samples per bin side (``<= 0``: adaptive).
        aligned (bool): the setting the user's call (CORRECT) uses.
        batch_index (int): the image of the batch the boxes belong to.
        angle_degrees (float): the rotated family (:data:`ROTATED_KINDS`) turns every box by this angle,
            counter-clockwise, about its centre; at a multiple of 180 the mix-ups coincide with ROTATED.

    Returns:
        list[Variant]: one per :class:`VariantKind`, in its order (CORRECT first).

    Convention:
        See the module docstring. NON_DIVISIBLE_STRIDE takes ``spatial_scale = w / W`` from the
        measured sizes (the hand-written bug), while the cells really sit ``stride`` px apart
        (torchvision's ``MultiScaleRoIAlign`` infers the nominal ``2 ** round(log2(w / W))``).
        ROI_POOL is torchvision's ``roi_pool`` on the same boxes and scale; OTHER_DEFAULTS the other
        framework's RoIAlign defaults (torchvision ``aligned=False, sampling_ratio=-1``, mmcv
        ``aligned=True, sampling_ratio=0``). The rotated family pools the boxes turned by
        ``angle_degrees`` with ``roi_align_rotated`` (always aligned, your ``sampling_ratio``): ROTATED
        with detectron2's convention (degrees, counter-clockwise), then the angle in radians read as
        degrees, in degrees read as radians, and mmcv's ``clockwise=True`` on a counter-clockwise angle;
        the three are compared with ROTATED (:attr:`Variant.reference`).

    Example:
        >>> vs = make_variants(torch.tensor([[64., 32., 192., 160.]]), image_size=(256, 256),
        ...                    feature_size=(16, 16), stride=16)
        >>> [v.kind.value for v in vs][:3], vs[0].iou, vs[0].outside_fraction
        (['correct', 'image_space_boxes', 'wrong_stride_x2'], tensor([1.]), tensor([0.]))
        >>> vs[0].boxes_feature.tolist()
        [[3.5, 1.5, 11.5, 9.5]]
    """
    where = "make_variants"
    b = as_boxes(boxes_image, where, "boxes_image").float().cpu()
    img_h, img_w = _pair(image_size, where, "image_size", integer=True)
    feat_h, feat_w = _pair(feature_size, where, "feature_size", integer=True)
    sy, sx = _pair(stride, where, "stride", integer=False)
    if sy != sx:
        raise InputValueError(
            f"{where}(stride=...)",
            expected="one stride for both axes (roi_align takes a single spatial_scale)",
            got=describe(stride),
            fix="pass stride=16; for anisotropic maps scale the boxes per axis yourself and use spatial_scale=1",
        )
    ph, pw = _pair(output_size, where, "output_size", integer=True)
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, numbers.Integral):
        raise InputValueError(
            f"{where}(sampling_ratio=...)",
            expected="an int (<= 0 means adaptive)",
            got=describe(sampling_ratio),
            fix="pass sampling_ratio=2",
        )
    if isinstance(batch_index, bool) or not isinstance(batch_index, numbers.Integral) or batch_index < 0:
        raise InputValueError(
            f"{where}(batch_index=...)",
            expected="a non-negative int",
            got=describe(batch_index),
            fix="pass batch_index=0",
        )
    if isinstance(angle_degrees, bool) or not isinstance(angle_degrees, numbers.Real) \
            or not math.isfinite(angle_degrees):
        raise InputValueError(
            f"{where}(angle_degrees=...)",
            expected="a finite angle in degrees, counter-clockwise",
            got=describe(angle_degrees),
            fix="pass angle_degrees=30.0 (0 leaves the boxes axis-aligned)",
        )
    angle_degrees = float(angle_degrees)
    s = sx
    aligned, sampling_ratio, batch_index = bool(aligned), int(sampling_ratio), int(batch_index)
    drift_x = feat_w * s - img_w
    k = len(b)
    stride_t = torch.tensor([sx, sy], dtype=torch.float64)
    common = {
        "output_size": (ph, pw),
        "batch_index": batch_index,
        "stride": (sy, sx),
        "image_size": (img_h, img_w),
        "feature_size": (feat_h, feat_w),
    }
    call = (
        f"roi_align(features, [boxes], output_size=({ph}, {pw}), spatial_scale={{scale}}, "
        f"sampling_ratio={sampling_ratio}, aligned={{aligned}})"
    )

    def roi(kind: VariantKind, words: str, boxes: Tensor, scale: float, code: str, fix: str = "",
            use_aligned: bool = aligned, use_ratio: int = sampling_ratio) -> Variant:
        region, pts, counts = roi_align_sample_points(boxes, scale, (ph, pw), use_ratio, use_aligned)
        x, y = pts[..., 0], pts[..., 1]
        valid = ~torch.isnan(x)
        out = valid & ((y < -1.0) | (y > feat_h) | (x < -1.0) | (x > feat_w))
        kwargs = {"spatial_scale": scale, "sampling_ratio": use_ratio, "aligned": use_aligned}
        return _finish(kind, words, code, fix, "roi_align", boxes, kwargs, region, pts, out, counts)

    def tf(kind: VariantKind, words: str, boxes_norm: Tensor, code: str, fix: str) -> Variant:
        region, pts = crop_and_resize_sample_points(boxes_norm, (feat_h, feat_w), (ph, pw))
        x, y = pts[..., 0], pts[..., 1]
        out = (y < 0) | (y > feat_h - 1) | (x < 0) | (x > feat_w - 1)
        kwargs = {"box_indices": torch.full((k,), batch_index, dtype=torch.int32), "crop_size": (ph, pw)}
        counts = torch.full((k,), ph * pw, dtype=torch.int64)
        return _finish(kind, words, code, fix, "crop_and_resize", boxes_norm, kwargs, region, pts, out, counts)

    def pool(kind: VariantKind, words: str, code: str, fix: str) -> Variant:
        region, cells, counts = roi_pool_cells(b, scale)
        x, y = cells[..., 0], cells[..., 1]
        out = ~torch.isnan(x) & ((y < 0) | (y > feat_h - 1) | (x < 0) | (x > feat_w - 1))  # skipped cells
        return _finish(kind, words, code, fix, "roi_pool", b, {"spatial_scale": scale}, region, cells, out, counts)

    def rot(kind: VariantKind, words: str, angle_passed: float, unit: str, clockwise: bool, code: str,
            fix: str) -> Variant:
        passed = torch.cat([rboxes[:, :4], torch.full((k, 1), angle_passed, dtype=torch.float64)], 1)  # [K, 5]
        theta = angle_passed * (math.pi / 180 if unit == "degrees" else 1.0) * (-1.0 if clockwise else 1.0)
        region, pts, counts = roi_align_rotated_sample_points(passed, scale, (ph, pw), sampling_ratio,
                                                              torch.full((k,), theta, dtype=torch.float64))
        x, y = pts[..., 0], pts[..., 1]
        out = ~torch.isnan(x) & ((y < -1.0) | (y > feat_h) | (x < -1.0) | (x > feat_w))
        corners = rotated_box_corners(region)  # [K, 4, 2] feature sample coordinates
        bounds = torch.cat([corners.amin(1), corners.amax(1)], 1)  # [K, 4]
        region_image = torch.cat([(region[:, :2] + 0.5) * s, region[:, 2:4] * s, region[:, 4:]], 1)  # [K, 5]
        kwargs = {"spatial_scale": scale, "sampling_ratio": sampling_ratio, "aligned": True,
                  "angle_unit": unit, "clockwise": clockwise}
        return _finish(kind, words, code, fix, "roi_align_rotated", passed, kwargs, bounds, pts, out, counts,
                       rotated=region_image, reference=VariantKind.ROTATED)

    def _finish(kind, words, code, fix, op, boxes, kwargs, region, pts, out, counts, rotated=None,
                reference=VariantKind.CORRECT) -> Variant:
        region_image = (region + 0.5) * stride_t.repeat(2)  # [K, 4]
        points_image = (pts + 0.5) * stride_t  # [K, P, 2]
        frac = torch.where(counts > 0, out.sum(1).double() / counts.clamp(min=1).double(), torch.ones(k).double())
        iou = box_iou_pairwise(region_image, b) if rotated is None else rotated_iou_pairwise(rotated, rboxes)
        return Variant(
            kind=kind,
            title=VARIANT_TITLES[kind],
            description=f"{words}\n{code}",
            op=op,
            boxes_passed=boxes.float(),
            op_kwargs=kwargs,
            boxes_feature=region.float(),
            region_image=region_image.float(),
            points_feature=pts.float(),
            points_image=points_image.float(),
            outside_fraction=frac.float(),
            iou=iou,
            code=code,
            num_points=counts,
            words=words,
            fix=fix,
            boxes_meant=b,
            rotated_region_image=None if rotated is None else rotated.float(),
            rotated_meant_image=None if rotated is None else rboxes.float(),
            reference=reference,
            **common,
        )

    scale = 1.0 / s
    sc = f"1/{_fmt(s)}"
    wh = torch.tensor([img_w, img_h, img_w, img_h], dtype=torch.float32)
    measured = feat_w / img_w
    tf_boxes, _ = to_tf_boxes(b, (img_h, img_w))
    al, nal = str(aligned), str(not aligned)
    right = call.format(scale=sc, aligned="True")
    exact_tf = (
        f"boxes_norm = (boxes_yxyx / {_fmt(s)} - 0.5) / torch.tensor([{feat_h - 1}, {feat_w - 1}, {feat_h - 1}, "
        f"{feat_w - 1}])  # map {feat_h} x {feat_w}, stride {_fmt(s)}\n"
        f"crop_and_resize(features, boxes_norm, box_indices, crop_size=({ph}, {pw}))"
    )
    if feat_w * s == img_w:
        nd_words = (
            f"spatial_scale taken from the measured sizes, feat_w / img_w = {feat_w}/{img_w}. This image's width is "
            f"divisible by the stride ({img_w} = {feat_w} x {_fmt(s)}), so it equals 1/{_fmt(s)} and this "
            "variant is identical to your settings; it breaks as soon as an image size is not a multiple of the "
            "stride."
        )
    else:
        nd_words = (
            f"spatial_scale taken from the measured sizes, feat_w / img_w = {feat_w}/{img_w} = {measured:.6g}, "
            f"instead of the nominal 1/{_fmt(s)}. The cells are {_fmt(s)} px apart whatever the image size "
            f"(the map hangs {_fmt(drift_x)} px over the right edge), so boxes are stretched away from "
            f"the origin: by {_fmt(abs(img_w * measured - img_w * scale) * s)} image px at x = {img_w}."
        )
    correct = roi(
        VariantKind.CORRECT,
        f"Your call: image-pixel boxes with spatial_scale = 1/stride = {sc} and aligned={al}. Every other panel "
        "is compared with this one.",
        b,
        scale,
        call.format(scale=sc, aligned=al),
        fix="" if aligned else right,
    )
    bd = b.double()
    theta_meant = math.radians(angle_degrees)
    rboxes = torch.stack([(bd[:, 0] + bd[:, 2]) / 2, (bd[:, 1] + bd[:, 3]) / 2, bd[:, 2] - bd[:, 0],
                          bd[:, 3] - bd[:, 1], torch.full((k,), theta_meant, dtype=torch.float64)], 1)  # [K, 5]
    if not aligned:
        correct.settings_note = (
            f"aligned=False is the legacy (Detectron v1) setting: its samples sit half a cell ({_fmt(s / 2)} image "
            f"px) right of and below the boxes (IoU {float(correct.iou.min()):.2f} for the worst box), so these "
            "settings are themselves off. Use aligned=True unless the head was trained with aligned=False; the "
            "'aligned flipped' panel shows it."
        )
    if aligned:
        other_words = (
            "torchvision's defaults (aligned=False, sampling_ratio=-1), as when a call written for mmcv (whose "
            "RoIAlign defaults are aligned=True, sampling_ratio=0) drops its keyword arguments on "
            f"torchvision.ops.roi_align. The half-pixel offset is lost: the samples sit half a cell "
            f"({_fmt(s / 2)} image px) right of and below the boxes, and boxes under one cell are stretched to one."
        )
        other_code = (f"torchvision.ops.roi_align(features, [boxes], output_size=({ph}, {pw}), spatial_scale={sc})"
                      "  # defaults: sampling_ratio=-1, aligned=False")
    else:
        other_words = (
            "mmcv's defaults (aligned=True, sampling_ratio=0), as when a call written for torchvision (whose "
            "RoIAlign defaults are aligned=False, sampling_ratio=-1) drops its keyword arguments on "
            f"mmcv.ops.roi_align. The half-pixel offset is added: the samples move half a cell ({_fmt(s / 2)} image "
            "px) left and up, onto the box (where aligned=True samples; a head trained with aligned=False expects "
            "your settings)."
        )
        other_code = (f"mmcv.ops.roi_align(features, rois, ({ph}, {pw}), {sc})  # defaults: sampling_ratio=0, "
                      "aligned=True")
    other_ratio = -1 if aligned else 0
    other_words += (
        " Both frameworks read any sampling_ratio <= 0 the same way (adaptive: ceil(roi_h / PH) samples per "
        "bin side), so -1 vs 0 changes nothing; "
        + (f"the grid does: adaptive instead of your fixed {sampling_ratio} x {sampling_ratio} per bin."
           if sampling_ratio > 0 else
           "your sampling ratio is adaptive too, so here the one difference is aligned and this panel equals "
           "'aligned flipped'; the grids differ once you set sampling_ratio > 0.")
    )
    other_defaults = roi(VariantKind.OTHER_DEFAULTS, other_words, b, scale, other_code,
                         call.format(scale=sc, aligned=al) + "  # every argument explicit: the defaults differ",
                         use_aligned=not aligned, use_ratio=other_ratio)
    d2_call = f"ROIAlignRotated(({ph}, {pw}), spatial_scale={sc}, sampling_ratio={sampling_ratio})(features, rois)"

    def mmcv_call(clockwise: bool) -> str:
        return (f"RoIAlignRotated(({ph}, {pw}), spatial_scale={sc}, sampling_ratio={sampling_ratio}, aligned=True"
                + (", clockwise=True" if clockwise else "") + ")(features, rois)")

    d2_code = (f"rois = torch.cat([batch_index, cx, cy, w, h, torch.full_like(cx, {_fmt(angle_degrees)})], 1)"
               f"  # degrees, counter-clockwise\n{d2_call}  # detectron2.layers")
    rot_words = (
        f"Your boxes turned {_fmt(angle_degrees)} degrees counter-clockwise about their centres and pooled with "
        "detectron2's ROIAlignRotated: rois (batch, cx, cy, w, h, angle), the angle in degrees, counter-clockwise, "
        f"always with the half-pixel offset, sampling_ratio={sampling_ratio}. The reference of the three angle "
        "mix-ups after it; its IoU is with the turned box."
    )
    same_at_zero = ""
    if angle_degrees % 180 == 0:
        rot_words += f" At {_fmt(angle_degrees)} degrees the turned box is the box itself."
        same_at_zero = f" At {_fmt(angle_degrees)} degrees this equals the reference: set a box angle to see it."
    return [
        correct,
        roi(
            VariantKind.IMAGE_SPACE_BOXES,
            f"Image-pixel boxes with spatial_scale left at its default 1.0: the region is {_fmt(s)}x too large "
            "and mostly off the map, where samples read 0.",
            b,
            1.0,
            call.format(scale="1.0", aligned=al),
            right,
        ),
        roi(
            VariantKind.WRONG_STRIDE_X2,
            f"spatial_scale = 1/{_fmt(2 * s)} on a stride-{_fmt(s)} map (e.g. the C5 scale used on C4): "
            "the region shrinks towards the origin by 2x.",
            b,
            scale / 2,
            call.format(scale=f"1/{_fmt(2 * s)}", aligned=al),
            right,
        ),
        roi(
            VariantKind.WRONG_STRIDE_HALF,
            f"spatial_scale = 1/{_fmt(s / 2)} on a stride-{_fmt(s)} map (e.g. the C3 scale used on C4): "
            "the region doubles away from the origin and may leave the map.",
            b,
            scale * 2,
            call.format(scale=f"1/{_fmt(s / 2)}", aligned=al),
            right,
        ),
        roi(
            VariantKind.YX_SWAPPED,
            "Boxes in TensorFlow order (y1, x1, y2, x2) passed where roi_align wants (x1, y1, x2, y2): "
            "the region is mirrored across the diagonal.",
            b[:, [1, 0, 3, 2]],
            scale,
            "boxes = boxes[:, [1, 0, 3, 2]]  # yxyx from a TF pipeline\n" + call.format(scale=sc, aligned=al),
            "boxes_xyxy = boxes_yxyx[:, [1, 0, 3, 2]]\n" + right,
        ),
        roi(
            VariantKind.NORMALIZED_AS_PIXELS,
            "Boxes normalized to [0, 1] by the image size passed as if they were pixels: the region collapses "
            "into the top-left cell.",
            b / wh,
            scale,
            f"boxes = boxes / torch.tensor([{img_w}, {img_h}, {img_w}, {img_h}])  # normalized\n"
            + call.format(scale=sc, aligned=al),
            f"boxes = boxes_norm * torch.tensor([{img_w}, {img_h}, {img_w}, {img_h}])  # back to image px\n" + right,
        ),
        tf(
            VariantKind.PIXELS_AS_NORMALIZED,
            f"Pixel boxes (y1, x1, y2, x2) given to crop_and_resize, which wants them normalized: it samples at "
            f"y * (h - 1), pixel coordinates times {feat_h - 1}, far off the {feat_h}x{feat_w} map, so the crop is "
            "extrapolation_value (0).",
            b[:, [1, 0, 3, 2]],
            f"crop_and_resize(features, boxes_yxyx_pixels, box_indices, crop_size=({ph}, {pw}))",
            exact_tf,
        ),
        roi(
            VariantKind.DOUBLE_SCALED,
            f"Boxes already divided by the stride and spatial_scale = {sc} as well: scaled by 1/{_fmt(s * s)}, "
            "the region shrinks into the top-left corner.",
            b / s,
            scale,
            f"boxes = boxes / {_fmt(s)}  # to feature px\n" + call.format(scale=sc, aligned=al),
            f"{right}  # image-px boxes, scaled once",
        ),
        roi(
            VariantKind.ALIGNED_MISMATCH,
            f"aligned={nal} where your call uses aligned={al}: the region moves half a cell ({_fmt(s / 2)} image px) "
            + (
                "right and down, and boxes under one cell are stretched to one cell."
                if aligned
                else "left and up: onto the box, which is where aligned=True samples (the modern default); a head "
                "trained with aligned=False expects your settings, though."
            ),
            b,
            scale,
            call.format(scale=sc, aligned=nal),
            right if aligned else "",
            use_aligned=not aligned,
        ),
        tf(
            VariantKind.TF_CROP_AND_RESIZE,
            f"Boxes normalized by the image's (size - 1) and cropped from the feature map with crop_and_resize "
            f"(Matterport's Mask R-CNN). crop_and_resize samples y_norm * (h - 1) of the map, so coordinates are "
            f"scaled by {feat_w - 1}/{img_w - 1} instead of 1/{_fmt(s)} and miss the half-cell shift: the samples sit "
            f"up to half a cell ({_fmt(s / 2)} px) off near the origin, by a different amount further out. The exact "
            f"normalization on a stride-{_fmt(s)} map is (y / {_fmt(s)} - 0.5) / (h - 1) of the map.",
            tf_boxes,
            f"boxes = boxes_yxyx / [{img_h} - 1, {img_w} - 1, {img_h} - 1, {img_w} - 1]\n"
            f"tf.image.crop_and_resize(features, boxes, box_indices, crop_size=({ph}, {pw}))",
            exact_tf,
        ),
        roi(
            VariantKind.NON_DIVISIBLE_STRIDE,
            nd_words,
            b,
            measured,
            "spatial_scale = features.shape[-1] / image.shape[-1]\n" + call.format(scale="spatial_scale", aligned=al),
            right,
        ),
        pool(
            VariantKind.ROI_POOL,
            f"torchvision's roi_pool (Fast R-CNN's RoIPool) on the same boxes and scale. It snaps every edge to "
            f"whole cells: start = round(x1 / {_fmt(s)}), end = round(x2 / {_fmt(s)}), both ends inclusive, so it "
            f"reads the cells from image x = start * {_fmt(s)} to (end + 1) * {_fmt(s)}. The left and top edges "
            f"move by up to half a cell ({_fmt(s / 2)} px) either way; the right and bottom edges land between "
            f"half a cell and one and a half cells ({_fmt(s / 2)} to {_fmt(1.5 * s)} px) past the box's (the +1 of "
            "inclusive ends). Each bin is the max over its whole cells (neighbouring bins can share one), not "
            "the mean of interpolated samples; the dots are the centres of the cells it reads.",
            f"roi_pool(features, [boxes], output_size=({ph}, {pw}), spatial_scale={sc})",
            right + "  # RoIAlign samples the box itself",
        ),
        other_defaults,
        rot(VariantKind.ROTATED, rot_words, angle_degrees, "degrees", False, d2_code, ""),
        rot(
            VariantKind.RADIANS_AS_DEGREES,
            f"The angle in radians (mmcv / mmrotate: {_fmt(angle_degrees)} degrees = {theta_meant:.4g} rad) passed "
            f"to detectron2's ROIAlignRotated, which reads degrees: the boxes turn {theta_meant:.4g} degrees "
            f"instead of {_fmt(angle_degrees)}, almost not at all." + same_at_zero,
            theta_meant,
            "degrees",
            False,
            f"rois[:, 5] = math.radians(rois[:, 5])  # mmrotate's angle, radians\n{d2_call}  # reads degrees",
            f"rois[:, 5] = torch.rad2deg(rois[:, 5])  # detectron2 reads degrees\n{d2_call}",
        ),
        rot(
            VariantKind.DEGREES_AS_RADIANS,
            f"The angle in degrees (detectron2's RotatedBoxes: {_fmt(angle_degrees)}) passed to mmcv's "
            f"roi_align_rotated, which reads radians: {_fmt(angle_degrees)} rad is "
            f"{math.degrees(angle_degrees):.4g} degrees, {_turn(math.degrees(angle_degrees)):.4g} after whole "
            f"turns, instead of {_fmt(angle_degrees)}." + same_at_zero,
            angle_degrees,
            "radians",
            False,
            f"rois[:, 5] = {_fmt(angle_degrees)}  # detectron2's angle, degrees\n{mmcv_call(False)}  # reads radians",
            f"rois[:, 5] = torch.deg2rad(rois[:, 5])  # mmcv reads radians\n{mmcv_call(False)}",
        ),
        rot(
            VariantKind.CLOCKWISE_FLIPPED,
            f"mmcv's roi_align_rotated with clockwise=True on counter-clockwise angles: the boxes turn "
            f"{_fmt(angle_degrees)} degrees clockwise instead of counter-clockwise, mirrored in angle "
            f"({_fmt(abs(2 * angle_degrees))} degrees apart). At 90 degrees the turned box covers the same area "
            "but its bins run the other way: the crop is turned by 180 degrees." + same_at_zero,
            theta_meant,
            "radians",
            True,
            f"rois[:, 5] = math.radians(rois[:, 5])  # counter-clockwise, radians\n{mmcv_call(True)}",
            f"{mmcv_call(False)}  # or negate the angles: rois[:, 5] = -rois[:, 5]",
        ),
    ]
