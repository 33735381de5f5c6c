"""``roi-lab`` command line: ``app``, ``diagnose``, ``explain``, ``bench``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"


def _cmd_app(args: argparse.Namespace) -> int:
    if not APP.exists():
        print(f"roi-lab app: {APP} not found; run it from a source checkout (pip install -e .)", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), *args.streamlit_args]
    return subprocess.call(cmd, env=os.environ.copy())


def _cmd_bench(args: argparse.Namespace) -> int:
    bench = APP.parent / "benchmarks" / "bench_roi_align.py"
    return subprocess.call([sys.executable, str(bench), *args.bench_args])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roi-lab", description="Debug what reaches ROIAlign / CropAndResize: boxes, spaces, strides."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("app", help="start the Streamlit app (extra arguments go to `streamlit run`)")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_app)
    p = sub.add_parser("bench", help="run benchmarks/bench_roi_align.py (extra arguments go to it)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
