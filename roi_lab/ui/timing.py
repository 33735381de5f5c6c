"""Server-side time of each script and fragment run, for the latency benchmark (``ROI_LAB_LOG_RUNS=1``).

Prints ``roi_lab run <what>: <ms> ms`` to the server's stdout when the variable is set; does nothing
otherwise. The benchmark reads these lines from the server log: the real server's time per change,
next to the AppTest rerun and the browser's click-to-redrawn.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

__all__ = ["run_timer", "ENV"]

ENV = "ROI_LAB_LOG_RUNS"
_DEPTH = threading.local()  # a fragment inside a full run is part of that run: only the outermost prints


@contextlib.contextmanager
def run_timer(what: str) -> Iterator[None]:
    """Time the block (also when it stops early with st.stop / st.rerun) and print it if ``ENV`` is set and
    this is the outermost timed block of the thread (a script run, or a fragment rerun on its own)."""
    start = time.perf_counter()
    _DEPTH.n = getattr(_DEPTH, "n", 0) + 1
    try:
        yield
    finally:
        _DEPTH.n -= 1
        if os.environ.get(ENV) and _DEPTH.n == 0:
            print(f"roi_lab run {what}: {(time.perf_counter() - start) * 1000:.1f} ms", flush=True)
