"""``roi-lab`` command line: ``app``, ``diagnose``, ``explain``, ``capture``, ``inspect``, ``bench``.

Exit status: ``diagnose`` 0 when no finding is an error, 1 when one is (so CI can run it), 2 when BOXES,
CAPTURE.pt or --box-indices cannot be read; ``explain`` 0 when the text is explained, 3 when it is not
recognised, 2 when FILE cannot be read; ``inspect`` 0 or 1 as ``diagnose``, 2 when the model cannot be read
or onnx is missing; ``capture`` the script's own. argparse usage errors exit 2 too.

Input files are read by :func:`roi_lab._io.read_bounded`: regular files only (``/dev/zero``, a FIFO or a
directory is refused without blocking), at most 8 MiB for BOXES and --box-indices and 4 MiB for explain's
FILE (stdin, ``-``, likewise); what cannot be read is one line on stderr and exit 2. Capture files are
loaded by :func:`roi_lab.load_capture` (regular files only, size-capped, ``weights_only``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from roi_lab import __version__, _bundle

EXIT_OK, EXIT_FINDINGS, EXIT_UNREADABLE, EXIT_NOT_RECOGNISED = 0, 1, 2, 3
APP_MODULES = ("streamlit", "plotly")  # what `roi-lab app` needs beyond the core: the [app] extra
BENCH_OUT = "roi_lab_bench.json"  # `roi-lab bench` from an installed wheel writes here, not into site-packages


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _config_flags(config: Path) -> list[str]:
    """The app's ``.streamlit/config.toml`` as ``streamlit run`` flags (``--runner.postScriptGC=false``, ...).

    Streamlit reads that file from the working directory only, so ``roi-lab app`` run anywhere else (an
    installed wheel, say) passes it on the command line. A setting also given as a ``STREAMLIT_*`` environment
    variable is left out: flags would override it, and the environment is the user's to set.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10: `toml` comes with streamlit
        import toml as tomllib  # type: ignore[import-untyped]
    settings = tomllib.loads(config.read_text()) if config.is_file() else {}
    flags = []
    for section, values in settings.items():
        for key, value in values.items():
            env = f"STREAMLIT_{section}_{re.sub(r'(?<!^)(?=[A-Z])', '_', key)}".upper()
            if env not in os.environ:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                flags.append(f"--{section}.{key}={text}")
    return flags


def _cmd_app(args: argparse.Namespace) -> int:
    missing = _missing(APP_MODULES)
    if missing:
        names = " and ".join(missing)
        print(f"roi-lab app needs {names}, which {'is' if len(missing) == 1 else 'are'} not installed. "
              "Install the app with: pip install 'roi-lab[app]'", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        app = _bundle.path("streamlit_app.py")
    except _bundle.BundleMissing as exc:
        print(f"roi-lab app: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    flags = _config_flags(app.parent / ".streamlit" / "config.toml")
    cmd = [sys.executable, "-m", "streamlit", "run", *flags, str(app), *args.passthrough]
    return subprocess.call(cmd, env=os.environ.copy())


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        bench = _bundle.path("benchmarks/bench_roi_align.py")
    except _bundle.BundleMissing as exc:
        print(f"roi-lab bench: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    extra = list(args.passthrough)
    if _bundle.installed() and not any(a == "--out" or a.startswith("--out=") for a in extra):
        extra = ["--out", BENCH_OUT, *extra]
    if _missing(("onnxruntime",)):
        print("roi-lab bench: onnxruntime is not installed, so its column is skipped; "
              "pip install 'roi-lab[bench]' adds it", file=sys.stderr)
    return subprocess.call([sys.executable, str(bench), *extra])


class _Unreadable(Exception):
    """An input file that cannot be read; the CLI prints the message (one line) and exits 2."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _read_bytes(path: str, *, limit: int, what: str) -> bytes:
    """The bytes of ``path`` (``-``: stdin): at most ``limit`` of them, from a regular file or stdin."""
    from roi_lab._io import FileRefused, read_bounded, read_stdin_bounded

    try:
        return read_stdin_bounded(limit=limit, what=what) if path == "-" else read_bounded(path, limit=limit, what=what)
    except FileRefused as exc:
        fix = f"; {exc.fix}" if "limit" in exc.reason else ""
        raise _Unreadable(_one_line(f"cannot read {'stdin' if path == '-' else path}: {exc.reason}{fix}")) from None


def _read_text(path: str, *, limit: int, what: str) -> str:
    """:func:`_read_bytes` as UTF-8 text, a BOM dropped, undecodable bytes replaced."""
    return _read_bytes(path, limit=limit, what=what).decode("utf-8-sig", errors="replace")


def _load_json(path: str, what: str) -> Any:
    from roi_lab._io import loads_json
    from roi_lab._limits import MAX_BOX_FILE_BYTES

    text = _read_text(path, limit=MAX_BOX_FILE_BYTES, what="box file")
    try:
        return loads_json(text)
    except json.JSONDecodeError as exc:
        raise _Unreadable(
            f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise _Unreadable(f"{what} {path} is JSON nested too deeply to read (box files nest 3 or 4 levels)") from None
    except ValueError:  # json refuses integers of more than 4300 digits
        raise _Unreadable(f"{what} {path} holds an integer of thousands of digits; write plain numbers") from None


def _load_boxes(path: str, image_size: tuple[int, int]) -> tuple[Any, Any]:
    """Read BOXES: a JSON array, {"boxes": [...], "box_indices": [...]}, or a COCO / VOC / YOLO / roi-lab file.

    Box files (read by :func:`roi_lab.boxes.read_boxes`) hold one image's boxes in image pixels; they are
    returned as ``[boxes_image]``, the list-of-Tensor[L, 4] form of roi_align.
    """
    from roi_lab._limits import MAX_BOX_FILE_BYTES

    suffix = Path(path).suffix.lower()
    if suffix in {".xml", ".txt"}:
        # bytes, not text: read_boxes never takes bytes for a path, whatever the file holds
        return _read_box_file(path, _read_bytes(path, limit=MAX_BOX_FILE_BYTES, what="box file"), image_size), None
    data = _load_json(path, "BOXES")
    if isinstance(data, list) and not (data and isinstance(data[0], dict)):
        return data, None  # a bare array of boxes
    if isinstance(data, dict) and "boxes" in data and not {"format", "space"} & data.keys():
        return data["boxes"], data.get("box_indices")
    return _read_box_file(path, data, image_size), None  # COCO (dict or list of annotations) or roi-lab JSON


def _read_box_file(path: str, content: Any, image_size: tuple[int, int]) -> list[Any]:
    """``content`` (the file's bytes, or its parsed JSON) through read_boxes, as ``[boxes_image]``."""
    from roi_lab.boxes import read_boxes
    from roi_lab.errors import RoiLabError

    try:
        return [read_boxes(content, image_size=image_size).boxes_image]
    except RoiLabError as exc:
        raise _Unreadable(_one_line(f"cannot read boxes from {path}: {exc}")) from None


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from roi_lab.diagnose import diagnose, has_errors

    if _is_capture_file(args.boxes):
        return _cmd_diagnose_capture(args)
    missing = [flag for flag, value in (("--image-size", args.image_size), ("--features", args.features)) if not value]
    if missing:  # required for boxes files only (a capture records them), so checked here, as argparse would
        args.parser.error(f"the following arguments are required for a boxes file: {', '.join(missing)}")
    image_size = (args.image_size[0], args.image_size[1])
    pyramid = None
    if args.pyramid is not None:
        if len(args.pyramid) < 4 or len(args.pyramid) % 2:
            args.parser.error(f"--pyramid takes an H W pair per level, at least two levels; got {len(args.pyramid)} "
                              "numbers")  # fmt: skip
        pyramid = list(zip(args.pyramid[::2], args.pyramid[1::2], strict=True))
    try:
        boxes, box_indices = _load_boxes(args.boxes, image_size)
        if args.box_indices is not None:
            box_indices = _load_json(args.box_indices, "--box-indices")
    except _Unreadable as exc:
        print(f"roi-lab diagnose: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    findings = diagnose(
        boxes,
        image_size=image_size,
        features=tuple(args.features),
        op=args.op,
        spatial_scale=args.spatial_scale,
        box_indices=box_indices,
        aligned=None if args.aligned is None else args.aligned == "true",
        sampling_ratio=args.sampling_ratio,
        convention=args.trained_with,
        pyramid=pyramid,
    )
    failed = has_errors(findings)
    if args.format == "json":
        print(json.dumps({"op": args.op, "has_errors": failed, "findings": [f.to_dict() for f in findings]}, indent=2))
    elif not findings:
        print(f"OK: nothing looks wrong with these boxes for {args.op}.")
    else:
        print("\n".join(str(f) for f in findings))
    return EXIT_FINDINGS if failed else EXIT_OK


CAPTURE_SUFFIXES = (".pt", ".pth")


def _is_capture_file(path: str) -> bool:
    """A capture (``torch.save`` zip archive) rather than a boxes file: by suffix, or by the zip magic."""
    if Path(path).suffix.lower() in CAPTURE_SUFFIXES:
        return True
    try:
        if not Path(path).is_file():  # never open a FIFO or device to sniff it
            return False
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _cmd_diagnose_capture(args: argparse.Namespace) -> int:
    """``roi-lab diagnose CAPTURE.pt``: the findings of every recorded call (size-capped, weights_only load)."""
    from roi_lab.capture import CaptureFileError, load_capture

    given = [
        flag
        for flag, value in (
            ("--image-size", args.image_size),
            ("--features", args.features),
            ("--spatial-scale", args.spatial_scale),
            ("--box-indices", args.box_indices),
            ("--aligned", args.aligned),
            ("--sampling-ratio", args.sampling_ratio),
            ("--trained-with", args.trained_with),
            ("--pyramid", args.pyramid),
        )
        if value is not None
    ]
    if given or args.op != "roi_align":
        print(
            f"roi-lab diagnose: {', '.join(given) or '--op'} describe a boxes file; a capture records them per call",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    try:
        cap = load_capture(args.boxes)
    except CaptureFileError as exc:
        print(f"roi-lab diagnose: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.format == "json":
        print(json.dumps(cap.to_dict(), indent=2))
    else:
        print(cap.summary(detail=True))
    return EXIT_FINDINGS if cap.has_errors else EXIT_OK


def _cmd_capture(args: argparse.Namespace) -> int:
    """``roi-lab capture script.py [args]``: run the script under roi_lab.capture, write the capture file."""
    from roi_lab.capture import run_script
    from roi_lab.errors import RoiLabError

    options = {"keep_features": args.keep_features, "max_bytes": args.max_bytes}
    if args.image_size is not None:
        options["image_size"] = tuple(args.image_size)
    try:
        status, cap = run_script(args.script, args.script_args, output=args.output, **options)
    except RoiLabError as exc:
        print(f"roi-lab capture: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    c = cap.counts()
    print(cap.summary(), file=sys.stderr)
    n = len(cap.calls)
    print(
        f"roi-lab capture: wrote {args.output} ({n} call{'s' if n != 1 else ''}; {c['error']} error, "
        f"{c['warning']} warning findings); details: roi-lab diagnose {args.output}",
        file=sys.stderr,
    )
    return status


def _cmd_explain(args: argparse.Namespace) -> int:
    from roi_lab._limits import MAX_TEXT_FILE_BYTES
    from roi_lab.explain import explain_error

    try:
        text = _read_text(args.file, limit=MAX_TEXT_FILE_BYTES, what="error text")
    except _Unreadable as exc:
        print(f"roi-lab explain: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    explanation = explain_error(text)
    if args.format == "json":
        print(json.dumps(explanation.to_dict() if explanation else None, indent=2))
    elif explanation is None:
        print("Not recognised: this does not look like an ROI pooling input error that roi-lab knows.")
    else:
        e = explanation
        print(f"{e.code} ({e.framework})\n  matched: {e.matched}\n  cause: {e.cause}\n  fix: {e.fix}")
        if e.note:
            print(f"  note: {e.note}")
    return EXIT_OK if explanation else EXIT_NOT_RECOGNISED


def _cmd_inspect(args: argparse.Namespace) -> int:
    from roi_lab.inspect_onnx import OnnxModelError, inspect_onnx

    try:
        report = inspect_onnx(args.model, measure=not args.no_measure)
    except OnnxModelError as exc:
        print(f"roi-lab inspect: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(json.dumps(report.to_dict(), indent=2) if args.format == "json" else report.summary())
    return EXIT_FINDINGS if report.has_errors else EXIT_OK


PASSTHROUGH = ("app", "bench")


def _add_capture_parser(sub: Any) -> None:
    p = sub.add_parser(
        "capture",
        help="run a Python script under roi_lab.capture and write roi_lab_capture.pt",
        description="Run SCRIPT (with its arguments) like `python SCRIPT ARGS`, recording every ROI pooling "
        "call (torchvision, roi_lab, detectron2, mmcv), and write the capture; `roi-lab diagnose` reads it.",
        epilog="Options go before SCRIPT; everything after it is the script's. Exit status: the script's (1 "
        "after an uncaught exception, whose traceback is printed); the capture is written either way. 2: "
        "SCRIPT is not a file.",
    )
    p.add_argument("-o", "--output", default="roi_lab_capture.pt", help="the capture file (default: %(default)s)")
    p.add_argument(
        "--image-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="the image the boxes are in pixels of (default: from torchvision's transform)",
    )
    p.add_argument("--keep-features", action="store_true", help="also keep the feature maps and image batches")
    p.add_argument(
        "--max-bytes", type=int, default=256 << 20, metavar="N", help="most bytes of tensors kept (default: 256 MiB)"
    )
    p.add_argument("script", metavar="SCRIPT", help="the Python script that runs the model")
    p.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS", help="the script's arguments")
    p.set_defaults(func=_cmd_capture)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roi-lab", description="Debug what reaches ROIAlign / CropAndResize: boxes, spaces, strides."
    )
    parser.add_argument("--version", action="version", version=f"roi-lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "app",
        help="start the Streamlit app on the bundled samples (extra arguments go to `streamlit run`)",
        description="Start the Streamlit app (needs the [app] extra: pip install 'roi-lab[app]'). Options it does "
        "not know go to `streamlit run`, e.g. --server.port 8502.",
    )
    p.set_defaults(func=_cmd_app)
    p = sub.add_parser(
        "diagnose",
        help="check boxes before they reach roi_align / crop_and_resize (exit 1 on an error finding)",
        description="Report what looks wrong with boxes for roi_align or crop_and_resize: columns, spaces, "
        "strides, out-of-bounds, batch indices.",
        epilog='BOXES: a JSON array of K boxes of 4 or 5 numbers, or {"boxes": [...], "box_indices": [...]}, '
        "or a COCO / Pascal VOC (.xml) / YOLO (.txt) / roi-lab JSON box file (one image, pixel boxes, "
        "checked as [boxes]); these need --image-size and --features. Or CAPTURE.pt, written by "
        "`roi-lab capture` or Capture.save: every recorded call is reported. Exit status: 0 no error finding, "
        "1 at least one error finding, 2 unreadable input.",
    )
    p.add_argument("boxes", metavar="BOXES.json|CAPTURE.pt", help="the boxes file, or a capture file")
    p.add_argument(
        "--image-size", nargs=2, type=int, metavar=("H", "W"), help="the image the boxes refer to (boxes files)"
    )
    p.add_argument(
        "--features",
        nargs=4,
        type=int,
        metavar=("N", "C", "H", "W"),
        help="shape of the feature map the op pools from (boxes files)",
    )
    p.add_argument("--op", choices=("roi_align", "crop_and_resize"), default="roi_align")
    p.add_argument(
        "--spatial-scale",
        type=float,
        default=None,
        metavar="S",
        help="roi_align's spatial_scale (default: torchvision's 1.0)",
    )
    p.add_argument("--box-indices", metavar="FILE", help="JSON array with crop_and_resize's image index per box")
    p.add_argument("--aligned", choices=("true", "false"), help="roi_align's aligned, as the call passes it")
    p.add_argument("--sampling-ratio", type=int, metavar="N", help="roi_align's sampling_ratio, as the call passes it")
    p.add_argument(
        "--trained-with",
        choices=("torchvision", "mmcv", "detectron2"),
        help="the framework the head was trained with: MIXED_DEFAULTS says when --aligned / --sampling-ratio are "
        "another framework's defaults",
    )
    p.add_argument(
        "--pyramid",
        nargs="+",
        type=int,
        metavar="H W",
        help="the feature pyramid's level sizes, finest first (e.g. 200 272 100 136 50 68 25 34): checks them "
        "against --image-size (NON_DIVISIBLE_STRIDE at the coarsest stride, FPN_LEVEL_SIZES)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_diagnose, parser=p)
    p = sub.add_parser(
        "explain",
        help="explain an ROI pooling error message or traceback (from FILE or stdin)",
        description="Explain an error message or a whole traceback from torchvision roi_align/roi_pool, "
        "TensorFlow crop_and_resize, onnxruntime RoiAlign / ONNX, mmcv or detectron2 poolers.",
        epilog="Exit status: 0 explained, 3 not recognised (not an ROI pooling input error roi-lab knows), "
        "2 unreadable FILE.",
    )
    p.add_argument("file", nargs="?", default="-", metavar="FILE", help="file with the error text; - or none: stdin")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_explain)
    _add_capture_parser(sub)
    p = sub.add_parser(
        "inspect",
        help="list the RoiAlign nodes of an ONNX model and flag export traps (needs roi-lab[onnx])",
        description="List every RoiAlign (and TensorRT ROIAlign_TRT / PyramidROIAlign_TRT) node of MODEL.onnx: "
        "opset, coordinate_transformation_mode (written or the opset's default), sampling_ratio, mode, "
        "spatial_scale, output size; flag the traps: no half-pixel mode before opset 16, ONNX's max mode, "
        "adaptive or omitted sampling_ratio, TensorRT pyramid flags.",
        epilog="Exit status: 0 no error finding, 1 at least one error finding, 2 unreadable model or onnx missing.",
    )
    p.add_argument("model", metavar="MODEL.onnx", help="the exported model")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--no-measure", action="store_true", help="do not run mode=max nodes through onnxruntime to size the error"
    )
    p.set_defaults(func=_cmd_inspect)
    p = sub.add_parser(
        "bench",
        help="benchmark roi_align against torchvision (benchmarks/bench_roi_align.py; extra arguments go to it)",
        description="Run benchmarks/bench_roi_align.py (bundled in the wheel): --quick, --cases, --threads, --device, "
        f"--out. From an installed wheel the JSON goes to ./{BENCH_OUT} unless --out says otherwise; the "
        "onnxruntime column needs pip install 'roi-lab[bench]'.",
    )
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `app` and `bench` pass everything they do not know to streamlit / the benchmark script, options
    # included (argparse.REMAINDER would refuse a leading `--quick`); other commands stay strict.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in PASSTHROUGH:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.passthrough = extra[1:] if extra[:1] == ["--"] else extra
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
