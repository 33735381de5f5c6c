"""Benchmark: roi_lab.crop_and_resize (bilinear) against TensorFlow's, when TensorFlow is importable.

    .venv/bin/python benchmarks/bench_crop_and_resize.py [--repeats 9] [--threads N] [--quick]

The case of issue 12: 512 crops of 7 x 7 from a 2 x 256 x 100 x 152 float32 map, boxes inside the map,
NCHW and channels_last inputs (TensorFlow's NHWC image is the channels_last layout). Calls are
interleaved (each repeat times every implementation once) and the medians reported, with the CPU time
per call. TensorFlow is optional (``pip install tensorflow-cpu`` in the same environment); without it
its column says so. ``--threads`` sets torch's and TensorFlow's intra-op threads. Prints a table and
writes JSON to ``benchmarks/results/crop_and_resize.json``. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from roi_lab import crop_and_resize

RESULTS = Path(__file__).resolve().parent / "results" / "crop_and_resize.json"


def _inputs(k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 256, 100, 152, generator=gen)
    y1, x1 = torch.rand(k, generator=gen) * 0.8, torch.rand(k, generator=gen) * 0.8
    hw = torch.rand(k, 2, generator=gen) * 0.2
    boxes = torch.stack([y1, x1, y1 + hw[:, 0], x1 + hw[:, 1]], 1)  # [K, 4] (y1, x1, y2, x2) normalized
    return image, boxes, torch.randint(0, 2, (k,), dtype=torch.int32, generator=gen)


def _tensorflow(image: torch.Tensor, boxes: torch.Tensor, idx: torch.Tensor, threads: int | None):
    # torch's compile stack (which the registered op's first call imports) must be loaded before TensorFlow:
    # the other way round, importing torch._dynamo segfaults in one process here (TF 2.21, torch 2.14)
    import torch._dynamo  # noqa: F401

    try:
        import tensorflow as tf
    except ImportError:
        return None, "not installed (pip install tensorflow-cpu)"
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    nhwc = tf.constant(image.permute(0, 2, 3, 1).numpy())
    b, i = tf.constant(boxes.numpy()), tf.constant(idx.numpy())
    return (lambda: tf.image.crop_and_resize(nhwc, b, i, (7, 7)).numpy()), f"tensorflow {tf.__version__}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch (and TensorFlow) intra-op threads")
    parser.add_argument("--quick", action="store_true", help="64 boxes, 3 repeats: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    k, repeats = (64, 3) if args.quick else (512, max(1, args.repeats))
    image, boxes, idx = _inputs(k)
    channels_last = image.contiguous(memory_format=torch.channels_last)
    impls: dict[str, Callable[[], object] | None] = {
        "roi_lab NCHW": lambda: crop_and_resize(image, boxes, idx, (7, 7)),
        "roi_lab channels_last": lambda: crop_and_resize(channels_last, boxes, idx, (7, 7)),
    }
    tf_call, tf_note = _tensorflow(image, boxes, idx, args.threads)
    impls["tensorflow NHWC"] = tf_call
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, fn in impls.items() if fn is not None}
    for fn in impls.values():
        if fn is not None:
            fn()  # warm-up
    for _ in range(repeats):
        for name, fn in impls.items():
            if fn is None:
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append(((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3))
    results = {}
    for name, fn in impls.items():
        if fn is None:
            results[name] = {"skipped": tf_note}
            continue
        walls, cpus = [t[0] for t in times[name]], [t[1] for t in times[name]]
        results[name] = {"median_ms": round(statistics.median(walls), 2), "min_ms": round(min(walls), 2),
                         "cpu_ms": round(statistics.median(cpus), 2)}  # fmt: skip
    reference = results.get("tensorflow NHWC", {}).get("median_ms")
    print(f"crop_and_resize, {k} crops of 7 x 7 from 2 x 256 x 100 x 152 float32, {torch.get_num_threads()} torch "
          f"threads, median of {repeats} interleaved calls")
    for name, r in results.items():
        if "skipped" in r:
            print(f"  {name:<24} skipped: {r['skipped']}")
            continue
        ratio = f" ({r['median_ms'] / reference:.2f}x TensorFlow)" if reference else ""
        print(f"  {name:<24} {r['median_ms']:8.1f} ms{ratio}, min {r['min_ms']:.1f}, cpu {r['cpu_ms']:.1f} ms")
    report = {
        "meta": {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version.split()[0],
                 "machine": platform.machine(), "boxes": k, "repeats": repeats, "tensorflow": tf_note},
        "results": results,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
