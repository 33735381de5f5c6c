"""TensorFlow's ``tf.image.crop_and_resize`` for NCHW PyTorch tensors, vectorised over boxes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from roi_lab.errors import DTypeError, InputValueError, ShapeError, describe
from roi_lab.ops._checks import check_feature_map, check_finite, check_same_device, pair_size

__all__ = ["crop_and_resize"]

_OP = "crop_and_resize"
_METHODS = ("bilinear", "nearest")
_INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
# Elements of one gathered [K_chunk, CH, CW, C] tensor (at least; see the kernel); it holds ~8 at a time.
_CHUNK_ELEMENTS = 1 << 18


def crop_and_resize(
    image: Tensor,
    boxes: Tensor,
    box_indices: Tensor,
    crop_size: int | tuple[int, int],
    *,
    method: str = "bilinear",
    extrapolation_value: float = 0.0,
) -> Tensor:
    """Crop boxes out of a batch of images and resize each crop, exactly as ``tf.image.crop_and_resize``.

    Args:
        image (Tensor[N, C, H, W]): images or feature maps, float16, bfloat16, float32 or float64,
            on any device and in any memory layout (contiguous, strided views, channels_last).
        boxes (Tensor[K, 4]): ``boxes_norm``, one row (y1, x1, y2, x2) per box in TF's normalized
            coordinates (see Convention). Cast to float32, the dtype TF's kernel takes. Lists are
            converted with ``torch.as_tensor``.
        box_indices (Tensor[K]): integer index of the image each box crops from, in [0, N).
        crop_size (int or (int, int)): (crop_h, crop_w) of every crop; an int means a square crop.
        method (str): ``"bilinear"`` (TF's default) or ``"nearest"``.
        extrapolation_value (float): value of every output pixel whose sample falls outside the image.

    Returns:
        Tensor[K, C, crop_h, crop_w]: the crops, in ``image``'s dtype (TF always returns float32: here
        the arithmetic runs in float32, or float64 for a float64 image, and the result is cast back, so
        float16/bfloat16 crops are TF's values rounded to that dtype). Channels-last images give a
        channels-last result. Differentiable with respect to ``image`` (and, for ``"bilinear"``, to
        ``boxes``, like TF's ``CropAndResizeGradBoxes``) through autograd.

    Raises:
        ShapeError: image not [N, C, H, W] or empty in H/W; boxes not [K, 4] (a torchvision-style
            [K, 5] rois tensor gets a message to split off the batch column); box_indices not [K].
        DTypeError: non-floating image or boxes; non-integer box_indices.
        InputValueError: NaN/inf boxes; a box index outside [0, N); crop size < 1; unknown method.
        DeviceMismatchError: boxes or box_indices on another device than image.

    Convention:
        Corner-aligned sampling, one sample per output pixel. A normalized y maps to the image row
        ``y * (H - 1)``: 0 is the *centre* of the first row and 1 the centre of the last, and integer
        coordinates are pixel centres. Output row i samples ``y1 * (H - 1) + i * (y2 - y1) * (H - 1) /
        (crop_h - 1)``, so the first and last output rows land exactly on y1 and y2 (inclusive ends,
        like ``align_corners=True``); with ``crop_h == 1`` it samples the box centre
        ``0.5 * (y1 + y2) * (H - 1)``. The same holds for x with W. y1 > y2 (or x1 > x2) samples
        backwards: the crop comes out flipped. A sample outside [0, H - 1] x [0, W - 1] makes the
        whole output pixel ``extrapolation_value``; no clamping to the border. Bilinear interpolates
        the top and bottom rows along x, then between them along y; nearest takes the pixel at
        ``roundf`` of each coordinate, halves rounded away from zero (2.5 -> 3, not
        ``torch.round``'s 2).

        With H == 1 every row sample is ``y * 0 = 0``: the single row, whatever the box, never
        extrapolated (likewise W == 1).

        ROIAlign (torchvision, ``aligned=True``) uses the pixel-area model instead: pixel i covers
        [i, i + 1) with its centre at i + 0.5, boxes are in pixels times ``spatial_scale``, and each bin
        averages samples at sub-bin centres, so the box edges themselves are never sampled. A region
        with ROIAlign corners y_a..y_b (feature pixels) is the TF box ``(y_a - 0.5) / (H - 1)`` ..
        ``(y_b - 0.5) / (H - 1)`` (not ``y / H``), and TF then samples its edges as well.

    Example:
        >>> image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # [1, 1, 2, 2]
        >>> boxes_norm = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        >>> crop_and_resize(image, boxes_norm, torch.tensor([0]), 1)
        tensor([[[[2.5000]]]])
        >>> crop_and_resize(image, boxes_norm, torch.tensor([0]), 1, method="nearest")
        tensor([[[[4.]]]])
        >>> crop_and_resize(image, boxes_norm, torch.tensor([0]), 3)[0, 0]
        tensor([[1.0000, 1.5000, 2.0000],
                [2.0000, 2.5000, 3.0000],
                [3.0000, 3.5000, 4.0000]])
    """
    boxes_norm, box_indices, (crop_h, crop_w), method = _validate(image, boxes, box_indices, crop_size, method)
    extrapolation_value = _scalar(extrapolation_value)
    channels_last = image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous()
    crops = _crop_and_resize_kernel(image, boxes_norm, box_indices, crop_h, crop_w, method, extrapolation_value)
    return crops.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _validate(
    image: Tensor, boxes: Tensor, box_indices: Tensor, crop_size: int | tuple[int, int], method: str
) -> tuple[Tensor, Tensor, tuple[int, int], str]:
    """Check every input and return (boxes_norm float32, box_indices int64, (crop_h, crop_w), method)."""
    check_feature_map(image, _OP, "image")
    if image.shape[2] == 0 or image.shape[3] == 0:
        raise ShapeError(
            f"{_OP}(image=...)",
            expected="an image with at least one row and one column",
            got=describe(image),
            fix="check the image or feature map that reaches the op; an empty one has nothing to crop",
        )
    boxes = _as_tensor(boxes, image.device, torch.float32)
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise _boxes_shape_error(boxes)
    if not boxes.is_floating_point():
        raise DTypeError(
            f"{_OP}(boxes=...)",
            expected="floating boxes in normalized coordinates (y1, x1, y2, x2), 0..1 inside the image",
            got=describe(boxes),
            fix="integer boxes are usually pixel coordinates: normalize them, e.g. "
            "boxes_norm, box_indices = roi_lab.to_tf_boxes(boxes_image, image_size=(H, W))",
        )
    num_boxes = boxes.shape[0]
    if not isinstance(box_indices, Tensor):
        box_indices = _as_tensor(box_indices, image.device, None)
        if isinstance(box_indices, Tensor) and box_indices.numel() == 0:
            box_indices = box_indices.long()
    if not isinstance(box_indices, Tensor) or box_indices.dim() != 1 or box_indices.shape[0] != num_boxes:
        raise ShapeError(
            f"{_OP}(box_indices=...)",
            expected=f"Tensor[{num_boxes}], one image index per box (boxes has K = {num_boxes} rows)",
            got=describe(box_indices),
            fix=f"pass one batch index per row of boxes, e.g. torch.zeros({num_boxes}, dtype=torch.int64) "
            "when every box is on image 0",
        )
    if box_indices.dtype not in _INDEX_DTYPES:
        raise DTypeError(
            f"{_OP}(box_indices=...)",
            expected="an integer tensor of image indices (int32 or int64)",
            got=describe(box_indices),
            fix="convert it, e.g. box_indices.long() (round first if the values are not whole numbers)",
        )
    check_same_device(image, boxes, _OP, "image", "boxes")
    check_same_device(image, box_indices, _OP, "image", "box_indices")
    check_finite(boxes, _OP, "boxes")
    _check_index_range(box_indices, image.shape[0])
    crop_size = pair_size(crop_size, _OP, "crop_size")
    if not isinstance(method, str) or method.lower() not in _METHODS:
        raise InputValueError(
            f"{_OP}(method=...)",
            expected="method 'bilinear' or 'nearest' (the two that tf.image.crop_and_resize supports)",
            got=describe(method),
            fix="pass method='bilinear' (TF's default) or method='nearest'",
        )
    return boxes.to(torch.float32), box_indices.long(), crop_size, method.lower()


def _as_tensor(value: object, device: torch.device, dtype: torch.dtype | None) -> object:
    """Lists, tuples and numpy arrays become tensors on ``device`` (as TF converts them); anything else
    is returned unchanged for the shape checks to refuse."""
    if (
        isinstance(value, Tensor)
        or isinstance(value, str)
        or not (isinstance(value, Sequence) or type(value).__module__ == "numpy")
    ):
        return value
    try:
        return torch.as_tensor(value, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError):
        return value


def _boxes_shape_error(boxes: object) -> ShapeError:
    """The error for boxes that are not Tensor[K, 4], with a fix that fits what was passed."""
    expected = "boxes as Tensor[K, 4] normalized (y1, x1, y2, x2), the image of each box given in box_indices"
    if isinstance(boxes, Tensor) and boxes.dim() == 2 and boxes.shape[1] == 5:
        return ShapeError(
            f"{_OP}(boxes=...)",
            expected=expected,
            got=f"{describe(boxes)}, which looks like torchvision rois (batch_index, x1, y1, x2, y2)",
            fix="split off the batch column into box_indices and convert the pixel xyxy corners, e.g. "
            "boxes_norm, box_indices = roi_lab.to_tf_boxes(rois[:, 1:], image_size=(H, W), "
            "box_indices=rois[:, 0].long())",
        )
    if isinstance(boxes, Tensor) and boxes.dim() == 1 and boxes.shape[0] == 4:
        fix = "add the box dimension for a single box: boxes[None]"
    else:
        fix = "pass one row (y1, x1, y2, x2) per box, shaped [K, 4]"
    return ShapeError(f"{_OP}(boxes=...)", expected=expected, got=describe(boxes), fix=fix)


def _check_index_range(box_indices: Tensor, batch: int) -> None:
    """Every box index in [0, N): TF refuses others too ("box_index has values outside [0, batch_size)")."""
    if box_indices.numel() == 0:
        return
    bad = ((box_indices < 0) | (box_indices >= batch)).nonzero()
    if bad.numel() == 0:
        return
    k = int(bad[0, 0])
    value = int(box_indices[k])
    if value < 0:
        fix = "negative indices do not count from the end here (nor in TF); use box_indices % N if you meant that"
    else:
        fix = (
            "index images from 0; if boxes from several batches were concatenated, offset them per batch, "
            "or pass the whole batch as image"
        )
    raise InputValueError(
        f"{_OP}(box_indices=...)",
        expected=f"image indices in [0, {batch - 1}] (image has N = {batch})" if batch else "an image with N >= 1",
        got=f"{int(bad.shape[0])} indices out of range, the first at box {k}: {value}",
        fix=fix,
    )


def _scalar(value: float) -> float:
    """``extrapolation_value`` as a Python float."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise InputValueError(
            f"{_OP}(extrapolation_value=...)",
            expected="a real number",
            got=describe(value),
            fix="pass e.g. extrapolation_value=0.0",
        ) from None


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


def _crop_and_resize_kernel(
    image: Tensor,
    boxes_norm: Tensor,
    box_indices: Tensor,
    crop_h: int,
    crop_w: int,
    method: str,
    extrapolation_value: float,
) -> Tensor:
    """Vectorised over boxes; boxes are processed in chunks so the gathered tensors stay bounded.

    Args:
        image (Tensor[N, C, H, W]): floating image.
        boxes_norm (Tensor[K, 4]): float32 (y1, x1, y2, x2).
        box_indices (Tensor[K]): int64 in [0, N).

    Returns:
        Tensor[K, C, crop_h, crop_w] in image.dtype (a permuted view of a [K, crop_h, crop_w, C] tensor).
    """
    batch, channels, height, width = image.shape
    # One row of C values per pixel; a view for channels_last images, one copy of the map otherwise
    # (never one per box). Gathering whole rows with index_select runs at memcpy speed.
    pixels = image.permute(0, 2, 3, 1).reshape(batch * height * width, channels)  # [N*H*W, C]
    compute_dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    # TF computes every position in float32; so do we, in the same order, to land on the same side of
    # each border and each .5 as TF does.
    pos_y = _sample_positions(boxes_norm[:, 0], boxes_norm[:, 2], height, crop_h)  # [K, CH]
    pos_x = _sample_positions(boxes_norm[:, 1], boxes_norm[:, 3], width, crop_w)  # [K, CW]
    valid_y = (pos_y >= 0) & (pos_y <= height - 1)  # [K, CH]
    valid_x = (pos_x >= 0) & (pos_x <= width - 1)  # [K, CW]
    valid = (valid_y[:, :, None] & valid_x[:, None, :])[..., None]  # [K, CH, CW, 1]
    first_pixel = box_indices * (height * width)  # [K] row of pixel (b, 0, 0)

    def gather(sl: slice, y: Tensor, x: Tensor) -> Tensor:
        """Pixels (y, x) of each box's image: y [k, CH] and x [k, CW] -> [k, CH, CW, C]."""
        index = first_pixel[sl, None, None] + y[:, :, None] * width + x[:, None, :]  # [k, CH, CW]
        return pixels.index_select(0, index.reshape(-1)).view(*index.shape, channels).to(compute_dtype)

    num_boxes = boxes_norm.shape[0]
    # A chunk at least the size of the map: each chunk's backward scatters into a map-sized gradient, so
    # smaller chunks would cost more in backward than they save; peak memory stays a few maps' worth.
    chunk = max(1, max(_CHUNK_ELEMENTS, image.numel()) // max(crop_h * crop_w * channels, 1))
    crops = []
    for start in range(0, max(num_boxes, 1), chunk):
        sl = slice(start, start + chunk)
        if method == "nearest":
            out = gather(sl, _round_half_away(pos_y[sl], height), _round_half_away(pos_x[sl], width))  # [k, CH, CW, C]
        else:
            top, bottom, y_lerp = _floor_ceil_lerp(pos_y[sl], height)  # [k, CH] each
            left, right, x_lerp = _floor_ceil_lerp(pos_x[sl], width)  # [k, CW] each
            x_lerp = x_lerp[:, None, :, None].to(compute_dtype)  # [k, 1, CW, 1]
            y_lerp = y_lerp[:, :, None, None].to(compute_dtype)  # [k, CH, 1, 1]
            top_left, top_right = gather(sl, top, left), gather(sl, top, right)  # [k, CH, CW, C] each
            bottom_left, bottom_right = gather(sl, bottom, left), gather(sl, bottom, right)  # [k, CH, CW, C] each
            # TF's exact expression: lerp along x on the top and bottom rows, then along y.
            # a + (b - a) * w with TF's roundings (torch.lerp and addcmul round differently); the in-place
            # add only saves an allocation.
            upper = ((top_right - top_left) * x_lerp).add_(top_left)  # [k, CH, CW, C]
            lower = ((bottom_right - bottom_left) * x_lerp).add_(bottom_left)  # [k, CH, CW, C]
            out = ((lower - upper) * y_lerp).add_(upper)  # [k, CH, CW, C]
        crops.append(out.masked_fill_(~valid[sl], extrapolation_value).to(image.dtype))  # [k, CH, CW, C]
    crops_nhwc = crops[0] if len(crops) == 1 else torch.cat(crops)  # [K, CH, CW, C]
    return crops_nhwc.permute(0, 3, 1, 2)  # [K, C, CH, CW]


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
