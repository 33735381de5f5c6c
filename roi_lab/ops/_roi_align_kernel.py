"""ROIAlign in pure PyTorch with the semantics of torchvision's compiled kernel (and mmcv's max mode).

A bin's value is a sum of bilinear taps, ``sum w_y * w_x * F[y, x]``, and both the weights and the
out-of-range test of a sample factor into a y part and an x part. The kernel uses that in two stages,
each one ``torch.embedding_bag`` call (mode sum, per-sample weights: a weighted sum of gathered rows)
over a channels-last block of the map, so every sum runs over contiguous channel vectors:

- stage 1, rows: for every box, every y *unit* (a bin in avg mode, one row of samples in max mode) and
  every *column* the box's x taps read, the y-interpolated value ``sum_iy,t w_y * F[y_t, column]``
  (a bag of 2 x grid map pixels). The columns of a box are its tapped window ``lo..hi`` when that is
  narrower than its list of x taps (small boxes: many samples share a column), else the taps themselves;
- stage 2, columns: every output (a bin, or a sample in max mode) is a bag of 2 x grid stage-1 rows.

Each output is computed from its own box's taps alone, in a fixed order, whatever else is pooled: the
kernel is bit-exactly batch-invariant. Planning is vectorised over boxes (no Python loop over boxes):
per-axis taps, then ragged lists of bag entries (``repeat_interleave`` over per-box counts, then the
entries of samples outside the map dropped, as torchvision skips them). Its data-dependent sizes are
read back in a constant number of host syncs per call, whatever the number of boxes (a CUDA test
counts them).

This module is the private numeric kernel: no validation, no autograd, no registration. Its inputs are
already checked (``roi_lab.ops.roi_align`` does that, in the registered op), and it exposes three
functions to the registration layer:

- :func:`roi_align_forward` (input, batch index, boxes) -> pooled crops;
- :func:`roi_align_backward` (grad of the crops, ...) -> grad of the input: the same bags transposed
  (entries sorted by their target), so every gradient row is again one weighted sum, with no atomics
  and no scatter: deterministic on every device;
- :func:`is_channels_last`, the layout rule the backward follows.

Memory: besides the output, one channel block of the map (at most ``_MAP_BLOCK_ELEMENTS`` elements, no
copy of the whole map) and the bags of one chunk of boxes (at most ``_GEOMETRY_ELEMENTS`` entries plus
``_BUCKET_ELEMENTS`` intermediate elements), whatever the number of boxes or the output size.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import Tensor

from roi_lab.errors import InputValueError

__all__ = ["roi_align_forward", "roi_align_backward", "is_channels_last"]

# Elements of one channel block of the channels-last map copy [N*H*W, Cb]: small enough to stay in the
# cache while the bags gather from it (a block of a few MiB gathers ~2x faster per byte than the whole
# map), large enough to keep the per-block calls few.
_MAP_BLOCK_ELEMENTS = 1 << 20
# Elements of one sub-chunk's intermediates per channel block (stage-1 rows + outputs, x Cb): about the
# size of a core's L2 cache, so that the stage-2 gathers and the transposed write of the outputs read
# what stage 1 has just written from the cache.
_BUCKET_ELEMENTS = 1 << 17
# Bag entries (and per-axis taps) planned at once: boxes are planned and pooled in chunks of about this
# many entries, so the plan's memory is bounded whatever the number of boxes and their grids.
_GEOMETRY_ELEMENTS = 1 << 21
# An adaptive grid may ask for at most this many samples per box and axis.
_MAX_SAMPLES_PER_AXIS = 1 << 20
# mode="max" keeps every interpolated sample of a box to take their max: at most this many per box,
# and the channel block shrinks so that one chunk's samples x channels stay within _BUCKET_ELEMENTS.
_MAX_SAMPLES_PER_BOX_MAX_MODE = 1 << 22


# --------------------------------------------------------------------------------------------------
# the planner's array operations: numpy for a CPU forward, torch elsewhere


class _TorchOps:
    """The planner's array operations on torch tensors of one device: CUDA (the plan stays on the
    device: no copies, a constant number of host syncs) and every backward."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        # reading a value back is free on the CPU; on a GPU each is a host sync (the plan keeps them few)
        self.cheap_readback = device.type == "cpu"
        # the functions both libraries have with the same arguments (positional: dim / axis, min / max)
        self.where, self.minimum, self.floor, self.ceil = torch.where, torch.minimum, torch.floor, torch.ceil
        self.stack, self.cat, self.cumsum, self.zeros_like = torch.stack, torch.cat, torch.cumsum, torch.zeros_like
        self.amin, self.amax, self.floordiv = torch.amin, torch.amax, torch.floor_divide

    def array(self, values, dtype: torch.dtype):
        return torch.tensor(values, dtype=dtype, device=self.device)

    def arange(self, n: int):
        return torch.arange(n, device=self.device)

    def zeros(self, n: int):
        return torch.zeros(n, dtype=torch.long, device=self.device)

    def full(self, shape, value: int):
        return torch.full(shape, value, dtype=torch.long, device=self.device)

    def from_torch(self, t: Tensor):
        return t

    def to_torch(self, a) -> Tensor:
        return a

    def cast(self, a, dtype: torch.dtype):
        return a.to(dtype)

    def cast_like(self, a, like):
        return a.to(like.dtype)

    def take(self, a, index):
        return a.index_select(0, index)

    def flatnonzero(self, mask):
        return mask.reshape(-1).nonzero()[:, 0]

    def repeat(self, values, counts, total: int):
        return torch.repeat_interleave(values, counts, output_size=total)

    def broadcast(self, a, shape):
        return a.expand(shape)

    def tolist(self, a) -> list:
        return a.tolist()  # host sync

    def clamp(self, a, lo=None, hi=None):
        return torch.clamp(a, lo, hi)


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.long: np.int64, torch.bool: np.bool_}


class _NumpyOps(_TorchOps):
    """The same operations on numpy arrays, for a forward on the CPU: a numpy call on a small array
    costs ~1 us against ~5-10 us for a torch op, and the planner is a few hundred of them (the fixed
    cost of a small call). Every float operation is the same IEEE operation on the same dtype as with
    torch (elementwise add / sub / mul / div / floor / ceil, correctly rounded in both), and every
    integer the same, so the plan, and the crops, are the same bits (tests compare the two)."""

    def __init__(self) -> None:
        super().__init__(torch.device("cpu"))
        self.where, self.minimum, self.floor, self.ceil = np.where, np.minimum, np.floor, np.ceil
        self.stack, self.cat, self.cumsum, self.zeros_like = np.stack, np.concatenate, np.cumsum, np.zeros_like
        self.amin, self.amax, self.floordiv = np.amin, np.amax, np.floor_divide

    def array(self, values, dtype: torch.dtype):
        return np.array(values, dtype=_NUMPY_DTYPES[dtype])

    def arange(self, n: int):
        return np.arange(n, dtype=np.int64)

    def zeros(self, n: int):
        return np.zeros(n, dtype=np.int64)

    def full(self, shape, value: int):
        return np.full(shape, value, dtype=np.int64)

    def from_torch(self, t: Tensor):
        return t.numpy()

    def to_torch(self, a) -> Tensor:
        return torch.from_numpy(a if a.flags.c_contiguous and a.flags.writeable else np.ascontiguousarray(a).copy())

    def cast(self, a, dtype: torch.dtype):
        return a.astype(_NUMPY_DTYPES[dtype])

    def cast_like(self, a, like):
        return a.astype(like.dtype)

    def take(self, a, index):
        return a[index]

    def flatnonzero(self, mask):
        return np.flatnonzero(mask)

    def repeat(self, values, counts, total: int):
        return np.repeat(values, counts)

    def broadcast(self, a, shape):  # a copy (np.repeat along each size-1 axis), unlike torch's expand
        for axis, (have, want) in enumerate(zip(a.shape, shape, strict=True)):
            if have != want:
                a = np.repeat(a, want, axis=axis)
        return a

    def clamp(self, a, lo=None, hi=None):  # np.clip's Python layer costs more than these two ufuncs
        a = a if lo is None else np.maximum(a, lo)
        return a if hi is None else np.minimum(a, hi)

    def tolist(self, a) -> list:
        return a.tolist()


# --------------------------------------------------------------------------------------------------
# geometry: per-axis taps


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision maps are pooled in float32 (their map blocks are converted when copied)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _box_geometry(boxes: Tensor, pooled: tuple[int, int], scale: float, sampling_ratio: int, aligned: bool, ops):
    """Start, bin size and grid per box and axis, rounded exactly like the compiled kernel.

    The kernel computes ``x * spatial_scale - offset`` in double and stores it in the input dtype,
    then everything else in the input dtype; so do we for float32 and float64 (float64 changes the
    adaptive grid at boundaries). float16 / bfloat16 boxes (already rounded to that dtype) get their
    geometry in float32, PyTorch's usual opmath: torchvision's half kernel rounds every step to half,
    which moves samples by up to 1/128 px near x = 10 and flips the in-map test at the border.

    Returns:
        start, bin_size ([2, K]): (y, x) in the geometry dtype. grid ([2, K] int64). Arrays of ``ops``.
    """
    dtype = torch.float32 if boxes.dtype in (torch.float16, torch.bfloat16) else boxes.dtype
    offset = 0.5 if aligned else 0.0
    coords = ops.from_torch((boxes.double() * scale - offset).to(dtype))  # [K, 4] x1 y1 x2 y2, feature px
    start = ops.stack([coords[:, 1], coords[:, 0]])  # [2, K] (y, x)
    size = ops.stack([coords[:, 3], coords[:, 2]]) - start  # [2, K]
    if not aligned:
        size = ops.clamp(size, 1.0, None)
    bins = ops.array(pooled, dtype)[:, None]  # [2, 1]
    bin_size = size / bins  # [2, K]
    if sampling_ratio > 0:
        grid = ops.full(bin_size.shape, sampling_ratio)  # [2, K]
    else:  # clamped before the cast so that a huge box cannot overflow int64 (the plan then refuses it)
        grid = ops.cast(ops.clamp(ops.ceil(size / bins), 0, _MAX_SAMPLES_PER_AXIS + 1), torch.long)  # [2, K]
    return start, bin_size, grid


def _axis_units(start, bin_size, grid, bins: int, extent: int, n_grid: int, per_sample: bool,
                compute: torch.dtype, ops):  # fmt: skip
    """Bilinear taps along one axis, grouped into units: a bin (avg, its grid's 2 x G taps) or one
    sample (max mode, 2 taps).

    Args:
        start, bin_size ([K]): in the geometry dtype. grid ([K] int64): samples per bin.
        bins: PH or PW. extent: H or W. n_grid: the largest grid of the call (G).
        per_sample: False for avg units; True for max mode, which pads short grids by repeating
            their last sample (a repeat never changes a max, nor its first position).
        ops: the array operations (:class:`_TorchOps` or :class:`_NumpyOps`).

    Returns:
        index ([K, U, T] int64): feature row (col) of each tap, U = bins (avg) or bins * G
            (max), T = 2 * G (avg) or 2, ordered (sample, low/high).
        weight ([K, U, T]): in ``compute``; 1 - frac / frac, like the compiled kernel's.
        valid ([K, U, T] bool): the tap's sample is in [-1, extent] (the kernel skips others)
            and is one of the box's ``grid`` samples.
    """
    k = start.shape[0]
    g = ops.clamp(grid, 1, None)  # [K]
    i = ops.arange(n_grid)  # [G]
    i_eff = ops.cast_like(ops.minimum(i, g[:, None] - 1)[:, None, :] if per_sample else i, start)  # [K, 1, G] or [G]
    p = ops.cast_like(ops.arange(bins), start)  # [P]
    b = bin_size[:, None, None]  # [K, 1, 1]
    # same operation order as the compiled kernel: (start + p * bin) + ((i + .5) * bin) / grid
    pos = (start[:, None, None] + p[:, None] * b) + ((i_eff + 0.5) * b) / ops.cast_like(g[:, None, None], start)
    valid = (pos >= -1.0) & (pos <= extent) & (grid[:, None, None] > 0)  # [K, P, G]
    if not per_sample:
        valid = valid & (i < grid[:, None, None])
    y = ops.clamp(pos, 0.0, None)
    low = ops.floor(y)
    last = low >= extent - 1
    low_i = ops.where(last, extent - 1, ops.cast(low, torch.long))  # [K, P, G]
    high_i = ops.where(last, extent - 1, low_i + 1)
    frac = ops.where(last, ops.zeros_like(y), y - low)  # [K, P, G] in the geometry dtype, like the kernel
    index = ops.stack([low_i, high_i], -1)  # [K, P, G, 2]
    weight = ops.cast(ops.stack([1.0 - frac, frac], -1), compute)  # [K, P, G, 2]
    valid = ops.broadcast(valid[..., None], index.shape)
    units, taps = (bins * n_grid, 2) if per_sample else (bins, 2 * n_grid)
    return index.reshape(k, units, taps), weight.reshape(k, units, taps), valid.reshape(k, units, taps)


def _bags(index, weight, valid, ops):
    """Flat bags from dense [B, L] entries, the invalid ones dropped.

    Returns:
        index ([E] int64), weight ([E]), offsets ([B + 1] int64): bag ``b`` is
        ``index[offsets[b]:offsets[b + 1]]``, the entries in their original order.
    """
    if ops.cheap_readback and bool(valid.all()):  # the common case, every tap on the map: the entries as they are
        return index.reshape(-1), weight.reshape(-1), ops.arange(index.shape[0] + 1) * index.shape[1]
    offsets = ops.zeros(index.shape[0] + 1)
    offsets[1:] = ops.cumsum(valid.sum(1), 0)
    keep = ops.flatnonzero(valid)  # host sync: how many entries remain
    return ops.take(index.reshape(-1), keep), ops.take(weight.reshape(-1), keep), offsets


def _embedding_bag(table: Tensor, index: Tensor, offsets: Tensor, weight: Tensor) -> Tensor:
    """Bag ``b`` of the result is ``sum_e weight[e] * table[index[e]]`` over its entries: Tensor[B, Cb]."""
    return torch.embedding_bag(table, index, offsets, False, 0, False, weight, True)[0]


def _cuts(cost, budget: int, ops):
    """First box of each chunk: box ``j`` starts a new chunk where the cost before it crosses a multiple
    of ``budget`` (chunks cost about ``budget``, and hold at least one box). [chunks] int64."""
    before = ops.cumsum(cost, 0) - cost  # [k]
    chunk = ops.floordiv(before, budget)
    starts = chunk != ops.cat([chunk[:1] - 1, chunk[:-1]])
    return ops.flatnonzero(starts)  # host sync (its length)


# --------------------------------------------------------------------------------------------------
# the plan


class _Chunk:
    """The two stages' bags for the boxes ``k0:k1`` of a call, and their cut into sub-chunks whose
    intermediates stay in the cache.

    Attributes:
        rows: stage-1 rows (box, y unit, column), box-major; ``pixel, weight, offsets`` their bags
            over map pixels (flat ``(b * H + y) * W + x``).
        row, row_weight, row_offsets: stage 2, one bag per output unit (box, y unit, x unit) over the
            stage-1 rows of its sub-chunk.
        subs: per sub-chunk (boxes k0:k1, stage-1 bags (pixel, offsets, weight), stage-2 bags (row,
            offsets, weight)), the entries as views and the offsets rebased to them.
        layout: "padded" (the chunk is one sub-chunk, its rows a dense grid: :meth:`_padded`) or
            "ragged" (rows listed per box, cut into sub-chunks).
        count (Tensor[k] compute dtype): the avg divisor per box, ``max(grid_y * grid_x, 1)``.
    """

    def __init__(self, plan: _Plan, k0: int, k1: int, units) -> None:
        n, c, h, w = plan.shape
        ops = plan.ops
        (yi, yw, yv), (xi, _, _), columns, taps_mode, lo, _ = units  # x weights and taps: stage 2 (_stage2)
        k, uy, ty = yi.shape
        ux, tx = xi.shape[1:]
        t = ux * tx  # x taps per box
        self.k0, self.k1 = k0, k1
        self.count = plan.count[k0:k1]
        self.units = units
        self._transposed = None
        slots = int(ops.amax(columns, 0))  # host sync: the most columns of a box
        self.layout = "padded" if k * uy * (slots + ux) <= plan.rows_budget else "ragged"
        if self.layout == "padded":  # one sub-chunk: `slots` rows per (box, y unit)
            self._padded(plan, units, slots)
            return
        n_rows = columns * uy  # [k] stage-1 rows per box
        row_end = ops.cumsum(n_rows, 0)
        row_start = row_end - n_rows  # [k]
        # sub-chunks: boxes whose stage-1 rows and outputs fit the cache budget
        first = _cuts(n_rows + uy * ux, plan.rows_budget, ops)  # [S] first box of each sub-chunk
        sub = ops.zeros(k)
        sub[first] = 1
        sub_start = ops.take(ops.take(row_start, first), ops.cumsum(sub, 0) - 1)  # [k]
        local_start = row_start - sub_start  # [k] first row within its sub-chunk
        bounds = ops.cat([first, ops.array([k], torch.long)])  # [S + 1]
        row_bounds = ops.take(ops.cat([row_start, row_end[-1:]]), bounds)  # [S + 1]
        self.rows = rows = int(row_end[-1])  # host sync: the size of the stage-1 table
        # stage 1: row r -> (box kr, y unit u, column s); its bag is the unit's y taps at that column
        kr = ops.repeat(ops.arange(k), n_rows, rows)  # [R]
        local = ops.arange(rows) - ops.take(row_start, kr)  # [R]
        width = ops.take(columns, kr)  # [R]
        u = ops.floordiv(local, width)  # [R]
        s = local - u * width  # [R]
        tap_column = ops.take(xi.reshape(-1), kr * t + ops.clamp(s, None, t - 1))  # [R] (taps mode)
        column = ops.where(ops.take(taps_mode, kr), tap_column, ops.take(lo, kr) + s)  # [R] feature col
        unit = kr * uy + u  # [R]
        image_row = ops.take(plan.batch_index[k0:k1], kr) * h  # [R]
        pixel = (image_row[:, None] + ops.take(yi.reshape(-1, ty), unit)) * w + column[:, None]  # [R, Ty]
        pixel, weight, offsets = _bags(
            pixel, ops.take(yw.reshape(-1, ty), unit), ops.take(yv.reshape(-1, ty), unit), ops
        )  # [E1], [E1], [R + 1]
        base = local_start[:, None] + ops.arange(uy) * columns[:, None]  # [k, Uy] first row of (box, unit)
        row, row_weight, row_offsets = self._stage2(ops, base, units)  # [E2], [E2], [k * Uy * Ux + 1]
        self._kr, self._s = kr, s
        # per sub-chunk: views of the entries, offsets rebased to them (one host sync for all bounds)
        out_bounds = bounds * (uy * ux)
        limits = ops.tolist(
            ops.stack([bounds, row_bounds, ops.take(offsets, row_bounds), ops.take(row_offsets, out_bounds)]).T
        )
        self._store(ops, (pixel, weight, offsets), (row, row_weight, row_offsets))
        self.subs = []
        for (a, r0, e0, f0), (b, r1, e1, f1) in _pairs(limits):
            stage1 = (self.pixel[e0:e1], self.offsets[r0 : r1 + 1] - e0, self.weight[e0:e1])
            o0, o1 = a * uy * ux, b * uy * ux
            stage2 = (self.row[f0:f1], self.row_offsets[o0 : o1 + 1] - f0, self.row_weight[f0:f1])
            self.subs.append((k0 + a, k0 + b, stage1, stage2))

    def _padded(self, plan: _Plan, units, slots: int) -> None:
        """The same bags for a chunk that is one sub-chunk, with every (box, y unit) given ``slots``
        stage-1 rows: the rows are a dense [k, Uy, slots] grid, planned in a few broadcasts instead of
        ragged lists. The rows past a box's columns are never read by stage 2; they pool its last column
        again, so that they drop nothing from a plan whose taps are all on the map. Every row that is
        read holds the same entries in the same order as in the ragged plan: the same bits."""
        n, c, h, w = plan.shape
        ops = plan.ops
        (yi, yw, yv), (xi, _, _), columns, taps_mode, lo, _ = units  # x weights and taps: stage 2 (_stage2)
        k, uy, ty = yi.shape
        ux, tx = xi.shape[1:]
        t = ux * tx
        slot = ops.minimum(ops.arange(slots), ops.clamp(columns - 1, 0, None)[:, None])  # [k, S] past the end: the last
        tap_column = ops.take(xi.reshape(-1), (ops.arange(k)[:, None] * t + slot).reshape(-1)).reshape(k, slots)
        column = ops.where(taps_mode[:, None], tap_column, lo[:, None] + slot)  # [k, S] feature col (taps mode: tap)
        column = ops.clamp(column, 0, w - 1)  # a box with no column on the map: any column, never read
        image_row = plan.batch_index[self.k0 : self.k1] * h  # [k]
        pixel = (image_row[:, None, None, None] + yi[:, :, None, :]) * w + column[:, None, :, None]  # [k, Uy, S, Ty]
        shape = (k, uy, slots, ty)
        pixel, weight, offsets = _bags(
            pixel.reshape(-1, ty), ops.broadcast(yw[:, :, None, :], shape).reshape(-1, ty),
            ops.broadcast(yv[:, :, None, :], shape).reshape(-1, ty), ops,
        )  # [E1], [E1], [k * Uy * S + 1]
        base = (ops.arange(k)[:, None] * uy + ops.arange(uy)) * slots  # [k, Uy] first row of (box, unit)
        stage2 = self._stage2(ops, base, units)  # [E2], [E2], [k * Uy * Ux + 1]
        self.rows = k * uy * slots
        self._kr = ops.floordiv(ops.arange(self.rows), uy * slots)  # [R] box and column of each row (the backward's)
        self._s = ops.arange(self.rows) % slots  # [R]
        self._store(ops, (pixel, weight, offsets), stage2)
        stage1, stage2 = (self.pixel, self.offsets, self.weight), (self.row, self.row_offsets, self.row_weight)
        self.subs = [(self.k0, self.k1, stage1, stage2)]

    @staticmethod
    def _stage2(ops, base, units):
        """Stage 2's bags, one per output (box, y unit, x unit) over its x taps' stage-1 rows of that y unit,
        for ``base`` [k, Uy], the first stage-1 row of each (box, y unit) (either layout): ([E2] row, [E2]
        weight, [k * Uy * Ux + 1] offsets)."""
        (yi, _, _), (xi, xw, xv), _, _, _, s_tap = units
        k, uy = yi.shape[:2]
        tx = xi.shape[2]
        t = xi.shape[1] * tx
        row = base[:, :, None] + s_tap[:, None, :]  # [k, Uy, Ux * Tx]
        return _bags(
            row.reshape(-1, tx), ops.broadcast(xw.reshape(k, 1, t), (k, uy, t)).reshape(-1, tx),
            ops.broadcast(xv.reshape(k, 1, t), (k, uy, t)).reshape(-1, tx), ops,
        )  # fmt: skip

    def _store(self, ops, stage1, stage2) -> None:
        """Keep both stages' bags as torch tensors: ``pixel, weight, offsets`` and ``row, row_weight,
        row_offsets``."""
        self.pixel, self.weight, self.offsets = (ops.to_torch(a) for a in stage1)
        self.row, self.row_weight, self.row_offsets = (ops.to_torch(a) for a in stage2)

    def transposed(self, plan: _Plan):
        """The same bags, transposed for the backward: (stage 2^T, one bag per stage-1 row over output
        units of the chunk; stage 1^T, one bag per map pixel over stage-1 rows), entries in a fixed
        order."""
        if self._transposed is None:
            n, c, h, w = plan.shape
            (yi, yw, yv), (xi, xw, xv), columns, taps_mode, lo, s_tap = self.units
            k, uy, _ = yi.shape
            ux, tx = xi.shape[1:]
            t = ux * tx
            device = yi.device
            valid = xv.reshape(k, t)  # [k, T]
            key = torch.where(valid, s_tap, t)  # [k, T]: each tap's stage-1 column, invalid ones last
            key_sorted, order = key.sort(dim=1, stable=True)  # [k, T]
            out_unit = (torch.arange(k, device=device)[:, None] * uy + torch.arange(uy, device=device)) * ux
            source = out_unit[:, :, None] + torch.div(order, tx, rounding_mode="floor")[:, None, :]  # [k, Uy, T]
            weight = xw.reshape(k, t).gather(1, order)[:, None, :].expand(k, uy, t)
            keep = (key_sorted < t)[:, None, :].expand(k, uy, t)
            source, weight, _ = _bags(
                source.reshape(k * uy, t), weight.reshape(k * uy, t), keep.reshape(k * uy, t), plan.ops
            )
            # entries per stage-1 row (kr, u, s): the valid taps of box kr on column s
            per_column = torch.zeros(k, t + 1, dtype=torch.long, device=device).scatter_add_(
                1, key, torch.ones_like(key)
            )[:, :t]  # [k, T]
            offsets = torch.zeros(self.rows + 1, dtype=torch.long, device=device)
            torch.cumsum(per_column[self._kr, self._s.clamp_max(t - 1)], 0, out=offsets[1:])
            # stage 1^T: every stage-1 entry, grouped by the map pixel it reads
            entry_row = torch.repeat_interleave(
                torch.arange(self.rows, device=device), self.offsets.diff(), output_size=self.pixel.numel()
            )  # [E1]
            pixel_sorted, by_pixel = self.pixel.sort(stable=True)
            pixel_offsets = torch.searchsorted(pixel_sorted, torch.arange(n * h * w + 1, device=device))
            self._transposed = (
                (source, weight, offsets),
                (entry_row[by_pixel], self.weight[by_pixel], pixel_offsets),
            )
        return self._transposed


def _pairs(items: list) -> list:
    """Consecutive pairs: [a, b, c] -> [(a, b), (b, c)]."""
    return list(zip(items[:-1], items[1:], strict=True))


class _Plan:
    """Everything the forward and backward passes share: the boxes' geometry, the channel block, and
    per chunk of boxes the two stages' bags (:class:`_Chunk`)."""

    def __init__(self, shape, dtype, device, batch: Tensor, boxes: Tensor, pooled, scale, sampling_ratio, aligned,
                 mode, ops=None):  # fmt: skip
        n, c, h, w = shape
        self.shape = (n, c, h, w)
        self.pooled = pooled  # (PH, PW)
        self.compute = _compute_dtype(dtype)
        self.mode = mode
        self.batch = batch
        self.ops = ops = _TorchOps(device) if ops is None else ops
        per_sample = mode == "max"
        k = boxes.shape[0]
        self.chunks: list[_Chunk] = []
        self.grid_max = (1, 1)
        self.block = 1
        if k == 0:
            return
        self.batch_index = ops.from_torch(batch)
        start, bin_size, grid = _box_geometry(boxes, pooled, scale, sampling_ratio, aligned, ops)  # [2, K] each
        if sampling_ratio > 0:
            grid_max = [sampling_ratio, sampling_ratio]
        else:
            grid_max = ops.tolist(ops.amax(ops.clamp(grid, 1, None), 1))  # host sync: the adaptive grids' extent
        self._check_grids(grid_max, grid, batch, boxes, bin_size, pooled, scale, sampling_ratio, per_sample)
        self.grid_max = gy, gx = grid_max
        self.count = ops.to_torch(ops.cast(ops.clamp(grid[0] * grid[1], 1, None), self.compute))  # [K]
        ph, pw = pooled
        uy, ty = (ph * gy, 2) if per_sample else (ph, 2 * gy)
        ux, tx = (pw * gx, 2) if per_sample else (pw, 2 * gx)
        t = ux * tx
        self.block = self._channel_block(uy * ux)
        self.rows_budget = max(1, _BUCKET_ELEMENTS // self.block)
        # boxes are planned in groups within the geometry budget (at least one box each), and each
        # group in chunks of about _GEOMETRY_ELEMENTS bag entries
        group = max(1, _GEOMETRY_ELEMENTS // (uy * ty + t))
        for g0 in range(0, k, group):
            g1 = min(k, g0 + group)
            sl = slice(g0, g1)
            yu = _axis_units(start[0, sl], bin_size[0, sl], grid[0, sl], ph, h, gy, per_sample, self.compute, ops)
            xu = _axis_units(start[1, sl], bin_size[1, sl], grid[1, sl], pw, w, gx, per_sample, self.compute, ops)
            xi, xv = xu[0].reshape(-1, t), xu[2].reshape(-1, t)  # [k, T]
            lo = ops.amin(ops.where(xv, xi, w), 1)  # [k] the box's first tapped column
            hi = ops.amax(ops.where(xv, xi, -1), 1)
            window = ops.clamp(hi - lo + 1, 0, None)  # [k] 0 when no sample of the box is on the map
            taps_mode = window > t  # a wide box: its taps, not its window, are the columns
            columns = ops.where(taps_mode, t, window)  # [k]
            s_tap = ops.where(taps_mode[:, None], ops.arange(t), xi - lo[:, None])  # [k, T]
            cuts = ops.tolist(_cuts(columns * (uy * ty) + uy * t, _GEOMETRY_ELEMENTS, ops)) + [g1 - g0]
            for a, b in _pairs(cuts):
                units = (
                    tuple(x[a:b] for x in yu), tuple(x[a:b] for x in xu), columns[a:b], taps_mode[a:b], lo[a:b],
                    s_tap[a:b],
                )  # fmt: skip
                self.chunks.append(_Chunk(self, g0 + a, g0 + b, units))

    def _channel_block(self, outputs_per_box: int) -> int:
        """Channels per block: the map block within _MAP_BLOCK_ELEMENTS (max mode: one box's samples
        within _BUCKET_ELEMENTS), a multiple of 8 (one AVX2 vector) when blocked, blocks of near-equal
        size."""
        n, c, h, w = self.shape
        if c == 0:
            return 1
        block = min(c, _MAP_BLOCK_ELEMENTS // max(1, n * h * w))
        if self.mode == "max":
            block = min(block, _BUCKET_ELEMENTS // outputs_per_box)
        if 8 <= block < c:
            block -= block % 8
        block = max(1, block)
        count = -(-c // block)
        return -(-c // count)

    def _check_grids(self, grid_max, grid, batch, boxes, bin_size, pooled, scale, sampling_ratio, per_sample):
        samples = max(pooled[0] * grid_max[0], pooled[1] * grid_max[1])
        if samples > _MAX_SAMPLES_PER_AXIS and sampling_ratio > 0:
            raise InputValueError(
                "roi_align(output_size=..., sampling_ratio=...)",
                expected=f"sampling grids of at most {_MAX_SAMPLES_PER_AXIS} samples per box and axis "
                "(output bins x sampling_ratio)",
                got=f"output_size={tuple(pooled)} with sampling_ratio={sampling_ratio}: {samples} samples",
                fix="pass a smaller sampling_ratio (2 is torchvision's and detectron2's choice) or output_size",
            )
        if samples > _MAX_SAMPLES_PER_AXIS:
            grid, bin_size = torch.as_tensor(grid), torch.as_tensor(bin_size)  # an error: numpy arrays as tensors
            row = int((grid * torch.tensor(pooled, device=grid.device)[:, None]).amax(0).argmax())
            roi = [float(batch[row])] + boxes[row].tolist()
            span = max(math.ceil(v) for v in bin_size[:, row].tolist())  # the adaptive grid, before its clamp
            raise InputValueError(
                "roi_align(boxes=..., sampling_ratio=...)",
                expected=f"adaptive sampling grids of at most {_MAX_SAMPLES_PER_AXIS} samples per box and axis",
                got=f"box {row} {roi} spans {span} samples per bin at spatial_scale={scale}",
                fix="check that the boxes are in image px and spatial_scale is 1 / stride, or pass a fixed "
                "sampling_ratio, e.g. 2",
            )
        box_samples = pooled[0] * grid_max[0] * pooled[1] * grid_max[1]
        if per_sample and box_samples > _MAX_SAMPLES_PER_BOX_MAX_MODE:
            raise InputValueError(
                "roi_align(mode='max', ...)",
                expected=f"at most {_MAX_SAMPLES_PER_BOX_MAX_MODE} samples per box in max mode (bins x samples "
                "per bin, both axes; max mode keeps every sample to take their max)",
                got=f"{pooled[0]} x {pooled[1]} bins with grids of {grid_max[0]} x {grid_max[1]} samples: "
                f"{box_samples} samples",
                fix="pass a fixed sampling_ratio (e.g. 2) instead of adaptive sampling for these boxes, or check "
                "that the boxes are in image px and spatial_scale is 1 / stride",
            )


# --------------------------------------------------------------------------------------------------
# the passes


def _map_blocks(input: Tensor, plan: _Plan):
    """Yield (channel slice, Tensor[N*H*W, Cb]) contiguous channels-last blocks of the map, in the
    compute dtype (one block alive at a time; a channels-last map of one block is used as it is)."""
    n, c, h, w = input.shape
    cb = plan.block
    for c0 in range(0, c, cb):
        block = input[:, c0 : c0 + cb].permute(0, 2, 3, 1)  # [N, H, W, Cb], a view
        block = block.to(plan.compute, memory_format=torch.contiguous_format).contiguous()  # one copy, or none
        yield slice(c0, c0 + block.shape[3]), block.view(n * h * w, block.shape[3])


def _forward(input: Tensor, plan: _Plan) -> Tensor:
    """Per channel block and sub-chunk: stage 1 (rows), stage 2 (outputs), written into the output's
    layout while in the cache (avg: divided by the grid count; max: the max over each bin's samples,
    the first one on ties)."""
    n, c, h, w = plan.shape
    ph, pw = plan.pooled
    k = plan.batch.shape[0]
    out = input.new_empty((k, c, ph, pw))
    plan.argmax = {}
    if not plan.chunks or c == 0:
        return out
    chunks = plan.chunks
    blocks = _map_blocks(input, plan) if len(chunks) == 1 else list(_map_blocks(input, plan))
    gy, gx = plan.grid_max
    for cs, feat in blocks:  # feat [N*H*W, Cb]
        cb = feat.shape[1]
        for ch in chunks:
            for k0, k1, stage1, stage2 in ch.subs:
                kc = k1 - k0
                rows = _embedding_bag(feat, *stage1)  # [R_sub, Cb]
                vals = _embedding_bag(rows, *stage2)  # [Kc * Uy * Ux, Cb]
                target = out[k0:k1, cs]  # [Kc, Cb, PH, PW], a view
                if plan.mode == "avg":
                    count = ch.count[k0 - ch.k0 : k1 - ch.k0, None, None]
                    torch.div(vals.view(kc, ph * pw, cb).transpose(1, 2), count, out=target.view(kc, cb, ph * pw))
                    continue
                # first maximum in (iy, ix) order, as mmcv's strict ">" scan
                best, ix = vals.view(kc, ph, gy, pw, gx, cb).max(4)  # [Kc, PH, GY, PW, Cb]
                best, iy = best.max(2)  # [Kc, PH, PW, Cb]
                plan.argmax[cs.start, k0] = (iy, ix.gather(2, iy[:, :, None]).squeeze(2))  # [Kc, PH, PW, Cb] each
                target.copy_(best.permute(0, 3, 1, 2))
    return out


def _backward(grad_out: Tensor, plan: _Plan, dtype: torch.dtype, channels_last: bool) -> Tensor:
    """The transposed stages per channel block and chunk: stage 2^T (output gradients -> stage-1 rows),
    stage 1^T (rows -> map pixels), each a weighted sum per target row."""
    n, c, h, w = plan.shape
    ph, pw = plan.pooled
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    grad_in = torch.empty(plan.shape, dtype=dtype, device=grad_out.device, memory_format=memory_format)
    if not plan.chunks or c == 0:
        return grad_in.zero_()
    gy, gx = plan.grid_max
    samples = gy * gx if plan.mode == "max" else 1
    for c0 in range(0, c, plan.block):
        cs = slice(c0, min(c, c0 + plan.block))
        cb = cs.stop - cs.start
        target = grad_in[:, cs].permute(0, 2, 3, 1)  # [N, H, W, Cb], a view
        for j, ch in enumerate(plan.chunks):
            (source, weight, offsets), (entry_row, entry_weight, pixel_offsets) = ch.transposed(plan)
            g = grad_out.new_empty(((ch.k1 - ch.k0) * ph * pw * samples, cb), dtype=plan.compute)
            at = 0
            for k0, k1, _, _ in ch.subs:  # the output gradients as channels-last rows, sub-chunk by sub-chunk
                kc = k1 - k0
                part = g[at : at + kc * ph * pw * samples]
                at += part.shape[0]
                grad = grad_out[k0:k1, cs].permute(0, 2, 3, 1)  # [Kc, PH, PW, Cb], a view
                if plan.mode == "avg":  # the forward's division by the grid count
                    torch.div(grad, ch.count[k0 - ch.k0 : k1 - ch.k0, None, None, None], out=part.view(grad.shape))
                    continue
                iy, ix = plan.argmax[c0, k0]  # route each bin's gradient to its winning sample
                routed = grad.new_zeros((kc, ph, pw, cb, gy * gx), dtype=plan.compute)
                routed.scatter_(4, (iy * gx + ix)[..., None], grad[..., None].to(plan.compute))
                part.view(kc, ph, gy, pw, gx, cb).copy_(routed.view(kc, ph, pw, cb, gy, gx).permute(0, 1, 4, 2, 5, 3))
            rows = _embedding_bag(g, source, offsets, weight)  # [R, Cb]
            pixels = _embedding_bag(rows, entry_row, pixel_offsets, entry_weight)  # [N*H*W, Cb]
            if j == 0:
                target.copy_(pixels.view(n, h, w, cb))
            else:
                target.add_(pixels.view(n, h, w, cb))
    return grad_in


@contextlib.contextmanager
def _one_thread(device: torch.device):
    """Run the kernel on one intra-op thread on the CPU (the caller's count is restored after).

    A call is a few hundred small ops (planning) and a few gathers whose work per op is small: with
    two or more threads each op ends on a barrier, and when another process keeps a core busy a
    descheduled thread makes every barrier wait a scheduler time slice, which cost 5-20x per call.
    One thread is also torchvision's CPU kernel's (it is serial), so timings compare like for like.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    ops = _NumpyOps() if input.device.type == "cpu" else None
    with _one_thread(input.device):
        plan = _Plan(
            input.shape, input.dtype, input.device, batch, boxes, pooled, spatial_scale, sampling_ratio, aligned, mode,
            ops,
        )  # fmt: skip
        return _forward(input, plan)


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
    with _one_thread(device):
        plan = _Plan(input_shape, dtype, device, batch, boxes, pooled, spatial_scale, sampling_ratio, aligned, mode)
        if mode == "max":
            _forward(input, plan)  # sets plan.argmax
        return _backward(grad_out, plan, dtype, channels_last)
