"""``crop_and_resize``: TensorFlow's ``tf.image.crop_and_resize`` for NCHW tensors, as a registered
PyTorch op.

This module is the registration layer; the numbers come from the private kernel in
:mod:`roi_lab.ops._crop_and_resize_kernel` (``crop_and_resize_forward`` / ``_backward`` /
``_double_backward``), called only from the registered ops' real implementations:

- :func:`crop_and_resize`, the public function: validate, convert lists / numpy arrays, call
  ``torch.ops.roi_lab.crop_and_resize``;
- ``roi_lab::crop_and_resize``, ``roi_lab::_crop_and_resize_backward`` and
  ``roi_lab::_crop_and_resize_double_backward``, registered with ``torch.library``: fake (meta)
  implementations, registered autograd (first and second derivatives; third ones refused);
- the data checks (finite boxes, box indices in [0, N), the output budget) run only in the real
  implementation: the same errors in eager mode, no graph break in a compiled one;
- ONNX export is refused clearly: ONNX has no op with TF's corner-aligned, per-box sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from roi_lab.errors import DTypeError, InputValueError, NotSupportedError, ShapeError, describe
from roi_lab.ops import _crop_and_resize_kernel as _kernel
from roi_lab.ops._checks import (
    as_float,
    check_feature_map,
    check_finite,
    check_output_budget,
    check_same_device,
    pair_size,
)
from roi_lab.ops._library import dispatch_torch_function, onnx_error, tensor_args

__all__ = ["crop_and_resize"]

_OP = "crop_and_resize"
_METHODS = ("bilinear", "nearest")
_INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


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

        ``crop_size`` also takes numpy integers, ``extrapolation_value`` numpy floats and 0-d tensors.

    Returns:
        Tensor[K, C, crop_h, crop_w]: the crops, in ``image``'s dtype (TF always returns float32: here
        the arithmetic runs in float32, or float64 for a float64 image, and the result is cast back, so
        float16/bfloat16 crops are TF's values rounded to that dtype). Channels-last images give a
        channels-last result. Differentiable with respect to ``image`` (and, for ``"bilinear"``, to
        ``boxes``, like TF's ``CropAndResizeGradBoxes``) through autograd, twice; a registered op, so
        ``torch.compile(fullgraph=True)`` and ``torch.export`` keep it whole (and TF-exact).

    Raises:
        ShapeError: (also an ``AssertionError``) image not [N, C, H, W] or empty in H/W; boxes not
            [K, 4] (a torchvision-style [K, 5] rois tensor gets a message to split off the batch
            column); box_indices not [K].
        DTypeError: non-floating image or boxes; non-integer box_indices.
        InputValueError: NaN/inf boxes; a box index outside [0, N); crop size < 1; unknown method;
            an output of more than ``roi_lab.ops.MAX_OUTPUT_ELEMENTS`` elements (2**28: 1 GiB of
            float32; raise it to pool more).
        DeviceMismatchError: boxes or box_indices on another device than image.
        NotSupportedError: (also a ``RuntimeError``) ONNX export (ONNX has no op with TF's sampling),
            and third derivatives.

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
    handled, result = dispatch_torch_function(
        crop_and_resize, tensor_args(image, boxes, box_indices), image, boxes, box_indices, crop_size,
        method=method, extrapolation_value=extrapolation_value,
    )  # fmt: skip
    if handled:  # a torch.fx proxy or a tensor subclass took the call
        return result
    boxes_norm, box_indices, (crop_h, crop_w), method = _validate(image, boxes, box_indices, crop_size, method)
    extrapolation_value = _scalar(extrapolation_value)
    if torch.onnx.is_in_onnx_export():
        raise _onnx_refusal()
    if method == "nearest":  # piecewise constant in the boxes: no box gradient (TF's is the bilinear one)
        boxes_norm = boxes_norm.detach()
    return torch.ops.roi_lab.crop_and_resize(
        image, boxes_norm, box_indices, crop_h, crop_w, method, extrapolation_value
    )


# --------------------------------------------------------------------------------------------------
# validation and normalisation (static: types, shapes, dtypes, devices; safe to trace)


def _validate(
    image: Tensor, boxes: Tensor, box_indices: Tensor, crop_size: int | tuple[int, int], method: str
) -> tuple[Tensor, Tensor, tuple[int, int], str]:
    """Check every input's type, shape, dtype and device and return (boxes_norm float32, box_indices
    int64, (crop_h, crop_w), method). Values are checked by the op."""
    check_feature_map(image, _OP, "image", what="an image")
    boxes = _as_tensor(boxes, image.device, torch.float32)
    if not isinstance(box_indices, Tensor):
        box_indices = _as_tensor(box_indices, image.device, None)
        if isinstance(box_indices, Tensor) and box_indices.numel() == 0:
            box_indices = box_indices.long()
    _check_boxes(image, boxes, box_indices)
    crop_size = pair_size(crop_size, _OP, "crop_size")
    _check_method(method)
    return boxes.to(torch.float32), box_indices.long(), crop_size, method.lower()


def _check_boxes(image: Tensor, boxes: object, box_indices: object) -> None:
    """boxes a floating Tensor[K, 4], box_indices an integer Tensor[K], both on image's device."""
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


def _check_method(method: object) -> None:
    if not isinstance(method, str) or method.lower() not in _METHODS:
        raise InputValueError(
            f"{_OP}(method=...)",
            expected="method 'bilinear' or 'nearest' (the two that tf.image.crop_and_resize supports)",
            got=describe(method),
            fix="pass method='bilinear' (TF's default) or method='nearest'",
        )


def _check_op_args(image: Tensor, boxes: Tensor, box_indices: Tensor, crop_h: int, crop_w: int, method: str) -> None:
    """The static checks of the op itself (direct ``torch.ops.roi_lab.crop_and_resize`` calls)."""
    check_feature_map(image, _OP, "image", what="an image")
    _check_boxes(image, boxes, box_indices)
    pair_size((crop_h, crop_w), _OP, "crop_size")
    _check_method(method)


def _as_tensor(value: object, device: torch.device, dtype: torch.dtype | None) -> Any:
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


def _scalar(value: object) -> float:
    """``extrapolation_value`` as a Python float (numpy scalars and 0-d tensors included)."""
    number = as_float(value)
    if number is None:
        raise InputValueError(
            f"{_OP}(extrapolation_value=...)",
            expected="a real number",
            got=describe(value),
            fix="pass e.g. extrapolation_value=0.0",
        )
    return number


def _onnx_refusal() -> NotSupportedError:
    return onnx_error(
        "crop_and_resize",
        expected="an op with an ONNX equivalent: ONNX has none with TF's sampling (RoiAlign averages "
        "half-pixel bins, Resize's 'tf_crop_and_resize' crops one box of the whole tensor)",
        got="crop_and_resize in the traced model",
        fix="keep crop_and_resize outside the exported graph (crop after the ONNX model), or pool with "
        "roi_lab.roi_align, which exports to ONNX RoiAlign",
    )


# --------------------------------------------------------------------------------------------------
# data checks (read tensor values: only in the op's real implementation)


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


def _check_values(image: Tensor, boxes: Tensor, box_indices: Tensor, crop_h: int, crop_w: int) -> None:
    check_finite(boxes, _OP, "boxes")
    _check_index_range(box_indices, image.shape[0])
    check_output_budget(
        (boxes.shape[0], image.shape[1], crop_h, crop_w), _OP, "crop fewer boxes per call, or a smaller crop_size"
    )


# --------------------------------------------------------------------------------------------------
# the registered ops


@torch.library.custom_op("roi_lab::crop_and_resize", mutates_args=())
def _crop_and_resize_op(
    image: Tensor,
    boxes: Tensor,
    box_indices: Tensor,
    crop_height: int,
    crop_width: int,
    method: str,
    extrapolation_value: float,
) -> Tensor:
    _check_op_args(image, boxes, box_indices, crop_height, crop_width, method)
    _check_values(image, boxes, box_indices, crop_height, crop_width)
    return _kernel.crop_and_resize_forward(
        image, boxes.float(), box_indices.long(), crop_height, crop_width, method.lower(), extrapolation_value
    )


@_crop_and_resize_op.register_fake
def _crop_and_resize_fake(image, boxes, box_indices, crop_height, crop_width, method, extrapolation_value):
    _check_op_args(image, boxes, box_indices, crop_height, crop_width, method)
    if torch.onnx.is_in_onnx_export():  # the dynamo exporter's strict fallback comes here, not to the wrapper
        raise _onnx_refusal()
    shape = (boxes.shape[0], image.shape[1], crop_height, crop_width)
    return image.new_empty(shape).contiguous(memory_format=_kernel.output_format(image))


@torch.library.custom_op("roi_lab::_crop_and_resize_backward", mutates_args=())
def _crop_and_resize_backward_op(
    grad: Tensor,
    image: Tensor,
    boxes: Tensor,
    box_indices: Tensor,
    crop_height: int,
    crop_width: int,
    method: str,
    extrapolation_value: float,
) -> tuple[Tensor, Tensor]:
    """(grad of image, laid out like the image; grad of boxes as float32)."""
    grad_image, grad_boxes = _kernel.crop_and_resize_backward(
        grad, image, boxes.float(), box_indices.long(), crop_height, crop_width, method.lower(), extrapolation_value
    )
    return grad_image.contiguous(memory_format=_kernel.output_format(image)), grad_boxes.contiguous()


@_crop_and_resize_backward_op.register_fake
def _crop_and_resize_backward_fake(grad, image, boxes, box_indices, crop_height, crop_width, method,
                                   extrapolation_value):  # fmt: skip
    return _like(image), boxes.new_empty(boxes.shape, dtype=torch.float32)


@torch.library.custom_op("roi_lab::_crop_and_resize_double_backward", mutates_args=())
def _crop_and_resize_double_backward_op(
    grad: Tensor,
    image: Tensor,
    boxes: Tensor,
    box_indices: Tensor,
    crop_height: int,
    crop_width: int,
    method: str,
    extrapolation_value: float,
    grad_grad_image: Tensor,
    grad_grad_boxes: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """The derivatives of the backward's outputs: (d grad, d image, d boxes), laid out like their inputs."""
    d_grad, d_image, d_boxes = _kernel.crop_and_resize_double_backward(
        grad, image, boxes.float(), box_indices.long(), crop_height, crop_width, method.lower(),
        extrapolation_value, grad_grad_image, grad_grad_boxes,
    )  # fmt: skip
    layout = _kernel.output_format
    return d_grad.contiguous(memory_format=layout(grad)), d_image.contiguous(memory_format=layout(image)), d_boxes


@_crop_and_resize_double_backward_op.register_fake
def _crop_and_resize_double_backward_fake(grad, image, boxes, box_indices, crop_height, crop_width, method,
                                          extrapolation_value, grad_grad_image, grad_grad_boxes):  # fmt: skip
    return _like(grad), _like(image), boxes.new_empty(boxes.shape, dtype=torch.float32)


def _like(t: Tensor) -> Tensor:
    """An empty tensor shaped and laid out (contiguous or channels_last) as the real ops return."""
    return t.new_empty(t.shape).contiguous(memory_format=_kernel.output_format(t))


def _setup_context(ctx, inputs, output) -> None:
    image, boxes, box_indices, *options = inputs  # options: crop_height, crop_width, method, extrapolation
    ctx.options = tuple(options)
    ctx.save_for_backward(image, boxes, box_indices)


def _backward(ctx, grad: Tensor):
    image, boxes, box_indices = ctx.saved_tensors
    needs = ctx.needs_input_grad[:2]
    if not any(needs):
        return (None,) * 7
    grad_image, grad_boxes = torch.ops.roi_lab._crop_and_resize_backward(grad, image, boxes, box_indices, *ctx.options)
    return grad_image if needs[0] else None, grad_boxes.to(boxes.dtype) if needs[1] else None, *(None,) * 5


def _setup_backward_context(ctx, inputs, output) -> None:
    grad, image, boxes, box_indices, *options = inputs[:8]
    ctx.options = tuple(options)
    ctx.save_for_backward(grad, image, boxes, box_indices)


def _double_backward(ctx, grad_grad_image: Tensor | None, grad_grad_boxes: Tensor | None):
    grad, image, boxes, box_indices = ctx.saved_tensors
    if grad_grad_image is None:
        grad_grad_image = torch.zeros_like(image)
    if grad_grad_boxes is None:
        grad_grad_boxes = torch.zeros(boxes.shape, dtype=torch.float32, device=boxes.device)
    d_grad, d_image, d_boxes = torch.ops.roi_lab._crop_and_resize_double_backward(
        grad, image, boxes, box_indices, *ctx.options, grad_grad_image, grad_grad_boxes
    )
    return d_grad, d_image, d_boxes.to(boxes.dtype), *(None,) * 5


def _third_derivative(ctx, *grads):
    raise NotSupportedError(
        "crop_and_resize backward",
        expected="first and second derivatives (TF registers none beyond the first)",
        got="a request for a third derivative",
        fix="stop the gradient at one of the earlier derivatives (e.g. .detach() the gradient penalty's input)",
    )


_crop_and_resize_op.register_autograd(_backward, setup_context=_setup_context)
_crop_and_resize_backward_op.register_autograd(_double_backward, setup_context=_setup_backward_context)
_crop_and_resize_double_backward_op.register_autograd(_third_derivative, setup_context=lambda ctx, inputs, output: None)
