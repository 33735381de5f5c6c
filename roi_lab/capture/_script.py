"""``roi-lab capture script.py [args]``: run a Python script under a capture, like ``python -m cProfile``."""

from __future__ import annotations

import runpy
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roi_lab.errors import InputValueError

DEFAULT_OUTPUT = "roi_lab_capture.pt"


def _exit_status(code: Any) -> int:
    """What ``python script.py`` exits with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    print(code, file=sys.stderr)
    return 1


def run_script(
    script: str | Path,
    args: Sequence[str] = (),
    *,
    output: str | Path | None = DEFAULT_OUTPUT,
    **capture_options: Any,
) -> tuple[int, Any]:
    """Run ``script`` as ``__main__`` with ``sys.argv = [script, *args]`` inside :func:`roi_lab.capture`.

    The capture is written to ``output`` (resolved before the script runs, so a ``chdir`` in the script does
    not move it) also when the script raises or calls ``sys.exit``: a crash in an ROI op is what it is for.

    Args:
        script: the Python file to run.
        args: its command-line arguments.
        output: where to write the capture; None to not write it.
        **capture_options: ``image_size``, ``keep_features``, ``max_bytes`` of :func:`roi_lab.capture`.

    Returns:
        (int, Capture): the script's exit status (0, ``sys.exit``'s code, or 1 after an uncaught
        exception, whose traceback is printed to stderr), and the capture.

    Raises:
        InputValueError: ``script`` is not a file.
    """
    from roi_lab.capture import capture

    path = Path(script)
    if not path.is_file():
        raise InputValueError(
            "roi-lab capture",
            expected="a Python script to run, e.g. roi-lab capture train.py --epochs 1",
            got=f"{str(script)!r}, which is not a file",
            fix="pass the path of the script that runs your model",
        )
    out = Path(output).resolve() if output is not None else None
    saved_argv, saved_path = sys.argv, sys.path[:]
    sys.argv = [str(path), *args]
    sys.path.insert(0, str(path.resolve().parent))  # what `python script.py` puts first
    status = 0
    try:
        with capture(**capture_options) as cap:
            try:
                runpy.run_path(str(path), run_name="__main__")
            except SystemExit as exc:
                status = _exit_status(exc.code)
            except KeyboardInterrupt:
                traceback.print_exc()
                status = 130
            except Exception:
                traceback.print_exc()
                status = 1
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    if out is not None:
        cap.save(out)
    return status, cap
