"""The capture file: ``torch.save`` of a dict of tensors and primitives, read back with ``weights_only=True``.

Reading is defensive: only regular files, at most ``max_bytes`` (on disk and in the archive's declared
entry sizes), a zip archive as ``torch.save`` writes it, ``torch.load(weights_only=True)`` (no code runs),
then every field is checked for its type before it becomes a :class:`CapturedCall`. Anything else is a
:class:`CaptureFileError` that says what was expected.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from roi_lab.capture._records import CapturedCall, CapturedImages, size_text
from roi_lab.diagnose import Finding
from roi_lab.errors import RoiLabError

FORMAT = "roi_lab.capture"
VERSION = 1
LOAD_LIMIT = 1 << 30  # 1 GiB: four times the default max_bytes of a capture
_MAX_ENTRIES = 100_000
_EXPECTED = "a capture file written by Capture.save (format 'roi_lab.capture' version 1)"


class CaptureFileError(RoiLabError):
    """A capture file cannot be read: missing, not a regular file, too large, not a capture, or malformed."""


def _fail(path: Path, got: str, fix: str = "") -> CaptureFileError:
    return CaptureFileError(
        f"load_capture({str(path)!r})",
        expected=_EXPECTED,
        got=got,
        fix=fix or "write it with `with roi_lab.capture() as cap: ...; cap.save(path)` or `roi-lab capture script.py`",
    )


# --------------------------------------------------------------------------------------------- writing


# to_dict()'s keys that are derived from others (not stored), and the tensors it leaves out (stored)
_DERIVED = ("num_boxes", "boxes_shape", "level_counts", "features_kept", "tensor_kept")


def _state(record: CapturedCall | CapturedImages, tensors: tuple[str, ...]) -> dict[str, Any]:
    """A record as stored: its ``to_dict()`` (plain data) without the derived keys, plus its tensors."""
    data = {k: v for k, v in record.to_dict().items() if k not in _DERIVED}
    data.update({name: getattr(record, name) for name in tensors})
    return data


def _plain(x: Any) -> Any:
    """``x`` as the types ``torch.load(weights_only=True)`` reads: str/int/float/bool/None, tensors, lists,
    tuples and str-keyed dicts (a ``str`` subclass such as ``torch.__version__`` would be refused)."""
    if x is None or type(x) in (str, int, float, bool):
        return x
    if isinstance(x, Tensor):
        return x.detach() if type(x) is Tensor else x.detach().as_subclass(Tensor)
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x) if type(x) in (list, tuple) else [_plain(v) for v in x]
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    return str(x)


def save_capture(cap: Any, path: Path) -> Path:
    """Write ``cap`` atomically (a temporary file next to ``path``, then a rename)."""
    import torchvision

    import roi_lab

    state = {
        "format": FORMAT,
        "version": VERSION,
        "roi_lab": roi_lab.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "image_size": list(cap.image_size) if cap.image_size is not None else None,
        "keep_features": cap.keep_features,
        "max_bytes": cap.max_bytes,
        "bytes_kept": cap.bytes_kept,
        "dropped": list(cap.dropped),
        "images": [_state(i, ("tensor",)) for i in cap.images],
        "calls": [_state(c, ("boxes", "levels", "box_indices", "features")) for c in cap.calls],
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(_plain(state), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------------------------- reading


class _Fields:
    """Typed access to one dict of the file; a wrong type is a CaptureFileError naming the field."""

    def __init__(self, data: Any, name: str, path: Path) -> None:
        if not isinstance(data, dict):
            raise _fail(path, f"{name} is {type(data).__name__}, not a dict")
        self.data, self.name, self.path = data, name, path

    def _bad(self, key: str, what: str) -> CaptureFileError:
        value = self.data.get(key)
        return _fail(self.path, f"{self.name}.{key} is {type(value).__name__} {repr(value)[:60]}, expected {what}")

    def text(self, key: str, optional: bool = False) -> str | None:
        v = self.data.get(key)
        if isinstance(v, str) or (optional and v is None):
            return v
        raise self._bad(key, "a string")

    def integer(self, key: str, optional: bool = False) -> int | None:
        v = self.data.get(key)
        if (isinstance(v, int) and not isinstance(v, bool)) or (optional and v is None):
            return v
        raise self._bad(key, "an integer")

    def number(self, key: str) -> float | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise self._bad(key, "a number")

    def flag(self, key: str, optional: bool = True) -> bool | None:
        v = self.data.get(key)
        if isinstance(v, bool) or (optional and v is None):
            return v
        raise self._bad(key, "True, False or None")

    def shape(self, key: str, n: int | None = None) -> tuple[int, ...] | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            if n is None or len(v) == n:
                return tuple(v)
        raise self._bad(key, f"a list of {n or 'some'} integers")

    def list_of(self, key: str, item: Any, what: str, optional: bool = True) -> list[Any] | None:
        v = self.data.get(key)
        if v is None and optional:
            return None
        if isinstance(v, (list, tuple)):
            try:
                return [item(x) for x in v]
            except (TypeError, ValueError):
                pass
        raise self._bad(key, what)

    def tensor(self, key: str) -> Tensor | None:
        v = self.data.get(key)
        if v is None or isinstance(v, Tensor):
            return v
        raise self._bad(key, "a tensor")

    def tensors(self, key: str) -> Tensor | list[Tensor | None] | None:
        v = self.data.get(key)
        if v is None or isinstance(v, Tensor):
            return v
        if isinstance(v, (list, tuple)) and all(t is None or isinstance(t, Tensor) for t in v):
            return list(v)
        raise self._bad(key, "a tensor or a list of tensors")

    def primitives(self, key: str, optional: bool = False) -> dict[str, Any] | None:
        v = self.data.get(key)
        if v is None and optional:
            return None
        if isinstance(v, dict) and all(
            isinstance(k, str) and (x is None or isinstance(x, (str, int, float, bool))) for k, x in v.items()
        ):
            return dict(v)
        raise self._bad(key, "a dict of strings and numbers")


def _pair_of_ints(x: Any) -> tuple[int, int]:
    if isinstance(x, (list, tuple)) and len(x) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        return (x[0], x[1])
    raise TypeError


def _shape(x: Any) -> tuple[int, ...]:
    if isinstance(x, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        return tuple(x)
    raise TypeError


def _number(x: Any) -> float:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    raise TypeError


def _string(x: Any) -> str:
    if isinstance(x, str):
        return x
    raise TypeError


def _finding(x: Any) -> Finding:
    keys = ("code", "severity", "message", "evidence", "fix")
    if isinstance(x, dict) and all(isinstance(x.get(k), str) for k in keys):
        return Finding(*(x[k] for k in keys))
    raise TypeError


def _read_call(data: Any, i: int, path: Path) -> CapturedCall:
    f = _Fields(data, f"calls[{i}]", path)
    findings = f.list_of("findings", _finding, "a list of findings (dicts of code, severity, message, ...)", False)
    explanation = f.primitives("explanation", optional=True)
    call = CapturedCall(
        index=f.integer("index"),
        op=f.text("op"),
        where=f.text("where"),
        feature_shape=f.shape("feature_shape"),
        feature_dtype=f.text("feature_dtype", True),
        device=f.text("device", True),
        boxes=f.tensors("boxes"),
        box_format=f.text("box_format"),
        output_size=f.shape("output_size", 2),
        spatial_scale=f.number("spatial_scale"),
        sampling_ratio=f.integer("sampling_ratio", True),
        aligned=f.flag("aligned"),
        image_size=f.shape("image_size", 2),
        image_size_source=f.text("image_size_source"),
        image_sizes=f.list_of("image_sizes", _pair_of_ints, "a list of (H, W)"),
        scales=f.list_of("scales", _number, "a list of numbers"),
        level_names=f.list_of("level_names", _string, "a list of strings"),
        level_shapes=f.list_of("level_shapes", _shape, "a list of shapes"),
        levels=f.tensor("levels"),
        box_indices=f.tensor("box_indices"),
        extra=f.primitives("extra"),
        error=f.text("error", True),
        explanation=explanation,
        features=f.tensors("features"),
        dropped=f.text("dropped", True),
        images=f.integer("images", True),
    )
    call._findings = findings
    return call


def _read_images(data: Any, i: int, path: Path) -> CapturedImages:
    f = _Fields(data, f"images[{i}]", path)
    image_size = f.shape("image_size", 2)
    if image_size is None:
        raise f._bad("image_size", "(H, W)")
    return CapturedImages(
        index=f.integer("index"),
        where=f.text("where"),
        image_size=(image_size[0], image_size[1]),
        image_sizes=f.list_of("image_sizes", _pair_of_ints, "a list of (H, W)", False),
        original_sizes=f.list_of("original_sizes", _pair_of_ints, "a list of (H, W)", False),
        mean=f.list_of("mean", _number, "a list of numbers"),
        std=f.list_of("std", _number, "a list of numbers"),
        tensor=f.tensor("tensor"),
        dropped=f.text("dropped", True),
    )


def _open_regular(path: Path, max_bytes: int) -> Any:
    """Open ``path`` for reading only if it is a regular file of at most ``max_bytes`` (never blocks on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise _fail(path, f"it cannot be opened: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _fail(path, "not a regular file (a directory, device, FIFO or socket)")
        if st.st_size > max_bytes:
            raise _fail(
                path,
                f"a file of {size_text(st.st_size)}, over the limit of {size_text(max_bytes)}",
                f"load_capture(path, max_bytes={st.st_size})  # if you trust this file and have the memory",
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _reason(exc: Exception) -> str:
    """The line of torch.load's (long, colored) message that says why, e.g. the refused global."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if "nsupported" in line or "WeightsUnpickler error" in line or "blocked" in line:
            return line[:200]
    return (lines[0] if lines else "")[:200]


def load_capture(path: str | Path, *, max_bytes: int = LOAD_LIMIT) -> Any:
    """Read a capture written by ``cap.save(path)`` / ``roi-lab capture``.

    Args:
        path: the ``.pt`` file.
        max_bytes: refuse files (and archives whose entries declare) more than this many bytes; 1 GiB.

    Returns:
        Capture: inactive, with ``calls``, ``images``, ``dropped`` and each call's saved findings.

    Raises:
        CaptureFileError: not a regular file, too large, not a ``torch.save`` archive, refused by
            ``torch.load(weights_only=True)`` (anything but tensors and primitives), or not a capture.
    """
    from roi_lab.capture._session import Capture

    path = Path(path)
    with _open_regular(path, max_bytes) as fh:
        try:
            with zipfile.ZipFile(fh) as archive:
                entries = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise _fail(path, f"not a torch.save zip archive ({exc})") from None
        declared = sum(e.file_size for e in entries)
        if len(entries) > _MAX_ENTRIES or declared > max_bytes:
            raise _fail(
                path,
                f"an archive of {len(entries)} entries declaring {size_text(declared)}, over the limit of "
                f"{size_text(max_bytes)}",
            )
        fh.seek(0)
        try:
            state = torch.load(fh, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise _fail(
                path,
                f"torch.load(weights_only=True) refused it ({type(exc).__name__}: {_reason(exc)})",
                "only open capture files from a source you trust; a capture holds tensors and primitives only",
            ) from None
    top = _Fields(state, "the file", path)
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise _fail(path, f"format {state.get('format')!r} version {state.get('version')!r}")
    calls_data = state.get("calls")
    images_data = state.get("images")
    if not isinstance(calls_data, list) or not isinstance(images_data, list):
        raise _fail(path, "no 'calls' and 'images' lists")
    image_size = top.shape("image_size", 2)
    cap = Capture(
        image_size=image_size,
        keep_features=bool(top.flag("keep_features")),
        max_bytes=top.integer("max_bytes"),
    )
    cap.calls = [_read_call(d, i, path) for i, d in enumerate(calls_data)]
    cap.images = [_read_images(d, i, path) for i, d in enumerate(images_data)]
    cap.dropped = top.list_of("dropped", _string, "a list of strings", False)
    cap.bytes_kept = top.integer("bytes_kept")
    cap._state = "loaded"
    return cap
