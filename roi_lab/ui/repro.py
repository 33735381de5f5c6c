"""Really call the ops on a pasted input, and report what each one read. No streamlit.

torchvision's compiled ``roi_align`` does not validate values: a NaN box or a batch index outside
``[0, N)`` makes it read outside the feature map (garbage, or a crash of the whole app process). So
:func:`reproduce` refuses to run torchvision on such input and says why; roi_lab's own ops validate
everything and raise readable errors, so they always run.

An op that returns a tensor has not necessarily read the right thing (image-space boxes with
``spatial_scale=1`` run fine and pool zeros). So every call that ran reports what it read: the share
of its samples that fall off the map, the share of output bins that are all zeros, and the largest
difference to the *correctly configured call*: the same boxes with the diagnoser's fixes applied
(:func:`corrected_call`; e.g. ``spatial_scale = 1 / stride`` for IMAGE_SPACE_BOXES, the exact
normalization for PIXELS_AS_NORMALIZED). The page never calls such a run "ok".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Outcome", "Reference", "reproduce", "corrected_call", "torchvision_refusal", "MAX_BOXES", "MAX_CHANNELS"]

MAX_BOXES = 10_000
MAX_CHANNELS = 16  # the repro runs on a small random map: channels do not change what fails
MAX_CELLS = 4_000_000


@dataclass(frozen=True)
class Outcome:
    """What one implementation did with the input, and, when it ran, what it read.

    Attributes:
        impl (str): e.g. ``"torchvision.ops.roi_align"``.
        status (str): ``"ran"`` | ``"raised"`` | ``"refused"``.
        detail (str): the output shape, the exception (type: message), or why it was not run.
        outside (float | None): share of the samples that fall off the map (they read zeros).
        zero_bins (float | None): share of output bins that are zero in every channel.
        max_diff (float | None): max |output - the correctly configured call's output| (None: no such call).
    """

    impl: str
    status: str
    detail: str
    outside: float | None = None
    zero_bins: float | None = None
    max_diff: float | None = None

    @property
    def read(self) -> str:
        """What the call read, in words (empty unless it ran)."""
        if self.status != "ran":
            return ""
        parts = []
        if self.outside is not None:
            parts.append(f"{self.outside:.0%} of its samples fall off the map")
        if self.zero_bins is not None:
            parts.append(f"{self.zero_bins:.0%} of the output bins are all zeros")
        if self.max_diff is not None:
            parts.append(f"max |difference| to the correctly configured call = {self.max_diff:.3g}")
        return "; ".join(parts)

    @property
    def suspicious(self) -> bool:
        """It ran, but read off the map, returned zero bins, or differs from the correct call."""
        return self.status == "ran" and (bool(self.outside) or bool(self.zero_bins) or bool(self.max_diff))

    def to_dict(self) -> dict[str, Any]:
        return {"implementation": self.impl, "status": self.status, "detail": self.detail, "outside": self.outside,
                "zero_bins": self.zero_bins, "max_diff": self.max_diff}


@dataclass(frozen=True)
class Reference:
    """The correctly configured call: boxes (rois Tensor[K, 5] or yxyx-normalized Tensor[K, 4]), its
    spatial_scale (roi_align) and what was changed, in words."""

    boxes: torch.Tensor
    spatial_scale: float | None
    changes: str


def _tensor(values: Any, dtype: str | None) -> torch.Tensor:
    t = torch.tensor(values)
    want = getattr(torch, dtype, None) if dtype else None
    if isinstance(want, torch.dtype):
        return t.to(want)
    return t.float() if not t.is_floating_point() else t


def torchvision_refusal(boxes: torch.Tensor, n: int) -> str | None:
    """Why torchvision must not see these boxes (None when it is safe to call).

    Example:
        >>> torchvision_refusal(torch.tensor([[0.0, 1, 2, 3, float("nan")]]), 1)
        'the boxes hold NaN or inf: torchvision reads outside the feature map (no error), or crashes'
        >>> torchvision_refusal(torch.tensor([[3.0, 1, 2, 3, 4]]), 2)
        'batch index 3 is outside [0, 2): torchvision reads memory past the feature map, or crashes'
        >>> torchvision_refusal(torch.tensor([[1.0, 1, 2, 3, 4]]), 2) is None
        True
    """
    if boxes.is_floating_point() and not bool(torch.isfinite(boxes).all()):
        return "the boxes hold NaN or inf: torchvision reads outside the feature map (no error), or crashes"
    if boxes.dim() == 2 and boxes.shape[1] == 5 and len(boxes):
        idx = boxes[:, 0].double()
        bad = (idx.trunc() < 0) | (idx.trunc() >= n)
        if bool(bad.any()):
            value = float(idx[bad][0])
            shown = int(value) if value.is_integer() else value
            return f"batch index {shown} is outside [0, {n}): torchvision reads memory past the feature map, or crashes"
    if len(boxes) > MAX_BOXES:
        return f"{len(boxes)} boxes: more than the {MAX_BOXES} this panel runs"
    return None


# codes whose fix the reference applies; any other error finding leaves no correct call to compare with
_ROI_FIXES = {"MISSING_BATCH_INDEX", "YX_SWAPPED", "NORMALIZED_AS_PIXELS", "DOUBLE_SCALED", "IMAGE_SPACE_BOXES",
              "WRONG_STRIDE"}
_CROP_FIXES = {"PIXELS_AS_NORMALIZED", "YX_SWAPPED"}


def corrected_call(
    boxes: torch.Tensor,
    codes: set[str],
    *,
    op: str,
    image_size: tuple[int, int],
    feature_shape: tuple[int, int, int, int],
    spatial_scale: float | None,
) -> Reference | None:
    """The same boxes with the diagnoser's fixes applied: the call the user meant.

    Args:
        boxes (Tensor): the pasted boxes (rois [K, 5] / [K, 4] for roi_align; [K, 4] for crop_and_resize).
        codes (set[str]): the codes of the diagnoser's error findings.
        image_size ((H, W)), feature_shape ((N, C, h, w)): the sizes the diagnoser was given.
        spatial_scale (float | None): the user's (None: 1.0).

    Returns:
        Reference | None: None when an error finding has no mechanical fix (e.g. NON_FINITE, BOX_COLUMNS).

    Example:
        >>> ref = corrected_call(torch.tensor([[0., 32, 32, 96, 64]]), {"IMAGE_SPACE_BOXES"}, op="roi_align",
        ...                      image_size=(128, 128), feature_shape=(1, 4, 8, 8), spatial_scale=None)
        >>> ref.spatial_scale, ref.changes
        (0.0625, 'spatial_scale = 1/16')
    """
    from roi_lab.geometry import feature_geometry, tf_boxes_for_feature_map

    fixes = _ROI_FIXES if op == "roi_align" else _CROP_FIXES
    if codes - fixes or not boxes.is_floating_point() or not bool(torch.isfinite(boxes).all()) or boxes.dim() != 2:
        return None
    h, w = image_size
    stride = feature_geometry(image_size, feature_shape[-2:]).nominal_stride[1]
    s = f"1/{stride:g}"
    b = boxes.double().clone()
    changes = []
    if op == "roi_align":
        if b.shape[1] == 4 and "MISSING_BATCH_INDEX" in codes:
            b, _ = torch.cat([torch.zeros(len(b), 1, dtype=b.dtype), b], 1), changes.append("batch index 0 added")
        if b.shape[1] != 5:
            return None
        c = b[:, 1:]
        if "YX_SWAPPED" in codes:
            c, _ = c[:, [1, 0, 3, 2]], changes.append("x and y exchanged")
        if "NORMALIZED_AS_PIXELS" in codes:
            c, _ = c * torch.tensor([w, h, w, h], dtype=c.dtype), changes.append(f"times the image size ({w} x {h})")
        if "DOUBLE_SCALED" in codes:
            c, _ = c * stride, changes.append(f"times the stride {stride:g}")
        scale = spatial_scale if spatial_scale is not None else 1.0
        if codes & {"IMAGE_SPACE_BOXES", "WRONG_STRIDE", "NORMALIZED_AS_PIXELS", "DOUBLE_SCALED"}:
            scale = 1.0 / stride
            changes.append(f"spatial_scale = {s}")
        return Reference(torch.cat([b[:, :1], c], 1).float(), scale, ", ".join(changes) or "none needed")
    if b.shape[1] != 4:
        return None
    if "PIXELS_AS_NORMALIZED" in codes:
        xyxy = b if "YX_SWAPPED" in codes else b[:, [1, 0, 3, 2]]
        fh, fw = feature_shape[-2:]
        if min(fh, fw) < 2:
            return None
        out = tf_boxes_for_feature_map(xyxy, (fh, fw), stride)
        return Reference(out, None, f"pixels normalized exactly: (y / {stride:g} - 0.5) / (h - 1) of the map"
                         + (", x and y exchanged" if "YX_SWAPPED" in codes else ""))
    if "YX_SWAPPED" in codes:
        return Reference(b[:, [1, 0, 3, 2]].float(), None, "x and y exchanged")
    return Reference(b.float(), None, "none needed")


def _outside_share(boxes: torch.Tensor, op: str, scale: float, hw: tuple[int, int], size: int) -> float | None:
    """Share of the op's samples off the map (roi_align: beyond one cell past the border; crop_and_resize:
    outside [0, size - 1]), from roi_lab.geometry's exact sample positions; None if the boxes do not parse."""
    from roi_lab.geometry import crop_and_resize_sample_points, roi_align_sample_points

    h, w = hw
    try:
        if op == "roi_align":
            coords = boxes[:, 1:] if boxes.shape[1] == 5 else boxes
            _, pts, _ = roi_align_sample_points(coords.double(), scale, (size, size), 2, True)
            x, y = pts[..., 0], pts[..., 1]
            valid = ~torch.isnan(x)
            out = valid & ((y < -1.0) | (y > h) | (x < -1.0) | (x > w))
            return float(out.sum()) / max(int(valid.sum()), 1)
        _, pts = crop_and_resize_sample_points(boxes.double(), (h, w), (size, size))
        x, y = pts[..., 0], pts[..., 1]
        return float(((y < 0) | (y > h - 1) | (x < 0) | (x > w - 1)).double().mean())
    except Exception:  # noqa: BLE001 - stats are a courtesy; the op's own outcome says what is wrong
        return None


def _run(impl: str, fn, reference: torch.Tensor | None = None, outside: float | None = None) -> Outcome:
    try:
        out = fn()
    except Exception as e:  # the point is to show whatever the real op raises
        return Outcome(impl, "raised", f"{type(e).__name__}: {e}")
    detail = f"returned Tensor[{', '.join(str(d) for d in out.shape)}] {str(out.dtype)[6:]}"
    zero = float((out == 0).all(1).double().mean()) if out.numel() else None  # [K, PH, PW] bins
    diff = None
    if reference is not None and reference.shape == out.shape:
        diff = float((out.double() - reference.double()).abs().max()) if out.numel() else 0.0
    return Outcome(impl, "ran", detail, outside, zero, diff)


def reproduce(
    values: Any,
    *,
    op: str,
    feature_shape: tuple[int, int, int, int],
    spatial_scale: float | None = None,
    box_indices: Any = None,
    output_size: int = 7,
    dtype: str | None = None,
    device: str = "cpu",
    image_size: tuple[int, int] | None = None,
    error_codes: set[str] | None = None,
) -> list[Outcome]:
    """Call torchvision (when safe) and roi_lab on the boxes, on a small random feature map.

    Args:
        values: the pasted boxes (nested lists of numbers, NaN allowed).
        op (str): ``"roi_align"`` or ``"crop_and_resize"``.
        feature_shape ((N, C, h, w)): the map's shape; channels are capped at 16 for speed.
        spatial_scale (float | None): passed to roi_align (None: the default 1.0).
        box_indices: crop_and_resize's image index per box.
        dtype (str | None): the pasted tensor's dtype name, e.g. ``"float16"``.
        image_size ((H, W) | None): with ``error_codes``, builds the correctly configured call
            (:func:`corrected_call`) that every run is compared with.
        error_codes (set[str] | None): the codes of the diagnoser's error findings (empty: the input as given
            is the correct call).

    Returns:
        list[Outcome]: one per implementation, in the order run.
    """
    n, c, h, w = (int(v) for v in feature_shape)
    if min(n, c, h, w) <= 0 or n * min(c, MAX_CHANNELS) * h * w > MAX_CELLS:
        return [Outcome("setup", "refused", f"feature shape {feature_shape} is empty or too large for this panel")]
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(n, min(c, MAX_CHANNELS), h, w, generator=gen).to(device)
    try:
        boxes = _tensor(values, dtype).to(device)
    except (TypeError, ValueError, RuntimeError) as e:
        return [Outcome("setup", "refused", f"the boxes are not a rectangular list of numbers ({e})")]
    scale = 1.0 if spatial_scale is None else float(spatial_scale)
    ref = None
    if image_size is not None and error_codes is not None:
        ref = corrected_call(boxes.cpu(), set(error_codes), op=op, image_size=image_size,
                             feature_shape=(n, c, h, w), spatial_scale=spatial_scale)
    ok = boxes.dim() == 2 and boxes.is_floating_point() and bool(torch.isfinite(boxes).all()) and len(boxes) > 0
    outcomes: list[Outcome] = []
    if op == "roi_align":
        import torchvision

        from roi_lab import roi_align

        def ours(bx: torch.Tensor, sc: float) -> torch.Tensor:
            return roi_align(features, bx.to(device), output_size, spatial_scale=sc, sampling_ratio=2, aligned=True)

        expected = _quiet(lambda: ours(ref.boxes, ref.spatial_scale)) if ref is not None else None
        outside = _outside_share(boxes.cpu(), op, scale, (h, w), output_size) if ok and boxes.shape[1] in (4, 5) \
            else None
        reason = torchvision_refusal(boxes, n)
        if reason is None:
            outcomes.append(_run("torchvision.ops.roi_align", lambda: torchvision.ops.roi_align(
                features, boxes, output_size, spatial_scale=scale, sampling_ratio=2, aligned=True), expected, outside))
        else:
            outcomes.append(Outcome("torchvision.ops.roi_align", "refused", f"not run: {reason}"))
        outcomes.append(_run("roi_lab.roi_align", lambda: ours(boxes, scale), expected, outside))
    else:
        from roi_lab import crop_and_resize

        k = boxes.shape[0] if boxes.dim() else 0
        idx = torch.zeros(k, dtype=torch.int32) if box_indices is None else _tensor(box_indices, "int32")

        def ours(bx: torch.Tensor) -> torch.Tensor:
            return crop_and_resize(features, bx.to(device), idx.to(device), output_size)

        expected = _quiet(lambda: ours(ref.boxes)) if ref is not None else None
        outside = _outside_share(boxes.cpu(), op, 1.0, (h, w), output_size) if ok and boxes.shape[1] == 4 else None
        outcomes.append(Outcome("tf.image.crop_and_resize", "refused",
                                "not run: TensorFlow is not a dependency of ROI Lab"))
        outcomes.append(_run("roi_lab.crop_and_resize", lambda: ours(boxes), expected, outside))
    return outcomes


def _quiet(fn) -> torch.Tensor | None:
    """``fn()``, or None if the reference call itself is refused (then there is nothing to compare with)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return None
