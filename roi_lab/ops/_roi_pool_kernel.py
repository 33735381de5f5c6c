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
    if input.is_contiguous():  # NCHW: every box's window cells gathered along each channel's plane
        source = ("planes", input.view(n, c, h * w))
    else:  # [N*H*W, C]: a gathered cell is one contiguous C-vector (a channels_last map as it is)
        source = ("cells", input.permute(0, 2, 3, 1).reshape(-1, c))
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
            bounds = (hs[chunk], he[chunk], ws[chunk], we[chunk])
            _pool_chunk(source, (h, w), batch[chunk], *bounds, bh, bw, out, arg, chunk)
    return out, arg


def _next_pow2(x: Tensor) -> Tensor:
    """The smallest power of two >= x (1 for 0 and 1)."""
    return torch.where(x <= 1, torch.ones_like(x), 2 ** torch.ceil(torch.log2(x.clamp(min=1).double())).long())


def _window_max(source, b: Tensor, index: Tensor, plane: int) -> tuple[Tensor, Tensor]:
    """The max over each bin's window and its first position: Tensor[k, C, PH, PW] each.

    Args:
        source: ``("planes", Tensor[N, C, H*W])`` (an NCHW map: one ``index_select`` per image along its
            channels' planes, a loop over the chunk's images, not its boxes) or ``("cells",
            Tensor[N*H*W, C])`` (one gather of contiguous C-vectors).
        b (Tensor[k]): each box's image. index (Tensor[k, PH, PW, BH*BW]): flat ``h * W + w`` of every
            window cell in row-major order. plane: H * W.
    """
    kind, values = source
    k, ph_n, pw_n, cells = index.shape
    if kind == "cells":
        vals = values.index_select(0, (b[:, None, None, None] * plane + index).reshape(-1))
        vals = vals.view(k, ph_n, pw_n, cells, -1)  # [k, PH, PW, BH*BW, C]
        dim, order = 3, (0, 3, 1, 2)
    else:
        vals = values.new_empty((values.shape[1], k, ph_n, pw_n, cells))  # [C, k, PH, PW, BH*BW]
        for image in torch.unique(b).tolist():  # the images of the chunk (a few), not its boxes
            sel = (b == image).nonzero().flatten()
            picked = values[image].index_select(1, index.index_select(0, sel).reshape(-1))  # [C, k_i * ...]
            vals[:, sel] = picked.view(-1, len(sel), ph_n, pw_n, cells)
        dim, order = 4, (1, 0, 2, 3)
    nan = torch.isnan(vals)
    if bool(nan.any()):  # NaN is never '>' the running max
        vals = vals.masked_fill(nan, float("-inf"))
    best, where = vals.max(dim)  # the first maximum in row-major order
    return best.permute(*order), where.permute(*order)


def _pool_chunk(source, size, b, hs, he, ws, we, bh, bw, out, arg, ids) -> None:
    """Pool boxes ``ids`` (their bins at most ``bh x bw`` cells) into ``out`` / ``arg`` in place.

    Window positions past a bin's end read the bin's first cell of that row or column again: a repeat of
    a cell that came earlier in row-major order changes neither the max nor its first position, so no
    mask is needed.
    """
    height, width = size
    k, ph_n = hs.shape
    pw_n = ws.shape[1]
    dy = torch.arange(bh, device=hs.device)
    dx = torch.arange(bw, device=hs.device)
    rows = hs[:, :, None] + dy  # [k, PH, BH]
    cols = ws[:, :, None] + dx  # [k, PW, BW]
    rows = torch.where(rows < he[:, :, None], rows, hs[:, :, None]).clamp(max=height - 1)  # empty bins: any cell
    cols = torch.where(cols < we[:, :, None], cols, ws[:, :, None]).clamp(max=width - 1)
    index = rows[:, :, None, :, None] * width + cols[:, None, :, None, :]  # [k, PH, PW, BH, BW]
    best, where = _window_max(source, b, index.view(k, ph_n, pw_n, bh * bw), height * width)  # [k, C, PH, PW]
    picked = best > -_FLT_MAX  # torchvision's running max starts at -FLT_MAX and compares with '>'
    empty = ((he <= hs)[:, :, None] | (we <= ws)[:, None, :])[:, None]  # [k, 1, PH, PW]
    # -FLT_MAX, which half precision cannot hold: there it is -inf, as in torchvision's CUDA half kernel
    floor = -_FLT_MAX if best.dtype in (torch.float32, torch.float64) else float("-inf")
    value = torch.where(picked, best, torch.full_like(best, floor))
    value = torch.where(empty, torch.zeros_like(value), value)
    h_idx = hs[:, None, :, None] + where // bw  # [k, C, PH, PW]: the window starts at the bin's first cell
    w_idx = ws[:, None, None, :] + where % bw  # [k, C, PH, PW]
    flat = torch.where(picked & ~empty, h_idx * width + w_idx, torch.full_like(where, -1))
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
