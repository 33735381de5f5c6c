"""`make run`'s command serves the app: start it on a free port and ask /_stcore/health (no browser)."""

from __future__ import annotations

from _server import health, streamlit_server


def test_streamlit_run_answers_health_ok():
    with streamlit_server(timeout=90) as port:
        assert health(port) == "ok"
