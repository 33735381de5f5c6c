"""Server-side time of each script and fragment run, for the latency benchmark (``ROI_LAB_LOG_RUNS=1``).

Prints ``roi_lab run <what>: <ms> ms (cpu <ms> ms)`` to the server's stdout when the variable is set
(wall time, and the CPU time of the script thread: the difference is time spent waiting for a core or
the GIL); does nothing otherwise. The benchmark reads these lines from the server log: the real
server's time per change, next to the AppTest rerun and the browser's click-to-redrawn.
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
    start, cpu = time.perf_counter(), time.thread_time()
    _DEPTH.n = getattr(_DEPTH, "n", 0) + 1
    try:
        yield
    finally:
        _DEPTH.n -= 1
        if os.environ.get(ENV) and _DEPTH.n == 0:
            wall, used = (time.perf_counter() - start) * 1000, (time.thread_time() - cpu) * 1000
            print(f"roi_lab run {what}: {wall:.1f} ms (cpu {used:.1f} ms)", flush=True)
