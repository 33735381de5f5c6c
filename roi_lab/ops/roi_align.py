"""ROIAlign in pure PyTorch with the semantics of torchvision's compiled kernel (and mmcv's max mode).

The average over a bin's sample grid is separable in y and x, and the out-of-range zeroing is per
coordinate, so one box's output is ``Ay @ F @ Ax^T`` with small interpolation matrices ``Ay`` [PH, R]
and ``Ax`` [PW, S]. ``R`` and ``S`` are the distinct feature rows and columns the box's bilinear taps
touch: the box's window for a small box, the sampled rows only for a large one. The kernel gathers
those rows x columns of a channels-last copy of the map for a bucket of similar-sized boxes and runs
two batched matmuls; buckets are sized so that no intermediate exceeds a fixed element budget.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from roi_lab.errors import InputValueError, ShapeError, describe
from roi_lab.ops._checks import check_feature_map, check_finite, check_same_device, pair_size

__all__ = ["roi_align"]

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


def roi_align(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    *,
    mode: str = "avg",
) -> Tensor:
    """Pool a fixed-size feature grid from every box, exactly like ``torchvision.ops.roi_align``.

    Args:
        input (Tensor[N, C, H, W]): feature map, float16 / bfloat16 / float32 / float64, any memory
            format (contiguous, non-contiguous, channels_last). Differentiable through autograd.
        boxes (Tensor[K, 5] or list[Tensor[L, 4]]): ``(batch_index, x1, y1, x2, y2)`` rows, or one
            ``(x1, y1, x2, y2)`` tensor per image. Coordinates are in image pixels and are mapped to
            the map by ``spatial_scale``. Boxes are cast to ``input.dtype`` first, as torchvision
            requires them to be; no gradient flows to boxes.
        output_size (int or (PH, PW)): bins per box.
        spatial_scale (float): feature px per image px, ``1 / stride``.
        sampling_ratio (int): samples per bin and axis; ``<= 0`` means adaptive,
            ``ceil(roi_size / output_size)`` per box, computed in ``input.dtype`` (float32 for
            float16 / bfloat16 maps).
        aligned (bool): shift coordinates by -0.5 px (pixel-centre model, Detectron2). ``False`` is
            the legacy behaviour, which also clamps each box to at least 1x1 feature px.
        mode (str): ``"avg"`` (torchvision) or ``"max"`` (mmcv: the max over the bin's bilinearly
            interpolated samples).

    Returns:
        Tensor[K, C, PH, PW]: contiguous, in ``input.dtype``.

    Convention:
        - boxes are ``x1, y1, x2, y2`` in image px; feature coordinates are
          ``x * spatial_scale - 0.5`` if ``aligned`` else ``x * spatial_scale``, where integer
          feature coordinates are pixel centres.
        - bin ``ph`` of a box spans ``[y1 + ph * bin_h, y1 + (ph + 1) * bin_h)``; its samples sit at
          ``y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h``.
        - a sample with ``y < -1`` or ``y > H`` (or the same in x) contributes 0 but still counts
          in the average; ``-1 <= y < 0`` reads row 0; ``y >= H - 1`` reads row ``H - 1``.
        - inverted boxes (x2 < x1) with a fixed ``sampling_ratio`` sample backwards, as torchvision
          does; adaptive sampling with ``aligned=True`` gives them zeros (torchvision's CUDA result;
          its CPU kernel crashes).
        - ``mode="max"`` follows mmcv's ``RoIAlign(pool_mode="max")``: the max over interpolated
          samples, gradient to the first maximum. ONNX ``RoiAlign(mode="max")`` instead takes the
          max over the four weighted corner values of each sample, which differs. A bin with no
          samples gives 0 (mmcv's CPU kernel writes -10000 there).

    Batch invariance:
        Not bit-exact. Boxes are grouped into matmul buckets by window size, and a bucket's padded
        window and batch shape depend on the other boxes of the call, so the BLAS reduction order
        (and with it the last bits) of a box's crop can change with its companions. The difference
        stays within a few ulp of the map's scale (tested: ``<= 4 * eps * max|input|``); only the
        same call, on the same machine and thread settings, reproduces a crop bit for bit.
        torchvision's compiled kernel loops over boxes and is bit-exactly batch-invariant.

    Example:
        >>> x = torch.arange(25.0).view(1, 1, 5, 5)
        >>> roi_align(x, torch.tensor([[0.0, 1, 1, 3, 3]]), 2, aligned=True)
        tensor([[[[ 6.,  7.],
                  [11., 12.]]]])
    """
    check_feature_map(input, "roi_align")
    rois = _rois_from_boxes(input, boxes)  # [K, 5] in input.dtype
    pooled = pair_size(output_size, "roi_align", "output_size")
    _check_options(spatial_scale, sampling_ratio, mode)
    return _RoIAlignFunction.apply(input, rois, pooled, float(spatial_scale), int(sampling_ratio), bool(aligned), mode)


# --------------------------------------------------------------------------------------------------
# validation and normalisation


def _rois_from_boxes(input: Tensor, boxes: Tensor | list[Tensor]) -> Tensor:
    """Validate ``boxes`` and return them as Tensor[K, 5] in ``input``'s dtype, detached."""
    n = input.shape[0]
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                raise ShapeError(
                    "roi_align(boxes=[...])",
                    expected="a list with one Tensor[L, 4] (x1, y1, x2, y2) per image",
                    got=f"item {i} is {describe(b)}",
                    fix="pass one [L, 4] tensor per image, e.g. [boxes_img0, boxes_img1]; use "
                    "torch.zeros(0, 4) for an image without boxes",
                )
        if len(boxes) > n:
            raise InputValueError(
                "roi_align(boxes=[...])",
                expected=f"at most N={n} tensors, one per image of input",
                got=describe(list(boxes)),
                fix="pass one tensor per image in the batch, in batch order",
            )
        for b in boxes:
            check_same_device(input, b, "roi_align", "input", "boxes")
        if not boxes:
            return input.new_zeros(0, 5)
        rois = torch.cat(
            [
                torch.cat([torch.full_like(b[:, :1], i, dtype=input.dtype), b.to(input.dtype)], 1)
                for i, b in enumerate(boxes)
            ]
        )
        check_finite(rois[:, 1:], "roi_align", "boxes")
        return rois.detach()
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 5:
        k = boxes.shape[0] if isinstance(boxes, Tensor) and boxes.dim() >= 1 else "K"
        fix = "pass boxes as Tensor[K, 5] rows (batch_index, x1, y1, x2, y2) or a list of Tensor[L, 4]"
        if isinstance(boxes, Tensor) and boxes.dim() == 2 and boxes.shape[1] == 4:
            fix = f"add the batch-index column, e.g. torch.cat([torch.zeros({k}, 1), boxes], 1), or pass [boxes]"
        elif isinstance(boxes, Tensor) and boxes.dim() == 1 and boxes.shape[0] in (4, 5):
            fix = "a single box needs a leading box dimension: boxes[None]" + (
                ", and a batch index: torch.cat([torch.zeros(1, 1), boxes[None]], 1), or pass [boxes[None]]"
                if boxes.shape[0] == 4
                else ""
            )
        raise ShapeError(
            "roi_align(boxes=...)",
            expected="boxes as Tensor[K, 5] (batch_index, x1, y1, x2, y2) or a list of Tensor[L, 4]",
            got=describe(boxes),
            fix=fix,
        )
    check_same_device(input, boxes, "roi_align", "input", "boxes")
    check_finite(boxes, "roi_align", "boxes")
    if boxes.shape[0]:
        index = boxes[:, 0]
        bad = (index != index.round()) | (index < 0) | (index >= n)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise InputValueError(
                "roi_align(boxes=...)",
                expected=f"batch indices in column 0 that are integers in [0, {n - 1}] (input has N={n})",
                got=f"{int(bad.sum())} bad rows, the first is row {row}: {boxes[row].tolist()}",
                fix="column 0 is the image index in the batch, then x1, y1, x2, y2; check the column "
                "order and that each box points at an image of this batch",
            )
    return boxes.detach().to(input.dtype)


def _check_options(spatial_scale: float, sampling_ratio: int, mode: str) -> None:
    if (
        isinstance(spatial_scale, bool)
        or not isinstance(spatial_scale, (int, float))
        or not (math.isfinite(spatial_scale) and spatial_scale > 0)
    ):
        raise InputValueError(
            "roi_align(spatial_scale=...)",
            expected="a finite positive float, feature px per image px (1 / stride)",
            got=describe(spatial_scale),
            fix="pass spatial_scale=1 / stride, e.g. 1 / 16 for a stride-16 map",
        )
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
        raise InputValueError(
            "roi_align(sampling_ratio=...)",
            expected="an int (samples per bin and axis; <= 0 for adaptive)",
            got=describe(sampling_ratio),
            fix="pass e.g. sampling_ratio=2, or sampling_ratio=-1 for adaptive sampling",
        )
    if mode not in ("avg", "max"):
        raise InputValueError(
            "roi_align(mode=...)",
            expected='mode "avg" (torchvision) or "max" (mmcv)',
            got=describe(mode),
            fix='pass mode="avg" or mode="max"',
        )


# --------------------------------------------------------------------------------------------------
# geometry: per-axis taps and interpolation matrices


def _compute_dtype(input: Tensor) -> torch.dtype:
    """Half-precision maps are interpolated in float32 on the CPU (no fast half matmul there)."""
    if input.dtype in (torch.float16, torch.bfloat16) and input.device.type == "cpu":
        return torch.float32
    return input.dtype


def _box_geometry(rois: Tensor, pooled: tuple[int, int], scale: float, sampling_ratio: int, aligned: bool):
    """Start, bin size and grid per box and axis, rounded exactly like the compiled kernel.

    The kernel computes ``x * spatial_scale - offset`` in double and stores it in the input dtype,
    then everything else in the input dtype; so do we for float32 and float64 (float64 changes the
    adaptive grid at boundaries). float16 / bfloat16 boxes (already rounded to that dtype) get their
    geometry in float32, PyTorch's usual opmath: torchvision's half kernel rounds every step to half,
    which moves samples by up to 1/128 px near x = 10 and flips the in-map test at the border.
    """
    dtype = torch.float32 if rois.dtype in (torch.float16, torch.bfloat16) else rois.dtype
    offset = 0.5 if aligned else 0.0
    coords = (rois[:, 1:].double() * scale - offset).to(dtype)  # [K, 4] x1 y1 x2 y2, feature px
    start = torch.stack([coords[:, 1], coords[:, 0]])  # [2, K] (y, x)
    size = torch.stack([coords[:, 3], coords[:, 2]]) - start  # [2, K]
    if not aligned:
        size = size.clamp_min(1.0)
    bins = torch.tensor(pooled, dtype=dtype, device=rois.device)[:, None]  # [2, 1]
    bin_size = size / bins  # [2, K]
    if sampling_ratio > 0:
        grid = torch.full_like(bin_size, sampling_ratio, dtype=torch.long)  # [2, K]
    else:
        grid = torch.ceil(size / bins).long()  # [2, K]
    return start, bin_size, grid


def _axis_taps(start: Tensor, bin_size: Tensor, grid: Tensor, bins: int, extent: int, n_grid: int, per_sample: bool):
    """Bilinear taps along one axis.

    Args:
        start, bin_size (Tensor[K]): in the input dtype. grid (Tensor[K] int64): samples per bin.
        bins: PH or PW. extent: H or W. n_grid: the largest grid in the group (G).
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
    p = torch.arange(bins, device=device, dtype=dtype)  # [P]
    b = bin_size[:, None, None]  # [K, 1, 1]
    # same operation order as the compiled kernel: (start + p * bin) + ((i + .5) * bin) / grid
    pos = (start[:, None, None] + p[None, :, None] * b) + ((i_eff[:, None, :].to(dtype) + 0.5) * b) / g[
        :, None, None
    ].to(dtype)  # [K, P, G]
    valid = (pos >= -1.0) & (pos <= extent) & (grid[:, None, None] > 0)  # [K, P, G]
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


def _compact(index: Tensor, weight: Tensor, compute: torch.dtype):
    """Distinct tapped rows per box and the interpolation matrix onto them.

    Args:
        index, weight (Tensor[K, P, G, T]): T taps per sample (or G * 2 taps per bin with G = 1).

    Returns:
        rows (Tensor[K, M] int64): the distinct rows first (sorted), then padding (a repeated row).
        count (Tensor[K] int64): how many distinct rows each box touches (R).
        matrix (Tensor[K, P * G', M]): with G' = G for per-sample matrices collapsed by the caller.
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
    matrix = torch.zeros(k, p * g, flat_index.shape[1], dtype=compute, device=index.device)
    matrix.scatter_add_(2, slot.view(k, p * g, -1), weight.reshape(k, p * g, -1).to(compute))  # [K, P*G, M]
    return rows, count, matrix


# --------------------------------------------------------------------------------------------------
# the kernel


def _ladder(limit: int, device) -> Tensor:
    """Window sizes 1, 2, 3, 4, 6, 8, then steps of about 4/3, up to ``limit``."""
    steps = [1, 2, 3, 4, 6, 8]
    while steps[-1] < limit:
        steps.append(math.ceil(steps[-1] * 4 / 3))
    return torch.tensor(steps, device=device)


class _Plan:
    """Everything the forward and backward passes share: per bucket of boxes, the gathered rows and
    columns and the interpolation matrices."""

    def __init__(self, input: Tensor, rois: Tensor, pooled, scale, sampling_ratio, aligned, mode):
        n, c, h, w = input.shape
        self.shape = (n, c, h, w)
        self.pooled = pooled
        self.compute = _compute_dtype(input)
        self.mode = mode
        per_sample = mode == "max"
        start, bin_size, grid = _box_geometry(rois, pooled, scale, sampling_ratio, aligned)  # [2, K] each
        batch = rois[:, 0].long()  # [K]
        k = rois.shape[0]
        self.buckets: list[tuple] = []  # (ids, flat_index [Kc, R, S], ay [Kc, PH(*G), R], ax [Kc, PW(*G), S], gy, gx)
        if k == 0:
            return
        grid_max = grid.clamp_min(1).amax(1).tolist()  # [2] (G_y, G_x)
        if max(pooled[0] * grid_max[0], pooled[1] * grid_max[1]) > _MAX_SAMPLES_PER_AXIS:
            row = int((grid * torch.tensor(pooled, device=grid.device)[:, None]).amax(0).argmax())
            raise InputValueError(
                "roi_align(boxes=..., sampling_ratio=...)",
                expected=f"adaptive sampling grids of at most {_MAX_SAMPLES_PER_AXIS} samples per box and axis",
                got=f"box {row} {rois[row].tolist()} spans {max(grid_max)} samples per bin at spatial_scale={scale}",
                fix="check that the boxes are in image px and spatial_scale is 1 / stride, or pass a fixed "
                "sampling_ratio, e.g. 2",
            )
        taps_per_box = max(pooled[0] * grid_max[0], pooled[1] * grid_max[1]) * 2 * max(pooled)
        group = max(1, _GEOMETRY_ELEMENTS // taps_per_box)
        for g0 in range(0, k, group):
            sl = slice(g0, min(k, g0 + group))
            gy, gx = (grid_max[0], grid_max[1])
            iy, wy = _axis_taps(start[0, sl], bin_size[0, sl], grid[0, sl], pooled[0], h, gy, per_sample)
            ix, wx = _axis_taps(start[1, sl], bin_size[1, sl], grid[1, sl], pooled[1], w, gx, per_sample)
            if not per_sample:  # average over the grid: sum the per-sample rows of each bin
                rows_y, ny, ay = _compact(
                    iy.reshape(iy.shape[0], pooled[0], 1, -1), wy.reshape(wy.shape[0], pooled[0], 1, -1), self.compute
                )
                rows_x, nx, ax = _compact(
                    ix.reshape(ix.shape[0], pooled[1], 1, -1), wx.reshape(wx.shape[0], pooled[1], 1, -1), self.compute
                )
                gy = gx = 1
            else:
                rows_y, ny, ay = _compact(iy, wy, self.compute)  # ay [Kg, PH*Gy, M]
                rows_x, nx, ax = _compact(ix, wx, self.compute)
            self._bucket(batch[sl], g0, rows_y, ny, ay, rows_x, nx, ax, gy, gx)

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
        return max(1, min(c, _MAP_BLOCK_ELEMENTS // max(1, n * h * w)))


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
    k = sum(len(b[0]) for b in plan.buckets)
    out = input.new_empty((k, c, ph, pw))
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


def _is_channels_last(input: Tensor) -> bool:
    return input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()


class _RoIAlignFunction(torch.autograd.Function):
    """Forward and backward over the same plan; the backward is the transposed matmuls plus an
    ``index_add_`` into a channels-last gradient block, so nothing is saved but the plan."""

    @staticmethod
    def forward(ctx, input, rois, pooled, scale, sampling_ratio, aligned, mode):
        plan = _Plan(input, rois, pooled, scale, sampling_ratio, aligned, mode)
        ctx.plan, ctx.dtype, ctx.channels_last = plan, input.dtype, _is_channels_last(input)
        return _forward(input, plan)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        grad_in = _backward(grad_out, ctx.plan, ctx.dtype, ctx.channels_last)
        return grad_in, None, None, None, None, None, None
