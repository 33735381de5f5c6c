"""Bounded reads of user-named files and stdin: regular files only, a size cap, never a blocking open.

:func:`read_bounded` refuses character devices (``/dev/zero``, ``/dev/urandom``), FIFOs, sockets and
directories before reading a byte: the path is opened with ``O_NONBLOCK`` (so a FIFO without a writer does
not block the open) and checked with ``fstat`` on the open descriptor (so a path swapped after a check
cannot slip through), and at most ``limit + 1`` bytes are ever read. The CLI and
:func:`roi_lab.boxes.read_boxes` share it; so can any other reader of user paths.

Example:
    >>> try:
    ...     read_bounded("/dev/zero", limit=1024, what="box file")
    ... except FileRefused as e:
    ...     print(e.reason)
    a character device (like /dev/zero), which can stream without end
"""

from __future__ import annotations

import gc
import json
import os
import stat
import sys
from typing import Any

from roi_lab.errors import InputValueError

__all__ = ["FileRefused", "read_bounded", "read_stdin_bounded", "file_kind", "loads_json"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device (like /dev/zero), which can stream without end"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe), which can block or stream without end"),
    (stat.S_ISSOCK, "a socket"),
)


class FileRefused(InputValueError):
    """A path or stream that :func:`read_bounded` refuses; ``reason`` is the short cause for a one-line message
    (``"No such file or directory"``, ``"a directory"``, ``"20.0 MiB, over the 8.0 MiB limit for box files"``)."""

    def __init__(self, where: str, *, expected: str, got: str, fix: str, reason: str) -> None:
        super().__init__(where, expected=expected, got=got, fix=fix)
        self.reason = reason


def file_kind(mode: int) -> str:
    """What ``st_mode`` says a path is, in words: ``"a regular file"``, ``"a directory"``, ..."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _too_big_fix(what: str) -> str:
    if what == "box file":
        return "keep one image's boxes in the file (e.g. extract its COCO annotations with pycocotools or jq)"
    if what == "error text":
        return "pass only the traceback, e.g. `tail -n 200 train.log | roi-lab explain`"
    return f"pass a smaller {what}"


def _too_big(where: str, what: str, limit: int, shown: str, size: int | None = None, note: str = "") -> FileRefused:
    """``size`` known (fstat), or only "more than ``limit``" with a ``note`` on why (a stream, a growing file)."""
    if size is not None:
        got, reason = f"{shown} of {_size(size)}", f"{_size(size)}, over the {_size(limit)} limit for {what}s"
    else:
        got = reason = f"more than the {_size(limit)} limit for {what}s ({note})"
        got = f"{shown}: {got}"
    return FileRefused(where, expected=f"a {what} of at most {_size(limit)}", got=got, fix=_too_big_fix(what),
                       reason=reason)


def read_bounded(path: str | os.PathLike, *, limit: int, what: str, where: str = "read_bounded") -> bytes:
    """The bytes of the regular file ``path``, refusing anything else and anything over ``limit`` bytes.

    Args:
        path (str | PathLike): the file.
        limit (int): the most bytes accepted.
        what (str): what the file holds, for messages, e.g. ``"box file"``.
        where (str): the function or command reading it, e.g. ``"read_boxes(source=...)"``.

    Returns:
        bytes: the whole file.

    Raises:
        FileRefused: missing or unreadable path, not a regular file, or larger than ``limit``.
    """
    name = os.fspath(path)
    name = name.decode(errors="replace") if isinstance(name, bytes) else name
    shown = repr(name) if len(name) <= 200 else repr(name[:100] + "..." + name[-60:])
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags)
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FileRefused(where, expected=f"a readable {what}", got=f"{shown} ({reason})",
                          fix="check the path and the working directory", reason=reason) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = file_kind(info.st_mode)
            raise FileRefused(where, expected=f"a regular file as the {what}", got=f"{shown}, {kind}",
                              fix="save the content to a regular file first and pass its path", reason=kind)
        if info.st_size > limit:
            raise _too_big(where, what, limit, shown, info.st_size)
        chunks, total = [], 0
        while total <= limit:  # the file may grow after fstat: never read more than limit + 1 bytes
            chunk = os.read(fd, min(limit + 1 - total, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise FileRefused(where, expected=f"a readable {what}", got=f"{shown} ({reason})",
                          fix="check the file's permissions", reason=reason) from None
    finally:
        os.close(fd)
    if total > limit:
        raise _too_big(where, what, limit, shown, note="it grew while being read")
    return b"".join(chunks)


def read_stdin_bounded(*, limit: int, what: str, where: str = "read_stdin_bounded", stream: Any = None) -> bytes:
    """At most ``limit`` bytes from ``stream`` (default stdin; its binary buffer when it has one).

    Raises:
        FileRefused: more than ``limit`` bytes (an endless stream like ``< /dev/zero`` is cut at ``limit + 1``).
    """
    if stream is None:
        stream = getattr(sys.stdin, "buffer", sys.stdin)
    data = stream.read(limit + 1)
    data = data.encode("utf-8", errors="replace") if isinstance(data, str) else bytes(data)
    if len(data) > limit:
        raise _too_big(where, what, limit, "stdin", note="an endless stream?")
    return data


def loads_json(text: str) -> Any:
    """``json.loads`` with the cyclic garbage collector paused: parsed JSON holds no cycles, and millions of small
    lists (8 MiB of ``[[],[],...]``) otherwise trigger collection after collection (1.2 s -> 0.3 s).
    Raises what ``json.loads`` raises (JSONDecodeError, RecursionError, ValueError for 4300+ digit integers)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text)
    finally:
        if was_enabled:
            gc.enable()
