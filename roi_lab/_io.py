"""Bounded reads of user-named files and stdin: regular files only, a size cap, never a blocking open.

``read_bounded`` refuses character devices (``/dev/zero``, ``/dev/urandom``), FIFOs, sockets and directories
before reading a byte: the file is opened with ``O_NONBLOCK`` (so a FIFO without a writer does not block)
and checked with ``fstat`` on the open descriptor (so a path swapped after a check cannot slip through),
and at most ``limit + 1`` bytes are ever read. The CLI, :func:`roi_lab.boxes.read_boxes` and other
readers of user paths share it.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

from roi_lab.errors import InputValueError, RoiLabError

__all__ = ["read_bounded", "read_stdin_bounded", "file_kind"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device (like /dev/zero), which can stream without end"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe), which can block or stream without end"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """``"a regular file"`` or what else ``st_mode`` says the path is, in words."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"


def read_bounded(
    path: str | os.PathLike, *, limit: int, what: str, where: str, error: type[RoiLabError] = InputValueError
) -> bytes:
    """The bytes of the regular file ``path``, refusing anything else and anything over ``limit`` bytes.

    Args:
        path (str | PathLike): the file.
        limit (int): the most bytes accepted.
        what (str): what the file holds, for messages, e.g. ``"box file"``.
        where (str): the function or command reading it, e.g. ``"read_boxes(source=...)"``.
        error (type[RoiLabError]): the error class raised.

    Returns:
        bytes: the whole file.

    Raises:
        RoiLabError (``error``): missing or unreadable path, not a regular file, or larger than ``limit``.
    """
    name = os.fspath(path)
    shown = repr(name) if len(name) <= 200 else repr(name[:100] + "..." + name[-60:])
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags)
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error(where, expected=f"a readable {what}", got=f"{shown} ({reason})",
                    fix="check the path and the working directory") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(where, expected=f"a regular file as the {what}", got=f"{shown}, {file_kind(info.st_mode)}",
                        fix="save the content to a regular file first and pass its path")
        if info.st_size > limit:
            raise error(where, expected=f"a {what} of at most {_mib(limit)}",
                        got=f"{shown} of {_mib(info.st_size)}", fix=_too_big_fix(what))
        chunks, total = [], 0
        while total <= limit:  # the file may grow after fstat: never read more than limit + 1 bytes
            chunk = os.read(fd, min(limit + 1 - total, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise error(where, expected=f"a readable {what}", got=f"{shown} ({exc.strerror or exc})",
                    fix="check the file's permissions") from None
    finally:
        os.close(fd)
    if total > limit:
        raise error(where, expected=f"a {what} of at most {_mib(limit)}", got=f"{shown}, which grew past that "
                    "while being read", fix=_too_big_fix(what))
    return b"".join(chunks)


def read_stdin_bounded(*, limit: int, what: str, where: str, error: type[RoiLabError] = InputValueError,
                       stream: Any = None) -> bytes:
    """At most ``limit`` bytes from stdin (``stream``: a binary file object, default ``sys.stdin.buffer``)."""
    stream = stream if stream is not None else sys.stdin.buffer
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise error(where, expected=f"a {what} of at most {_mib(limit)} on stdin",
                    got=f"more than {_mib(limit)} (an endless stream like /dev/zero?)", fix=_too_big_fix(what))
    return data


def _too_big_fix(what: str) -> str:
    if what == "box file":
        return "keep one image's boxes in the file (e.g. extract its COCO annotations with pycocotools or jq)"
    if what == "error text":
        return "pass only the traceback, e.g. `tail -n 200 train.log | roi-lab explain`"
    return f"pass a smaller {what}"
