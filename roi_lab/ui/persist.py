"""A browser refresh keeps the image, the boxes and the settings: a session token in the URL.

Streamlit starts a new session (empty ``st.session_state``) on every page load. So each session gets
a random token in the URL (``?session=...``, via ``st.query_params``) and the server keeps a snapshot
of the state that matters (``roi_lab.ui.state.PERSISTED``: the image bytes, the box table, every
setting) under that token, in memory. A reload restores the snapshot, then continues under a *new*
token (the URL changes), so two tabs opened from one link never overwrite each other.

Why not the whole state in the URL: an uploaded image does not fit in a URL, and boxes would make it
kilobytes long. Why memory, not disk: nothing is written outside the process; a server restart
forgets the snapshots (the app then starts fresh, as without a token). The store is bounded (most
recent ``MAX_SESSIONS`` sessions and ``MAX_BYTES`` of image data; the oldest go first), and an image
is shared, not copied, between the session and its snapshot.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from typing import Any

import streamlit as st

__all__ = ["PARAM", "MAX_SESSIONS", "MAX_BYTES", "Store", "store", "restore", "save", "token"]

PARAM = "session"
MAX_SESSIONS = 64
MAX_BYTES = 256 * 1024 * 1024
TOKEN_KEY = "_session_token"


class Store:
    """Snapshots by token, least recently used first out. Thread-safe (sessions run in threads)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, max_bytes: int = MAX_BYTES) -> None:
        self.max_sessions, self.max_bytes = max_sessions, max_bytes
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _size(snapshot: dict[str, Any]) -> int:
        return sum(len(v) for v in snapshot.values() if isinstance(v, (bytes, bytearray)))

    def put(self, key: str, snapshot: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = snapshot
            self._items.move_to_end(key)
            total = sum(self._size(s) for s in self._items.values())
            while len(self._items) > self.max_sessions or (total > self.max_bytes and len(self._items) > 1):
                _, dropped = self._items.popitem(last=False)
                total -= self._size(dropped)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            snap = self._items.get(key)
            if snap is not None:
                self._items.move_to_end(key)
            return snap

    def __len__(self) -> int:
        return len(self._items)


@st.cache_resource(show_spinner=False)
def store() -> Store:
    """The process-wide store (one per server, shared by sessions)."""
    return Store()


def _new_token() -> str:
    return secrets.token_urlsafe(12)


def token() -> str:
    """This session's token (made on first use) and the URL's ``?session=`` set to it."""
    ss = st.session_state
    if TOKEN_KEY not in ss:
        ss[TOKEN_KEY] = _new_token()
    if st.query_params.get(PARAM) != ss[TOKEN_KEY]:
        st.query_params[PARAM] = ss[TOKEN_KEY]
    return ss[TOKEN_KEY]


def restore() -> bool:
    """On a fresh session, restore the snapshot the URL's token names (if the server still has it).

    Returns:
        bool: True when a snapshot was restored.
    """
    from roi_lab.ui.state import PERSISTED

    old = st.query_params.get(PARAM)
    snap = store().get(old) if old else None
    if not snap:
        return False
    ss = st.session_state
    for key in PERSISTED:
        if key in snap:
            value = snap[key]
            ss[key] = [dict(r) for r in value] if isinstance(value, list) else value
    return True


def save() -> None:
    """Snapshot this session's persisted keys under its token (end of every script and fragment run).

    Never raises: a failed snapshot is logged (a refresh then starts fresh), the page goes on.
    """
    from roi_lab.ui.state import PERSISTED

    try:
        ss = st.session_state
        snap = {key: ss[key] for key in PERSISTED if key in ss}
        if snap.get("image_bytes") is None:
            return
        snap["boxes"] = [dict(r) for r in snap.get("boxes", [])]
        store().put(token(), snap)
    except Exception:  # noqa: BLE001
        logging.getLogger("roi_lab.ui").exception("saving the session failed")
