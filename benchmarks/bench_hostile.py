"""Benchmark: the worst hostile inputs of issue 15, after the fix: time and peak memory of each, per bound.

    .venv/bin/python benchmarks/bench_hostile.py [--only NAME ...] [--timeout 300]

Each case runs in its own Python process (so its peak RSS is its own): the hostile file is written beforehand
into a temporary folder, the child imports roi_lab, notes its RSS, runs the one call, and reports the call's
wall time, the process's peak RSS and the peak above the RSS after imports, and the outcome (what was refused,
or the shape decoded). Every child runs under a 6 GiB address-space limit and ``--timeout``. Prints a table
and writes JSON to ``benchmarks/results/hostile.json``. On a shared machine the times are noisy; the memory
is not. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from roi_lab._limits import MAX_BOX_FILE_BYTES

RESULTS = Path(__file__).resolve().parent / "results" / "hostile.json"
REPO = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, resource, sys, time
import roi_lab  # first: sets OPENCV_IO_MAX_IMAGE_PIXELS before cv2 loads
from roi_lab.errors import RoiLabError
import roi_lab.image, roi_lab.boxes, roi_lab.explain, roi_lab.cli
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path = sys.argv[1]
{setup}
start = time.perf_counter()
try:
    result = {call}
    outcome = "ok " + str(result)[:80]
except RoiLabError as exc:
    outcome = "refused: " + str(exc).splitlines()[0][:160]
except SystemExit as exc:
    outcome = f"exit {{exc.code}}"
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": elapsed, "peak_rss_mb": peak / 1024, "above_imports_mb": (peak - base) / 1024,
                  "outcome": outcome}}))
"""


# --------------------------------------------------------------------------- hostile files
def _deflate_zeros(n: int) -> bytes:
    z, chunk, out = zlib.compressobj(9), b"\x00" * (1 << 22), []
    while n > 0:
        out.append(z.compress(chunk[: min(n, len(chunk))]))
        n -= len(chunk)
    return b"".join(out) + z.flush()


def tiff_bypass(real: int = 20000, fake: int = 16) -> bytes:
    """The issue's TIFF: ImageWidth/ImageLength given twice (real first, fake second), gray 8-bit, deflate."""
    pixels = _deflate_zeros(real * real)
    tags = [(256, real), (256, fake), (257, real), (257, fake), (258, 8), (259, 8), (262, 1), (273, None),
            (278, real), (279, len(pixels))]
    offset = 8 + 2 + 12 * len(tags) + 4
    entries = b"".join(struct.pack("<HHII", t, 4, 1, offset if v is None else v) for t, v in tags)
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags)) + entries + b"\x00" * 4 + pixels


def _jpeg_segments(jpg: bytes) -> list[tuple[int, int, int]]:
    i, out = 2, []
    while i < len(jpg):
        marker = jpg[i + 1]
        if marker == 0xD9:
            break
        j = i + 2 + int.from_bytes(jpg[i + 2 : i + 4], "big")
        if marker == 0xDA:
            while not (jpg[j] == 0xFF and jpg[j + 1] != 0x00 and not 0xD0 <= jpg[j + 1] <= 0xD7):
                j += 1
        out.append((i, j, marker))
        i = j
    return out


def jpeg_scans(n_scans: int, side: int) -> bytes:
    """A progressive JPEG of a flat side x side image, its smallest scan repeated to n_scans scans."""
    jpg = cv2.imencode(".jpg", np.full((side, side, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1]
    jpg = jpg.tobytes()
    scans = [s for s in _jpeg_segments(jpg) if s[2] == 0xDA]
    small = min(scans, key=lambda s: s[1] - s[0])
    end = scans[-1][1]
    return jpg[:end] + jpg[small[0] : small[1]] * (n_scans - len(scans)) + jpg[end:]


def png16_rgba(side: int = 7000) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + b"\x9c\x40" * (4 * side)  # filter 0, then RGBA 16-bit 40000
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _units(n_bytes: int, unit: str) -> bytes:
    """As many whole copies of ``unit`` as fit in ``n_bytes``."""
    return (unit * (n_bytes // len(unit))).encode()


MIB = 2**20
CAP = MAX_BOX_FILE_BYTES - 256  # room for the JSON around the repeated part

# name -> (what it bounds, file maker or None, setup code, call expression)
CASES: dict[str, tuple[str, object, str, str]] = {
    "tiff_repeated_tags_20000px": ("pixels", tiff_bypass, "data = open(path, 'rb').read()",
                                   "roi_lab.image.decode_image(data).shape"),
    "jpeg_20000_scans": ("scans", lambda: jpeg_scans(20000, 2000), "data = open(path, 'rb').read()",
                         "roi_lab.image.decode_image(data).shape"),
    "jpeg_100_scans_7000px": ("scans (most allowed)", lambda: jpeg_scans(100, 7000),
                              "data = open(path, 'rb').read()", "roi_lab.image.decode_image(data).shape"),
    "png_rgba16_7000px": ("memory", png16_rgba, "data = open(path, 'rb').read()",
                          "roi_lab.image.decode_image(data).shape"),
    "explain_op_type_198KB": ("regex time (under the cap)", lambda: b"(op_type:RoiAlign)" * 11000,
                              "text = open(path).read()", "roi_lab.explain.explain_error(text)"),
    "explain_tf_node_190KB": ("regex time (under the cap)",
                              lambda: b"Shape must be rank 4 but is rank 3 for '{{node " * 4000,
                              "text = open(path).read()", "roi_lab.explain.explain_error(text)"),
    "explain_10MB": ("text cap", lambda: b"(op_type:RoiAlign)" * 600_000, "text = open(path).read()",
                     "roi_lab.explain.explain_error(text)"),
    "cli_diagnose_dev_zero": ("regular files only", None, "",
                              "roi_lab.cli.main(['diagnose', '/dev/zero', '--image-size', '8', '8', '--features', "
                              "'1', '1', '4', '4'])"),
    "cli_explain_stdin_dev_zero": ("stdin cap", None,
                                   "import io; sys.stdin = io.TextIOWrapper(open('/dev/zero', 'rb'))",
                                   "roi_lab.cli.main(['explain'])"),
    "box_file_200MB": ("box file bytes", "sparse:209715200", "from pathlib import Path",
                       "roi_lab.boxes.read_boxes(Path(path))"),
    "json_0.9M_boxes_8MiB": ("box count", lambda: b'{"boxes": [' + _units(CAP, "[0,0,1,1],") + b"[0,0,1,1]]}",
                              "from pathlib import Path", "roi_lab.boxes.read_boxes(Path(path))"),
    "json_empty_lists_8MiB": ("box file bytes", lambda: b"[" + _units(CAP, "[],") + b"[]]",
                               "from pathlib import Path", "roi_lab.boxes.read_boxes(Path(path))"),
    "coco_other_images_8MiB": ("box file bytes", lambda: b'{"annotations": [' + _units(
        CAP, '{"image_id":2,"bbox":[1,2,3,4]},') + b'{"image_id":1,"bbox":[1,2,3,4]}], "images": [{"id": 1}]}',
        "from pathlib import Path", "roi_lab.boxes.read_boxes(Path(path)).boxes_image.shape"),
    "yolo_100000_lines": ("box count (most allowed)", lambda: b"0 0.5 0.5 0.1 0.1\n" * 100_000,
                          "from pathlib import Path",
                          "roi_lab.boxes.read_boxes(Path(path), image_size=(100, 100)).boxes_image.shape"),
    "yolo_7MB_line": ("message size", lambda: b"0 " + b"1" * 7_000_000, "from pathlib import Path",
                       "roi_lab.boxes.read_boxes(Path(path), image_size=(10, 10))"),
}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))


def run_case(name: str, folder: Path, timeout: float) -> dict:
    bound, maker, setup, call = CASES[name]
    path = folder / f"{name}.bin"
    if isinstance(maker, str) and maker.startswith("sparse:"):
        with open(path, "wb") as f:
            f.truncate(int(maker.split(":")[1]))
    elif maker is not None:
        path.write_bytes(maker())
    size = path.stat().st_size if path.exists() else 0
    code = _CHILD.format(setup=setup, call=call)
    try:
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                             timeout=timeout, cwd=REPO, preexec_fn=_limit_memory)
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        row = json.loads(line) if line.startswith("{") else {"outcome": f"crashed: {out.stderr[-200:]}"}
    except subprocess.TimeoutExpired:
        row = {"outcome": f"timed out after {timeout:.0f} s"}
    if path.exists():
        path.unlink()
    return {"case": name, "bound": bound, "file_bytes": size, **row}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or CASES:
            rows.append(run_case(name, Path(tmp), args.timeout))
            r = rows[-1]
            print(f"{r['case']:28s} {r['bound']:26s} {r['file_bytes'] / MIB:8.2f} MiB "
                  f"{r.get('seconds', float('nan')):8.3f} s {r.get('peak_rss_mb', float('nan')):8.0f} MB peak "
                  f"{r.get('above_imports_mb', float('nan')):7.0f} MB above imports  {r['outcome'][:90]}",
                  flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg()}
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
