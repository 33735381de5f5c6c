"""The numbers of ``roi_align_rotated``: ROIAlign over rotated boxes, vectorised (no Python loop over boxes).

detectron2/layers/csrc/ROIAlignRotated/ROIAlignRotated_cpu.cpp (mmcv's roi_align_rotated.cpp is the same
kernel with an ``aligned`` flag and a ``clockwise`` flag), per box, in the map's floating type:

- centre ``cx * scale - offset``, ``cy * scale - offset`` with ``offset = 0.5`` (detectron2 always; mmcv
  when ``aligned``), size ``w * scale``, ``h * scale`` (mmcv ``aligned=False`` clamps it to >= 1);
- bin ``(ph, pw)`` has ``gh x gw`` samples (``sampling_ratio``, or ``ceil(roi_h / PH)`` and ``ceil(roi_w /
  PW)`` when it is <= 0) at box coordinates ``yy = -h / 2 + ph * bin_h + (iy + 0.5) * bin_h / gh`` (xx
  likewise), rotated counter-clockwise by ``theta`` about the centre: ``y = yy * cos - xx * sin + cy``,
  ``x = yy * sin + xx * cos + cx``;
- bilinear interpolation as in ROIAlign: a sample with ``y < -1``, ``y > H`` (or the same in x) adds 0,
  negative coordinates read row / column 0, the last row / column is clamped; the bin is the sum over its
  samples divided by ``max(gh * gw, 1)``.

Every box's samples go through one gather of their four neighbours from a channels-last copy of the map;
boxes are bucketed by their (rounded) sample grid and chunked to a memory budget.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_CHUNK_ELEMENTS = 1 << 24  # gathered values per chunk (64 MiB of float32)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32  # half: float32, as detectron2


def sample_grid(
    boxes: Tensor,
    spatial_scale: float,
    pooled: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    theta: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-box geometry: centre (cy, cx), size (roi_h, roi_w), the rotation, and the sample grid.

    Args:
        boxes (Tensor[K, 5]): cx, cy, w, h, angle (the angle is not read here: ``theta`` is).
        theta (Tensor[K]): the counter-clockwise angle in radians, in the compute dtype.

    Returns:
        (Tensor[K, 2] centre (cy, cx), Tensor[K, 2] size (h, w), Tensor[K, 2] (cos, sin),
        Tensor[K] grid_h int64, Tensor[K] grid_w int64)
    """
    ph_n, pw_n = pooled
    offset = 0.5 if aligned else 0.0
    t = boxes.dtype
    s = torch.tensor(spatial_scale, dtype=t, device=boxes.device)
    centre = torch.stack([boxes[:, 1] * s - offset, boxes[:, 0] * s - offset], 1)  # [K, 2] (cy, cx)
    size = torch.stack([boxes[:, 3] * s, boxes[:, 2] * s], 1)  # [K, 2] (h, w)
    if not aligned:
        size = size.clamp(min=1.0)  # mmcv's legacy mode
    rot = torch.stack([torch.cos(theta), torch.sin(theta)], 1)  # [K, 2]
    if sampling_ratio > 0:
        gh = torch.full((boxes.shape[0],), sampling_ratio, dtype=torch.int64, device=boxes.device)
        gw = gh.clone()
    else:
        gh = torch.ceil(size[:, 0] / ph_n).long().clamp(min=0)
        gw = torch.ceil(size[:, 1] / pw_n).long().clamp(min=0)
    return centre, size, rot, gh, gw


def _plan(centre, size, rot, gh, gw, pooled, height, width, bh, bw):
    """Corner indices and weights of every sample of boxes sharing a ``bh x bw`` grid bound.

    Returns:
        (Tensor[k, PH, PW, S, 4] int64, Tensor[k, PH, PW, S, 4]): flat ``y * W + x`` of the four neighbours
        and their bilinear weights (0 for samples outside the map or past the box's own grid);
        ``S = bh * bw``.
    """
    ph_n, pw_n = pooled
    t = centre.dtype
    dev = centre.device
    k = centre.shape[0]
    bin_h = size[:, 0] / ph_n  # [k]
    bin_w = size[:, 1] / pw_n  # [k]
    ph = torch.arange(ph_n, device=dev, dtype=t)
    pw = torch.arange(pw_n, device=dev, dtype=t)
    iy = torch.arange(bh, device=dev, dtype=t)
    ix = torch.arange(bw, device=dev, dtype=t)
    ghf = gh.to(t).clamp(min=1)[:, None, None]
    gwf = gw.to(t).clamp(min=1)[:, None, None]
    yy = -size[:, 0, None, None] / 2 + ph[None, :, None] * bin_h[:, None, None] \
        + (iy[None, None, :] + 0.5) * bin_h[:, None, None] / ghf  # [k, PH, BH]
    xx = -size[:, 1, None, None] / 2 + pw[None, :, None] * bin_w[:, None, None] \
        + (ix[None, None, :] + 0.5) * bin_w[:, None, None] / gwf  # [k, PW, BW]
    cos = rot[:, 0, None, None, None, None]
    sin = rot[:, 1, None, None, None, None]
    yy = yy[:, :, None, :, None]  # [k, PH, 1, BH, 1]
    xx = xx[:, None, :, None, :]  # [k, 1, PW, 1, BW]
    y = yy * cos - xx * sin + centre[:, 0, None, None, None, None]  # [k, PH, PW, BH, BW]
    x = yy * sin + xx * cos + centre[:, 1, None, None, None, None]  # [k, PH, PW, BH, BW]
    inside = (y >= -1.0) & (y <= height) & (x >= -1.0) & (x <= width)
    own = (torch.arange(bh, device=dev)[None, :, None] < gh[:, None, None]) & (
        torch.arange(bw, device=dev)[None, None, :] < gw[:, None, None]
    )  # [k, BH, BW]: the box's own grid
    valid = inside & own[:, None, None]
    y = y.clamp(min=0)
    x = x.clamp(min=0)
    y_low = torch.floor(y).long()  # y >= 0 here: floor == C's (int) truncation
    x_low = torch.floor(x).long()
    top_y = y_low >= height - 1
    top_x = x_low >= width - 1
    y_low = torch.where(top_y, torch.full_like(y_low, height - 1), y_low)
    x_low = torch.where(top_x, torch.full_like(x_low, width - 1), x_low)
    y = torch.where(top_y, y_low.to(t), y)
    x = torch.where(top_x, x_low.to(t), x)
    y_high = torch.where(top_y, y_low, y_low + 1)
    x_high = torch.where(top_x, x_low, x_low + 1)
    ly, lx = y - y_low.to(t), x - x_low.to(t)
    hy, hx = 1.0 - ly, 1.0 - lx
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], -1) * valid[..., None]  # [k, PH, PW, BH, BW, 4]
    index = torch.stack([y_low * width + x_low, y_low * width + x_high,
                         y_high * width + x_low, y_high * width + x_high], -1)  # fmt: skip
    index = torch.where(valid[..., None], index, torch.zeros_like(index))  # [k, PH, PW, BH, BW, 4]
    return index.reshape(k, ph_n, pw_n, bh * bw, 4), weights.reshape(k, ph_n, pw_n, bh * bw, 4)


def _next_pow2(x: Tensor) -> Tensor:
    return torch.where(x <= 1, torch.ones_like(x), 2 ** torch.ceil(torch.log2(x.clamp(min=1).double())).long())


def _chunks(gh: Tensor, gw: Tensor, per_sample: int):
    """(ids, bh, bw) for buckets of boxes whose grids round up to the same powers of two, in chunks."""
    key = _next_pow2(gh) * (1 << 20) + _next_pow2(gw)
    for value in torch.unique(key).tolist():
        ids = (key == value).nonzero().flatten()
        bh, bw = max(int(gh[ids].max()), 1), max(int(gw[ids].max()), 1)
        step = max(1, _CHUNK_ELEMENTS // max(per_sample * bh * bw, 1))
        for chunk in torch.split(ids, step):
            yield chunk, bh, bw


def roi_align_rotated_forward(
    input: Tensor, batch: Tensor, boxes: Tensor, theta: Tensor, pooled: tuple[int, int], spatial_scale: float,
    sampling_ratio: int, aligned: bool,
) -> Tensor:  # fmt: skip
    """Pool every rotated box.

    Args:
        input (Tensor[N, C, H, W]): the map, any memory format.
        batch (Tensor[K] int64): the image of every box (checked).
        boxes (Tensor[K, 5]): cx, cy, w, h, angle (checked: finite, non-negative size when aligned).
        theta (Tensor[K]): the counter-clockwise rotation in radians.
        pooled ((PH, PW)), spatial_scale, sampling_ratio, aligned: the op's options.

    Returns:
        Tensor[K, C, PH, PW] in ``input.dtype``.
    """
    n, c, h, w = input.shape
    ph_n, pw_n = pooled
    k = boxes.shape[0]
    t = compute_dtype(input.dtype)
    out = torch.zeros((k, c, ph_n, pw_n), dtype=t, device=input.device)
    if k == 0 or c == 0:
        return out.to(input.dtype)
    centre, size, rot, gh, gw = sample_grid(boxes.to(t), spatial_scale, pooled, sampling_ratio, aligned, theta.to(t))
    count = (gh * gw).clamp(min=1).to(t)  # [K]
    flat = input.to(t).permute(0, 2, 3, 1).reshape(n, h * w, c)  # [N, H*W, C]
    for ids, bh, bw in _chunks(gh, gw, ph_n * pw_n * 4 * c):
        index, weight = _plan(centre[ids], size[ids], rot[ids], gh[ids], gw[ids], pooled, h, w, bh, bw)
        # [k, PH, PW, S, 4] each
        vals = flat[batch[ids][:, None, None, None, None], index]  # [k, PH, PW, S, 4, C]
        pooled_ids = torch.einsum("kpqsc,kpqs->kcpq", vals.flatten(3, 4), weight.flatten(3))  # [k, C, PH, PW]
        out[ids] = pooled_ids / count[ids, None, None, None]
    return out.to(input.dtype)


def roi_align_rotated_backward(
    grad: Tensor, batch: Tensor, boxes: Tensor, theta: Tensor, shape: tuple[int, int, int, int],
    pooled: tuple[int, int], spatial_scale: float, sampling_ratio: int, aligned: bool,
) -> Tensor:  # fmt: skip
    """The gradient of the map: every sample's share of its bin's gradient added to its four neighbours.

    Returns:
        Tensor[N, C, H, W] in ``grad.dtype``.
    """
    n, c, h, w = shape
    ph_n, pw_n = pooled
    t = compute_dtype(grad.dtype)
    out = torch.zeros((n * h * w, c), dtype=t, device=grad.device)  # [N*H*W, C] channels-last accumulator
    k = boxes.shape[0]
    if k and c:
        centre, size, rot, gh, gw = sample_grid(boxes.to(t), spatial_scale, pooled, sampling_ratio, aligned,
                                                theta.to(t))  # fmt: skip
        count = (gh * gw).clamp(min=1).to(t)
        g = grad.to(t)
        for ids, bh, bw in _chunks(gh, gw, ph_n * pw_n * 4 * c):
            index, weight = _plan(centre[ids], size[ids], rot[ids], gh[ids], gw[ids], pooled, h, w, bh, bw)
            share = g[ids].permute(0, 2, 3, 1) / count[ids, None, None, None]  # [k, PH, PW, C]
            contrib = weight[..., None] * share[:, :, :, None, None, :]  # [k, PH, PW, S, 4, C]
            rows = batch[ids][:, None, None, None, None] * (h * w) + index  # [k, PH, PW, S, 4]
            out.index_add_(0, rows.reshape(-1), contrib.reshape(-1, c))
    return out.view(n, h, w, c).permute(0, 3, 1, 2).contiguous().to(grad.dtype)


def degrees_to_radians(angle: Tensor) -> Tensor:
    """detectron2's ``theta = angle * M_PI / 180.0`` (in the angle's dtype)."""
    return angle * (math.pi / 180.0)
