"""``roi_pool``: torchvision's RoIPool (Fast R-CNN's quantized max pooling) as a registered PyTorch op.

The registration layer; the numbers come from :mod:`roi_lab.ops._roi_pool_kernel`. Here: the public
:func:`roi_pool` (validate, normalise a list of boxes to rois, call ``torch.ops.roi_lab.roi_pool``), the
registered ``roi_lab::roi_pool`` and ``roi_lab::_roi_pool_backward`` with fake implementations and
autograd (a second derivative too: the backward is linear in its incoming gradient), and
:class:`RoIPool`, the module. Not exported to ONNX (torchvision writes ``MaxRoiPool``); use
:func:`roi_lab.roi_align` in models meant for export.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from roi_lab.ops import _roi_pool_kernel as _kernel
from roi_lab.ops._checks import as_float, check_feature_map, check_output_budget, pair_size
from roi_lab.ops._library import dispatch_torch_function, tensor_args
from roi_lab.ops._rois import check_rois_tensor, check_scale, checked_rois, rois_from_boxes

__all__ = ["roi_pool", "RoIPool"]

_OP = "roi_pool"


def roi_pool(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """Max-pool a fixed grid of quantized bins from every box, exactly like ``torchvision.ops.roi_pool``.

    Args:
        input (Tensor[N, C, H, W]): feature map, float16 / bfloat16 / float32 / float64, any memory
            format. Differentiable (twice).
        boxes (Tensor[K, 5] or list[Tensor[L, 4]]): ``(batch_index, x1, y1, x2, y2)`` rows, or one
            ``(x1, y1, x2, y2)`` tensor per image, in image px; cast to ``input.dtype`` first, as torchvision
            requires. No gradient flows to boxes.
        output_size (int or (PH, PW)): bins per box.
        spatial_scale (float): feature px per image px, ``1 / stride``.

    Returns:
        Tensor[K, C, PH, PW]: contiguous, in ``input.dtype``.

    Raises:
        ShapeError, DTypeError, InputValueError, DeviceMismatchError: as :func:`roi_lab.roi_align` does.

    Convention:
        - quantized, not interpolated: ``start = round(x1 * spatial_scale)`` and ``end = round(x2 *
          spatial_scale)`` (half away from zero), both ends inclusive: ``roi_w = max(end - start + 1, 1)``
          cells, a box a cell wider than its float extent;
        - bin ``pw`` covers cells ``[floor(pw * roi_w / PW), ceil((pw + 1) * roi_w / PW))`` after ``start``
          (bins may overlap by a cell), clipped to the map; the output is the max over those cells, the
          gradient goes to the first maximum in row-major order; an empty bin (entirely off the map) is 0;
        - the bin bounds are computed in ``input.dtype`` (float32 for float16 / bfloat16 maps), as
          torchvision's kernel does (torchvision/csrc/ops/cpu/roi_pool_kernel.cpp; it has no CPU half).
        - versus :func:`roi_lab.roi_align`: RoIPool snaps each box to whole cells (up to half a cell off
          per edge, plus the ``+1``), so its crops shift by up to a cell; ROIAlign samples the box exactly.

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> roi_pool(x, torch.tensor([[0.0, 0, 0, 1, 1]]), 1)
        tensor([[[[5.]]]])
    """
    handled, result = dispatch_torch_function(
        roi_pool, tensor_args(input, boxes), input, boxes, output_size, spatial_scale
    )
    if handled:
        return result
    check_feature_map(input, _OP)
    rois = rois_from_boxes(input, boxes, _OP)  # [K, 5]; values are checked by the op
    ph, pw = pair_size(output_size, _OP, "output_size")
    scale = as_float(spatial_scale)
    check_scale(_OP, scale, spatial_scale)
    return torch.ops.roi_lab.roi_pool(input, rois, scale, ph, pw)[0]


class RoIPool(nn.Module):
    """Drop-in for ``torchvision.ops.RoIPool`` running on :func:`roi_pool`.

    Example:
        >>> RoIPool((7, 7), spatial_scale=1 / 16)
        RoIPool(output_size=(7, 7), spatial_scale=0.0625)
    """

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        """Pool ``rois`` (Tensor[K, 5] or list of Tensor[L, 4]) from ``input``: Tensor[K, C, PH, PW]."""
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale})"


def _check_op_args(input: Tensor, rois: Tensor, spatial_scale: float, ph: int, pw: int) -> None:
    check_feature_map(input, _OP)
    check_rois_tensor(input, rois, _OP)
    pair_size((ph, pw), _OP, "output_size")
    check_scale(_OP, spatial_scale, spatial_scale)


@torch.library.custom_op("roi_lab::roi_pool", mutates_args=())
def _roi_pool_op(
    input: Tensor, rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int
) -> tuple[Tensor, Tensor]:
    _check_op_args(input, rois, spatial_scale, pooled_height, pooled_width)
    batch, boxes = checked_rois(input, rois, _OP)
    check_output_budget((rois.shape[0], input.shape[1], pooled_height, pooled_width), _OP, "pool fewer boxes per call")
    return _kernel.roi_pool_forward(input, batch, boxes, (pooled_height, pooled_width), spatial_scale)


@_roi_pool_op.register_fake
def _roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    _check_op_args(input, rois, spatial_scale, pooled_height, pooled_width)
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int64)


@torch.library.custom_op("roi_lab::_roi_pool_backward", mutates_args=())
def _roi_pool_backward_op(
    grad: Tensor, rois: Tensor, argmax: Tensor, batch_size: int, channels: int, height: int, width: int
) -> Tensor:
    """The gradient of the map from the forward's argmax (the rois were checked there)."""
    return _kernel.roi_pool_backward(grad, rois[:, 0].long(), argmax, (batch_size, channels, height, width))


@_roi_pool_backward_op.register_fake
def _roi_pool_backward_fake(grad, rois, argmax, batch_size, channels, height, width):
    return grad.new_empty((batch_size, channels, height, width))


def _setup_context(ctx, inputs, output) -> None:
    input, rois, *_ = inputs
    ctx.shape = tuple(input.shape)
    ctx.save_for_backward(rois, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad: Tensor, _grad_argmax: Tensor | None):
    rois, argmax = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.roi_lab._roi_pool_backward(grad.contiguous(), rois, argmax, *ctx.shape)
    return grad_input, None, None, None, None


def _setup_backward_context(ctx, inputs, output) -> None:
    _, rois, argmax, *_ = inputs
    ctx.save_for_backward(rois, argmax)


def _double_backward(ctx, grad_grad_input: Tensor):
    rois, argmax = ctx.saved_tensors
    grad_grad = None
    if ctx.needs_input_grad[0]:
        grad_grad = _kernel.roi_pool_grad_of_backward(grad_grad_input, rois[:, 0].long(), argmax)
    return (grad_grad,) + (None,) * 6


_roi_pool_op.register_autograd(_backward, setup_context=_setup_context)
_roi_pool_backward_op.register_autograd(_double_backward, setup_context=_setup_backward_context)
