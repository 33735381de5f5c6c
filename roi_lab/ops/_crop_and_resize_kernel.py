"""The private numeric kernel of ``crop_and_resize``: TensorFlow's ``tf.image.crop_and_resize`` for
NCHW tensors, vectorised over boxes, in TF's order of float32 operations (bit-exact on the CPU).

No validation, no registration: ``roi_lab.ops.crop_and_resize`` checks the inputs and calls these from
its registered ops' real implementations:

- :func:`crop_and_resize_forward` (image, boxes, box indices) -> crops;
- :func:`crop_and_resize_backward`, the gradients of image and boxes: the vector-Jacobian product of
  the forward, replayed under ``torch.func.vjp`` (the forward's own graph does not cross the op
  boundary);
- :func:`crop_and_resize_double_backward`, their derivatives in turn (a vjp of that vjp).

Boxes are processed in chunks, and one box's crop in chunks of rows, so the gathered intermediates stay
within a few maps' worth of memory whatever the crop size.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["crop_and_resize_forward", "crop_and_resize_backward", "crop_and_resize_double_backward"]

# Elements of one gathered [K_chunk, CH_chunk, CW, C] tensor (at least; see the kernel); it holds ~8 at a time.
_CHUNK_ELEMENTS = 1 << 18
# The forward alone (no graph recorded) works in chunks of about this many elements, in place: the four
# gathered corners and the lerps of one chunk (~1 MiB in float32) stay in a core's cache between the ops,
# where map-sized chunks stream every intermediate through memory (~3x slower on the benchmark case).
_FORWARD_CHUNK_ELEMENTS = 1 << 17


def pixel_rows(image: Tensor) -> Tensor:
    """One row of C values per pixel, Tensor[N*H*W, C]: a view for a channels_last image, else one copy of
    the map (never one per box). Gathering whole rows with index_select runs at memcpy speed."""
    n, c, h, w = image.shape
    return image.permute(0, 2, 3, 1).reshape(n * h * w, c)


def _sample_positions(lo: Tensor, hi: Tensor, size: int, crop: int) -> Tensor:
    """Sample coordinates along one axis, in float32 and in TF's order of operations.

    Args:
        lo (Tensor[K]): y1 (or x1), normalized.
        hi (Tensor[K]): y2 (or x2), normalized.
        size (int): H (or W).
        crop (int): crop_h (or crop_w).

    Returns:
        Tensor[K, crop]: the pixel coordinate each output row (column) samples.
    """
    if crop == 1:
        return (0.5 * (lo + hi) * (size - 1))[:, None]  # [K, 1]
    scale = (hi - lo) * (size - 1) / (crop - 1)  # [K]
    steps = torch.arange(crop, dtype=lo.dtype, device=lo.device)  # [crop]
    return lo[:, None] * (size - 1) + steps * scale[:, None]  # [K, crop]


def _kernel(
    image: Tensor,
    boxes_norm: Tensor,
    box_indices: Tensor,
    crop_h: int,
    crop_w: int,
    method: str,
    extrapolation_value: float,
    in_place: bool = False,
) -> Tensor:
    """Vectorised over boxes; boxes (and the rows of a large crop) are processed in chunks so the
    gathered tensors stay bounded. Plain differentiable torch ops: the backward replays it.

    ``in_place=True`` (the forward, where no graph is recorded) computes in small cache-sized chunks and
    overwrites the gathered corners; the same operations in the same order, so the same bits.

    Args:
        image (Tensor[N, C, H, W]): floating image, H, W >= 1.
        boxes_norm (Tensor[K, 4]): float32 (y1, x1, y2, x2), finite.
        box_indices (Tensor[K]): int64 in [0, N).

    Returns:
        Tensor[K, C, crop_h, crop_w] in image.dtype (a permuted view of a [K, crop_h, crop_w, C] tensor).
    """
    batch, channels, height, width = image.shape
    pixels, compute_dtype, (pos_y, valid_y), (pos_x, valid_x) = _sampling(image, boxes_norm, crop_h, crop_w)
    first_pixel = box_indices * (height * width)  # [K] row of pixel (b, 0, 0)

    def gather(sl: slice, y: Tensor, x: Tensor) -> Tensor:
        """Pixels (y, x) of each box's image: y [k, ch] and x [k, CW] -> [k, ch, CW, C]."""
        index = first_pixel[sl, None, None] + y[:, :, None] * width + x[:, None, :]  # [k, ch, CW]
        return pixels.index_select(0, index.reshape(-1)).view(*index.shape, channels).to(compute_dtype)

    num_boxes = boxes_norm.shape[0]
    # A chunk at least the size of the map: each chunk's backward scatters into a map-sized gradient, so
    # smaller chunks would cost more in backward than they save; peak memory stays a few maps' worth.
    # A box whose crop alone exceeds the chunk gets a chunk of its own, cut into row blocks.
    budget = _FORWARD_CHUNK_ELEMENTS if in_place else max(_CHUNK_ELEMENTS, image.numel())
    crops_nhwc = image.new_empty((num_boxes, crop_h, crop_w, channels))  # [K, CH, CW, C]
    for sl, rs in _chunks(num_boxes, crop_h, crop_w * channels, budget):
        py, px = pos_y[sl, rs], pos_x[sl]  # [k, ch], [k, CW]
        if method == "nearest":
            out = gather(sl, _round_half_away(py, height), _round_half_away(px, width))  # [k, ch, CW, C]
        else:
            top, bottom, y_lerp = _floor_ceil_lerp(py, height)  # [k, ch] each
            left, right, x_lerp = _floor_ceil_lerp(px, width)  # [k, CW] each
            x_lerp = x_lerp[:, None, :, None].to(compute_dtype)  # [k, 1, CW, 1]
            y_lerp = y_lerp[:, :, None, None].to(compute_dtype)  # [k, ch, 1, 1]
            top_left, top_right = gather(sl, top, left), gather(sl, top, right)  # [k, ch, CW, C] each
            bottom_left, bottom_right = gather(sl, bottom, left), gather(sl, bottom, right)  # [k, ch, CW, C] each
            # TF's exact expression: lerp along x on the top and bottom rows, then along y.
            upper = _tf_lerp(top_left, top_right, x_lerp, in_place)  # [k, ch, CW, C]
            lower = _tf_lerp(bottom_left, bottom_right, x_lerp, in_place)  # [k, ch, CW, C]
            out = _tf_lerp(upper, lower, y_lerp, in_place)  # [k, ch, CW, C]
        crops_nhwc[sl, rs] = out.masked_fill_(_outside(valid_y, valid_x, sl, rs), extrapolation_value)  # to dtype
    return crops_nhwc.permute(0, 3, 1, 2)  # [K, C, CH, CW]


def _sampling(image: Tensor, boxes_norm: Tensor, crop_h: int, crop_w: int):
    """What both passes start from: (the map as pixel rows Tensor[N*H*W, C], the compute dtype, (pos_y
    Tensor[K, CH], valid_y), (pos_x Tensor[K, CW], valid_x)): every sample's coordinate and whether it is
    inside the image.

    TF computes every position in float32; so do we, in the same order, to land on the same side of each
    border and each .5 as TF does.
    """
    height, width = image.shape[2:]
    compute_dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    pos_y = _sample_positions(boxes_norm[:, 0], boxes_norm[:, 2], height, crop_h)  # [K, CH]
    pos_x = _sample_positions(boxes_norm[:, 1], boxes_norm[:, 3], width, crop_w)  # [K, CW]
    valid_y = (pos_y >= 0) & (pos_y <= height - 1)  # [K, CH]
    valid_x = (pos_x >= 0) & (pos_x <= width - 1)  # [K, CW]
    return pixel_rows(image), compute_dtype, (pos_y, valid_y), (pos_x, valid_x)


def _chunks(num_boxes: int, crop_h: int, per_row: int, budget: int):
    """(box slice, crop-row slice) of every chunk: as many boxes as ``budget`` elements hold at
    ``per_row`` elements per crop row, and a box whose crop alone exceeds it cut into row blocks."""
    per_row = max(per_row, 1)
    chunk = max(1, budget // (crop_h * per_row))
    rows = crop_h if chunk > 1 else max(1, budget // per_row)
    for start in range(0, num_boxes, chunk):
        for r0 in range(0, crop_h, rows):
            yield slice(start, start + chunk), slice(r0, r0 + rows)


def _outside(valid_y: Tensor, valid_x: Tensor, sl: slice, rs: slice) -> Tensor:
    """The samples of a chunk outside the image, Tensor[k, ch, CW, 1] bool (they take the extrapolation
    value)."""
    return ~(valid_y[sl, rs, None] & valid_x[sl, None, :])[..., None]


def crop_and_resize_forward(
    image: Tensor,
    boxes_norm: Tensor,
    box_indices: Tensor,
    crop_h: int,
    crop_w: int,
    method: str,
    extrapolation_value: float,
) -> Tensor:
    """The crops, on checked inputs (see :func:`_kernel`), laid out like ``image``: Tensor[K, C, CH, CW],
    channels_last for a channels_last image, else contiguous."""
    with torch.no_grad():  # the registered op's autograd formula replays the kernel for the backward
        if method == "bilinear":
            return _bilinear_forward(image, boxes_norm, box_indices, crop_h, crop_w, extrapolation_value)
        crops = _kernel(image, boxes_norm, box_indices, crop_h, crop_w, method, extrapolation_value, in_place=True)
    return crops.contiguous(memory_format=output_format(image))


def _bilinear_forward(
    image: Tensor, boxes_norm: Tensor, box_indices: Tensor, crop_h: int, crop_w: int, extrapolation_value: float
) -> Tensor:
    """The bilinear forward alone (no graph): :func:`_kernel`'s float operations in its order, fused.

    Per cache-sized chunk of boxes and crop rows: one gather of the four corners as
    [k, ch, 2 (top, bottom), CW, 2 (left, right), C], the x lerp of the top and bottom rows in one set
    of in-place ops, the y lerp, its last add written straight into the crops. Each output is
    ``upper + (lower - upper) * y_lerp`` with ``upper = top_left + (top_right - top_left) * x_lerp``
    (and ``lower`` likewise), the same rounded float32 operations as TensorFlow's kernel: the same bits.
    (TensorFlow does the seven operations per output in one pass; eager PyTorch needs one pass per op,
    which is what keeps this at 1.5-4x TensorFlow's time.)

    Returns:
        Tensor[K, C, CH, CW] in ``image.dtype``, laid out like ``image`` (see :func:`output_format`).
    """
    batch, channels, height, width = image.shape
    num_boxes = boxes_norm.shape[0]
    pixels, compute_dtype, (pos_y, valid_y), (pos_x, valid_x) = _sampling(image, boxes_norm, crop_h, crop_w)
    # one host sync per call: whether any sample is outside the image (then each chunk is masked)
    masked = num_boxes > 0 and not bool(valid_y.all() & valid_x.all())
    top, bottom, y_lerp = _floor_ceil_lerp(pos_y, height)  # [K, CH] each
    left, right, x_lerp = _floor_ceil_lerp(pos_x, width)  # [K, CW] each
    row = torch.stack([top, bottom], 2) * width + (box_indices * (height * width))[:, None, None]  # [K, CH, 2]
    column = torch.stack([left, right], 2)  # [K, CW, 2]
    y_lerp, x_lerp = y_lerp.to(compute_dtype), x_lerp.to(compute_dtype)
    # the crops as [K, CH, CW, C] rows of channels (for an NCHW image permuted once at the end: a strided
    # write of every chunk into NCHW crops measured slower than that one copy)
    out_nhwc = image.new_empty((num_boxes, crop_h, crop_w, channels))
    direct = compute_dtype == image.dtype  # the last add can write the crops itself
    # the four corner tensors of _kernel's forward chunks, as one
    for sl, rs in _chunks(num_boxes, crop_h, 4 * crop_w * channels, 4 * _FORWARD_CHUNK_ELEMENTS):
        index = row[sl, rs, :, None, None] + column[sl, None, None]  # [k, ch, 2, CW, 2]
        corners = pixels.index_select(0, index.reshape(-1)).view(*index.shape[:4], 2, channels)
        corners = corners.to(compute_dtype)  # [k, ch, 2, CW, 2, C]; a no-op for float32 / float64
        lo, hi = corners[:, :, :, :, 0], corners[:, :, :, :, 1]  # [k, ch, 2, CW, C] views: left, right
        lerped = hi.sub_(lo).mul_(x_lerp[sl, None, None, :, None]).add_(lo)  # top and bottom rows: x lerp
        upper, lower = lerped[:, :, 0], lerped[:, :, 1]  # [k, ch, CW, C] each
        diff = lower.sub_(upper).mul_(y_lerp[sl, rs, None, None])
        target = out_nhwc[sl, rs]  # [k, ch, CW, C], a view of the output
        crop = torch.add(diff, upper, out=target) if direct else diff.add_(upper)
        if masked:
            crop.masked_fill_(_outside(valid_y, valid_x, sl, rs), extrapolation_value)
        if not direct:
            target.copy_(crop)  # cast to image.dtype, as _kernel
    return out_nhwc.permute(0, 3, 1, 2).contiguous(memory_format=output_format(image))


def output_format(image: Tensor) -> torch.memory_format:
    """The layout of the crops (and of gradients of ``image``-like tensors): channels_last for a
    channels_last (and not also contiguous) tensor, else contiguous."""
    channels_last = image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def crop_and_resize_backward(
    grad: Tensor,
    image: Tensor,
    boxes_norm: Tensor,
    box_indices: Tensor,
    crop_h: int,
    crop_w: int,
    method: str,
    extrapolation_value: float,
) -> tuple[Tensor, Tensor]:
    """(grad of image Tensor[N, C, H, W], grad of boxes Tensor[K, 4] float32) for the crops' gradient
    ``grad``: the vector-Jacobian product of :func:`_kernel`, by ``torch.func.vjp`` (which, unlike
    ``torch.autograd``, also records inside a registered op's implementation)."""
    _, vjp = torch.func.vjp(
        lambda im, bx: _kernel(im, bx, box_indices, crop_h, crop_w, method, extrapolation_value), image, boxes_norm
    )
    return vjp(grad)


def crop_and_resize_double_backward(
    grad: Tensor,
    image: Tensor,
    boxes_norm: Tensor,
    box_indices: Tensor,
    crop_h: int,
    crop_w: int,
    method: str,
    extrapolation_value: float,
    grad_grad_image: Tensor,
    grad_grad_boxes: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """The derivatives of the backward's (grad_image, grad_boxes) against cotangents (grad_grad_image,
    grad_grad_boxes): (d grad Tensor[K, C, CH, CW], d image Tensor[N, C, H, W], d boxes Tensor[K, 4])."""
    args = (crop_h, crop_w, method, extrapolation_value)
    _, vjp = torch.func.vjp(
        lambda g, im, bx: crop_and_resize_backward(g, im, bx, box_indices, *args), grad, image, boxes_norm
    )
    return vjp((grad_grad_image, grad_grad_boxes))


def _tf_lerp(a: Tensor, b: Tensor, weight: Tensor, in_place: bool) -> Tensor:
    """``a + (b - a) * weight`` with TF's roundings (torch.lerp and addcmul round differently).

    ``in_place`` overwrites ``b`` (no graph is recorded then); otherwise ``b - a`` stays intact for the
    gradient of ``weight``. Either way each step is the same rounded float operation: the same bits.
    """
    diff = b.sub_(a) if in_place else b - a
    return (diff.mul_(weight) if in_place else diff * weight).add_(a)


def _floor_ceil_lerp(pos: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """floorf / ceilf indices (clamped into the image so that invalid samples still index safely) and
    the lerp weight ``pos - floor(pos)``; all [k, n]."""
    low = pos.floor()
    lerp = pos - low
    low_index = low.clamp(0, size - 1).long()
    high_index = pos.ceil().clamp(0, size - 1).long()
    return low_index, high_index, lerp


def _round_half_away(pos: Tensor, size: int) -> Tensor:
    """C's ``roundf`` for the non-negative in-range positions (2.5 -> 3), clamped into the image.

    ``floor(pos + 0.5)`` would be wrong for 0.49999997 in float32, so the fraction is compared instead.
    """
    low = pos.floor()
    index = low + (pos - low >= 0.5).to(pos.dtype)
    return index.clamp(0, size - 1).long()
