"""Benchmark roi_lab.roi_align against torchvision's compiled kernel, torchvision's pure-PyTorch
``_roi_align`` (as it runs: lazily compiled with torch.compile) and onnxruntime's RoiAlign.

Usage::

    python benchmarks/bench_roi_align.py            # all cases, table + benchmarks/results/roi_align.json
    python benchmarks/bench_roi_align.py --quick    # smoke run: fewer repeats, no tv_python, no memory
    python benchmarks/bench_roi_align.py --device cuda --cases fpn_p3 backward
    python benchmarks/bench_roi_align.py --threads 1     # one thread each (torchvision's kernel is serial)
    python benchmarks/bench_roi_align.py --contention    # a busy process on one core during the timings

Method: every case builds one set of inputs (fixed seed) shared by all implementations; after a
warm-up call each, the implementations run interleaved (A B C A B C ...), each sample timing enough
back-to-back calls for ~10 ms (one call for the large cases; a lone sub-millisecond call mostly times cold
caches), and the table reports the median wall-clock time per call, the ratio to torchvision's kernel,
and the peak extra memory. On the CPU the
peak extra memory is measured in a fresh subprocess per implementation and case: after a warm-up
call, the kernel's resident-set high-water mark is reset (``echo 5 > /proc/self/clear_refs``) and
the result is ``VmHWM`` after one call minus ``VmRSS`` before it, so it includes the output and
every temporary the call touches. The subprocess runs with ``MALLOC_MMAP_THRESHOLD_=65536`` and
``MALLOC_TRIM_THRESHOLD_=0`` so that glibc returns every freed block to the OS and cannot serve the
measured call from pages the warm-up left resident. onnxruntime keeps its own arena from the
warm-up, so its number shows only what one more call adds. On CUDA it is
``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()`` minus the memory held
before the call. ``cpu ms`` is the process CPU time per call (all threads), a steadier number than
wall-clock time when other processes share the machine. ``--threads T`` sets torch's thread count
(and onnxruntime's intra-op threads) for every implementation; ``--contention`` starts one
spinning process pinned to the last core before the timings and stops it after them, to show what
a busy core costs each implementation (the memory runs are not under contention).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roi_lab.ops.roi_align import roi_align  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "roi_align.json"

# name: N, C, H, W, stride, K, box side range (image px), output size, sampling_ratio, aligned, backward
CASES: dict[str, dict] = {
    "fpn_p3": dict(n=2, c=256, h=100, w=152, stride=8, k=512, lo=8, hi=208, out=7, ratio=2, aligned=True),
    "c4_adaptive": dict(n=1, c=1024, h=50, w=76, stride=16, k=300, lo=16, hi=800, out=14, ratio=0, aligned=True),
    "mask_head": dict(n=2, c=256, h=100, w=152, stride=8, k=100, lo=8, hi=208, out=14, ratio=2, aligned=True),
    "large_rois": dict(n=1, c=256, h=200, w=200, stride=4, k=128, lo=200, hi=800, out=7, ratio=2, aligned=True),
    "tiny_many": dict(n=4, c=64, h=100, w=100, stride=16, k=4000, lo=4, hi=64, out=7, ratio=2, aligned=True),
    "legacy": dict(n=2, c=256, h=100, w=152, stride=8, k=512, lo=8, hi=208, out=7, ratio=-1, aligned=False),
    "backward": dict(
        n=2, c=256, h=100, w=152, stride=8, k=512, lo=8, hi=208, out=7, ratio=2, aligned=True, backward=True
    ),
    # large boxes on a small, coarse map (FPN's P5): many boxes read the same few pixels
    "p5_many": dict(n=2, c=256, h=25, w=38, stride=32, k=1000, lo=32, hi=800, out=7, ratio=2, aligned=False),
    # the app's calls (Parity page): a fixed cost per call shows here, not in the large cases
    "small_call": dict(n=1, c=16, h=64, w=64, stride=1, k=8, lo=4, hi=48, out=14, ratio=2, aligned=True),
    # the fixed cost of a call: one channel, so the time is validation, dispatch and planning
    "fixed_k1": dict(n=1, c=1, h=64, w=64, stride=1, k=1, lo=4, hi=48, out=7, ratio=2, aligned=True),
    "fixed_k64": dict(n=1, c=1, h=64, w=64, stride=1, k=64, lo=4, hi=48, out=7, ratio=2, aligned=True),
}
IMPLS = ("roi_lab", "tv_kernel", "tv_python", "onnxruntime")


def make_inputs(case: dict, device: str = "cpu", seed: int = 0):
    """Feature map [N, C, H, W] and rois [K, 5]: box sides uniform in [lo, hi] image px per axis,
    centres uniform over the image (H * stride, W * stride), boxes clipped to the image."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(case["n"], case["c"], case["h"], case["w"], generator=gen)
    image_w, image_h = case["w"] * case["stride"], case["h"] * case["stride"]
    k = case["k"]
    side = torch.rand(k, 2, generator=gen) * (case["hi"] - case["lo"]) + case["lo"]  # [K, 2] (w, h)
    centre = torch.rand(k, 2, generator=gen) * torch.tensor([image_w, image_h], dtype=torch.float32)
    xy1 = centre - side / 2
    xy2 = centre + side / 2
    limit = torch.tensor([image_w, image_h], dtype=torch.float32)
    xy1 = torch.minimum(torch.maximum(xy1, torch.zeros(2)), limit)
    xy2 = torch.minimum(torch.maximum(xy2, torch.zeros(2)), limit)
    batch = torch.randint(0, case["n"], (k, 1), generator=gen).float()
    rois = torch.cat([batch, xy1, xy2], 1)
    grad = torch.randn(k, case["c"], case["out"], case["out"], generator=gen)
    return x.to(device), rois.to(device), grad.to(device)


def _tv_python():
    import torchvision.ops  # noqa: F401  (registers the submodule)

    return sys.modules["torchvision.ops.roi_align"]._roi_align


def build(impl: str, case: dict, x, rois, grad):
    """A zero-argument callable running one forward (and backward for the backward case)."""
    out, scale, ratio, aligned = case["out"], 1.0 / case["stride"], case["ratio"], case["aligned"]
    backward = case.get("backward", False)
    if impl == "onnxruntime":
        if backward or x.device.type != "cpu":
            return None
        return _build_onnxruntime(case, x, rois, torch.get_num_threads())
    if impl == "roi_lab":

        def forward(t):
            return roi_align(t, rois, out, scale, ratio, aligned)
    elif impl == "tv_kernel":
        import torchvision

        def forward(t):
            return torchvision.ops.roi_align(t, rois, out, scale, ratio, aligned)
    elif impl == "tv_python":
        fn = _tv_python()
        if ratio <= 0:  # it samples every (IY, IX) < (H, W) and masks: K*C*PH*PW*H*W samples
            samples = case["k"] * case["c"] * out * out * case["h"] * case["w"]
            if samples > 1e9:
                raise RuntimeError(f"skipped: adaptive sampling evaluates {samples / 1e9:.0f}G samples")

        def forward(t):
            return fn(t, rois, scale, out, out, ratio, aligned)
    else:
        raise ValueError(impl)
    if not backward:
        return lambda: forward(x)
    leaf = x.clone().requires_grad_()

    def step():
        forward(leaf).backward(grad)
        result, leaf.grad = leaf.grad, None  # hold no gradient between calls (memory baseline)
        return result

    return step


def _build_onnxruntime(case: dict, x, rois, threads: int | None = None):
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    # ONNX RoiAlign (opset 16): half_pixel = aligned=True; output_half_pixel = the legacy aligned=False
    mode = "half_pixel" if case["aligned"] else "output_half_pixel"
    node = helper.make_node(
        "RoiAlign",
        ["X", "rois", "batch_indices"],
        ["Y"],
        mode="avg",
        output_height=case["out"],
        output_width=case["out"],
        sampling_ratio=max(case["ratio"], 0),
        spatial_scale=1.0 / case["stride"],
        coordinate_transformation_mode=mode,
    )
    graph = helper.make_graph(
        [node],
        "roi_align",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape)),
            helper.make_tensor_value_info("rois", TensorProto.FLOAT, [None, 4]),
            helper.make_tensor_value_info("batch_indices", TensorProto.INT64, [None]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, x.shape[1], case["out"], case["out"]])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 2
    options.inter_op_num_threads = 1
    # no spin-waiting after a run: spinning threads would steal the CPU from the next implementation
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {
        "X": x.numpy(),
        "rois": rois[:, 1:].contiguous().numpy(),
        "batch_indices": rois[:, 0].long().numpy(),
    }
    onnx.checker.check_model(model)
    return lambda: torch.from_numpy(session.run(None, feed)[0])


_SPIN = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


class Contention:
    """A context that keeps one core busy: a spinning Python process pinned to the last CPU."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Contention:
        if self.enabled:
            core = max(os.sched_getaffinity(0))
            self.process = subprocess.Popen([sys.executable, "-c", _SPIN, str(core)])
            time.sleep(0.2)  # let it start spinning
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_case(name: str, impls: list[str], repeats: int, device: str) -> dict:
    case = CASES[name]
    x, rois, grad = make_inputs(case, device)
    fns, result = {}, {}
    for impl in impls:
        t0 = time.perf_counter()
        try:
            fn = build(impl, case, x, rois, grad)
            if fn is not None:
                fn()  # warm-up (and torch.compile for tv_python)
                _sync(device)
        except Exception as e:  # noqa: BLE001 - report, do not abort the whole run
            result[impl] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
            continue
        if fn is None:
            result[impl] = {"error": "not applicable"}
            continue
        result[impl] = {"warmup_s": round(time.perf_counter() - t0, 3)}
        fns[impl] = fn
    if "roi_lab" in fns and "tv_kernel" in fns and not case.get("backward"):
        result["roi_lab"]["max_abs_diff_vs_tv_kernel"] = float((fns["roi_lab"]() - fns["tv_kernel"]()).abs().max())
    # calls per sample: enough for ~10 ms, so that a sub-millisecond call is timed warm (one lone call
    # after another implementation's runs mostly times cold caches), the same rule for every implementation
    number = {}
    for impl, fn in fns.items():
        w0 = time.perf_counter()
        fn()
        _sync(device)
        number[impl] = max(1, min(1000, math.ceil(10.0 / max((time.perf_counter() - w0) * 1e3, 1e-3))))
        result[impl]["calls_per_sample"] = number[impl]
    wall = {impl: [] for impl in fns}
    cpu = {impl: [] for impl in fns}
    for _ in range(repeats):
        for impl, fn in fns.items():  # interleaved
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(number[impl]):
                fn()
            _sync(device)
            wall[impl].append((time.perf_counter() - w0) * 1e3 / number[impl])
            cpu[impl].append((time.process_time() - c0) * 1e3 / number[impl])
    for impl in fns:
        result[impl].update(
            median_ms=round(statistics.median(wall[impl]), 2),
            min_ms=round(min(wall[impl]), 2),
            cpu_ms=round(statistics.median(cpu[impl]), 2),
        )
    base = result.get("tv_kernel", {}).get("median_ms")
    for impl in fns:
        if base:
            result[impl]["ratio"] = round(result[impl]["median_ms"] / base, 3)
    return result


# --------------------------------------------------------------------------------------------------
# memory


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure_memory_here(name: str, impl: str, device: str) -> dict:
    """Run inside a fresh process: peak extra memory of one call, in MiB."""
    case = CASES[name]
    x, rois, grad = make_inputs(case, device)
    fn = build(impl, case, x, rois, grad)
    if fn is None:
        return {"error": "not applicable"}
    fn()  # warm-up
    _sync(device)
    import gc

    gc.collect()
    if device == "cuda":
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        keep = fn()
        _sync(device)
        peak = torch.cuda.max_memory_allocated() - before
        del keep
        return {"peak_mib": round(peak / 2**20, 1), "method": "cuda max_memory_allocated"}
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    keep = fn()
    peak = _status_kib("VmHWM") - before
    del keep
    return {"peak_mib": round(peak / 1024, 1), "method": "VmHWM - VmRSS (clear_refs reset)"}


# glibc otherwise raises its mmap threshold after the warm-up frees a large block and then serves
# the measured call from heap pages that are already resident, which hides them from VmHWM
_MALLOC_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def measure_memory(name: str, impl: str, device: str, threads: int | None, timeout: int = 300) -> dict:
    cmd = [sys.executable, __file__, "--_memory", name, impl, "--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_MALLOC_ENV)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------------------------------
# report


def _fmt(entry: dict) -> str:
    if "median_ms" not in entry:
        return entry.get("error", "-")[:28]
    text = f"{entry['median_ms']:.1f}"
    if "ratio" in entry:
        text += f" ({entry['ratio']:.2f}x)"
    text += f" cpu {entry['cpu_ms']:.0f}"
    if "peak_mib" in entry:
        text += f" {entry['peak_mib']:.0f}MiB"
    return text


def print_table(results: dict, impls: list[str]) -> None:
    width = 36
    header = f"{'case':<13}" + "".join(f"{impl:>{width}}" for impl in impls)
    print("median wall ms (ratio to tv_kernel), cpu ms per call (all threads), peak extra MiB")
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        print(f"{name:<13}" + "".join(f"{_fmt(row.get(impl, {})):>{width}}" for impl in impls))
    ratios = [row["roi_lab"]["ratio"] for row in results.values() if "ratio" in row.get("roi_lab", {})]
    if ratios:
        gmean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"\nroi_lab / tv_kernel: geometric mean {gmean:.3f}, worst {max(ratios):.3f} over {len(ratios)} cases")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per implementation (default 9)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--contention", action="store_true", help="keep one core busy during the timings")
    parser.add_argument("--quick", action="store_true", help="3 repeats, no tv_python, no memory")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process memory measurement")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--_memory", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv[1:] if argv[:1] == ["--"] else argv)  # `roi-lab bench -- --quick`
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memory:
        print(json.dumps(measure_memory_here(args._memory[0], args._memory[1], args.device)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA GPU here", file=sys.stderr)
        return 2
    impls = args.impls or (["roi_lab", "tv_kernel", "onnxruntime"] if args.quick else list(IMPLS))
    if args.device == "cuda":
        impls = [i for i in impls if i != "onnxruntime"]
    repeats = args.repeats or (3 if args.quick else 9)
    memory = not (args.quick or args.no_memory)
    results = {}
    for name in args.cases:
        with Contention(args.contention):
            results[name] = time_case(name, impls, repeats, args.device)
        if memory:
            for impl in impls:
                if "median_ms" in results[name].get(impl, {}):
                    results[name][impl].update(measure_memory(name, impl, args.device, args.threads))
        print(f"{name}: " + ", ".join(f"{impl} {_fmt(results[name][impl])}" for impl in impls), flush=True)
    print()
    print_table(results, impls)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": repeats,
        "contention": "one spinning process pinned to the last core during the timings" if args.contention else None,
        "load_average": os.getloadavg(),
        "memory_method": "fresh subprocess per case/impl, glibc mmap threshold 64 KiB and no trim threshold; "
        "VmHWM after one call (clear_refs reset) minus VmRSS before it (CPU)",
        "cases": {name: CASES[name] for name in args.cases},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
