"""Benchmark: what ``roi_lab.capture`` costs on torchvision's Faster R-CNN, and per ROI pooling call.

    .venv/bin/python benchmarks/bench_capture.py [--runs 7] [--min-size 800] [--threads N] [--quick]

Faster R-CNN ResNet-50 FPN with random weights (no download; the timing does not depend on them), eval mode,
``torch.no_grad``, on the bundled coffee photo resized by the model's transform (800 x 1216 at the default
``--min-size``). Three variants are timed in turn within each round (so load drift hits them alike; each
round starts with another one, so order effects cancel): no capture, ``capture()``, and
``capture(keep_features=True)``; plus one ``torchvision.ops.roi_align`` call
(512 boxes on a 2 x 256 x 100 x 152 map, and 1 box on a tiny map: the fixed cost per call) with and without
a capture, entering and leaving an empty capture, and the time to compute the findings of a Faster R-CNN
capture and to save it. Prints a table and writes JSON to ``benchmarks/results/capture.json``.
Timings on a shared machine are noisy: compare medians taken under the same load only. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch.overrides import TorchFunctionMode

import roi_lab
from roi_lab.samples import load_sample

RESULTS = Path(__file__).resolve().parent / "results" / "capture.json"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def bench_model(min_size: int, runs: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=min_size
    ).eval()
    image, _ = load_sample("coffee")
    images = [torch.from_numpy(image).permute(2, 0, 1).float() / 255]
    caps: list = []

    def plain():
        model(images)

    def captured(**kwargs):
        with roi_lab.capture(**kwargs) as cap:
            model(images)
        caps.append(cap)

    variants = {
        "none": plain,
        "capture()": captured,
        "capture(keep_features=True)": lambda: captured(keep_features=True),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in variants.values():
                fn()
        caps.clear()
        names = list(variants)
        for r in range(runs):  # each round starts with another variant, so order effects cancel out
            for name in names[r % 3 :] + names[: r % 3]:
                times[name].append(_timed(variants[name]))
    cap = next(c for c in reversed(caps) if not c.keep_features)
    kept = next(c for c in reversed(caps) if c.keep_features)
    findings_ms = _timed(cap.findings)  # computed on first access, after the run
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "capture.pt"
        save_ms = _timed(lambda: cap.save(path))
        file_bytes = path.stat().st_size
    base = statistics.median(times["none"])
    return {
        "model": "fasterrcnn_resnet50_fpn (random weights)",
        "image": list(cap.images[0].image_size),
        "calls_per_forward": len(cap.calls),
        "boxes_per_call": [c.num_boxes for c in cap.calls],
        "bytes_kept": cap.bytes_kept,
        "bytes_kept_with_features": kept.bytes_kept,
        "median_ms": {k: statistics.median(v) for k, v in times.items()},
        "min_ms": {k: min(v) for k, v in times.items()},
        "overhead_ms": {k: statistics.median(v) - base for k, v in times.items()},
        "overhead_pct": {k: 100 * (statistics.median(v) - base) / base for k, v in times.items()},
        "times_ms": times,
        "findings_ms": findings_ms,
        "save_ms": save_ms,
        "file_bytes": file_bytes,
    }


def _call_case(name: str, features: torch.Tensor, rois: torch.Tensor, scale: float, runs: int) -> dict:
    def call():
        torchvision.ops.roi_align(features, rois, 7, spatial_scale=scale, sampling_ratio=2)

    plain, captured = [], []
    for _ in range(3):
        call()
    for _ in range(runs):  # interleaved, so load drift hits both alike; enter/exit is timed on its own
        plain.append(_timed(call))
        with roi_lab.capture():
            captured.append(_timed(call))
    return {
        "case": name,
        "median_ms": {"none": statistics.median(plain), "capture()": statistics.median(captured)},
        "overhead_us": 1e3 * (statistics.median(captured) - statistics.median(plain)),
    }


def bench_calls(runs: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 256, 100, 152, generator=g)
    xy = torch.rand(512, 2, generator=g) * torch.tensor([1100.0, 700])
    wh = 16 + torch.rand(512, 2, generator=g) * 200
    rois = torch.cat([torch.randint(0, 2, (512, 1), generator=g).float(), xy, xy + wh], 1)
    return [
        _call_case("roi_align, 512 boxes on 2 x 256 x 100 x 152, 7 x 7", features, rois, 1 / 8, runs),
        _call_case(
            "roi_align, 1 box on 1 x 1 x 8 x 8 (the fixed cost)",
            torch.randn(1, 1, 8, 8),
            torch.tensor([[0.0, 1, 1, 60, 60]]),
            1 / 8,
            20 * runs,
        ),
    ]


class _Count(TorchFunctionMode):
    """Counts the torch function calls a TorchFunctionMode sees (what the capture's mode is called for)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def bench_mode(model: torch.nn.Module, images: list[torch.Tensor], runs: int) -> dict:
    """The mode's share: torch calls per forward, and the cost of one (a 1-element add, with and without)."""
    with torch.no_grad(), _Count() as count:
        model(images)
    a, b = torch.ones(1), torch.ones(1)
    plain, captured = [], []
    for _ in range(runs):
        plain.append(_timed(lambda: [torch.add(a, b) for _ in range(1000)]))
        with roi_lab.capture():
            captured.append(_timed(lambda: [torch.add(a, b) for _ in range(1000)]))
    per_call_us = statistics.median(captured) - statistics.median(plain)  # ms per 1000 calls = us per call
    return {
        "torch_calls_per_forward": count.n,
        "us_per_torch_call": per_call_us,
        "ms_per_forward": count.n * per_call_us / 1e3,
    }


def bench_enter_exit(runs: int) -> float:
    """Median ms of entering and leaving an empty capture (installing and removing the patches)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with roi_lab.capture():
            pass
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-size", type=int, default=800, help="the detector's min_size (torchvision: 800)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="min_size 320, 3 runs: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.min_size, args.runs = 320, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    model = bench_model(args.min_size, args.runs, args.warmup)
    torch.manual_seed(0)
    detector = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=args.min_size
    ).eval()
    image, _ = load_sample("coffee")
    mode = bench_mode(detector, [torch.from_numpy(image).permute(2, 0, 1).float() / 255], 20)
    calls = bench_calls(max(20, 5 * args.runs))
    enter_exit_ms = bench_enter_exit(50)

    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs visible, {platform.processor() or platform.machine()}"
    )
    h, w = model["image"]
    print(
        f"\nFaster R-CNN forward, {h} x {w} image, recorded calls: {model['calls_per_forward']} "
        f"({', '.join(str(k) for k in model['boxes_per_call'])} boxes), median of {args.runs}:\n"
    )
    print("| capture | median ms | overhead ms | overhead | min ms | min overhead | kept |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    kept = {
        "none": 0,
        "capture()": model["bytes_kept"],
        "capture(keep_features=True)": model["bytes_kept_with_features"],
    }
    for name, ms in model["median_ms"].items():
        low, low0 = model["min_ms"][name], model["min_ms"]["none"]
        print(
            f"| {name} | {ms:.0f} | {model['overhead_ms'][name]:+.1f} | {model['overhead_pct'][name]:+.1f}% | "
            f"{low:.0f} | {100 * (low - low0) / low0:+.1f}% | {kept[name] / 1024:.0f} KiB |"
        )
    print(
        f"\nafter the run: cap.findings() {model['findings_ms']:.0f} ms, cap.save() {model['save_ms']:.0f} ms "
        f"({model['file_bytes'] / 1024:.0f} KiB file)"
    )
    for call in calls:
        print(
            f"one call, {call['case']}: {call['median_ms']['none']:.3f} ms without, "
            f"{call['median_ms']['capture()']:.3f} ms with a capture: {call['overhead_us']:+.0f} us"
        )
    print(f"entering and leaving an empty capture (patching, restoring): {enter_exit_ms:.1f} ms")
    print(
        f"the TorchFunctionMode: {mode['torch_calls_per_forward']} torch calls per forward x "
        f"{mode['us_per_torch_call']:.2f} us = {mode['ms_per_forward']:.1f} ms per forward"
    )
    fixed = calls[1]["overhead_us"] / 1e3
    estimate = enter_exit_ms + mode["ms_per_forward"] + model["calls_per_forward"] * fixed
    print(
        f"so one captured forward costs about {estimate:.1f} ms more (enter/exit + mode + "
        f"{model['calls_per_forward']} x {fixed:.2f} ms per call), "
        f"{100 * estimate / model['min_ms']['none']:.2f}% of the fastest plain forward"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "note": "wall-clock; noisy on a shared machine",
    }
    result = {
        "meta": meta,
        "model": model,
        "calls": calls,
        "enter_exit_ms": enter_exit_ms,
        "mode": mode,
        "estimated_overhead_ms": estimate,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
