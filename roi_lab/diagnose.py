"""Find what is wrong with boxes before they reach ROIAlign / CropAndResize.

:func:`diagnose` inspects what a user is about to pass to the op (boxes, the feature map or its shape,
the image size the boxes should refer to, ``spatial_scale``) and returns :class:`Finding` objects: a code,
a severity, a message, the *evidence* (the numbers that convinced it) and a *fix* (a code snippet). It never
raises on odd input: garbage boxes are reported, not thrown back.

The inference, in short: the map's stride follows from ``image_size`` and the map size; the scale the user
passes maps boxes onto the map. When the boxes overflow the map at that scale but fit at ``map / image``,
they are image pixels with the wrong scale (``IMAGE_SPACE_BOXES`` for scale 1, ``WRONG_STRIDE`` otherwise);
when they fit only with x and y exchanged, ``YX_SWAPPED``; when they already fill the map and are scaled
again, ``DOUBLE_SCALED``; coordinates all in [0, 1] are normalized boxes passed as pixels, and so on.
A correct input gives no error or warning (``info`` findings such as ``SUBCELL_ROI`` may remain).

The knowledge is a rule table, :data:`RULES` (like ruff's: one :class:`Rule` per code, its detector over a
shared context that is computed once: the parsed boxes, the finite rows, the batch layout, the map and image
geometry and the one placement verdict of the stride inference). Adding a convention means adding a rule.

Convention:
    ``op="roi_align"``: torchvision / detectron2 / mmcv. Boxes are (x1, y1, x2, y2) in pixels of the image
    ``image_size`` = (H, W), as ``Tensor[K, 5]`` (batch_index, x1, y1, x2, y2) or a list of ``Tensor[L, 4]``
    (one per image); the op maps them onto the map with ``spatial_scale`` (``None`` = torchvision's
    default 1.0). A box may reach one cell past the map's border: torchvision samples up to there.
    ``op="crop_and_resize"``: TensorFlow. Boxes are normalized (y1, x1, y2, x2), y mapped to
    ``y * (H - 1)`` of the cropped tensor, with ``box_indices`` (``Tensor[K]`` int) naming the image.

Limits (what ranges alone cannot tell, so nothing or only an ``info`` is said):
    - a yx swap on a square image (or a nearly square one: the swap must explain an overflow of more than two
      cells and 10 %), and any swap of normalized crop_and_resize boxes;
    - image-pixel boxes with spatial_scale 1 that all lie inside a map-sized corner of the image;
    - feature-cell boxes scaled again when only one or two boxes fill the map (``DOUBLE_SCALED`` as info);
    - a single sub-cell box at the map's origin with spatial_scale 1 (``NORMALIZED_AS_PIXELS`` as info);
    - boxes in pixels of a different image than ``image_size`` (resized without rescaling the boxes) show up only
      when they leave the map (``OUT_OF_BOUNDS``); the ``aligned`` half-pixel offset is invisible in the boxes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from roi_lab._diagnose_context import OPS, SEVERITIES, Finding, Rule, build_context
from roi_lab._diagnose_context import _fmt as _fmt  # re-exported: roi_lab.capture formats with them
from roi_lab._diagnose_context import _fmt_scale as _fmt_scale
from roi_lab._diagnose_rules import POOLER_DEFAULTS, RULES
from roi_lab.errors import InputValueError, short_repr

__all__ = ["CODES", "PYRAMID_CODES", "SEVERITIES", "RULES", "Rule", "Finding", "diagnose", "has_errors"]

CODES: tuple[str, ...] = (
    "MISSING_BATCH_INDEX",
    "BOX_COLUMNS",
    "BAD_RANK",
    "IMAGE_SPACE_BOXES",
    "WRONG_STRIDE",
    "DOUBLE_SCALED",
    "YX_SWAPPED",
    "NORMALIZED_AS_PIXELS",
    "PIXELS_AS_NORMALIZED",
    "INVERTED_BOX",
    "DEGENERATE_BOX",
    "OUT_OF_BOUNDS",
    "SUBCELL_ROI",
    "BATCH_INDEX_OUT_OF_RANGE",
    "NON_FINITE",
    "DTYPE_MISMATCH",
    "DEVICE_MISMATCH",
    "NON_DIVISIBLE_STRIDE",
    "MIXED_DEFAULTS",
    "FPN_LEVEL_SIZES",
)

#: the codes that speak for the whole ``pyramid=`` (not for one map or its boxes)
PYRAMID_CODES: tuple[str, ...] = ("NON_DIVISIBLE_STRIDE", "FPN_LEVEL_SIZES")


def has_errors(findings: Sequence[Finding]) -> bool:
    """True when any finding has severity ``"error"`` (the CLI exits 1 then).

    Example:
        >>> has_errors([Finding("SUBCELL_ROI", "info", "m", "e", "f")])
        False
        >>> has_errors([Finding("BAD_RANK", "error", "m", "e", "f")])
        True
    """
    return any(f.severity == "error" for f in findings)


def _run_rules(ctx: Any) -> list[Finding]:
    """The reading stage's findings, then every applicable rule's in table order; duplicates (the same code
    and message, e.g. one dtype problem in every tensor of a list) once; errors, warnings, infos."""
    found = list(ctx.read_findings)
    for rule in RULES:
        if rule.check is not None and ctx.op in rule.ops:
            found.extend(Finding(rule.code, *hit) for hit in rule.check(ctx))
    seen: set[tuple[str, str]] = set()
    unique = []
    for f in found:
        if (f.code, f.message) not in seen:
            seen.add((f.code, f.message))
            unique.append(f)
    rank = {sev: i for i, sev in enumerate(SEVERITIES)}
    return sorted(unique, key=lambda f: rank[f.severity])


def _quiet_overflow(fn: Callable[..., list[Finding]]) -> Callable[..., list[Finding]]:
    """Run ``fn`` with numpy's overflow / invalid warnings off: extreme coordinates become inf and are reported."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> list[Finding]:
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)

    return wrapper


@_quiet_overflow
def diagnose(
    boxes: Any,
    *,
    image_size: Any = None,
    features: Any,
    op: str = "roi_align",
    spatial_scale: float | None = None,
    box_indices: Any = None,
    aligned: bool | None = None,
    sampling_ratio: int | None = None,
    convention: str | None = None,
    pyramid: Any = None,
) -> list[Finding]:
    """Inspect what is about to be passed to ROIAlign / CropAndResize and report what looks wrong.

    Args:
        boxes: what the op will get. ``op="roi_align"``: Tensor[K, 5] (batch_index, x1, y1, x2, y2) or a list
            of Tensor[L, 4] (x1, y1, x2, y2) per image. ``op="crop_and_resize"``: Tensor[K, 4] normalized
            (y1, x1, y2, x2). numpy arrays and nested lists are read too; anything else is reported.
        image_size ((H, W)): the image whose pixel coordinates the boxes should be in (an int means square).
            For a padded batch, the padded size (padding at the bottom/right keeps coordinates).
            ``None`` when unknown: only what the map and boxes show is checked then (roi_align: boxes
            leaving the map at ``spatial_scale``, ``OUT_OF_BOUNDS``; crop_and_resize: the map is the image).
        features (Tensor[N, C, H, W] | (N, C, H, W)): the map the op pools from, or its shape. A tensor also
            gives its dtype and device.
        op (str): ``"roi_align"`` (torchvision / detectron2 / mmcv) or ``"crop_and_resize"`` (TensorFlow).
        spatial_scale (float | None): what is passed to roi_align; None means torchvision's default 1.0.
        box_indices (Tensor[K] int | None): crop_and_resize's image index per box.
        aligned, sampling_ratio: roi_align's options as the call passes them (None: not checked).
        convention (str | None): the framework the head was trained with, ``"torchvision"``, ``"mmcv"`` or
            ``"detectron2"``; with ``aligned`` given, ``MIXED_DEFAULTS`` says when the call uses another
            framework's pooler defaults (mmcv and detectron2's ROIAlignV2: aligned=True, sampling_ratio=0;
            torchvision: aligned=False, sampling_ratio=-1).
        pyramid (list | dict | None): every level of the feature pyramid the map belongs to, finest first
            (the FPN's outputs: Tensor[N, C, H, W], (N, C, H, W) shapes or (H, W) sizes; a dict in its order).
            With ``image_size``, ``NON_DIVISIBLE_STRIDE`` then checks the image against the coarsest stride
            (and says what an FPN's top-down sum does with levels that do not halve), and ``FPN_LEVEL_SIZES``
            flags levels that do not halve exactly or do not cover the image; the single-map stride check is
            left to them. The levels are taken as consecutive strides ``s0 * 2**l``.

    Returns:
        list[Finding]: errors first, then warnings, then infos; empty when nothing looks wrong.

    Raises:
        InputValueError: only for an unknown ``op`` or ``convention`` name (a typo in the call, not in the
            data). Odd boxes,
            features or image sizes are reported as findings, never raised.

    Convention:
        roi_align: x1, y1, x2, y2 in image pixels times ``spatial_scale`` = feature-map cells; a box may reach
        one cell past the map border before it counts as out of bounds (torchvision samples in [-1, W]).
        crop_and_resize: normalized y1, x1, y2, x2, pixel = y * (H - 1) of the cropped tensor.

    Example:
        >>> import torch
        >>> rois = torch.tensor([[0.0, 100.0, 50.0, 900.0, 600.0]])
        >>> [f.code for f in diagnose(rois, image_size=(800, 1024), features=(1, 256, 50, 64))]
        ['IMAGE_SPACE_BOXES']
        >>> diagnose(rois, image_size=(800, 1024), features=(1, 256, 50, 64), spatial_scale=1 / 16)
        []
    """
    op_name = op.lower().replace("-", "_") if isinstance(op, str) else None
    if op_name not in OPS:
        raise InputValueError(
            "diagnose(op=...)", expected='"roi_align" or "crop_and_resize"', got=short_repr(op), fix='op="roi_align"'
        )
    if convention is not None and convention not in POOLER_DEFAULTS:
        raise InputValueError(
            "diagnose(convention=...)",
            expected=" or ".join(f'"{c}"' for c in POOLER_DEFAULTS) + " (the framework the head was trained with)",
            got=short_repr(convention),
            fix='convention="mmcv"',
        )
    ctx = build_context(boxes, op=op_name, features=features, image_size=image_size, spatial_scale=spatial_scale,
                        box_indices=box_indices, aligned=aligned, sampling_ratio=sampling_ratio,
                        convention=convention, pyramid=pyramid)  # fmt: skip
    return _run_rules(ctx)
