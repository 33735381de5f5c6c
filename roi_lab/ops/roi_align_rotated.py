"""``roi_align_rotated``: ROIAlign over rotated boxes (detectron2's ROIAlignRotated, mmcv's roi_align_rotated).

The registration layer; the numbers come from :mod:`roi_lab.ops._roi_align_rotated_kernel`. Here: the
public :func:`roi_align_rotated` (validate, normalise, call ``torch.ops.roi_lab.roi_align_rotated``), the
registered ``roi_lab::roi_align_rotated`` and its backward with fake implementations and autograd (twice:
the op is linear in the map), and two modules with the frameworks' own signatures: :class:`ROIAlignRotated`
(detectron2: degrees) and :class:`RoIAlignRotated` (mmcv: radians, ``clockwise``, ``aligned``).

The two frameworks read the same rois ``(batch_index, cx, cy, w, h, angle)`` differently: detectron2 in
degrees, mmcv in radians, and mmcv's ``clockwise=True`` flips the sign. So :func:`roi_align_rotated` takes
``angle_unit`` as a required keyword: a call says which one it means.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from roi_lab.errors import InputValueError, describe
from roi_lab.ops import _roi_align_rotated_kernel as _kernel
from roi_lab.ops._checks import as_float, as_int, check_feature_map, check_output_budget, pair_size
from roi_lab.ops._library import dispatch_torch_function, tensor_args
from roi_lab.ops._rois import ROTATED, check_rois_tensor, check_scale, checked_rois, rois_from_boxes

__all__ = ["roi_align_rotated", "ROIAlignRotated", "RoIAlignRotated"]

_OP = "roi_align_rotated"
_UNITS = ("degrees", "radians")
# the most samples one call may read (adaptive grids of huge boxes): 2**28, as roi_align's output budget
_MAX_SAMPLES = 1 << 28


def roi_align_rotated(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    aligned: bool = True,
    *,
    angle_unit: str,
    clockwise: bool = False,
) -> Tensor:
    """Pool a fixed grid from every rotated box, like detectron2's ``ROIAlignRotated`` / mmcv's ``roi_align_rotated``.

    Args:
        input (Tensor[N, C, H, W]): feature map, float16 / bfloat16 / float32 / float64 (half precision is
            computed in float32, as detectron2 does), any memory format. Differentiable (twice).
        boxes (Tensor[K, 6] or list[Tensor[L, 5]]): ``(batch_index, cx, cy, w, h, angle)`` rows, or one
            ``(cx, cy, w, h, angle)`` tensor per image; centre and size in image px.
        output_size (int or (PH, PW)): bins per box.
        spatial_scale (float): feature px per image px, ``1 / stride``.
        sampling_ratio (int): samples per bin and axis; ``<= 0``: adaptive ``ceil(roi_size / output_size)``.
        aligned (bool): shift the centre by -0.5 px (detectron2 always does; mmcv's default). ``False`` is
            mmcv's legacy mode, which also clamps the box to at least 1 x 1 cell.
        angle_unit (str): ``"degrees"`` (detectron2) or ``"radians"`` (mmcv). Required: the mix-up is
            silent (30 degrees read as radians is a 1719 degree turn; 0.52 rad read as degrees barely turns).
        clockwise (bool): mmcv's flag: the angle turns clockwise in image coordinates (its sign is flipped).

    Returns:
        Tensor[K, C, PH, PW]: in ``input.dtype``.

    Raises:
        ShapeError, DTypeError, InputValueError, DeviceMismatchError: as :func:`roi_lab.roi_align`; also a
            negative width or height with ``aligned=True`` (detectron2 asserts "ROIs in ROIAlignRotated do
            not have non-negative size!") and an adaptive grid of more than 2**28 samples.

    Convention:
        - the box is ``w x h`` about its centre, turned counter-clockwise by ``angle`` (``clockwise=False``):
          in image coordinates (y down) a positive angle turns the box's x axis towards -y, i.e. the
          visually counter-clockwise direction of detectron2's RotatedBoxes;
        - feature coordinates: centre ``c * spatial_scale - 0.5`` (``aligned``), integer = cell centre;
        - bin ``(ph, pw)``'s samples sit at box coordinates ``-h / 2 + (ph + (iy + 0.5) / gh) * h / PH`` (and
          likewise x), rotated about the centre; bilinear as in ROIAlign (samples beyond one cell off the
          map add 0); each bin is the mean over its ``gh * gw`` samples (0 for a box of no samples).
          (detectron2/layers/csrc/ROIAlignRotated/ROIAlignRotated_cpu.cpp; mmcv/ops/csrc/pytorch/cpu/
          roi_align_rotated.cpp)

    Example:
        >>> x = torch.arange(25.0).view(1, 1, 5, 5)  # the 2 x 2 box at (2, 2) pools [[6, 7], [11, 12]]; turned
        >>> roi_align_rotated(x, torch.tensor([[0.0, 2, 2, 2, 2, 90]]), 2, angle_unit="degrees")  # 90 deg CCW
        tensor([[[[11.,  6.],
                  [12.,  7.]]]])
    """
    handled, result = dispatch_torch_function(
        roi_align_rotated, tensor_args(input, boxes), input, boxes, output_size, spatial_scale, sampling_ratio,
        aligned, angle_unit=angle_unit, clockwise=clockwise,
    )  # fmt: skip
    if handled:
        return result
    check_feature_map(input, _OP)
    rois = rois_from_boxes(input, boxes, _OP, ROTATED)  # [K, 6]
    ph, pw = pair_size(output_size, _OP, "output_size")
    scale = as_float(spatial_scale)
    check_scale(_OP, scale, spatial_scale)
    ratio = as_int(sampling_ratio)
    if ratio is None:
        raise InputValueError(
            f"{_OP}(sampling_ratio=...)",
            expected="an int (samples per bin and axis; <= 0 for adaptive)",
            got=describe(sampling_ratio),
            fix="pass e.g. sampling_ratio=2, or sampling_ratio=0 for adaptive sampling",
        )
    _check_unit(angle_unit)
    return torch.ops.roi_lab.roi_align_rotated(
        input, rois, scale, ph, pw, ratio, bool(aligned), angle_unit == "radians", bool(clockwise)
    )


def _check_unit(angle_unit: object) -> None:
    if angle_unit not in _UNITS:
        raise InputValueError(
            f"{_OP}(angle_unit=...)",
            expected='"degrees" (detectron2 ROIAlignRotated) or "radians" (mmcv roi_align_rotated)',
            got=describe(angle_unit),
            fix='say which framework the boxes come from: angle_unit="degrees" for detectron2\'s RotatedBoxes, '
            'angle_unit="radians" for mmcv / mmrotate',
        )


class ROIAlignRotated(nn.Module):
    """detectron2's ``ROIAlignRotated(output_size, spatial_scale, sampling_ratio)``: angles in degrees,
    counter-clockwise, always aligned.

    Example:
        >>> ROIAlignRotated((7, 7), 1 / 16, 0)
        ROIAlignRotated(output_size=(7, 7), spatial_scale=0.0625, sampling_ratio=0)
    """

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float, sampling_ratio: int) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        """Pool ``rois`` (Tensor[K, 6]: batch index, cx, cy, w, h, angle in degrees): Tensor[K, C, PH, PW]."""
        return roi_align_rotated(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, True,
                                 angle_unit="degrees")  # fmt: skip

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio})")  # fmt: skip


class RoIAlignRotated(nn.Module):
    """mmcv's ``RoIAlignRotated(output_size, spatial_scale, sampling_ratio=0, aligned=True, clockwise=False)``:
    angles in radians.

    Example:
        >>> RoIAlignRotated(7, 1 / 16)
        RoIAlignRotated(output_size=7, spatial_scale=0.0625, sampling_ratio=0, aligned=True, clockwise=False)
    """

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float, sampling_ratio: int = 0,
                 aligned: bool = True, clockwise: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.clockwise = clockwise

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        """Pool ``rois`` (Tensor[K, 6]: batch index, cx, cy, w, h, angle in radians): Tensor[K, C, PH, PW]."""
        return roi_align_rotated(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                                 self.aligned, angle_unit="radians", clockwise=self.clockwise)  # fmt: skip

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, clockwise={self.clockwise})")


# --------------------------------------------------------------------------------------------------
# the registered ops


def _check_op_args(input: Tensor, rois: Tensor, spatial_scale: float, ph: int, pw: int) -> None:
    check_feature_map(input, _OP)
    check_rois_tensor(input, rois, _OP, ROTATED)
    pair_size((ph, pw), _OP, "output_size")
    check_scale(_OP, spatial_scale, spatial_scale)


def _theta(boxes: Tensor, radians: bool, clockwise: bool) -> Tensor:
    """The counter-clockwise angle in radians of every box (Tensor[K]), in float32 at least (detectron2
    casts half maps and rois to float32)."""
    angle = boxes[:, 4].to(_kernel.compute_dtype(boxes.dtype))
    theta = angle if radians else _kernel.degrees_to_radians(angle)
    return -theta if clockwise else theta


def _checked(input: Tensor, rois: Tensor, spatial_scale: float, ph: int, pw: int, ratio: int, aligned: bool):
    """The data checks: finite rows, batch indices, non-negative sizes (aligned), the sample budget."""
    batch, boxes = checked_rois(input, rois, _OP)
    if aligned and boxes.shape[0]:
        bad = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise InputValueError(
                f"{_OP}(boxes=...)",
                expected="a non-negative width and height (columns 3 and 4: cx, cy, w, h, angle); detectron2 "
                "asserts 'ROIs in ROIAlignRotated do not have non-negative size!'",
                got=f"{int(bad.sum())} boxes with w < 0 or h < 0, the first is row {row}: {rois[row].tolist()}",
                fix="a rotated box turns by its angle, its size stays positive: check the column order (cx, cy, "
                "w, h, angle) and that w, h are not x2 - x1 of swapped corners",
            )
    check_output_budget((rois.shape[0], input.shape[1], ph, pw), _OP, "pool fewer boxes per call")
    if ratio <= 0 and boxes.shape[0]:
        size = boxes[:, 2:4].double().abs() * spatial_scale
        samples = float((torch.ceil(size[:, 0] / pw) * torch.ceil(size[:, 1] / ph)).sum()) * ph * pw
        if samples > _MAX_SAMPLES:
            raise InputValueError(
                f"{_OP}(sampling_ratio=...)",
                expected=f"an adaptive sample grid of at most {_MAX_SAMPLES} samples in all",
                got=f"{samples:.3g} samples for {boxes.shape[0]} boxes (the largest is "
                f"{float(size.max()):.4g} cells at spatial_scale {spatial_scale:g})",
                fix="pass sampling_ratio=2, or check spatial_scale and that the boxes are in image px",
            )
    return batch, boxes


@torch.library.custom_op("roi_lab::roi_align_rotated", mutates_args=())
def _op(input: Tensor, rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
        sampling_ratio: int, aligned: bool, radians: bool, clockwise: bool) -> Tensor:  # fmt: skip
    _check_op_args(input, rois, spatial_scale, pooled_height, pooled_width)
    batch, boxes = _checked(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    return _kernel.roi_align_rotated_forward(
        input, batch, boxes, _theta(boxes, radians, clockwise), (pooled_height, pooled_width), spatial_scale,
        sampling_ratio, aligned,
    )  # fmt: skip


@_op.register_fake
def _fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, radians, clockwise):
    _check_op_args(input, rois, spatial_scale, pooled_height, pooled_width)
    return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))


@torch.library.custom_op("roi_lab::_roi_align_rotated_backward", mutates_args=())
def _backward_op(grad: Tensor, rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
                 sampling_ratio: int, aligned: bool, radians: bool, clockwise: bool, batch_size: int,
                 channels: int, height: int, width: int) -> Tensor:  # fmt: skip
    """The gradient of the map (the rois were checked by the forward)."""
    boxes = rois[:, 1:].to(grad.dtype)
    return _kernel.roi_align_rotated_backward(
        grad, rois[:, 0].long(), boxes, _theta(boxes, radians, clockwise), (batch_size, channels, height, width),
        (pooled_height, pooled_width), spatial_scale, sampling_ratio, aligned,
    )  # fmt: skip


@_backward_op.register_fake
def _backward_fake(grad, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, radians,
                   clockwise, batch_size, channels, height, width):  # fmt: skip
    return grad.new_empty((batch_size, channels, height, width))


def _setup_context(ctx, inputs, output) -> None:
    input, rois, *options = inputs
    ctx.options = tuple(options)
    ctx.shape = tuple(input.shape)
    ctx.save_for_backward(rois)


def _backward(ctx, grad: Tensor):
    (rois,) = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.roi_lab._roi_align_rotated_backward(grad.contiguous(), rois, *ctx.options,
                                                                   *ctx.shape)  # fmt: skip
    return (grad_input,) + (None,) * 8


def _setup_backward_context(ctx, inputs, output) -> None:
    _, rois, *options = inputs[:9]
    ctx.options = tuple(options)
    ctx.save_for_backward(rois)


def _double_backward(ctx, grad_grad_input: Tensor):
    """The op is linear in the map, so its backward is linear in the incoming gradient with the forward
    op as its derivative."""
    (rois,) = ctx.saved_tensors
    grad_grad = None
    if ctx.needs_input_grad[0]:
        grad_grad = torch.ops.roi_lab.roi_align_rotated(grad_grad_input, rois, *ctx.options)
    return (grad_grad,) + (None,) * 12


_op.register_autograd(_backward, setup_context=_setup_context)
_backward_op.register_autograd(_double_backward, setup_context=_setup_backward_context)
