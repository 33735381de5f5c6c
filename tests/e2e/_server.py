"""Start ``streamlit run streamlit_app.py`` on a free port for a test, and stop it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.read().decode().strip()
    except OSError:
        return None


@contextlib.contextmanager
def streamlit_server(timeout: float = 90.0, extra_env: dict[str, str] | None = None) -> Iterator[int]:
    """The same command as ``make run`` (with the port in STREAMLIT_SERVER_PORT); yields the port.

    Waits (bounded) until ``/_stcore/health`` answers ``ok``; kills the server in ``finally``.
    """
    port = free_port()
    env = {
        **os.environ,
        "STREAMLIT_SERVER_PORT": str(port),
        "STREAMLIT_SERVER_HEADLESS": "true",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
        **(extra_env or {}),
    }
    log = ROOT / "tests" / "e2e" / "screenshots"  # git-ignored
    log.mkdir(parents=True, exist_ok=True)
    with open(log / "server.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while health(port) != "ok":
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {proc.returncode}; see {out.name}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streamlit did not answer /_stcore/health on port {port} in {timeout:.0f} s")
                time.sleep(0.3)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
