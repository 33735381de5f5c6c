"""Benchmark: backbone forward time, by default ResNet-50 up to C4 on an 800 x 800 image on the CPU.

    .venv/bin/python benchmarks/bench_backbone.py [--runs 10] [--warmup 2] [--size 800] [--device cpu]

Random weights (the timing does not depend on them). Prints a table of the median, min and max of
``--runs`` forward passes after ``--warmup`` untimed ones, timed by ``Backbone.last_forward_ms``
(the forward pass under ``torch.inference_mode`` only, with CUDA synchronised; no decoding), and writes
JSON to ``benchmarks/results/backbone.json``. Timings on a shared machine are noisy: compare medians
taken on the same machine under the same load only. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from roi_lab.backbone import load_backbone

RESULTS = Path(__file__).resolve().parent / "results" / "backbone.json"


def bench(name: str, stages: list[str] | None, size: int, runs: int, warmup: int, device: str | None) -> dict:
    bb = load_backbone(name, weights="none", device=device)
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    for _ in range(warmup):
        bb.features(image, stages=stages)
    times = []
    for _ in range(runs):
        feats = bb.features(image, stages=stages)
        times.append(bb.last_forward_ms)
    shapes = {s: list(t.shape) for s, t in feats.items()}
    return {
        "backbone": name,
        "stages": stages or list(bb.stages),
        "image": [size, size],
        "device": str(bb.device),
        "dtype": str(bb.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "runs": runs,
        "warmup": warmup,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "times_ms": times,
        "shapes": shapes,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or 'auto' (CUDA when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--all-stages", action="store_true", help="also time the full ResNet-50 (C2..C5) for contrast")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = None if args.device == "auto" else args.device
    cases = [("resnet50", ["C4"])] + ([("resnet50", None)] if args.all_stages else [])
    rows = [bench(name, stages, args.size, args.runs, args.warmup, device) for name, stages in cases]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs visible, "
          f"{platform.processor() or platform.machine()}")
    print("| backbone | stages | image | device | threads | median ms | min ms | max ms | runs |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        stages = r["stages"][0] if len(r["stages"]) == 1 else f"{r['stages'][0]}..{r['stages'][-1]}"
        size = f"{r['image'][0]}x{r['image'][1]}"
        print(f"| {r['backbone']} | {stages} | {size} | {r['device']} {r['dtype']} | {r['threads']} | "
              f"{r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['max_ms']:.0f} | {r['runs']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "note": "wall-clock forward time; noisy on a shared machine"}
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
