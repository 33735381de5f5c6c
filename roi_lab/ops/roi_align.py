"""``roi_align``: torchvision's ROIAlign (and mmcv's max mode) as a registered PyTorch op.

This module is the registration layer; the numbers come from the private kernel in
:mod:`roi_lab.ops._roi_align_kernel` (``roi_align_forward`` / ``roi_align_backward``), which it
calls only from the registered op's real implementations. Here:

- :func:`roi_align`, the public function: validate, normalise (a list of boxes becomes rois), call
  ``torch.ops.roi_lab.roi_align``;
- ``roi_lab::roi_align`` and ``roi_lab::_roi_align_backward``, registered with ``torch.library``:
  fake (meta) implementations for FakeTensor tracing (``torch.compile(fullgraph=True)``,
  ``torch.export``, the meta device), registered autograd, and a second derivative (avg mode: the
  backward is linear in its incoming gradient, and its derivative is the forward op itself);
- the data checks (finite boxes, batch indices, the output budget), which read tensor values and so
  run only in the real implementation: the same errors in eager mode, never a graph break;
- ONNX: a ``RoiAlign`` node from both exporters (``dynamo=True`` through ``torch.onnx.ops.symbolic``,
  ``dynamo=False`` through a registered symbolic);
- TorchScript (``torch.jit.script(roi_align)`` compiles :func:`_roi_align_script`) and torch.fx (a
  leaf through ``__torch_function__`` dispatch);
- :class:`RoIAlign`, the module, like ``torchvision.ops.RoIAlign``.
"""

from __future__ import annotations

from typing import Any, List, Optional, Union  # noqa: UP035 - TorchScript reads these annotations

import torch
from torch import Tensor, nn
from torch.jit.annotations import BroadcastingList2
from torch.nn.modules.utils import _pair

from roi_lab.errors import InputValueError, NotSupportedError, describe
from roi_lab.ops import _roi_align_kernel as _kernel
from roi_lab.ops._checks import (
    as_float,
    as_int,
    check_feature_map,
    check_output_budget,
    pair_size,
)
from roi_lab.ops._library import dispatch_torch_function, onnx_dynamo_exporting, onnx_error, tensor_args
from roi_lab.ops._rois import check_rois_tensor, check_scale, checked_rois, rois_from_boxes

__all__ = ["roi_align", "RoIAlign"]

_OP = "roi_align"
_MODES = ("avg", "max")


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
            format (contiguous, non-contiguous, channels_last), H and W at least 1. Differentiable
            through autograd, twice in avg mode.
        boxes (Tensor[K, 5] or list[Tensor[L, 4]]): ``(batch_index, x1, y1, x2, y2)`` rows, or one
            ``(x1, y1, x2, y2)`` tensor per image. Coordinates are in image pixels and are mapped to
            the map by ``spatial_scale``. Coordinates are cast to ``input.dtype`` first, as
            torchvision requires them to be; the batch index is read before that cast, exactly. No
            gradient flows to boxes.
        output_size (int or (PH, PW)): bins per box.
        spatial_scale (float): feature px per image px, ``1 / stride``.
        sampling_ratio (int): samples per bin and axis; ``<= 0`` means adaptive,
            ``ceil(roi_size / output_size)`` per box, computed in ``input.dtype`` (float32 for
            float16 / bfloat16 maps).
        aligned (bool): shift coordinates by -0.5 px (pixel-centre model, Detectron2). ``False`` is
            the legacy behaviour, which also clamps each box to at least 1x1 feature px.
        mode (str): ``"avg"`` (torchvision) or ``"max"`` (mmcv: the max over the bin's bilinearly
            interpolated samples).

        Integer arguments also take numpy integers, ``spatial_scale`` numpy floats and 0-d
        tensors, as torchvision does.

    Returns:
        Tensor[K, C, PH, PW]: contiguous, in ``input.dtype``.

    Raises:
        ShapeError: (also an ``AssertionError``, like torchvision's box-shape checks) input not
            [N, C, H, W] or empty in H / W; boxes not [K, 5] or a list of [L, 4]; a malformed
            output_size.
        DTypeError: a non-floating map; bool or complex boxes.
        InputValueError: NaN/inf boxes; a batch index that is not an integer in [0, N); a size < 1;
            a non-positive or non-finite spatial_scale; an adaptive grid or an output beyond the
            stated budgets.
        DeviceMismatchError: boxes on another device than input.
        NotSupportedError: (also a ``RuntimeError``) the second derivative of ``mode="max"``; an
            ONNX export that would not be faithful (see Convention).

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
          max over the four weighted corner values of each sample, which differs, so ONNX export
          refuses ``mode="max"``. A bin with no samples gives 0 (mmcv's CPU kernel writes -10000).
        - ONNX: ``RoiAlign`` with ``coordinate_transformation_mode`` ``"half_pixel"`` (aligned) or
          ``"output_half_pixel"`` (legacy), ``sampling_ratio <= 0`` exported as 0 (adaptive). The
          TorchScript exporter refuses ``aligned=True`` below opset 16 (RoiAlign-10 has no
          half-pixel mode; torchvision only warns and writes a model half a pixel off).

    Batch invariance:
        Bit-exact on one device and thread setting: every output is pooled from its own box's
        bilinear taps alone, in a fixed order (two ``torch.embedding_bag`` stages whose bags hold
        one box's entries each), so a box's crop is the same bits whatever else is pooled in the
        call (tested for every dtype, both modes, boxes smaller and larger than the map).
        torchvision's compiled kernel loops over boxes and is bit-exactly batch-invariant too.

    Example:
        >>> x = torch.arange(25.0).view(1, 1, 5, 5)
        >>> roi_align(x, torch.tensor([[0.0, 1, 1, 3, 3]]), 2, aligned=True)
        tensor([[[[ 6.,  7.],
                  [11., 12.]]]])
    """
    handled, result = dispatch_torch_function(
        roi_align, tensor_args(input, boxes), input, boxes, output_size, spatial_scale, sampling_ratio, aligned,
        mode=mode,
    )  # fmt: skip
    if handled:  # a torch.fx proxy or a tensor subclass took the call
        return result
    check_feature_map(input, _OP)
    rois = _rois_from_boxes(input, boxes)  # [K, 5]; its values are checked by the op
    ph, pw = pair_size(output_size, _OP, "output_size")
    spatial_scale, sampling_ratio, aligned, mode = _options(spatial_scale, sampling_ratio, aligned, mode)
    if onnx_dynamo_exporting():
        return _onnx_node(input, rois, spatial_scale, ph, pw, sampling_ratio, aligned, mode)
    return torch.ops.roi_lab.roi_align(input, rois, spatial_scale, ph, pw, sampling_ratio, aligned, mode)


class RoIAlign(nn.Module):
    """Drop-in for ``torchvision.ops.RoIAlign`` running on :func:`roi_align` (same arguments, repr and
    forward; ``mode="max"`` for mmcv's max pooling). Scriptable with ``torch.jit.script``.

    Example:
        >>> RoIAlign((7, 7), spatial_scale=1 / 16, sampling_ratio=2, aligned=True)
        RoIAlign(output_size=(7, 7), spatial_scale=0.0625, sampling_ratio=2, aligned=True)
    """

    def __init__(
        self,
        output_size: BroadcastingList2[int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = False,
        *,
        mode: str = "avg",
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.mode = mode

    def forward(self, input: Tensor, rois: Union[Tensor, List[Tensor]]) -> Tensor:  # noqa: UP006, UP007
        """Pool ``rois`` (Tensor[K, 5] or list of Tensor[L, 4]) from ``input``: Tensor[K, C, PH, PW]."""
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned, mode=self.mode
        )

    def __repr__(self) -> str:
        mode = "" if self.mode == "avg" else f", mode={self.mode!r}"
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}{mode})"
        )


# --------------------------------------------------------------------------------------------------
# validation and normalisation (static: types, shapes, dtypes, devices; safe to trace)


def _rois_from_boxes(input: Tensor, boxes: Tensor | list[Tensor]) -> Tensor:
    """Shape-check ``boxes`` and return them as Tensor[K, 5] (values are checked by the op); see
    :func:`roi_lab.ops._rois.rois_from_boxes` (list rows in float32 or wider, exact batch indices)."""
    return rois_from_boxes(input, boxes, _OP)


def _check_rois_tensor(input: Tensor, rois: Tensor) -> None:
    """``rois`` must be a real Tensor[K, 5] on ``input``'s device."""
    check_rois_tensor(input, rois, _OP)


def _options(spatial_scale: object, sampling_ratio: object, aligned: object, mode: object):
    """(spatial_scale float, sampling_ratio int, aligned bool, mode str), or a clear error."""
    scale = as_float(spatial_scale)
    _check_scale(scale, spatial_scale)
    ratio = as_int(sampling_ratio)
    if ratio is None:
        raise InputValueError(
            "roi_align(sampling_ratio=...)",
            expected="an int (samples per bin and axis; <= 0 for adaptive)",
            got=describe(sampling_ratio),
            fix="pass e.g. sampling_ratio=2, or sampling_ratio=-1 for adaptive sampling",
        )
    _check_mode(mode)
    return scale, ratio, bool(aligned), mode


def _check_scale(scale: float | None, given: object) -> None:
    check_scale(_OP, scale, given)


def _check_mode(mode: object) -> None:
    if mode not in _MODES:
        raise InputValueError(
            "roi_align(mode=...)",
            expected='mode "avg" (torchvision) or "max" (mmcv)',
            got=describe(mode),
            fix='pass mode="avg" or mode="max"',
        )


def _check_op_args(input: Tensor, rois: Tensor, spatial_scale: float, ph: int, pw: int, mode: str) -> None:
    """The static checks of the op itself: the wrapper made them already, but TorchScript and direct
    ``torch.ops.roi_lab.roi_align`` calls come here without it."""
    check_feature_map(input, _OP)
    _check_rois_tensor(input, rois)
    pair_size((ph, pw), _OP, "output_size")
    _check_scale(spatial_scale, spatial_scale)
    _check_mode(mode)


# --------------------------------------------------------------------------------------------------
# data checks (read tensor values: only in the op's real implementation)


def _checked_rois(input: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
    """Finite rows with an integer batch index in [0, N); returns (batch Tensor[K] int64, boxes Tensor[K, 4]
    in ``input.dtype``). See :func:`roi_lab.ops._rois.checked_rois`."""
    return checked_rois(input, rois, _OP)


# --------------------------------------------------------------------------------------------------
# the registered ops


@torch.library.custom_op("roi_lab::roi_align", mutates_args=())
def _roi_align_op(
    input: Tensor,
    rois: Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
    mode: str,
) -> Tensor:
    _check_op_args(input, rois, spatial_scale, pooled_height, pooled_width, mode)
    batch, boxes = _checked_rois(input, rois)
    check_output_budget(
        (rois.shape[0], input.shape[1], pooled_height, pooled_width), _OP, "pool fewer boxes per call"
    )
    pooled = (pooled_height, pooled_width)
    return _kernel.roi_align_forward(input, batch, boxes, pooled, spatial_scale, sampling_ratio, aligned, mode)


@_roi_align_op.register_fake
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, mode):
    _check_op_args(input, rois, spatial_scale, pooled_height, pooled_width, mode)
    if mode == "max" and torch.onnx.is_in_onnx_export():  # the dynamo exporter's strict fallback comes here
        raise _onnx_max_error()
    return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))


@torch.library.custom_op("roi_lab::_roi_align_backward", mutates_args=())
def _roi_align_backward_op(
    grad: Tensor,
    rois: Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
    mode: str,
    batch_size: int,
    channels: int,
    height: int,
    width: int,
    channels_last: bool,
    input: Optional[Tensor],  # noqa: UP045 - torch.library reads this annotation
) -> Tensor:
    """The gradient of the input: rois as the forward got them (already checked there); ``input`` only
    for ``mode="max"``, whose winning samples are recomputed."""
    batch, boxes = rois[:, 0].long(), rois[:, 1:].to(grad.dtype)
    return _kernel.roi_align_backward(
        grad, batch, boxes, (batch_size, channels, height, width), channels_last, (pooled_height, pooled_width),
        spatial_scale, sampling_ratio, aligned, mode, input,
    )  # fmt: skip


@_roi_align_backward_op.register_fake
def _roi_align_backward_fake(grad, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, mode,
                             batch_size, channels, height, width, channels_last, input):  # fmt: skip
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return grad.new_empty((batch_size, channels, height, width)).contiguous(memory_format=memory_format)


def _setup_context(ctx, inputs, output) -> None:
    input, rois, *options = inputs  # options: spatial_scale, pooled_height, pooled_width, ratio, aligned, mode
    ctx.options = tuple(options)
    ctx.shape = tuple(input.shape)
    ctx.channels_last = _kernel.is_channels_last(input)
    ctx.save_for_backward(rois, input if options[-1] == "max" else None)


def _backward(ctx, grad: Tensor):
    rois, input = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.roi_lab._roi_align_backward(
            grad, rois, *ctx.options, *ctx.shape, ctx.channels_last, input
        )
    return (grad_input,) + (None,) * 7


def _setup_backward_context(ctx, inputs, output) -> None:
    _, rois, *options = inputs[:8]
    ctx.options = tuple(options)
    ctx.save_for_backward(rois)


def _double_backward(ctx, grad_grad_input: Tensor):
    """avg pooling is linear in the map, so its backward is linear in the incoming gradient, with the
    forward op as derivative; it does not depend on the map's values (their second derivative is 0)."""
    if ctx.options[-1] == "max":
        raise NotSupportedError(
            "roi_align(mode='max') backward",
            expected="a first derivative only: the max picks one sample per bin, so the second derivative "
            "is zero almost everywhere and undefined where two samples tie, and roi_lab does not compute it",
            got="a request for the second derivative (create_graph=True, gradgradcheck, a gradient penalty)",
            fix='use mode="avg", whose second derivative is supported, or stop the gradient at the pooled '
            "features",
        )
    (rois,) = ctx.saved_tensors
    grad_grad = None
    if ctx.needs_input_grad[0]:
        grad_grad = torch.ops.roi_lab.roi_align(grad_grad_input, rois, *ctx.options)
    return (grad_grad,) + (None,) * 13


_roi_align_op.register_autograd(_backward, setup_context=_setup_context)
_roi_align_backward_op.register_autograd(_double_backward, setup_context=_setup_backward_context)


# --------------------------------------------------------------------------------------------------
# ONNX


def _onnx_node(input: Tensor, rois: Tensor, spatial_scale, ph, pw, sampling_ratio, aligned, mode) -> Tensor:
    """``torch.onnx.export(..., dynamo=True)``: an ONNX RoiAlign-16 node in place of the op (the
    exporter keeps opset 18 or later for it: it cannot convert RoiAlign-16 to older opsets)."""
    _check_op_args(input, rois, spatial_scale, ph, pw, mode)
    if mode == "max":
        raise _onnx_max_error()
    return torch.onnx.ops.symbolic(
        "RoiAlign",
        (input, rois[:, 1:].to(input.dtype), rois[:, 0].to(torch.int64)),
        _onnx_attributes(spatial_scale, ph, pw, sampling_ratio, aligned),
        dtype=input.dtype,
        shape=(rois.shape[0], input.shape[1], ph, pw),
        version=16,
    )


def _onnx_attributes(spatial_scale: float, ph: int, pw: int, sampling_ratio: int, aligned: bool) -> dict:
    return dict(
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg",
        output_height=ph,
        output_width=pw,
        sampling_ratio=max(sampling_ratio, 0),  # ONNX's adaptive grid is 0; torchvision's is any <= 0
        spatial_scale=spatial_scale,
    )


def _onnx_max_error() -> NotSupportedError:
    return onnx_error(
        "roi_align(mode='max')",
        expected='mode="avg": ONNX RoiAlign(mode="max") takes the max over the four weighted corner values of '
        "each sample, not over the interpolated samples as roi_align(mode='max') (mmcv) does, so the exported "
        "model would compute something else",
        got="mode='max'",
        fix='export a model that pools with mode="avg", or keep the max pooling outside the exported graph',
    )


def onnx_translation_table() -> dict:
    """The op's ONNX translation for ``torch.onnx.export(..., custom_translation_table=...)``.

    Only needed where the dynamo exporter meets the registered op itself: when exporting an
    ``ExportedProgram`` made by ``torch.export.export`` (outside ``torch.onnx.export``), or when the
    exporter fell back to ``strict=True`` capture. (A module exported with ``torch.onnx.export(model,
    args)`` needs nothing: :func:`roi_align` emits the ONNX node itself.) Needs onnxscript, as the
    dynamo exporter does.

    Example::

        ep = torch.export.export(model, (features, rois))
        torch.onnx.export(ep, custom_translation_table=roi_lab.ops.roi_align.onnx_translation_table())
    """
    from onnxscript import opset18

    op: Any = opset18  # its signatures do not type Python lists as constant inputs

    def roi_align_onnx(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int,
                       sampling_ratio: int, aligned: bool, mode: str):  # fmt: skip
        if mode == "max":
            raise _onnx_max_error()
        index = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=7)  # int64 batch index
        coords = op.CastLike(op.Slice(rois, [1], [5], [1]), input)
        attributes = _onnx_attributes(spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
        return op.RoiAlign(input, coords, index, **attributes)

    return {torch.ops.roi_lab.roi_align.default: roi_align_onnx}


def _onnx_symbolic(g, input, rois, spatial_scale, ph, pw, sampling_ratio, aligned, mode):
    """``torch.onnx.export(..., dynamo=False)``: the TorchScript exporter's translation of the op."""
    if mode == "max":
        raise _onnx_max_error()
    if g.opset < 10 or (aligned and g.opset < 16):
        raise onnx_error(
            f"roi_align(aligned={aligned})",
            expected="opset_version >= 16 for aligned=True (RoiAlign-16 added coordinate_transformation_mode="
            "'half_pixel'; RoiAlign-10 always uses the legacy transform, half a pixel off)"
            if aligned
            else "opset_version >= 10 (the first opset with RoiAlign)",
            got=f"opset_version={g.opset}",
            fix="export with opset_version=17 (any of 16..21), or aligned=False if the model was trained that way"
            if aligned
            else "export with opset_version=17 (any of 10..21)",
        )
    index = g.op("Cast", g.op("Gather", rois, g.op("Constant", value_t=torch.tensor(0)), axis_i=1), to_i=7)  # int64
    coords = g.op("Gather", rois, g.op("Constant", value_t=torch.tensor([1, 2, 3, 4])), axis_i=1)
    coords = g.op("Cast", coords, to_i=torch.onnx.JitScalarType.from_value(input).onnx_type())
    attributes = _onnx_attributes(spatial_scale, ph, pw, sampling_ratio, aligned)
    if g.opset < 16:
        del attributes["coordinate_transformation_mode"]  # RoiAlign-10: always the legacy transform
    suffixes = dict(coordinate_transformation_mode="s", mode="s", output_height="i", output_width="i",
                    sampling_ratio="i", spatial_scale="f")  # fmt: skip
    return g.op("RoiAlign", input, coords, index, **{f"{k}_{suffixes[k]}": v for k, v in attributes.items()})


torch.onnx.register_custom_op_symbolic(
    "roi_lab::roi_align",
    torch.onnx.symbolic_helper.parse_args("v", "v", "f", "i", "i", "i", "b", "s")(_onnx_symbolic),
    7,
)


# --------------------------------------------------------------------------------------------------
# TorchScript


def _roi_align_script(
    input: Tensor,
    boxes: Union[Tensor, List[Tensor]],  # noqa: UP006, UP007
    output_size: BroadcastingList2[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    mode: str = "avg",
) -> Tensor:
    """What ``torch.jit.script(roi_align)`` compiles (TorchScript has no keyword-only arguments):
    the same op call, with the op's own checks."""
    if isinstance(boxes, Tensor):
        rois = boxes
    else:
        wide = torch.float64 if input.dtype == torch.float64 else torch.float32
        rows = [torch.zeros(0, 5, dtype=wide, device=input.device)]
        for i, b in enumerate(boxes):
            torch._assert(b.dim() == 2 and b.size(1) == 4, "roi_align expects a list of Tensor[L, 4] boxes")
            rows.append(torch.cat([torch.full_like(b[:, :1], i, dtype=wide), b.to(input.dtype).to(wide)], 1))
        rois = torch.cat(rows)
    size = _pair(output_size)
    return torch.ops.roi_lab.roi_align(input, rois, spatial_scale, size[0], size[1], sampling_ratio, aligned, mode)


# torch.jit.script(roi_align) compiles the twin (an attribute mypy does not know functions have)
roi_align.__prepare_scriptable__ = lambda: _roi_align_script  # type: ignore[attr-defined]
