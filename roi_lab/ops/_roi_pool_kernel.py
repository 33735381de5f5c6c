"""The numbers of ``roi_pool``: torchvision's quantized RoIPool, vectorised (no Python loop over boxes).

torchvision/csrc/ops/cpu/roi_pool_kernel.cpp, per box and bin, in the map's floating type ``T``:

- ``start = round(x1 * spatial_scale)``, ``end = round(x2 * spatial_scale)`` (C's ``round``: half away
  from zero), ``roi_w = max(end - start + 1, 1)`` (the ``+1``: both ends inclusive);
- ``bin_w = T(roi_w) / PW``; bin ``pw`` covers cells ``[floor(pw * bin_w), ceil((pw + 1) * bin_w))`` after
  ``start``, clipped to ``[0, W]`` (neighbouring bins can share a cell);
- the output is the max over the bin's cells (the first maximum in row-major order is the argmax that
  receives the gradient); an empty bin gives 0 and no gradient. Values are compared with ``>`` against
  ``-FLT_MAX``: NaN is never picked, and a bin holding nothing above ``-FLT_MAX`` gives ``-FLT_MAX``.

Vectorised: every bin's cells are read through one gather of a ``BH x BW`` window (BH, BW: the largest bin
of the box), boxes bucketed by window size and chunked to a memory budget, and reduced with one ``max``.
"""

from __future__ import annotations

import torch
from torch import Tensor

# the most elements one gathered chunk may hold (64 MiB of float32): bounds the kernel's extra memory
_CHUNK_ELEMENTS = 1 << 24
_FLT_MAX = 3.4028234663852886e38  # torchvision's initial max for a non-empty bin, for every dtype


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves away from zero (``torch.round`` rounds them to even). Exact: ``x - trunc(x)``
    is exact in floating point."""
    t = torch.trunc(x)
    return t + torch.sign(x) * ((x - t).abs() >= 0.5).to(x.dtype)


def bin_bounds(boxes: Tensor, spatial_scale: float, pooled: tuple[int, int], height: int, width: int):
    """The cells of every bin, as torchvision computes them.

    Args:
        boxes (Tensor[K, 4]): x1, y1, x2, y2 in image px, in the map's dtype.
        spatial_scale (float): feature px per image px.
        pooled ((PH, PW)): bins per box.
        height, width (int): the map's size.

    Returns:
        (Tensor[K, PH], Tensor[K, PH], Tensor[K, PW], Tensor[K, PW]) int64: ``hstart, hend, wstart, wend``
        of every bin, clipped to the map (``end <= start``: an empty bin).
    """
    ph_n, pw_n = pooled
    t = boxes.dtype if boxes.dtype in (torch.float32, torch.float64) else torch.float32  # half: float32
    b = boxes.to(t)
    start = _round_half_away(b[:, :2] * torch.tensor(spatial_scale, dtype=t, device=b.device)).long()  # [K, 2]
    end = _round_half_away(b[:, 2:] * torch.tensor(spatial_scale, dtype=t, device=b.device)).long()  # [K, 2]
    size = (end - start + 1).clamp(min=1)  # [K, 2] (w, h)
    bin_w = size[:, 0].to(t) / pw_n  # [K]
    bin_h = size[:, 1].to(t) / ph_n  # [K]
    ph = torch.arange(ph_n, device=b.device, dtype=t)
    pw = torch.arange(pw_n, device=b.device, dtype=t)
    hstart = torch.floor(ph[None] * bin_h[:, None]).long() + start[:, 1:2]  # [K, PH]
    hend = torch.ceil((ph[None] + 1) * bin_h[:, None]).long() + start[:, 1:2]  # [K, PH]
    wstart = torch.floor(pw[None] * bin_w[:, None]).long() + start[:, :1]  # [K, PW]
    wend = torch.ceil((pw[None] + 1) * bin_w[:, None]).long() + start[:, :1]  # [K, PW]
    return hstart.clamp(0, height), hend.clamp(0, height), wstart.clamp(0, width), wend.clamp(0, width)


def roi_pool_forward(
    input: Tensor, batch: Tensor, boxes: Tensor, pooled: tuple[int, int], spatial_scale: float
) -> tuple[Tensor, Tensor]:
    """Max-pool every bin of every box.

    Args:
        input (Tensor[N, C, H, W]): the map, any memory format.
        batch (Tensor[K] int64): the image of every box (checked).
        boxes (Tensor[K, 4]): x1, y1, x2, y2 in image px (checked, finite).
        pooled ((PH, PW)): bins per box.
        spatial_scale (float): feature px per image px.

    Returns:
        (Tensor[K, C, PH, PW], Tensor[K, C, PH, PW] int64): the pooled maxima (``input.dtype``) and the flat
        index ``h * W + w`` of each maximum in its image's channel plane (-1: empty bin, no gradient).
    """
    n, c, h, w = input.shape
    ph_n, pw_n = pooled
    k = boxes.shape[0]
    out = input.new_zeros((k, c, ph_n, pw_n))  # [K, C, PH, PW]; empty bins stay 0
    arg = torch.full((k, c, ph_n, pw_n), -1, dtype=torch.int64, device=input.device)
    if k == 0 or c == 0:
        return out, arg
    hs, he, ws, we = bin_bounds(boxes, spatial_scale, pooled, h, w)  # [K, PH] x2, [K, PW] x2
    win_h = (he - hs).clamp(min=0).amax(1)  # [K] the box's tallest bin
    win_w = (we - ws).clamp(min=0).amax(1)  # [K]
    hwc = input.permute(0, 2, 3, 1)  # [N, H, W, C]: a gathered cell is one C-vector
    # buckets: boxes whose windows round up to the same powers of two share one gather shape
    key = _next_pow2(win_h) * (1 << 20) + _next_pow2(win_w)  # [K]
    for value in torch.unique(key).tolist():
        ids = (key == value).nonzero().flatten()  # [k]
        bh, bw = int(win_h[ids].max()), int(win_w[ids].max())
        if bh == 0 or bw == 0:
            continue  # every bin of these boxes is empty: 0, no gradient
        per_box = max(c * ph_n * pw_n * bh * bw, 1)
        step = max(1, _CHUNK_ELEMENTS // per_box)
        for chunk in torch.split(ids, step):
            _pool_chunk(hwc, batch[chunk], hs[chunk], he[chunk], ws[chunk], we[chunk], bh, bw, w, out, arg, chunk)
    return out, arg


def _next_pow2(x: Tensor) -> Tensor:
    """The smallest power of two >= x (1 for 0 and 1)."""
    return torch.where(x <= 1, torch.ones_like(x), 2 ** torch.ceil(torch.log2(x.clamp(min=1).double())).long())


def _pool_chunk(hwc, b, hs, he, ws, we, bh, bw, width, out, arg, ids) -> None:
    """Pool boxes ``ids`` (their bins at most ``bh x bw`` cells) into ``out`` / ``arg`` in place."""
    height = hwc.shape[1]
    k, ph_n = hs.shape
    pw_n = ws.shape[1]
    dy = torch.arange(bh, device=hs.device)
    dx = torch.arange(bw, device=hs.device)
    rows = hs[:, :, None] + dy  # [k, PH, BH]
    cols = ws[:, :, None] + dx  # [k, PW, BW]
    row_ok = rows < he[:, :, None]  # [k, PH, BH]
    col_ok = cols < we[:, :, None]  # [k, PW, BW]
    rows_c, cols_c = rows.clamp(max=height - 1), cols.clamp(max=width - 1)  # masked below where past the bin
    vals = hwc[b[:, None, None, None, None], rows_c[:, :, :, None, None], cols_c[:, None, None, :, :]]
    # [k, PH, BH, PW, BW, C]
    ok = row_ok[:, :, :, None, None] & col_ok[:, None, None, :, :]  # [k, PH, BH, PW, BW]
    ok = ok[..., None] & ~torch.isnan(vals)  # NaN is never '>' the running max
    vals = vals.masked_fill(~ok, float("-inf"))
    vals = vals.permute(0, 5, 1, 3, 2, 4).reshape(k, -1, ph_n, pw_n, bh * bw)  # [k, C, PH, PW, BH*BW]
    best, where = vals.max(-1)  # [k, C, PH, PW]: the first maximum in row-major order
    picked = best > -_FLT_MAX  # torchvision's running max starts at -FLT_MAX and compares with '>'
    empty = ((he <= hs)[:, :, None] | (we <= ws)[:, None, :])[:, None]  # [k, 1, PH, PW]
    # -FLT_MAX, which half precision cannot hold: there it is -inf, as in torchvision's CUDA half kernel
    floor = -_FLT_MAX if best.dtype in (torch.float32, torch.float64) else float("-inf")
    value = torch.where(picked, best, torch.full_like(best, floor))
    value = torch.where(empty, torch.zeros_like(value), value)
    h_idx = hs[:, None, :, None] + where // bw  # [k, C, PH, PW]: the window starts at the bin's first cell
    w_idx = ws[:, None, None, :] + where % bw  # [k, C, PH, PW]
    flat = h_idx * width + w_idx
    flat = torch.where(picked & ~empty, flat, torch.full_like(flat, -1))
    out[ids] = value.to(out.dtype)
    arg[ids] = flat


def roi_pool_backward(grad: Tensor, batch: Tensor, argmax: Tensor, shape: tuple[int, int, int, int]) -> Tensor:
    """The gradient of the map: every output's gradient added to the cell it took its maximum from.

    Args:
        grad (Tensor[K, C, PH, PW]): the incoming gradient.
        batch (Tensor[K] int64): the image of every box.
        argmax (Tensor[K, C, PH, PW] int64): the forward's flat ``h * W + w`` (-1: nothing).
        shape ((N, C, H, W)): the map's shape.

    Returns:
        Tensor[N, C, H, W]: contiguous, in ``grad.dtype``.
    """
    n, c, h, w = shape
    out = grad.new_zeros(n * c * h * w)
    if grad.numel():
        chan = torch.arange(c, device=grad.device)
        index = ((batch[:, None] * c + chan) * (h * w))[:, :, None, None] + argmax  # [K, C, PH, PW]
        keep = argmax >= 0
        out.index_add_(0, index[keep], grad[keep])
    return out.view(n, c, h, w)


def roi_pool_grad_of_backward(grad_grad_input: Tensor, batch: Tensor, argmax: Tensor) -> Tensor:
    """The backward's derivative with respect to its incoming gradient (it is linear in it): the
    gradient read back at every argmax, 0 where there is none. Tensor[K, C, PH, PW]."""
    n, c, h, w = grad_grad_input.shape
    flat = grad_grad_input.reshape(-1)
    chan = torch.arange(c, device=flat.device)
    index = ((batch[:, None] * c + chan) * (h * w))[:, :, None, None] + argmax.clamp(min=0)  # [K, C, PH, PW]
    return torch.where(argmax >= 0, flat[index], torch.zeros((), dtype=flat.dtype, device=flat.device))
