"""Multi-level (FPN) pooling: which pyramid level each box is read from, and pooling across levels.

Three frameworks implement the FPN paper's Eqn. (1) ``k = floor(k0 + log2(sqrt(w * h) / 224))`` with
small differences that move boxes near a level boundary to a different map:

- torchvision ``LevelMapper``: ``floor(4 + log2(sqrt(area) / 224) + 1e-6)``, eps outside the log;
- detectron2 ``assign_boxes_to_levels``: ``floor(4 + log2(sqrt(area) / 224 + 1e-8))``, eps inside;
- mmdet ``SingleRoIExtractor.map_roi_levels``: ``floor(log2(sqrt(area) / 56 + 1e-6))`` as a 0-based
  index into the given maps (0 = the finest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from roi_lab.errors import InputValueError, ShapeError, describe
from roi_lab.ops._checks import check_feature_map, check_finite, check_same_device
from roi_lab.ops.roi_align import roi_align

__all__ = ["assign_fpn_levels", "multi_scale_roi_align", "MultiScaleRoIAlign", "infer_scales"]

_CONVENTIONS = ("torchvision", "detectron2", "mmdet")


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

        Zero-area boxes go to ``k_min``.

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
    if not (isinstance(k_min, int) and isinstance(k_max, int)) or k_min > k_max:
        raise InputValueError(
            f"{where}(k_min=..., k_max=...)",
            expected="integer levels with k_min <= k_max",
            got=f"k_min={k_min!r}, k_max={k_max!r}",
            fix="pass e.g. k_min=2, k_max=5 for P2..P5",
        )
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ShapeError(
            f"{where}(boxes=...)",
            expected="boxes as Tensor[K, 4] (x1, y1, x2, y2) in image px",
            got=describe(boxes),
            fix="drop the batch-index column (boxes[:, 1:]) or concatenate a per-image list with torch.cat",
        )
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
        level = torch.floor(canonical_level + torch.log2(s / canonical_scale) + torch.tensor(1e-6, dtype=s.dtype))
    elif convention == "detectron2":
        level = torch.floor(canonical_level + torch.log2(s / canonical_scale + 1e-8))
    else:
        level = k_min + torch.floor(torch.log2(s / finest_scale + 1e-6)).clamp(0, k_max - k_min)
    return level.clamp(k_min, k_max).to(torch.int64)  # [K]


def infer_scales(features: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]]) -> list[float]:
    """Each map's spatial scale as torchvision infers it: ``2 ** round(log2(h / H))``.

    ``H`` is the largest image height in the batch (torchvision uses the height only).

    Example:
        >>> infer_scales([torch.zeros(1, 1, 200, 304), torch.zeros(1, 1, 100, 152)], [(800, 1216)])
        [0.25, 0.125]
    """
    if not image_sizes:
        raise InputValueError(
            "multi_scale_roi_align(image_sizes=...)",
            expected="one (height, width) per image",
            got=describe(image_sizes),
            fix="pass the sizes of the images fed to the backbone, e.g. [(800, 1216)]",
        )
    height = max(int(s[0]) for s in image_sizes)
    scales = []
    for f in features:
        approx = float(f.shape[-2]) / float(height)
        scales.append(2 ** float(torch.tensor(approx).log2().round()))
    return scales


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

    Returns:
        Tensor[K, C, PH, PW]: boxes in input order (image 0's first).

    Convention:
        levels come from :func:`assign_fpn_levels` with ``convention="torchvision"`` and
        ``k_min = -log2(scales[0])``, ``k_max = -log2(scales[-1])``; with a single map every box is
        pooled from it.
    """
    maps = _select(features, featmap_names)
    boxes = list(boxes)
    if not boxes or not all(isinstance(b, Tensor) and b.dim() == 2 and b.shape[1] == 4 for b in boxes):
        raise ShapeError(
            "multi_scale_roi_align(boxes=...)",
            expected="a list with one Tensor[L, 4] (x1, y1, x2, y2, image px) per image",
            got=describe(boxes),
            fix="pass [boxes_img0, boxes_img1, ...]; an image without boxes gets torch.zeros(0, 4)",
        )
    if scales is None:
        scales = infer_scales(maps, image_sizes)
    scales = [float(s) for s in scales]
    if len(scales) != len(maps):
        raise InputValueError(
            "multi_scale_roi_align(scales=...)",
            expected=f"one scale per feature map ({len(maps)})",
            got=describe(scales),
            fix="leave scales=None to infer them from the map and image sizes",
        )
    if len(maps) == 1:
        return roi_align(maps[0], boxes, output_size, scales[0], sampling_ratio, aligned)
    k_min = int(-math.log2(scales[0]))
    k_max = int(-math.log2(scales[-1]))
    all_boxes = torch.cat(boxes)  # [K, 4]
    levels = (
        assign_fpn_levels(
            all_boxes, k_min=k_min, k_max=k_max, canonical_scale=canonical_scale, canonical_level=canonical_level
        )
        - k_min
    )  # [K] index into maps
    batch = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])  # [K, 1]
    rois = torch.cat([batch, all_boxes], 1)  # [K, 5]
    n, c = maps[0].shape[:2]
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    result = maps[0].new_zeros(len(rois), c, ph, pw)
    for level, (feature, scale) in enumerate(zip(maps, scales, strict=True)):
        ids = torch.where(levels == level)[0]
        pooled = roi_align(feature, rois[ids], (ph, pw), scale, sampling_ratio, aligned)
        result = result.index_copy(0, ids, pooled.to(result.dtype))  # out of place, so autograd sees it
    return result


class MultiScaleRoIAlign(nn.Module):
    """Drop-in for ``torchvision.ops.MultiScaleRoIAlign`` running on :func:`roi_lab.roi_align`.

    Same constructor and forward; the scales are inferred on the first call and cached, as there.

    Args:
        featmap_names (list[str]): the keys of the feature dict to pool from.
        output_size (int or (PH, PW)): bins per box.
        sampling_ratio (int): samples per bin and axis.
        canonical_scale, canonical_level: the level mapper's ``224`` and ``4``.
    """

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int | tuple[int] | list[int],
        sampling_ratio: int,
        *,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.featmap_names = featmap_names
        self.sampling_ratio = sampling_ratio
        self.output_size = tuple(output_size)
        self.scales: list[float] | None = None
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """Pool ``boxes`` (list of Tensor[L, 4], image px) from the maps in ``x``: Tensor[K, C, PH, PW]."""
        maps = _select(x, self.featmap_names)
        if self.scales is None:
            self.scales = infer_scales(maps, image_shapes)
        return multi_scale_roi_align(
            maps,
            boxes,
            image_shapes,
            self.output_size,
            self.sampling_ratio,
            canonical_scale=self.canonical_scale,
            canonical_level=self.canonical_level,
            scales=self.scales,
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})"
        )
