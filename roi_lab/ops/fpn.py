"""Multi-level (FPN) pooling: which pyramid level each box is read from, and pooling across levels.

Three frameworks implement the FPN paper's Eqn. (1) ``k = floor(k0 + log2(sqrt(w * h) / 224))`` with
small differences that move boxes near a level boundary to a different map:

- torchvision ``LevelMapper``: ``floor(4 + log2(sqrt(area) / 224) + 1e-6)``, eps outside the log;
- detectron2 ``assign_boxes_to_levels``: ``floor(4 + log2(sqrt(area) / 224 + 1e-8))``, eps inside;
- mmdet ``SingleRoIExtractor.map_roi_levels``: ``floor(log2(sqrt(area) / 56 + 1e-6))`` as a 0-based
  index into the given maps (0 = the finest).

Two TensorFlow implementations and TensorRT's plugin differ more:

- Matterport Mask R-CNN ``PyramidROIAlign`` (mrcnn/model.py): boxes normalized (y1, x1, y2, x2),
  ``4 + round(log2(sqrt(h * w) / (224 / sqrt(image_area))))``, ``tf.round`` rounding halves to even,
  clamped to 2..5: it rounds where the paper floors, so boxes move up a level from ``sqrt(area) = 224 /
  sqrt(2)`` (158 px) instead of 224;
- TF Model Garden ``multilevel_crop_and_resize`` (official/vision/ops/spatial_transform_ops.py) and
  Keras-CV's ``_ROIAligner`` (keras_cv/layers/object_detection/roi_align.py): ``floor(log(sqrt(area) /
  224) / log(2)) + 4`` in float32, clamped to the levels given; the boxes are then divided by ``2 **
  level`` and sampled once per bin at its centre, edge-clamped (no -0.5 shift);
- TensorRT ``pyramidROIAlignPlugin``: level 2 + the number of thresholds ``(fpn_scale * 2**(L - 4))**2``
  (L = 3, 4, 5) that the box's area exceeds (strictly), on boxes clipped to the image; ``fpn_scale`` 224,
  or 158 in its legacy mode (the thresholds of its first version: 79, 158, 317 px).

The registration layer of :func:`multi_scale_roi_align` lives here too: ``roi_lab::multi_scale_roi_align``
(and its backward) with fake implementations and registered autograd, so that the data-dependent
split of boxes by level happens inside the op and compiled graphs stay whole; a TorchScript twin of
:class:`MultiScaleRoIAlign`; a torch.fx leaf; a composite ONNX export over ``RoiAlign`` nodes. The
pooling itself is :mod:`roi_lab.ops.roi_align`'s op, per level.
"""

from __future__ import annotations

import math
import warnings
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

__all__ = [
    "assign_fpn_levels",
    "fpn_level_table",
    "LEVEL_CONVENTIONS",
    "multi_scale_roi_align",
    "MultiScaleRoIAlign",
    "infer_scales",
    "check_pyramid_scales",
]

#: the level formulas :func:`assign_fpn_levels` knows, each with where it is defined
LEVEL_CONVENTIONS: dict[str, str] = {
    "torchvision": "torchvision/ops/poolers.py LevelMapper",
    "detectron2": "detectron2/modeling/poolers.py assign_boxes_to_levels",
    "mmdet": "mmdet/models/roi_heads/roi_extractors/single_level_roi_extractor.py map_roi_levels",
    "matterport": "matterport/Mask_RCNN mrcnn/model.py PyramidROIAlign",
    "tf_model_garden": "tensorflow/models official/vision/ops/spatial_transform_ops.py multilevel_crop_and_resize",
    "keras_cv": "keras-cv keras_cv/layers/object_detection/roi_align.py multilevel_crop_and_resize",
    "tensorrt": "NVIDIA/TensorRT plugin/pyramidROIAlignPlugin (fpn_scale)",
}
_CONVENTIONS = tuple(LEVEL_CONVENTIONS)
_NEEDS_IMAGE = ("matterport", "tensorrt")
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
    image_size: tuple[int, int] | None = None,
) -> Tensor:
    """The FPN level each box is pooled from, with one framework's exact formula.

    Args:
        boxes (Tensor[K, 4]): ``x1, y1, x2, y2`` in image px (area ``(x2 - x1) * (y2 - y1)``, no +1).
        k_min, k_max: the finest and coarsest level available (P2..P5 by default).
        canonical_scale, canonical_level: Eqn. (1)'s ``224`` and ``k0`` (torchvision, detectron2,
            Matterport, TF Model Garden / Keras-CV; TensorRT's ``fpn_scale``).
        convention: one of :data:`LEVEL_CONVENTIONS`: ``"torchvision"``, ``"detectron2"``, ``"mmdet"``,
            ``"matterport"``, ``"tf_model_garden"``, ``"keras_cv"`` (the same formula) or ``"tensorrt"``.
        finest_scale: mmdet's threshold for the finest level (56 px; boxes under 112 px go there).
        image_size ((H, W)): the image the boxes are in; needed by ``"matterport"`` (it normalizes the
            boxes) and ``"tensorrt"`` (it clips them to the image).

    Returns:
        Tensor[K] int64: the absolute level ``k`` in ``[k_min, k_max]`` for every convention
        (``2`` means P2, stride 4). torchvision's ``LevelMapper`` and detectron2 return
        ``k - k_min`` internally, and mmdet returns its 0-based index, ``k - k_min`` as well.

    Convention:
        the formulas, computed in the boxes' floating dtype (float32 for integer boxes):

        - torchvision: ``clamp(floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6), k_min, k_max)``
        - detectron2: ``clamp(floor(canonical_level + log2(sqrt(area) / canonical_scale + 1e-8)), k_min, k_max)``
        - mmdet: ``k_min + clamp(floor(log2(sqrt(area) / finest_scale + 1e-6)), 0, k_max - k_min)``
        - matterport: ``clamp(canonical_level + round(log2(sqrt(h * w) / (canonical_scale / sqrt(H * W)))),
          k_min, k_max)`` in float32 on the boxes normalized as Matterport's ``norm_boxes`` does:
          ``(y1 / (H - 1), x1 / (W - 1), (y2 - 1) / (H - 1), (x2 - 1) / (W - 1))``; ``round`` is ``tf.round``
          (halves to even); a box under 1 px (no real root) goes to ``k_min``
        - tf_model_garden, keras_cv: ``clamp(floor(log(sqrt(area) / canonical_scale) / log(2)) +
          canonical_level, k_min, k_max)`` in float32
        - tensorrt: ``k_min`` plus the number of levels ``L`` in ``(k_min, k_max]`` with ``area >
          (canonical_scale * 2 ** (L - canonical_level)) ** 2`` (strictly), the box clipped to the image
          and normalized by it, in float32, as the plugin does

        Zero-area boxes go to ``k_min``. ``canonical_scale`` and ``finest_scale`` must be finite and
        positive (a NaN or negative one would put every box on level -2**63).

    Example:
        >>> boxes = torch.tensor([[0.0, 0, 112, 112], [0, 0, 224, 224], [0, 0, 1000, 1000]])
        >>> assign_fpn_levels(boxes).tolist()
        [3, 4, 5]
        >>> assign_fpn_levels(torch.tensor([[0.0, 0, 111.9, 111.9]]), convention="mmdet").tolist()
        [2]
        >>> b = torch.tensor([[0.0, 0, 170, 170]])  # 170 px: P3 for the paper's floor, P4 for Matterport's round
        >>> assign_fpn_levels(b).tolist(), assign_fpn_levels(b, convention="matterport", image_size=(800, 800)).tolist()
        ([3], [4])
    """
    where = "assign_fpn_levels"
    if convention not in _CONVENTIONS:
        raise InputValueError(
            f"{where}(convention=...)",
            expected="one of " + ", ".join(f'"{c}"' for c in _CONVENTIONS),
            got=describe(convention),
            fix='pass convention="torchvision" (the default) or the framework whose model you debug',
        )
    # (H, W) for the conventions that normalize by the image; the others never read it
    size = _one_image_size(image_size, where, convention) if convention in _NEEDS_IMAGE else (0, 0)
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
    if convention == "matterport":
        return _matterport_levels(boxes, size, k_min, k_max, canonical_scale, canonical_level)
    if convention in ("tf_model_garden", "keras_cv"):
        s32 = s.float()
        level = torch.floor(torch.log(s32 / canonical_scale) / torch.log(torch.tensor(2.0))) + canonical_level
        level = torch.nan_to_num(level, nan=k_min, neginf=k_min)  # TF: log(0) = -inf, cast and clamped up
        return level.clamp(k_min, k_max).to(torch.int64)
    if convention == "tensorrt":
        return _tensorrt_levels(boxes, size, k_min, k_max, canonical_scale, canonical_level)
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


def _matterport_levels(boxes: Tensor, image_size: tuple[int, int], k_min: int, k_max: int, canonical_scale: float,
                       canonical_level: int) -> Tensor:  # fmt: skip
    """Matterport's PyramidROIAlign on pixel boxes normalized by its ``norm_boxes``: Tensor[K] int64."""
    height, width = image_size
    b = boxes.float()
    h = (b[:, 3] - 1 - b[:, 1]) / max(height - 1, 1)  # norm_boxes: shift (0, 0, 1, 1), scale (H - 1, W - 1)
    w = (b[:, 2] - 1 - b[:, 0]) / max(width - 1, 1)
    image_area = torch.tensor(float(height * width))
    roi_level = torch.log2(torch.sqrt(h * w) / (canonical_scale / torch.sqrt(image_area)))
    level = canonical_level + torch.round(roi_level)  # tf.round: halves to even, as torch.round
    level = torch.nan_to_num(level, nan=k_min, neginf=k_min)  # sqrt of a negative area: TF casts NaN to INT_MIN
    return level.clamp(k_min, k_max).to(torch.int64)


def _tensorrt_levels(boxes: Tensor, image_size: tuple[int, int], k_min: int, k_max: int, fpn_scale: float,
                     canonical_level: int) -> Tensor:  # fmt: skip
    """TensorRT's pyramidROIAlignPlugin (absolute coordinates, no +1): Tensor[K] int64."""
    height, width = image_size
    b = boxes.float()
    x1, x2 = b[:, 0].clamp(0, width) / width, b[:, 2].clamp(0, width) / width
    y1, y2 = b[:, 1].clamp(0, height) / height, b[:, 3].clamp(0, height) / height
    area = (y2 - y1) * (x2 - x1)  # normalized, as the plugin computes it
    norm = torch.tensor(fpn_scale * fpn_scale / (height * width), dtype=torch.float32)  # normScale ** 2
    level = torch.full_like(area, k_min, dtype=torch.int64)
    for target in range(k_min + 1, k_max + 1):
        threshold = norm * 4.0 ** (target - canonical_level)
        level += (area > threshold).long()
    return level


def _one_image_size(image_size: object, where: str, convention: str) -> tuple[int, int]:
    pair = tuple(as_int(v) for v in image_size) if isinstance(image_size, (list, tuple, torch.Size)) else ()
    if len(pair) != 2 or not all(v is not None and v > 0 for v in pair):
        raise InputValueError(
            f"{where}(image_size=...)",
            expected=f"the (height, width) of the image the boxes are in: convention={convention!r} "
            + ("normalizes the boxes by it" if convention == "matterport" else "clips the boxes to it"),
            got=describe(image_size),
            fix=f"pass image_size=(H, W), e.g. assign_fpn_levels(boxes, convention={convention!r}, "
            "image_size=(1024, 1024))",
        )
    return pair  # type: ignore[return-value]


def fpn_level_table(
    boxes: Tensor,
    image_size: tuple[int, int],
    *,
    conventions: Sequence[str] | None = None,
    k_min: int = 2,
    k_max: int = 5,
) -> dict[str, Tensor]:
    """The level every box lands on under each convention, and which boxes the conventions disagree on.

    Args:
        boxes (Tensor[K, 4]): ``x1, y1, x2, y2`` in image px.
        image_size ((H, W)): the image the boxes are in (Matterport normalizes by it, TensorRT clips to it).
        conventions: the keys of :data:`LEVEL_CONVENTIONS` to compare (all by default; ``"keras_cv"`` is
            left out of the default: its formula is TF Model Garden's); ``"tensorrt"`` uses fpn_scale 224
            and ``"tensorrt_legacy"`` 158.
        k_min, k_max: the levels available.

    Returns:
        dict[str, Tensor]: ``"sqrt_area"`` (Tensor[K] float), one Tensor[K] int64 of levels per convention,
        and ``"disagree"`` (Tensor[K] bool): the boxes not all conventions put on the same level.

    Example:
        >>> t = fpn_level_table(torch.tensor([[0.0, 0, 100, 100], [0, 0, 170, 170]]), (800, 800))
        >>> t["torchvision"].tolist(), t["matterport"].tolist(), t["tensorrt_legacy"].tolist(), t["disagree"].tolist()
        ([2, 3], [3, 4], [3, 4], [True, True])
    """
    names = list(conventions) if conventions is not None else [c for c in _CONVENTIONS if c != "keras_cv"] + [
        "tensorrt_legacy"
    ]
    table: dict[str, Tensor] = {}
    for name in names:
        convention, scale = ("tensorrt", 158.0) if name == "tensorrt_legacy" else (name, 224.0)
        table[name] = assign_fpn_levels(boxes, k_min=k_min, k_max=k_max, convention=convention,
                                        canonical_scale=scale, image_size=image_size)  # fmt: skip
    levels = torch.stack([table[n] for n in names]) if names else torch.zeros(0, len(boxes), dtype=torch.int64)
    b = boxes.double()
    table = {"sqrt_area": torch.sqrt((b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)), **table}
    table["disagree"] = (levels != levels[:1]).any(0) if names else torch.zeros(len(boxes), dtype=torch.bool)
    return table


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
    """Each map's spatial scale as torchvision infers it: ``2 ** round(log2(h / H))``, from the longer side.

    ``H`` is the largest image height in the batch and ``h`` the map's height, as in torchvision's
    ``_infer_scale``. The log is taken in float32, as torchvision's ``torch.tensor(h / H).log2().round()``
    does (emulated in Python, so it compiles; near ``2 ** (k + 0.5)`` float32 and float64 can round
    differently). Under ``torch.compile(dynamic=True)`` the map sizes are symbolic and cannot be rounded in
    Python: pass ``scales`` there (``MultiScaleRoIAlign`` infers them once and caches them, as torchvision
    does).

    Oblong images: the batch is padded to a multiple of the stride, so on an image's short side the map
    holds mostly padding and ``h / H`` can round to the wrong power of two (a 10 x 100 image padded to 32 x
    128 gives a stride-4 map of 8 x 32: 8 / 10 rounds to scale 1, 32 / 100 to 1/4). torchvision < 0.10
    asserted that both sides agree (the ``AssertionError`` of pytorch/vision#3747, #3949); torchvision 0.29
    silently takes the height. Here the scale comes from the batch's longer side, and a ``UserWarning``
    says when the height would have given another one.

    Example:
        >>> infer_scales([torch.zeros(1, 1, 200, 304), torch.zeros(1, 1, 100, 152)], [(800, 1216)])
        [0.25, 0.125]
    """
    sizes = _image_sizes(image_sizes)
    height = max(s[0] for s in sizes)
    width = max(s[1] for s in sizes)
    scales, differ = [], []
    for i, f in enumerate(features):
        by_height = _pow2_scale(float(f.shape[-2]) / float(height))
        by_width = _pow2_scale(float(f.shape[-1]) / float(width)) if width > height else by_height
        if by_width != by_height:
            differ.append(f"map {i} ({int(f.shape[-2])} x {int(f.shape[-1])}): {by_height:g} by height, "
                          f"{by_width:g} by width")  # fmt: skip
        scales.append(by_width)
    if differ:
        warnings.warn(
            f"infer_scales: on images up to {height} x {width} the padded short side misleads the height-based "
            f"scale torchvision 0.29 uses (older versions raise AssertionError: pytorch/vision#3747): "
            f"{'; '.join(differ)}; using the longer side's. Pass scales=[...] explicitly, or resize the images so "
            "that the short side is much larger than the largest stride.",
            stacklevel=2,
        )
    return scales


def _pow2_scale(approx: float) -> float:
    """``2 ** round(log2(approx))`` in float32, as torchvision's ``_infer_scale``."""
    return 2.0 ** round(_float32(math.log2(_float32(approx))))


def check_pyramid_scales(scales: Sequence[float], where: str = "multi_scale_roi_align") -> None:
    """The scales must be ``1 / 2**k`` for consecutive ``k`` (finest first), or a clear error.

    torchvision's ``MultiScaleRoIAlign`` maps boxes to levels ``k_min = -log2(scales[0])`` ..
    ``k_max = -log2(scales[-1])`` and pools level ``k`` from map ``k - k_min``: with a skipped level
    (P2 and P4, 1/4 and 1/16) the boxes of the last levels find no map and come back as zeros, and a
    scale that is no power of two (1/6) is truncated to a level of another size. It does this without a
    word; roi_lab refuses.

    Example:
        >>> check_pyramid_scales([1 / 4, 1 / 8, 1 / 16])
        >>> try:
        ...     check_pyramid_scales([1 / 4, 1 / 16])
        ... except ValueError as e:
        ...     print(type(e).__name__, e.got[:37])
        InputValueError [1/4, 1/16]: level 3 (1/8) is missing
    """
    levels = [-math.log2(s) for s in scales]
    shown = "[" + ", ".join(_scale_text(s) for s in scales) + "]"
    expected = "scales 1 / 2**k of consecutive levels k, finest first (e.g. [1/4, 1/8, 1/16, 1/32])"
    odd = [s for s, k in zip(scales, levels, strict=True) if abs(k - round(k)) > 1e-6]
    if odd:
        raise InputValueError(
            f"{where}(scales=...)",
            expected=expected,
            got=f"{shown}: {_scale_text(odd[0])} is no power of two, so its level is truncated to "
            f"{int(-math.log2(odd[0]))} and its boxes are pooled at a scale that is not their map's",
            fix="use the backbone's real strides (powers of two), or pass scales=[...] explicitly",
        )
    ks = [round(k) for k in levels]
    if ks == list(range(ks[0], ks[0] + len(ks))):
        return
    if ks == sorted(set(ks)):
        missing = [k for k in range(ks[0], ks[-1] + 1) if k not in ks]
        got = (f"{shown}: level {missing[0]} ({_scale_text(2.0 ** -missing[0])}) is missing, so the boxes of the "
               f"last {len(missing)} level(s) would find no map and pool zeros (torchvision does that silently)")
    else:
        got = f"{shown}: the levels are repeated or not finest first"
    raise InputValueError(
        f"{where}(scales=...)",
        expected=expected,
        got=got,
        fix="pool from consecutive FPN levels (featmap_names=['0', '1', '2', '3']), or give each level its own "
        "roi_align call",
    )


def _scale_text(s: float) -> str:
    inv = 1.0 / s
    return f"1/{int(round(inv))}" if s < 1 and abs(inv - round(inv)) < 1e-6 * inv else f"{s:g}"


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
    check_pyramid_scales(scales)
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
    # the op itself too: TorchScript and direct torch.ops calls come here
    check_pyramid_scales(_check_scales(scales, len(features)))
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
    check_pyramid_scales(_check_scales(scales, len(features)))
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
        if scales is None:  # as infer_scales: from the longer side of the largest image
            height, width = 0, 0
            for s in image_shapes:
                height = max(height, s[0])
                width = max(width, s[1])
            side, full = (-1, width) if width > height else (-2, height)
            scales = [2.0 ** float(torch.tensor(float(f.shape[side]) / float(full)).log2().round()) for f in maps]
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
