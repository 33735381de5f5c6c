"""Multi-level (FPN) pooling: which pyramid level each box is read from, and pooling across levels.

Three frameworks implement the FPN paper's Eqn. (1) ``k = floor(k0 + log2(sqrt(w * h) / 224))`` with
small differences that move boxes near a level boundary to a different map:

- torchvision ``LevelMapper``: ``floor(4 + log2(sqrt(area) / 224) + 1e-6)``, eps outside the log;
- detectron2 ``assign_boxes_to_levels``: ``floor(4 + log2(sqrt(area) / 224 + 1e-8))``, eps inside;
- mmdet ``SingleRoIExtractor.map_roi_levels``: ``floor(log2(sqrt(area) / 56 + 1e-6))`` as a 0-based
  index into the given maps (0 = the finest).

The registration layer of :func:`multi_scale_roi_align` lives here too: ``roi_lab::multi_scale_roi_align``
(and its backward) with fake implementations and registered autograd, so that the data-dependent
split of boxes by level happens inside the op and compiled graphs stay whole; a TorchScript twin of
:class:`MultiScaleRoIAlign`; a torch.fx leaf; a composite ONNX export over ``RoiAlign`` nodes. The
pooling itself is :mod:`roi_lab.ops.roi_align`'s op, per level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Dict, List, Optional, Tuple  # noqa: UP035 - TorchScript reads these annotations

import torch
from torch import Tensor, nn

from roi_lab.errors import InputValueError, ShapeError, describe
from roi_lab.ops._checks import (
    as_float,
    as_int,
    check_feature_map,
    check_finite,
    check_output_budget,
    check_real_dtype,
    check_same_device,
    pair_size,
)
from roi_lab.ops._library import dispatch_torch_function, tensor_args
from roi_lab.ops._roi_align_kernel import is_channels_last
from roi_lab.ops.roi_align import _options, roi_align

__all__ = ["assign_fpn_levels", "multi_scale_roi_align", "MultiScaleRoIAlign", "infer_scales"]

_CONVENTIONS = ("torchvision", "detectron2", "mmdet")
_REAL_BOXES = "real-valued boxes (floating or integer coordinates)"


def assign_fpn_levels(
    boxes: Tensor,
    *,
    k_min: int = 2,
    k_max: int = 5,
    canonical_scale: float = 224,
    canonical_level: int = 4,
    convention: str = "torchvision",
    finest_scale: float = 56,
) -> Tensor:
    """The FPN level each box is pooled from, with one framework's exact formula.

    Args:
        boxes (Tensor[K, 4]): ``x1, y1, x2, y2`` in image px (area ``(x2 - x1) * (y2 - y1)``, no +1).
        k_min, k_max: the finest and coarsest level available (P2..P5 by default).
        canonical_scale, canonical_level: Eqn. (1)'s ``224`` and ``k0`` (torchvision, detectron2).
        convention: ``"torchvision"``, ``"detectron2"`` or ``"mmdet"``.
        finest_scale: mmdet's threshold for the finest level (56 px; boxes under 112 px go there).

    Returns:
        Tensor[K] int64: the absolute level ``k`` in ``[k_min, k_max]`` for every convention
        (``2`` means P2, stride 4). torchvision's ``LevelMapper`` and detectron2 return
        ``k - k_min`` internally, and mmdet returns its 0-based index, ``k - k_min`` as well.

    Convention:
        the formulas, computed in the boxes' floating dtype (float32 for integer boxes):

        - torchvision: ``clamp(floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6), k_min, k_max)``
        - detectron2: ``clamp(floor(canonical_level + log2(sqrt(area) / canonical_scale + 1e-8)), k_min, k_max)``
        - mmdet: ``k_min + clamp(floor(log2(sqrt(area) / finest_scale + 1e-6)), 0, k_max - k_min)``

        Zero-area boxes go to ``k_min``. ``canonical_scale`` and ``finest_scale`` must be finite and
        positive (a NaN or negative one would put every box on level -2**63).

    Example:
        >>> boxes = torch.tensor([[0.0, 0, 112, 112], [0, 0, 224, 224], [0, 0, 1000, 1000]])
        >>> assign_fpn_levels(boxes).tolist()
        [3, 4, 5]
        >>> assign_fpn_levels(torch.tensor([[0.0, 0, 111.9, 111.9]]), convention="mmdet").tolist()
        [2]
    """
    where = "assign_fpn_levels"
    if convention not in _CONVENTIONS:
        raise InputValueError(
            f"{where}(convention=...)",
            expected='one of "torchvision", "detectron2", "mmdet"',
            got=describe(convention),
            fix='pass convention="torchvision" (the default) or the framework whose model you debug',
        )
    k_min, k_max, canonical_scale, canonical_level = _level_options(where, k_min, k_max, canonical_scale,
                                                                    canonical_level)  # fmt: skip
    finest_scale = _positive(where, "finest_scale", finest_scale, "pass e.g. finest_scale=56 (mmdet's default)")
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ShapeError(
            f"{where}(boxes=...)",
            expected="boxes as Tensor[K, 4] (x1, y1, x2, y2) in image px",
            got=describe(boxes),
            fix="drop the batch-index column (boxes[:, 1:]) or concatenate a per-image list with torch.cat",
        )
    check_real_dtype(boxes, where, "boxes", _REAL_BOXES)
    if not boxes.is_floating_point():
        boxes = boxes.float()
    check_finite(boxes, where, "boxes")
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    inverted = (w < 0) | (h < 0)
    if bool(inverted.any()):
        row = int(inverted.nonzero()[0, 0])
        raise InputValueError(
            f"{where}(boxes=...)",
            expected="x2 >= x1 and y2 >= y1 (the area is undefined otherwise)",
            got=f"{int(inverted.sum())} inverted boxes, the first is row {row}: {boxes[row].tolist()}",
            fix="check the box format: these may be (x, y, w, h) or (y1, x1, y2, x2) boxes; convert them "
            "with roi_lab.convert_boxes first",
        )
    s = torch.sqrt(w * h)  # [K]
    if convention == "torchvision":
        return _torchvision_levels(boxes, k_min, k_max, canonical_scale, canonical_level)
    if convention == "detectron2":
        level = torch.floor(canonical_level + torch.log2(s / canonical_scale + 1e-8))
    else:
        level = k_min + torch.floor(torch.log2(s / finest_scale + 1e-6)).clamp(0, k_max - k_min)
    return level.clamp(k_min, k_max).to(torch.int64)  # [K]


def _torchvision_levels(boxes: Tensor, k_min: int, k_max: int, canonical_scale: float, canonical_level: int) -> Tensor:
    """torchvision's ``LevelMapper`` on checked boxes (Tensor[K, 4] floating): Tensor[K] int64 in [k_min, k_max].
    Plain tensor ops, no checks: the ONNX export of :func:`multi_scale_roi_align` traces it."""
    s = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))  # [K]
    level = torch.floor(canonical_level + torch.log2(s / canonical_scale) + torch.tensor(1e-6, dtype=s.dtype))
    return level.clamp(k_min, k_max).to(torch.int64)  # [K]


def _positive(where: str, name: str, value: object, fix: str) -> float:
    number = as_float(value)
    if number is None or not (math.isfinite(number) and number > 0):
        raise InputValueError(
            f"{where}({name}=...)", expected="a finite positive number (box side in image px)", got=describe(value),
            fix=fix,
        )  # fmt: skip
    return number


def _level_options(where: str, k_min: object, k_max: object, canonical_scale: object, canonical_level: object):
    """(k_min, k_max, canonical_scale, canonical_level) as (int, int, float, int), or a clear error."""
    k_lo, k_hi = as_int(k_min), as_int(k_max)
    if k_lo is None or k_hi is None or k_lo > k_hi:
        raise InputValueError(
            f"{where}(k_min=..., k_max=...)",
            expected="integer levels with k_min <= k_max",
            got=f"k_min={k_min!r}, k_max={k_max!r}",
            fix="pass e.g. k_min=2, k_max=5 for P2..P5",
        )
    scale = _positive(where, "canonical_scale", canonical_scale, "pass e.g. canonical_scale=224 (the FPN paper's)")
    level = as_int(canonical_level)
    if level is None:
        raise InputValueError(
            f"{where}(canonical_level=...)",
            expected="an int: the level of a canonical_scale-sized box",
            got=describe(canonical_level),
            fix="pass e.g. canonical_level=4 (the FPN paper's k0)",
        )
    return k_lo, k_hi, scale, level


def _float32(x: float) -> float:
    """``x`` rounded to the nearest float32 (ties to even), in pure Python so that torch.compile can
    fold it: ``infer_scales`` reproduces torchvision's float32 arithmetic without a tensor."""
    if x == 0 or not math.isfinite(x):
        return x
    mantissa, exponent = math.frexp(x)
    return math.ldexp(round(mantissa * (1 << 24)), exponent - 24)


def infer_scales(features: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]]) -> list[float]:
    """Each map's spatial scale as torchvision infers it: ``2 ** round(log2(h / H))``.

    ``H`` is the largest image height in the batch (torchvision uses the height only). The log is
    taken in float32, as torchvision's ``torch.tensor(h / H).log2().round()`` does (emulated in
    Python, so it compiles; near ``2 ** (k + 0.5)`` float32 and float64 can round differently). Under
    ``torch.compile(dynamic=True)`` the map sizes are symbolic and cannot be rounded in Python: pass
    ``scales`` there (``MultiScaleRoIAlign`` infers them once and caches them, as torchvision does).

    Example:
        >>> infer_scales([torch.zeros(1, 1, 200, 304), torch.zeros(1, 1, 100, 152)], [(800, 1216)])
        [0.25, 0.125]
    """
    sizes = _image_sizes(image_sizes)
    height = max(s[0] for s in sizes)
    scales = []
    for f in features:
        approx = float(f.shape[-2]) / float(height)
        scales.append(2.0 ** round(_float32(math.log2(_float32(approx)))))
    return scales


def _image_sizes(image_sizes: object) -> list[tuple[int, int]]:
    """A non-empty list of (height, width) pairs of positive ints, or a clear error."""
    fix = "pass the sizes of the images fed to the backbone, e.g. [(800, 1216)]"
    if not isinstance(image_sizes, (list, tuple)) or not image_sizes:
        raise InputValueError(
            "multi_scale_roi_align(image_sizes=...)", expected="one (height, width) per image",
            got=describe(image_sizes), fix=fix,
        )  # fmt: skip
    sizes = []
    for s in image_sizes:
        pair = tuple(as_int(v) for v in s) if isinstance(s, (list, tuple, torch.Size)) else ()
        if len(pair) != 2 or not all(v is not None and v > 0 for v in pair):
            raise InputValueError(
                "multi_scale_roi_align(image_sizes=...)", expected="(height, width) pairs of positive ints",
                got=f"{describe(s)} in {describe(image_sizes)}", fix=fix,
            )  # fmt: skip
        sizes.append(pair)
    return sizes  # type: ignore[return-value]  # every pair checked: two positive ints


def _check_scales(scales: object, count: int) -> list[float]:
    values = [as_float(s) for s in scales] if isinstance(scales, (list, tuple)) else []
    if len(values) != count:
        raise InputValueError(
            "multi_scale_roi_align(scales=...)",
            expected=f"one scale per feature map ({count})",
            got=describe(scales),
            fix="leave scales=None to infer them from the map and image sizes",
        )
    if not all(v is not None and math.isfinite(v) and v > 0 for v in values):
        raise InputValueError(
            "multi_scale_roi_align(scales=...)",
            expected="finite positive scales, feature px per image px (1 / stride), e.g. [1/4, 1/8, 1/16, 1/32]",
            got=describe(scales),
            fix="leave scales=None to infer them from the map and image sizes",
        )
    return values  # type: ignore[return-value]  # every value checked: a positive float


def _select(features: dict[str, Tensor] | Sequence[Tensor], featmap_names: Sequence[str] | None) -> list[Tensor]:
    if isinstance(features, dict):
        names = list(features) if featmap_names is None else list(featmap_names)
        missing = [n for n in names if n not in features]
        if missing:
            raise InputValueError(
                "multi_scale_roi_align(featmap_names=...)",
                expected=f"names among the feature maps {list(features)}",
                got=f"{missing} not found",
                fix="pass featmap_names that are keys of features, e.g. ['0', '1', '2', '3']",
            )
        # torchvision keeps the dict's order, not featmap_names' order
        selected = [v for k, v in features.items() if k in names]
    else:
        selected = list(features)
    if not selected:
        raise InputValueError(
            "multi_scale_roi_align(features=...)",
            expected="at least one feature map",
            got=describe(features),
            fix="pass the FPN outputs, e.g. {'0': p2, '1': p3, '2': p4, '3': p5}",
        )
    for i, f in enumerate(selected):
        check_feature_map(f, "multi_scale_roi_align", f"features[{i}]")
        if f.shape[:2] != selected[0].shape[:2]:
            raise ShapeError(
                "multi_scale_roi_align(features=...)",
                expected="maps with the same batch size N and channel count C",
                got=f"features[0] is {describe(selected[0])} and features[{i}] is {describe(f)}",
                fix="pool from the FPN outputs, which share N and C; project other maps to one C first",
            )
        check_same_device(selected[0], f, "multi_scale_roi_align", "features[0]", f"features[{i}]")
    return selected


def multi_scale_roi_align(
    features: dict[str, Tensor] | Sequence[Tensor],
    boxes: Sequence[Tensor],
    image_sizes: Sequence[tuple[int, int]],
    output_size: int | tuple[int, int],
    sampling_ratio: int = 2,
    *,
    featmap_names: Sequence[str] | None = None,
    canonical_scale: float = 224,
    canonical_level: int = 4,
    scales: Sequence[float] | None = None,
    aligned: bool = False,
) -> Tensor:
    """Pool every box from the FPN level it maps to, like ``torchvision.ops.MultiScaleRoIAlign``.

    Args:
        features (dict[str, Tensor[N, C, h_l, w_l]] or list): the maps, finest first.
        boxes (list[Tensor[L, 4]]): per image, ``x1, y1, x2, y2`` in image px.
        image_sizes (list[(H, W)]): the sizes of the images fed to the backbone.
        output_size (int or (PH, PW)): bins per box.
        sampling_ratio (int): samples per bin and axis (``<= 0``: adaptive).
        featmap_names: the dict keys to use (dict order is kept, as torchvision does); all if None.
        canonical_scale, canonical_level: the level mapper's ``224`` and ``4``.
        scales: the maps' spatial scales; inferred with :func:`infer_scales` when None.
        aligned: torchvision's pooler uses ``aligned=False``; detectron2's ROIAlignV2 uses True.

    Raises:
        ShapeError, DTypeError, InputValueError, DeviceMismatchError: as :func:`roi_align` and
            :func:`assign_fpn_levels` do, plus image sizes that are not positive (height, width)
            pairs, scales that are not finite and positive, a canonical scale / level that is not
            finite and positive / an int.

    Returns:
        Tensor[K, C, PH, PW]: boxes in input order (image 0's first).

    Convention:
        levels come from :func:`assign_fpn_levels` with ``convention="torchvision"`` and
        ``k_min = -log2(scales[0])``, ``k_max = -log2(scales[-1])``; with a single map every box is
        pooled from it. A registered op (``roi_lab::multi_scale_roi_align``): compiles and exports whole;
        in ONNX export, every level pools every box and a ``Where`` keeps each box's own level.
    """
    handled, result = dispatch_torch_function(
        multi_scale_roi_align, tensor_args(features, boxes), features, boxes, image_sizes, output_size,
        sampling_ratio, featmap_names=featmap_names, canonical_scale=canonical_scale,
        canonical_level=canonical_level, scales=scales, aligned=aligned,
    )  # fmt: skip
    if handled:  # a torch.fx proxy (the whole call is one leaf) or a tensor subclass took the call
        return result
    maps = _select(features, featmap_names)
    rois = _rois(maps[0], boxes)  # [K, 5] in the boxes' dtype (float32 at least)
    scales = infer_scales(maps, image_sizes) if scales is None else _check_scales(scales, len(maps))
    ph, pw = pair_size(output_size, "multi_scale_roi_align", "output_size")
    _, ratio, aligned, _ = _options(scales[0], sampling_ratio, aligned, "avg")
    where = "multi_scale_roi_align"
    _, _, canonical_scale, canonical_level = _level_options(where, 0, 0, canonical_scale, canonical_level)
    if len(maps) == 1:
        return roi_align(maps[0], rois, (ph, pw), scales[0], ratio, aligned)
    if torch.onnx.is_in_onnx_export():  # both exporters: RoiAlign per level, no data-dependent shapes
        return _onnx_multi_scale(maps, rois, scales, (ph, pw), ratio, aligned, canonical_scale, canonical_level)
    return torch.ops.roi_lab.multi_scale_roi_align(
        maps, rois, scales, ph, pw, ratio, aligned, canonical_scale, canonical_level
    )


def _rois(first: Tensor, boxes: object) -> Tensor:
    """Per-image boxes as Tensor[K, 5] rows with an exact batch index, in the boxes' dtype (float32 at
    least): levels are computed on the boxes as given, as torchvision's LevelMapper does."""
    boxes = list(boxes) if isinstance(boxes, (list, tuple)) else boxes
    if not isinstance(boxes, list) or not boxes or not all(
        isinstance(b, Tensor) and b.dim() == 2 and b.shape[1] == 4 for b in boxes
    ):
        raise ShapeError(
            "multi_scale_roi_align(boxes=...)",
            expected="a list with one Tensor[L, 4] (x1, y1, x2, y2, image px) per image",
            got=describe(boxes),
            fix="pass [boxes_img0, boxes_img1, ...]; an image without boxes gets torch.zeros(0, 4)",
        )
    for b in boxes:
        check_real_dtype(b, "multi_scale_roi_align", "boxes[...]", _REAL_BOXES)
        check_same_device(first, b, "multi_scale_roi_align", "features", "boxes")
    if len(boxes) > first.shape[0]:
        raise InputValueError(
            "multi_scale_roi_align(boxes=[...])",
            expected=f"at most N={first.shape[0]} tensors, one per image of the feature maps",
            got=describe(boxes),
            fix="pass one tensor per image in the batch, in batch order",
        )
    wide = torch.float32
    for b in boxes:
        wide = torch.promote_types(wide, b.dtype) if b.is_floating_point() else wide
    return torch.cat([torch.cat([torch.full_like(b[:, :1], i, dtype=wide), b.detach().to(wide)], 1)
                      for i, b in enumerate(boxes)])  # fmt: skip


def _levels(rois: Tensor, scales: list[float], canonical_scale: float, canonical_level: int) -> Tensor:
    """Index into the maps of each roi's level: Tensor[K] int64 in [0, len(scales))."""
    k_min = int(-math.log2(scales[0]))
    k_max = int(-math.log2(scales[-1]))
    return _torchvision_levels(rois[:, 1:], k_min, k_max, canonical_scale, canonical_level) - k_min


def _onnx_multi_scale(maps, rois, scales, pooled, ratio, aligned, canonical_scale, canonical_level) -> Tensor:
    """ONNX export: every level pools every box (one RoiAlign each) and ``Where`` keeps each box's own
    level, so the graph has static shapes (no NonZero)."""
    levels = _levels(rois, scales, canonical_scale, canonical_level)  # [K]
    result = None
    for level, (feature, scale) in enumerate(zip(maps, scales, strict=True)):
        pooled_level = roi_align(feature, rois, pooled, scale, ratio, aligned).to(maps[0].dtype)  # [K, C, PH, PW]
        result = pooled_level if result is None else torch.where(levels[:, None, None, None] == level,
                                                                 pooled_level, result)  # fmt: skip
    return result  # type: ignore[return-value]  # maps is never empty (checked by the caller)


# --------------------------------------------------------------------------------------------------
# the registered ops


def _check_maps(features: list[Tensor], rois: Tensor) -> None:
    if not features:
        raise InputValueError(
            "multi_scale_roi_align(features=...)",
            expected="at least one feature map",
            got=describe(features),
            fix="pass the FPN outputs, e.g. {'0': p2, '1': p3, '2': p4, '3': p5}",
        )
    _select(list(features), None)
    check_same_device(features[0], rois, "multi_scale_roi_align", "features", "boxes")


@torch.library.custom_op("roi_lab::multi_scale_roi_align", mutates_args=())
def _multi_scale_op(
    features: list[Tensor],
    rois: Tensor,
    scales: list[float],
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
    canonical_scale: float,
    canonical_level: int,
) -> Tensor:
    _check_maps(features, rois)
    check_output_budget(
        (rois.shape[0], features[0].shape[1], pooled_height, pooled_width), "multi_scale_roi_align",
        "pool fewer boxes per call",
    )  # fmt: skip
    k_min, k_max = int(-math.log2(scales[0])), int(-math.log2(scales[-1]))
    levels = assign_fpn_levels(
        rois[:, 1:], k_min=k_min, k_max=k_max, canonical_scale=canonical_scale, canonical_level=canonical_level
    ) - k_min  # [K] index into features; assign_fpn_levels checks the boxes (finite, not inverted)
    result = features[0].new_zeros((rois.shape[0], features[0].shape[1], pooled_height, pooled_width))
    for level, (feature, scale) in enumerate(zip(features, scales, strict=True)):
        ids = torch.where(levels == level)[0]
        pooled = torch.ops.roi_lab.roi_align(
            feature, rois[ids], scale, pooled_height, pooled_width, sampling_ratio, aligned, "avg"
        )
        result.index_copy_(0, ids, pooled.to(result.dtype))
    return result


@_multi_scale_op.register_fake
def _multi_scale_fake(features, rois, scales, pooled_height, pooled_width, sampling_ratio, aligned, canonical_scale,
                      canonical_level):  # fmt: skip
    _check_maps(features, rois)
    return features[0].new_empty((rois.shape[0], features[0].shape[1], pooled_height, pooled_width))


@torch.library.custom_op("roi_lab::_multi_scale_roi_align_backward", mutates_args=())
def _multi_scale_backward_op(
    grad: Tensor,
    rois: Tensor,
    scales: list[float],
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
    canonical_scale: float,
    canonical_level: int,
    shapes: list[int],
    channels_last: list[bool],
    dtypes: list[int],
) -> list[Tensor]:
    """One gradient per map (``shapes``: N, C, H, W per map, flat; ``dtypes``: index into _DTYPES)."""
    levels = _levels(rois, scales, canonical_scale, canonical_level)
    grads = []
    for level, scale in enumerate(scales):
        ids = torch.where(levels == level)[0]
        n, c, h, w = shapes[4 * level : 4 * level + 4]
        grads.append(torch.ops.roi_lab._roi_align_backward(
            grad[ids].to(_DTYPES[dtypes[level]]), rois[ids], scale, pooled_height, pooled_width, sampling_ratio,
            aligned, "avg", n, c, h, w, channels_last[level], None,
        ))  # fmt: skip
    return grads


@_multi_scale_backward_op.register_fake
def _multi_scale_backward_fake(grad, rois, scales, pooled_height, pooled_width, sampling_ratio, aligned,
                               canonical_scale, canonical_level, shapes, channels_last, dtypes):  # fmt: skip
    return [
        grad.new_empty(shapes[4 * i : 4 * i + 4], dtype=_DTYPES[dtypes[i]]).contiguous(
            memory_format=torch.channels_last if channels_last[i] else torch.contiguous_format
        )
        for i in range(len(scales))
    ]


_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _setup_context(ctx, inputs, output) -> None:
    features, rois, *options = inputs
    ctx.options = tuple(options)
    ctx.layout = (
        [d for f in features for d in f.shape],
        [is_channels_last(f) for f in features],
        [_DTYPES.index(f.dtype) for f in features],
    )
    ctx.save_for_backward(rois)


def _backward(ctx, grad: Tensor):
    (rois,) = ctx.saved_tensors
    grads = None
    if ctx.needs_input_grad[0]:
        grads = torch.ops.roi_lab._multi_scale_roi_align_backward(grad, rois, *ctx.options, *ctx.layout)
    return (grads,) + (None,) * 8


def _setup_backward_context(ctx, inputs, output) -> None:
    _, rois, *options = inputs[:9]
    ctx.options = tuple(options)
    ctx.shapes, ctx.dtypes = inputs[9], inputs[11]
    ctx.save_for_backward(rois)


def _double_backward(ctx, grad_grads: list[Tensor | None]):
    """The backward is linear in the incoming gradient, with the forward op as its derivative."""
    (rois,) = ctx.saved_tensors
    grad_grad = None
    if ctx.needs_input_grad[0]:
        maps = [
            g if g is not None else rois.new_zeros(ctx.shapes[4 * i : 4 * i + 4], dtype=_DTYPES[ctx.dtypes[i]])
            for i, g in enumerate(grad_grads)
        ]
        grad_grad = torch.ops.roi_lab.multi_scale_roi_align(maps, rois, *ctx.options)
    return (grad_grad,) + (None,) * 11


_multi_scale_op.register_autograd(_backward, setup_context=_setup_context)
_multi_scale_backward_op.register_autograd(_double_backward, setup_context=_setup_backward_context)


# --------------------------------------------------------------------------------------------------
# the module


class MultiScaleRoIAlign(nn.Module):
    """Drop-in for ``torchvision.ops.MultiScaleRoIAlign`` running on :func:`roi_lab.roi_align`.

    Same constructor and forward; the scales are inferred on the first call and cached, as there.
    ``torch.jit.script`` compiles a TorchScript twin of it; torch.fx records its forward as one leaf.

    Args:
        featmap_names (list[str]): the keys of the feature dict to pool from.
        output_size (int or (PH, PW)): bins per box.
        sampling_ratio (int): samples per bin and axis.
        canonical_scale, canonical_level: the level mapper's ``224`` and ``4``.
    """

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int | tuple[int, int] | list[int],
        sampling_ratio: int,
        *,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        self.featmap_names = featmap_names
        self.sampling_ratio = sampling_ratio
        self.output_size = pair_size(output_size, "MultiScaleRoIAlign", "output_size")
        self.scales: list[float] | None = None
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """Pool ``boxes`` (list of Tensor[L, 4], image px) from the maps in ``x``: Tensor[K, C, PH, PW]."""
        if self.scales is None and not _traced(x, boxes):
            self.scales = infer_scales(_select(x, self.featmap_names), image_shapes)
        return multi_scale_roi_align(
            x,
            boxes,
            image_shapes,
            self.output_size,
            self.sampling_ratio,
            featmap_names=self.featmap_names,
            canonical_scale=self.canonical_scale,
            canonical_level=self.canonical_level,
            scales=self.scales,
        )

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` compiles this twin (TorchScript cannot read the eager validation)."""
        return _ScriptableMultiScaleRoIAlign(self)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})"
        )


def _traced(*values: object) -> bool:
    """Whether torch.fx, or a tensor subclass with its own ``__torch_function__``, is tracing these values.

    Not ``has_torch_function``: that is also true while any ``TorchFunctionMode`` is active (e.g.
    ``roi_lab.capture``'s), and then the scales would never be cached on the module."""
    plain = torch.Tensor.__torch_function__.__func__  # type: ignore[attr-defined]  # a classmethod's function
    for v in tensor_args(*values):
        if isinstance(v, torch.fx.Proxy):
            return True
        if isinstance(v, Tensor) and type(v) not in (Tensor, nn.Parameter):
            if getattr(type(v).__torch_function__, "__func__", None) is not plain:
                return True
    return False


class _ScriptableMultiScaleRoIAlign(nn.Module):
    """What ``torch.jit.script(MultiScaleRoIAlign(...))`` compiles: the same ops, TorchScript-typed."""

    def __init__(self, module: MultiScaleRoIAlign) -> None:
        super().__init__()
        self.featmap_names: List[str] = list(module.featmap_names)  # noqa: UP006
        self.output_size: Tuple[int, int] = module.output_size  # noqa: UP006
        self.sampling_ratio: int = int(module.sampling_ratio)
        self.scales: Optional[List[float]] = module.scales  # noqa: UP006, UP045
        self.canonical_scale: float = float(module.canonical_scale)
        self.canonical_level: int = int(module.canonical_level)

    def forward(
        self,
        x: Dict[str, Tensor],  # noqa: UP006
        boxes: List[Tensor],  # noqa: UP006
        image_shapes: List[Tuple[int, int]],  # noqa: UP006
    ) -> Tensor:
        maps: List[Tensor] = []  # noqa: UP006 - dict order, as torchvision
        for k, v in x.items():
            if k in self.featmap_names:
                maps.append(v)
        scales = self.scales
        if scales is None:
            height = 0
            for s in image_shapes:
                height = max(height, s[0])
            scales = [2.0 ** float(torch.tensor(float(f.shape[-2]) / float(height)).log2().round()) for f in maps]
        wide = torch.float64 if boxes[0].dtype == torch.float64 else torch.float32
        rows = [torch.zeros(0, 5, dtype=wide, device=maps[0].device)]
        for i, b in enumerate(boxes):
            rows.append(torch.cat([torch.full_like(b[:, :1], i, dtype=wide), b.to(wide)], 1))
        rois = torch.cat(rows)
        ph, pw = self.output_size
        if len(maps) == 1:
            return torch.ops.roi_lab.roi_align(maps[0], rois, scales[0], ph, pw, self.sampling_ratio, False, "avg")
        return torch.ops.roi_lab.multi_scale_roi_align(
            maps, rois, scales, ph, pw, self.sampling_ratio, False, self.canonical_scale, self.canonical_level
        )
