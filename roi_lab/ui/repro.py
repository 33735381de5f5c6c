"""Really call the ops on a pasted input, and report what each one does. No streamlit.

torchvision's compiled ``roi_align`` does not validate values: a NaN box or a batch index outside
``[0, N)`` makes it read outside the feature map (garbage, or a crash of the whole app process). So
:func:`reproduce` refuses to run torchvision on such input and says why; roi_lab's own ops validate
everything and raise readable errors, so they always run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Outcome", "reproduce", "torchvision_refusal", "MAX_BOXES", "MAX_CHANNELS"]

MAX_BOXES = 10_000
MAX_CHANNELS = 16  # the repro runs on a small random map: channels do not change what fails
MAX_CELLS = 4_000_000


@dataclass(frozen=True)
class Outcome:
    """What one implementation did with the input."""

    impl: str  # e.g. "torchvision.ops.roi_align"
    status: str  # "ok" | "raised" | "refused"
    detail: str  # output shape, the exception (type: message), or why it was not run

    def to_dict(self) -> dict[str, str]:
        return {"implementation": self.impl, "status": self.status, "detail": self.detail}


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


def _run(impl: str, fn) -> Outcome:
    try:
        out = fn()
    except Exception as e:  # the point is to show whatever the real op raises
        return Outcome(impl, "raised", f"{type(e).__name__}: {e}")
    return Outcome(impl, "ok", f"returned Tensor[{', '.join(str(d) for d in out.shape)}] {str(out.dtype)[6:]}")


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
) -> list[Outcome]:
    """Call torchvision (when safe) and roi_lab on the boxes, on a small random feature map.

    Args:
        values: the pasted boxes (nested lists of numbers, NaN allowed).
        op (str): ``"roi_align"`` or ``"crop_and_resize"``.
        feature_shape ((N, C, h, w)): the map's shape; channels are capped at 16 for speed.
        spatial_scale (float | None): passed to roi_align (None: the default 1.0).
        box_indices: crop_and_resize's image index per box.
        dtype (str | None): the pasted tensor's dtype name, e.g. ``"float16"``.

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
    outcomes: list[Outcome] = []
    if op == "roi_align":
        import torchvision

        from roi_lab import roi_align

        reason = torchvision_refusal(boxes, n)
        if reason is None:
            outcomes.append(_run("torchvision.ops.roi_align", lambda: torchvision.ops.roi_align(
                features, boxes, output_size, spatial_scale=scale, sampling_ratio=2, aligned=True)))
        else:
            outcomes.append(Outcome("torchvision.ops.roi_align", "refused", f"not run: {reason}"))
        outcomes.append(_run("roi_lab.roi_align", lambda: roi_align(
            features, boxes, output_size, spatial_scale=scale, sampling_ratio=2, aligned=True)))
    else:
        from roi_lab import crop_and_resize

        k = boxes.shape[0] if boxes.dim() else 0
        idx = torch.zeros(k, dtype=torch.int32) if box_indices is None else _tensor(box_indices, "int32")
        outcomes.append(Outcome("tf.image.crop_and_resize", "refused",
                                "not run: TensorFlow is not a dependency of ROI Lab"))
        outcomes.append(_run("roi_lab.crop_and_resize", lambda: crop_and_resize(
            features, boxes, idx.to(device), output_size)))
    return outcomes
