"""No traceback ever reaches the user: whatever a page, a fragment or a callback raises becomes a message.

- :func:`message`: an exception as text for the user. A ``RoiLabError`` already says what was expected,
  what was given and how to fix it; anything else (an op or a library raising on odd input) is shown
  as its type and first line, with the traceback sent to the server log only.
- :func:`guard`: a context manager for a page or a fragment body: an exception is shown with
  ``st.error`` and the run ends there, with the session state untouched (so the next interaction
  starts from the same image, boxes and settings).
- :func:`callback`: wraps ``on_change`` / ``on_click`` callbacks, which Streamlit runs before the
  script (outside any ``guard``): a failure is stored and shown by the next run.

Streamlit's own control flow (``st.stop``, ``st.rerun``, a fragment rerun) raises ``BaseException``
subclasses, which pass through untouched.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import streamlit as st

from roi_lab.errors import RoiLabError

__all__ = ["message", "guard", "callback", "show_callback_error", "MAX_MESSAGE_CHARS"]

LOG = logging.getLogger("roi_lab.ui")
MAX_MESSAGE_CHARS = 2000  # a 10 MB line in a box file must not become a 10 MB message on the page
CALLBACK_ERROR = "callback_error"  # == state.K.CALLBACK_ERROR (state imports this module, not the reverse)


def _cap(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]} ... ({len(text) - limit:,} more characters)"


def message(exc: BaseException) -> str:
    """The user-facing text of an exception, at most about ``MAX_MESSAGE_CHARS`` long.

    Example:
        >>> message(ValueError("x" * 3))
        'ValueError: xxx (unexpected: the server log has the details)'
    """
    if isinstance(exc, RoiLabError):
        return _cap(str(exc))
    first = (str(exc).strip().splitlines() or [""])[0]
    return _cap(f"{type(exc).__name__}: {first}".rstrip(": ") + " (unexpected: the server log has the details)")


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Run a page or fragment body; an exception is shown as one ``st.error`` naming ``what`` (no traceback)."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - the point: nothing escapes as a traceback
        if not isinstance(e, RoiLabError):
            LOG.exception("%s failed", what)
        st.error(f"{what}: {message(e)}\n\nYour image, boxes and settings are kept; change the input and try again.")


def callback(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a widget callback: an exception is stored in session state and shown by the next run."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            if not isinstance(e, RoiLabError):
                LOG.exception("callback %s failed", getattr(fn, "__name__", fn))
            st.session_state[CALLBACK_ERROR] = message(e)
            return None

    return run


def show_callback_error() -> None:
    """Show (once) the message of a callback that failed since the last run."""
    text = st.session_state.get(CALLBACK_ERROR)
    if text:
        st.session_state[CALLBACK_ERROR] = None
        st.error(f"That change could not be applied: {text}\n\nYour image, boxes and settings are kept.")
