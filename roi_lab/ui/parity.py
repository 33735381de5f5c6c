"""roi_lab.roi_align against torchvision.ops.roi_align: max abs error and wall time. No streamlit.

Used by the Parity & speed page. Timings are medians of a few ``time.perf_counter`` repeats after
one warm-up call (CUDA is synchronised around each call); they are for a person to read, never
asserted anywhere.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Case", "BENCH_CASES", "RATIO", "TOLERANCE_REL", "tolerance", "run_case", "time_call", "random_case",
           "rois_from_boxes"]

RATIO = "time ratio roi_lab / torchvision"  # < 1: roi_lab is faster
TOLERANCE_REL = 1e-5  # float32: a few ulp of the output's scale; both sum the same samples in different orders


def tolerance(reference: torch.Tensor) -> float:
    """The largest parity error accepted: ``TOLERANCE_REL * max(1, max |reference|)`` (float32 rounding)."""
    scale = float(reference.detach().abs().max()) if reference.numel() else 0.0
    return TOLERANCE_REL * max(1.0, scale)


@dataclass(frozen=True)
class Case:
    """One comparison: a feature-map shape, K random boxes, and the roi_align settings."""

    name: str
    shape: tuple[int, int, int, int]  # N, C, H, W
    boxes: int
    output_size: int = 7
    spatial_scale: float = 1.0 / 16
    sampling_ratio: int = 2
    aligned: bool = True


BENCH_CASES: tuple[Case, ...] = (
    Case("small, aligned", (1, 64, 32, 32), 16, 7, 1 / 16, 2, True),
    Case("adaptive sampling", (2, 32, 40, 56), 32, 7, 1 / 8, 0, False),
    Case("large bins", (1, 16, 64, 64), 8, 14, 1 / 4, 1, True),
)


def time_call(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int = 5) -> float:
    """Median wall time of ``fn`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def random_case(case: Case, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features Tensor[N, C, H, W] and rois Tensor[K, 5] in image px for ``case`` (boxes inside the image)."""
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = case.shape
    features = torch.randn(n, c, h, w, generator=gen)
    img_w, img_h = w / case.spatial_scale, h / case.spatial_scale
    xy = torch.rand(case.boxes, 2, generator=gen) * torch.tensor([img_w, img_h]) * 0.8
    wh = (torch.rand(case.boxes, 2, generator=gen) * 0.5 + 0.05) * torch.tensor([img_w, img_h])
    idx = torch.randint(0, n, (case.boxes, 1), generator=gen).float()
    rois = torch.cat([idx, xy, torch.minimum(xy + wh, torch.tensor([img_w, img_h]))], 1)
    return features.to(device), rois.to(device)


def run_case(
    name: str,
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    repeats: int = 5,
) -> dict[str, object]:
    """Run both implementations on the same input; a row of the parity table.

    ``parity`` is ``"pass"`` when the max abs error is within :func:`tolerance` of torchvision's output;
    the time ratio is roi_lab's median over torchvision's (below 1: roi_lab is faster).
    """
    import torchvision

    from roi_lab import roi_align

    def ours() -> torch.Tensor:
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    def theirs() -> torch.Tensor:
        return torchvision.ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    with torch.inference_mode():
        a, b = ours(), theirs()
        err = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
        tol = tolerance(b)
        ms_ours = time_call(ours, features.device, repeats)
        ms_tv = time_call(theirs, features.device, repeats)
    n, c, h, w = features.shape
    return {
        "case": name,
        "device": str(features.device),
        "features": f"[{n}, {c}, {h}, {w}]",
        "boxes": int(rois.shape[0]),
        "output": f"{output_size}x{output_size}",
        "sampling_ratio": sampling_ratio,
        "aligned": aligned,
        "max abs error": err,
        "tolerance": tol,
        "parity": "pass" if err <= tol else "FAIL",
        "roi_lab ms": round(ms_ours, 3),
        "torchvision ms": round(ms_tv, 3),
        RATIO: round(ms_ours / ms_tv, 2) if ms_tv > 0 else float("nan"),
    }


def rois_from_boxes(boxes_image, device: torch.device) -> torch.Tensor:
    """xyxy image-px boxes (ndarray / list) -> float32 rois Tensor[K, 5] with batch index 0 on ``device``."""
    from roi_lab.boxes import to_rois

    return to_rois(torch.as_tensor(boxes_image, dtype=torch.float32).reshape(-1, 4)).to(device)
