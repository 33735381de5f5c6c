"""ROIAlign in pure PyTorch with the semantics of torchvision's compiled kernel (and mmcv's max mode).

The average over a bin's sample grid is separable in y and x, and the out-of-range zeroing is per
coordinate, so one box's output is ``Ay @ F @ Ax^T`` with small interpolation matrices ``Ay`` [PH, R]
and ``Ax`` [PW, S]. ``R`` and ``S`` are the distinct feature rows and columns the box's bilinear taps
touch: the box's window for a small box, the sampled rows only for a large one. The kernel gathers
those rows x columns of a channels-last copy of the map for a bucket of similar-sized boxes and runs
two batched matmuls; buckets are sized so that no intermediate exceeds a fixed element budget.

This module is the private numeric kernel: no validation, no autograd, no registration. Its inputs
are already checked (``roi_lab.ops.roi_align`` does that, in the registered op), and it exposes
three functions to the registration layer:

- :func:`roi_align_forward` (input, batch index, boxes) -> pooled crops;
- :func:`roi_align_backward` (grad of the crops, ...) -> grad of the input;
- :func:`is_channels_last`, the layout rule the backward follows.

Large outputs are cut into tiles of at most ``_MAX_TILE_BINS`` bins per axis, each planned as a box
of its own, so the interpolation matrices (bins x distinct rows touched) grow with the output, not
with its square.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from roi_lab.errors import InputValueError

__all__ = ["roi_align_forward", "roi_align_backward", "is_channels_last"]

# Budget, in elements, for one bucket's intermediates (gathered windows + partial products, one
# reused buffer), and for one channel block of the channels-last copy of the map (no copy when the
# input is channels_last). The extra memory beyond the output and the small per-box plan is about
# (_BUCKET_ELEMENTS + _MAP_BLOCK_ELEMENTS) elements; a single box whose window exceeds the bucket
# budget gets a bucket of its own, at most one map block's worth of channels.
_BUCKET_ELEMENTS = 1 << 22
_MAP_BLOCK_ELEMENTS = 1 << 23
# Boxes are planned in groups so that the [K, P, M] interpolation matrices stay within this many
# elements, and an adaptive grid may ask for at most this many samples per box and axis.
_GEOMETRY_ELEMENTS = 1 << 21
_MAX_SAMPLES_PER_AXIS = 1 << 20
# An output larger than this many bins along an axis is planned in tiles (virtual boxes) of at most
# this many bins: a tile's matrix is [bins, distinct rows] with distinct rows <= min(2 * bins * grid,
# H), so memory stays linear in the output. Outputs up to 64 x 64 are never tiled.
_MAX_TILE_BINS = 64
# mode="max" holds every interpolated sample of a (tiled) box: at most this many per box, and the
# channel block shrinks so that one box's samples x channels stay within _BUCKET_ELEMENTS.
_MAX_SAMPLES_PER_BOX_MAX_MODE = 1 << 22


# --------------------------------------------------------------------------------------------------
# geometry: per-axis taps and interpolation matrices


def _compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """Half-precision maps are interpolated in float32 on the CPU (no fast half matmul there)."""
    if dtype in (torch.float16, torch.bfloat16) and device.type == "cpu":
        return torch.float32
    return dtype


def _box_geometry(boxes: Tensor, pooled: tuple[int, int], scale: float, sampling_ratio: int, aligned: bool):
    """Start, bin size and grid per box and axis, rounded exactly like the compiled kernel.

    The kernel computes ``x * spatial_scale - offset`` in double and stores it in the input dtype,
    then everything else in the input dtype; so do we for float32 and float64 (float64 changes the
    adaptive grid at boundaries). float16 / bfloat16 boxes (already rounded to that dtype) get their
    geometry in float32, PyTorch's usual opmath: torchvision's half kernel rounds every step to half,
    which moves samples by up to 1/128 px near x = 10 and flips the in-map test at the border.
    """
    dtype = torch.float32 if boxes.dtype in (torch.float16, torch.bfloat16) else boxes.dtype
    offset = 0.5 if aligned else 0.0
    coords = (boxes.double() * scale - offset).to(dtype)  # [K, 4] x1 y1 x2 y2, feature px
    start = torch.stack([coords[:, 1], coords[:, 0]])  # [2, K] (y, x)
    size = torch.stack([coords[:, 3], coords[:, 2]]) - start  # [2, K]
    if not aligned:
        size = size.clamp_min(1.0)
    bins = torch.tensor(pooled, dtype=dtype, device=boxes.device)[:, None]  # [2, 1]
    bin_size = size / bins  # [2, K]
    if sampling_ratio > 0:
        grid = torch.full_like(bin_size, sampling_ratio, dtype=torch.long)  # [2, K]
    else:  # clamped before the cast so that a huge box cannot overflow int64 (the plan then refuses it)
        grid = torch.ceil(size / bins).clamp(0, _MAX_SAMPLES_PER_AXIS + 1).long()  # [2, K]
    return start, bin_size, grid


def _axis_taps(
    start: Tensor,
    bin_size: Tensor,
    grid: Tensor,
    first_bin: Tensor,
    bins: int,
    total_bins: int,
    extent: int,
    n_grid: int,
    per_sample: bool,
):
    """Bilinear taps along one axis, for ``bins`` bins from ``first_bin`` on (a tile of the output).

    Args:
        start, bin_size (Tensor[K]): in the input dtype. grid (Tensor[K] int64): samples per bin.
        first_bin (Tensor[K] int64): the tile's first bin. bins: bins per tile. total_bins: PH or PW
            (bins past it are padding, weight 0). extent: H or W. n_grid: the group's largest grid (G).
        per_sample: False gives the average weights (valid / grid); True gives one row per sample
            for max mode, padding short grids by repeating their last sample.

    Returns:
        index (Tensor[K, P, G, 2] int64): feature row/col of the low and high tap.
        weight (Tensor[K, P, G, 2]): its weight (0 for samples outside [-1, extent] and padding).
    """
    dtype = start.dtype
    device = start.device
    g = grid.clamp_min(1)  # [K]
    i = torch.arange(n_grid, device=device)  # [G]
    i_eff = torch.minimum(i[None, :], g[:, None] - 1) if per_sample else i[None, :].expand(len(g), -1)  # [K, G]
    p_index = first_bin[:, None] + torch.arange(bins, device=device)  # [K, P] global bin index
    p = p_index.to(dtype)  # [K, P], exact: the same bin numbers an untiled box uses
    b = bin_size[:, None, None]  # [K, 1, 1]
    # same operation order as the compiled kernel: (start + p * bin) + ((i + .5) * bin) / grid
    pos = (start[:, None, None] + p[:, :, None] * b) + ((i_eff[:, None, :].to(dtype) + 0.5) * b) / g[
        :, None, None
    ].to(dtype)  # [K, P, G]
    valid = (pos >= -1.0) & (pos <= extent) & (grid[:, None, None] > 0)  # [K, P, G]
    valid &= (p_index < total_bins)[:, :, None]  # padding bins of the last tile
    if not per_sample:
        valid &= i[None, None, :] < grid[:, None, None]
    y = pos.clamp_min(0.0)
    low = y.floor()
    last = low >= extent - 1
    low_i = torch.where(last, extent - 1, low.long())  # [K, P, G]
    high_i = torch.where(last, extent - 1, low_i + 1)
    frac = torch.where(last, torch.zeros_like(y), y - low)  # [K, P, G] in the input dtype, like the kernel
    index = torch.stack([low_i, high_i], -1)  # [K, P, G, 2]
    weight = torch.stack([1.0 - frac, frac], -1)  # [K, P, G, 2]
    weight = torch.where(valid[..., None], weight, torch.zeros_like(weight))
    if not per_sample:
        weight = weight / g[:, None, None, None].to(weight.dtype)
    return index, weight


def _compact(index: Tensor, weight: Tensor, compute: torch.dtype, extent: int):
    """Distinct tapped rows per box and the interpolation matrix onto them.

    Args:
        index, weight (Tensor[K, P, G, T]): T taps per sample (or G * 2 taps per bin with G = 1).
        extent: H or W; no box touches more distinct rows than min(M, extent).

    Returns:
        rows (Tensor[K, M] int64): the distinct rows first (sorted), then padding (a repeated row).
        count (Tensor[K] int64): how many distinct rows each box touches (R).
        matrix (Tensor[K, P * G', min(M, extent)]): with G' = G for per-sample matrices collapsed by
            the caller; only its first ``count`` columns are used.
    """
    k, p, g = index.shape[:3]
    used = weight != 0  # [K, P, G, 2]
    flat_index = index.reshape(k, -1)  # [K, M]
    flat_used = used.reshape(k, -1)
    fill = torch.where(flat_used, flat_index, torch.full_like(flat_index, 1 << 40)).amin(1, keepdim=True)  # [K, 1]
    fill = torch.where(fill == 1 << 40, torch.zeros_like(fill), fill)
    flat_index = torch.where(flat_used, flat_index, fill)  # unused taps point at a used row
    ordered, order = flat_index.sort(1)  # [K, M]
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    slot_sorted = new.long().cumsum(1) - 1  # [K, M] slot of each sorted tap
    count = slot_sorted[:, -1] + 1  # [K]
    rows = fill.expand(k, flat_index.shape[1]).clone().scatter_(1, slot_sorted, ordered)  # [K, M]
    slot = torch.empty_like(slot_sorted).scatter_(1, order, slot_sorted)  # [K, M] slot of each tap
    width = min(flat_index.shape[1], extent)  # slots are < count <= min(M, extent)
    matrix = torch.zeros(k, p * g, width, dtype=compute, device=index.device)
    matrix.scatter_add_(2, slot.view(k, p * g, -1), weight.reshape(k, p * g, -1).to(compute))  # [K, P*G, width]
    return rows, count, matrix


# --------------------------------------------------------------------------------------------------
# the kernel


def _ladder(limit: int, device) -> Tensor:
    """Window sizes 1, 2, 3, 4, 6, 8, then steps of about 4/3, up to ``limit``."""
    steps = [1, 2, 3, 4, 6, 8]
    while steps[-1] < limit:
        steps.append(math.ceil(steps[-1] * 4 / 3))
    return torch.tensor(steps, device=device)


def _tiles(bins: int) -> tuple[int, int]:
    """(bins per tile, tiles) for one axis: as few tiles as possible, of near-equal size."""
    count = -(-bins // _MAX_TILE_BINS)
    size = -(-bins // count)
    return size, -(-bins // size)


def _axis_elements(bins: int, grid: int, extent: int, per_sample: bool) -> int:
    """Elements one box's planning holds for one axis: taps (index, weight, sort) and its matrix."""
    taps = bins * grid * 2
    return 8 * taps + bins * (grid if per_sample else 1) * min(taps, extent)


class _Plan:
    """Everything the forward and backward passes share: per bucket of (virtual) boxes, the gathered
    rows and columns and the interpolation matrices.

    An output of more than ``_MAX_TILE_BINS`` bins along an axis is cut into tiles; each box then
    becomes ``tiles_y * tiles_x`` virtual boxes (box-major), each planned for ``pooled`` bins, and
    :func:`_untile` / :func:`_tile` convert between the tiles and the [K, C, PH, PW] layout.
    """

    def __init__(self, shape, dtype, device, batch: Tensor, boxes: Tensor, out_pooled, scale, sampling_ratio, aligned,
                 mode):  # fmt: skip
        n, c, h, w = shape
        self.shape = (n, c, h, w)
        self.out_pooled = out_pooled  # (PH, PW)
        (ty, n_ty), (tx, n_tx) = _tiles(out_pooled[0]), _tiles(out_pooled[1])
        self.pooled = (ty, tx)  # bins per tile
        self.tiles = (n_ty, n_tx)
        self.compute = _compute_dtype(dtype, device)
        self.mode = mode
        per_sample = mode == "max"
        start, bin_size, grid = _box_geometry(boxes, out_pooled, scale, sampling_ratio, aligned)  # [2, K] each
        k = boxes.shape[0]
        self.buckets: list[tuple] = []  # (ids, flat_index [Kc, R, S], ay [Kc, PH(*G), R], ax [Kc, PW(*G), S], gy, gx)
        self.box_samples = 0
        if k == 0:
            return
        grid_max = grid.clamp_min(1).amax(1).tolist()  # [2] (G_y, G_x)
        samples = max(out_pooled[0] * grid_max[0], out_pooled[1] * grid_max[1])
        if samples > _MAX_SAMPLES_PER_AXIS and sampling_ratio > 0:
            raise InputValueError(
                "roi_align(output_size=..., sampling_ratio=...)",
                expected=f"sampling grids of at most {_MAX_SAMPLES_PER_AXIS} samples per box and axis "
                "(output bins x sampling_ratio)",
                got=f"output_size={tuple(out_pooled)} with sampling_ratio={sampling_ratio}: {samples} samples",
                fix="pass a smaller sampling_ratio (2 is torchvision's and detectron2's choice) or output_size",
            )
        if samples > _MAX_SAMPLES_PER_AXIS:
            row = int((grid * torch.tensor(out_pooled, device=grid.device)[:, None]).amax(0).argmax())
            roi = [float(batch[row])] + boxes[row].tolist()
            span = max(math.ceil(v) for v in bin_size[:, row].tolist())  # the adaptive grid, before its clamp
            raise InputValueError(
                "roi_align(boxes=..., sampling_ratio=...)",
                expected=f"adaptive sampling grids of at most {_MAX_SAMPLES_PER_AXIS} samples per box and axis",
                got=f"box {row} {roi} spans {span} samples per bin at spatial_scale={scale}",
                fix="check that the boxes are in image px and spatial_scale is 1 / stride, or pass a fixed "
                "sampling_ratio, e.g. 2",
            )
        self.box_samples = ty * grid_max[0] * tx * grid_max[1] if per_sample else 0
        if self.box_samples > _MAX_SAMPLES_PER_BOX_MAX_MODE:
            raise InputValueError(
                "roi_align(mode='max', ...)",
                expected=f"at most {_MAX_SAMPLES_PER_BOX_MAX_MODE} samples per box in max mode (bins x samples "
                "per bin, both axes; max mode keeps every sample to take their max)",
                got=f"{ty} x {tx} bins per tile with grids of {grid_max[0]} x {grid_max[1]} samples: "
                f"{self.box_samples} samples",
                fix="pass a fixed sampling_ratio (e.g. 2) instead of adaptive sampling for these boxes, or check "
                "that the boxes are in image px and spatial_scale is 1 / stride",
            )
        n_tiles = n_ty * n_tx
        if n_tiles > 1:  # virtual box v = box * n_tiles + tile_y * n_tx + tile_x
            tile = torch.arange(n_tiles, device=boxes.device)
            first = torch.stack([tile // n_tx * ty, tile % n_tx * tx]).repeat(1, k)  # [2, V]
            start, bin_size, grid = (t.repeat_interleave(n_tiles, 1) for t in (start, bin_size, grid))  # [2, V]
            batch = batch.repeat_interleave(n_tiles)  # [V]
        else:
            first = torch.zeros(2, k, dtype=torch.long, device=boxes.device)
        v = k * n_tiles
        per_box = max(
            _axis_elements(ty, grid_max[0], h, per_sample), _axis_elements(tx, grid_max[1], w, per_sample)
        )
        group = max(1, _GEOMETRY_ELEMENTS // per_box)
        for g0 in range(0, v, group):
            sl = slice(g0, min(v, g0 + group))
            gy, gx = (grid_max[0], grid_max[1])
            iy, wy = _axis_taps(
                start[0, sl], bin_size[0, sl], grid[0, sl], first[0, sl], ty, out_pooled[0], h, gy, per_sample
            )
            ix, wx = _axis_taps(
                start[1, sl], bin_size[1, sl], grid[1, sl], first[1, sl], tx, out_pooled[1], w, gx, per_sample
            )
            if not per_sample:  # average over the grid: sum the per-sample rows of each bin
                rows_y, ny, ay = _compact(
                    iy.reshape(iy.shape[0], ty, 1, -1), wy.reshape(wy.shape[0], ty, 1, -1), self.compute, h
                )
                rows_x, nx, ax = _compact(
                    ix.reshape(ix.shape[0], tx, 1, -1), wx.reshape(wx.shape[0], tx, 1, -1), self.compute, w
                )
                gy = gx = 1
            else:
                rows_y, ny, ay = _compact(iy, wy, self.compute, h)  # ay [Kg, PH*Gy, min(M, H)]
                rows_x, nx, ax = _compact(ix, wx, self.compute, w)
            self._bucket(batch[sl], g0, rows_y, ny, ay, rows_x, nx, ax, gy, gx)

    @property
    def count(self) -> int:
        """Virtual boxes (boxes x tiles)."""
        return sum(len(b[0]) for b in self.buckets)

    def _bucket(self, batch, offset, rows_y, ny, ay, rows_x, nx, ax, gy, gx):
        """Group boxes by window shape (R, S), each rounded up a ~4/3 ladder so that a bucket pads
        little in either axis, and cut the groups into buckets within the element budget."""
        n, c, h, w = self.shape
        ph, pw = self.pooled
        cb = self.channel_block()
        ladder = _ladder(max(h, w) * 2 + 2, ny.device)
        key_y = torch.bucketize(ny, ladder)  # [K] ladder step of R
        key_x = torch.bucketize(nx, ladder)  # [K] ladder step of S
        order = (key_y * len(ladder) + key_x).argsort(stable=True)
        keys = (key_y * len(ladder) + key_x)[order].tolist()
        ny_l, nx_l = ny[order].tolist(), nx[order].tolist()
        start, r_max, s_max = 0, 0, 0
        cuts = []
        for j, (r, s) in enumerate(zip(ny_l, nx_l, strict=True)):
            r2, s2 = max(r_max, r), max(s_max, s)
            per_box = (r2 * s2 + ph * gy * s2 + ph * gy * pw * gx) * cb
            if j > start and (keys[j] != keys[j - 1] or (j - start + 1) * per_box > _BUCKET_ELEMENTS):
                cuts.append((start, j, r_max, s_max))
                start, r2, s2 = j, r, s
            r_max, s_max = r2, s2
        cuts.append((start, len(ny_l), r_max, s_max))
        for a, b, r, s in cuts:
            sel = order[a:b]
            ry = rows_y[sel, :r]  # [Kc, R]
            rx = rows_x[sel, :s]  # [Kc, S]
            flat = (batch[sel, None, None] * h + ry[:, :, None]) * w + rx[:, None, :]  # [Kc, R, S]
            self.buckets.append((sel + offset, flat, ay[sel, :, :r], ax[sel, :, :s], gy, gx))

    def shapes(self):
        """(Kc, R, S), GY, GX of every bucket."""
        return [(tuple(b[1].shape), b[4], b[5]) for b in self.buckets]

    def channel_block(self) -> int:
        n, c, h, w = self.shape
        block = min(c, _MAP_BLOCK_ELEMENTS // max(1, n * h * w))
        if self.box_samples:  # max mode: one box's samples x channels within the bucket budget
            block = min(block, _BUCKET_ELEMENTS // self.box_samples)
        return max(1, block)


def _channels_last_blocks(input: Tensor, cb: int):
    """Yield (channel slice, Tensor[N*H*W, Cb]) views or copies of the map, channels last."""
    n, c, h, w = input.shape
    for c0 in range(0, c, cb):
        block = input[:, c0 : c0 + cb].permute(0, 2, 3, 1)  # [N, H, W, Cb], a view
        yield slice(c0, c0 + cb), block.contiguous().view(n * h * w, block.shape[3])  # copy unless channels last


class _Workspace:
    """One flat buffer, sized for the largest bucket and carved into that bucket's intermediates, so
    that buckets neither page-fault fresh memory nor hold more than one bucket's worth."""

    def __init__(self, plan: _Plan, cb: int, dtype: torch.dtype, device: torch.device) -> None:
        ph, pw = plan.pooled
        size = max(kc * (r * s + ph * gy * s + ph * gy * pw * gx) * cb for (kc, r, s), gy, gx in plan.shapes())
        self.buffer = torch.empty(size, dtype=dtype, device=device)

    def carve(self, *shapes: tuple[int, ...]) -> list[Tensor]:
        views, at = [], 0
        for shape in shapes:
            size = math.prod(shape)
            views.append(self.buffer[at : at + size].view(shape))
            at += size
        return views


def _forward(input: Tensor, plan: _Plan) -> Tensor:
    """Per channel block and bucket: gather the windows, contract rows, then columns.

    Both contractions are single ``bmm`` calls whose result is already in the output's layout."""
    n, c, h, w = plan.shape
    ph, pw = plan.pooled
    out = input.new_empty((plan.count, c, ph, pw))
    argmax = []
    if not plan.buckets:
        return out
    ws = _Workspace(plan, plan.channel_block(), plan.compute, input.device)
    for cs, feat in _channels_last_blocks(input, plan.channel_block()):  # feat [N*H*W, Cb]
        cb = feat.shape[1]
        for ids, flat, ay, ax, gy, gx in plan.buckets:
            kc, r, s = flat.shape
            windows, rows, vals = ws.carve((kc * r * s, cb), (kc, s * cb, ph * gy), (kc, cb * ph * gy, pw * gx))
            if plan.compute == input.dtype:
                torch.index_select(feat, 0, flat.view(-1), out=windows)  # [Kc*R*S, Cb]
            else:
                windows.copy_(feat.index_select(0, flat.view(-1)))
            torch.bmm(windows.view(kc, r, s * cb).transpose(1, 2), ay.transpose(1, 2), out=rows)  # [Kc, S*Cb, PH*GY]
            rows = rows.view(kc, s, cb * ph * gy).transpose(1, 2)  # [Kc, Cb*PH*GY, S]
            torch.bmm(rows, ax.transpose(1, 2), out=vals)  # [Kc, Cb*PH*GY, PW*GX]
            if plan.mode == "max":
                # first maximum in (iy, ix) order, as mmcv's strict ">" scan
                vals, ix = vals.view(kc, cb, ph, gy, pw, gx).max(5)  # [Kc, Cb, PH, GY, PW]
                vals, iy = vals.max(3)  # [Kc, Cb, PH, PW]
                argmax.append((iy, ix.gather(3, iy[:, :, :, None]).squeeze(3)))  # [Kc, Cb, PH, PW] each
            out[:, cs].index_copy_(0, ids, vals.view(kc, cb, ph, pw).to(out.dtype))
    plan.argmax = argmax
    return out


def _backward(grad_out: Tensor, plan: _Plan, dtype: torch.dtype, channels_last: bool) -> Tensor:
    """The transposed contractions, accumulated into a channels-last gradient block with ``index_add_``."""
    n, c, h, w = plan.shape
    ph, pw = plan.pooled
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    grad_in = torch.empty(plan.shape, dtype=dtype, device=grad_out.device, memory_format=memory_format)
    cb_size = plan.channel_block()
    ws = _Workspace(plan, cb_size, plan.compute, grad_out.device) if plan.buckets else None
    step = 0
    for c0 in range(0, c, cb_size):
        cs = slice(c0, min(c, c0 + cb_size))
        cb = cs.stop - cs.start
        acc = torch.zeros(n * h * w, cb, dtype=plan.compute, device=grad_out.device)  # [N*H*W, Cb]
        for ids, flat, ay, ax, gy, gx in plan.buckets:
            kc, r, s = flat.shape
            windows, rows, g = ws.carve((kc, r, s * cb), (kc, s, cb * ph * gy), (kc, cb, ph, pw))
            if grad_out.dtype == plan.compute:
                torch.index_select(grad_out[:, cs], 0, ids, out=g)  # [Kc, Cb, PH, PW]
            else:
                g.copy_(grad_out[:, cs].index_select(0, ids))
            if plan.mode == "max":
                iy, ix = plan.argmax[step]  # route each bin's gradient to its winning sample
                g = g.new_zeros(kc, cb, ph, gy, pw).scatter_(3, iy[:, :, :, None], g[:, :, :, None])
                where = ix[:, :, :, None, :, None].expand(kc, cb, ph, gy, pw, 1)
                g = g.new_zeros(kc, cb, ph, gy, pw, gx).scatter_(5, where, g[..., None])
            step += 1
            g = g.reshape(kc, cb * ph * gy, pw * gx)  # [Kc, Cb*PH*GY, PW*GX]
            torch.bmm(ax.transpose(1, 2), g.transpose(1, 2), out=rows)  # [Kc, S, Cb*PH*GY]
            rows = rows.view(kc, s * cb, ph * gy).transpose(1, 2)  # [Kc, PH*GY, S*Cb]
            torch.bmm(ay.transpose(1, 2), rows, out=windows)  # [Kc, R, S*Cb]
            acc.index_add_(0, flat.view(-1), windows.view(-1, cb))
        grad_in[:, cs] = acc.view(n, h, w, cb).permute(0, 3, 1, 2)
    return grad_in


def _untile(out: Tensor, plan: _Plan) -> Tensor:
    """Tiles [K * TY * TX, C, ph, pw] (box-major) -> Tensor[K, C, PH, PW], contiguous."""
    (n_ty, n_tx), (ph, pw), (PH, PW) = plan.tiles, plan.pooled, plan.out_pooled
    if n_ty * n_tx == 1:
        return out
    k, c = out.shape[0] // (n_ty * n_tx), out.shape[1]
    full = out.view(k, n_ty, n_tx, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(k, c, n_ty * ph, n_tx * pw)
    return full[:, :, :PH, :PW].contiguous()


def _tile(grad_out: Tensor, plan: _Plan) -> Tensor:
    """Tensor[K, C, PH, PW] -> tiles [K * TY * TX, C, ph, pw], the padding bins zero."""
    (n_ty, n_tx), (ph, pw), (PH, PW) = plan.tiles, plan.pooled, plan.out_pooled
    if n_ty * n_tx == 1:
        return grad_out
    k, c = grad_out.shape[:2]
    padded = grad_out.new_zeros(k, c, n_ty * ph, n_tx * pw)
    padded[:, :, :PH, :PW] = grad_out
    return padded.view(k, c, n_ty, ph, n_tx, pw).permute(0, 2, 4, 1, 3, 5).reshape(k * n_ty * n_tx, c, ph, pw)


def is_channels_last(input: Tensor) -> bool:
    """Whether ``input`` is channels_last (and not also contiguous): its gradient then is too."""
    return input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()


def roi_align_forward(
    input: Tensor,
    batch: Tensor,
    boxes: Tensor,
    pooled: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    mode: str,
) -> Tensor:
    """The pooled crops, on checked inputs.

    Args:
        input (Tensor[N, C, H, W]): floating map, H, W >= 1, any layout.
        batch (Tensor[K] int64): image index of each box, in [0, N).
        boxes (Tensor[K, 4]): finite x1, y1, x2, y2 in image px, in ``input.dtype``.
        pooled: (PH, PW) >= 1. spatial_scale: finite > 0. mode: "avg" or "max".

    Returns:
        Tensor[K, C, PH, PW]: contiguous, in ``input.dtype``.
    """
    plan = _Plan(
        input.shape, input.dtype, input.device, batch, boxes, pooled, spatial_scale, sampling_ratio, aligned, mode
    )
    return _untile(_forward(input, plan), plan)


def roi_align_backward(
    grad_out: Tensor,
    batch: Tensor,
    boxes: Tensor,
    input_shape: tuple[int, int, int, int],
    channels_last: bool,
    pooled: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    mode: str,
    input: Tensor | None = None,
) -> Tensor:
    """The gradient of the input, on checked inputs.

    Args:
        grad_out (Tensor[K, C, PH, PW]): in the input's dtype, any layout.
        batch, boxes, pooled, spatial_scale, sampling_ratio, aligned, mode: as in the forward.
        input_shape: (N, C, H, W). channels_last: lay the gradient out channels last.
        input (Tensor[N, C, H, W]): the forward's input, needed (only) by ``mode="max"``, whose
            winning samples are recomputed here.

    Returns:
        Tensor[N, C, H, W] in ``grad_out.dtype``.
    """
    dtype, device = grad_out.dtype, grad_out.device
    plan = _Plan(input_shape, dtype, device, batch, boxes, pooled, spatial_scale, sampling_ratio, aligned, mode)
    if mode == "max":
        _forward(input, plan)  # sets plan.argmax
    return _backward(_tile(grad_out, plan), plan, dtype, channels_last)
