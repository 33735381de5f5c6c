"""The :class:`Capture` object: what a ``with roi_lab.capture() as cap:`` block recorded."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from roi_lab._display import CaptureDisplay
from roi_lab.capture._hooks import ACTIVE, INSTALLATION, RawCall, RawImages, pop_mode, push_mode
from roi_lab.capture._records import CapturedCall, CapturedImages, nbytes, size_text
from roi_lab.diagnose import Finding
from roi_lab.errors import InputValueError, describe

DEFAULT_MAX_BYTES = 256 << 20


def _check_image_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    try:
        items = list(image_size.tolist() if isinstance(image_size, Tensor) else image_size)
        if len(items) == 2 and all(int(v) == v and v > 0 and not isinstance(v, bool) for v in items):
            return (int(items[0]), int(items[1]))
    except Exception:
        pass
    raise InputValueError(
        "capture(image_size=...)",
        expected="(H, W), two positive integers: the image (or padded batch) the boxes are in pixels of",
        got=describe(image_size),
        fix="capture(image_size=images.shape[-2:]) or leave it None (torchvision detection models give it)",
    )


class Capture(CaptureDisplay):
    """The ROI pooling calls recorded inside a ``with roi_lab.capture(...) as cap:`` block.

    Attributes:
        calls (list[CapturedCall]): every recorded call, in call order.
        images (list[CapturedImages]): every ``GeneralizedRCNNTransform`` output (the frame of the boxes).
        dropped (list[str]): what was not kept because of ``max_bytes``, one line per call or batch.
        bytes_kept (int): bytes of tensors kept (boxes, levels, features, image batches), at most ``max_bytes``.
        image_size, keep_features, max_bytes: as given to :func:`roi_lab.capture`.
    """

    def __init__(
        self, *, image_size: Any = None, keep_features: bool = False, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if not isinstance(keep_features, bool):
            raise InputValueError(
                "capture(keep_features=...)", expected="True or False", got=describe(keep_features), fix=""
            )
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise InputValueError(
                "capture(max_bytes=...)",
                expected="a byte count >= 0 (an int)",
                got=describe(max_bytes),
                fix="capture(max_bytes=256 << 20)  # 256 MiB, the default",
            )
        self.image_size = _check_image_size(image_size)
        self.keep_features = keep_features
        self.max_bytes = max_bytes
        self.calls: list[CapturedCall] = []
        self.images: list[CapturedImages] = []
        self.dropped: list[str] = []
        self.bytes_kept = 0
        self._lock = threading.Lock()
        self._state = "ready"  # -> "active" -> "done"; "loaded" for load_capture
        self._mode: Any = None
        self._latest_images: int | None = None

    # ---------------------------------------------------------------- context manager

    def __enter__(self) -> Capture:
        if self._state != "ready":
            raise InputValueError(
                "roi_lab.capture()",
                expected="a fresh capture for each with-block",
                got=f"a capture that is {'already active' if self._state == 'active' else self._state}",
                fix="with roi_lab.capture() as cap: ...  # call roi_lab.capture() again for a new block",
            )
        INSTALLATION.acquire()
        try:
            before = ACTIVE.get()
            if not before:  # the outermost capture of this thread pushes the (thread-local) mode
                self._mode = push_mode()
            ACTIVE.set((*before, self))
        except BaseException:
            INSTALLATION.release()
            raise
        self._state = "active"
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        if self._state != "active":
            return False
        self._state = "done"
        try:
            ACTIVE.set(tuple(c for c in ACTIVE.get() if c is not self))
            if self._mode is not None:
                mode, self._mode = self._mode, None
                pop_mode(mode)
        finally:
            INSTALLATION.release()
        return False  # the model's exception, if any, propagates

    @property
    def active(self) -> bool:
        """True inside the with-block."""
        return self._state == "active"

    # ---------------------------------------------------------------- recording (called by the hooks)

    def _fits(self, n: int) -> bool:
        if self.bytes_kept + n > self.max_bytes:
            return False
        self.bytes_kept += n
        return True

    def _over(self, what: Sequence[str]) -> str:
        return (
            f"{', '.join(what)} not kept: max_bytes = {size_text(self.max_bytes)} would be exceeded "
            f"({size_text(self.bytes_kept)} kept)"
        )

    def _file(self, raw: RawCall | RawImages) -> None:
        with self._lock:
            if isinstance(raw, RawImages):
                self._file_images(raw)
            else:
                self._file_call(raw)

    def _file_images(self, raw: RawImages) -> None:
        images = CapturedImages(
            len(self.images), raw.where, raw.image_size, raw.image_sizes, raw.original_sizes, raw.mean, raw.std
        )
        if self.keep_features and raw.tensor is not None:
            n = nbytes(raw.tensor)
            if self._fits(n):
                images.tensor = raw.tensor.detach().to("cpu", copy=True)
            else:
                images.dropped = self._over([f"the image batch ({size_text(n)})"])
                self.dropped.append(f"images {images.index}: {images.dropped}")
        self.images.append(images)
        self._latest_images = images.index

    def _file_call(self, raw: RawCall) -> None:
        maps = raw.maps()
        first = maps[0] if maps else None
        multi = raw.level_names is not None
        image_sizes = raw.image_sizes
        images = None
        if self.image_size is not None:
            image_size, source = self.image_size, "capture(image_size=...)"
        elif self._latest_images is not None:
            images = self._latest_images
            latest = self.images[images]
            image_size, source = latest.image_size, "GeneralizedRCNNTransform"
            image_sizes = image_sizes or latest.image_sizes
        elif image_sizes:
            image_size = (max(h for h, _ in image_sizes), max(w for _, w in image_sizes))
            source = "pooler image_shapes"
        else:
            image_size, source = None, "unknown"
        if self.image_size is not None and self._latest_images is not None:
            images = self._latest_images
        call = CapturedCall(
            index=len(self.calls),
            op=raw.op,
            where=raw.where,
            feature_shape=tuple(int(d) for d in first.shape) if first is not None else None,
            feature_dtype=str(first.dtype).replace("torch.", "") if first is not None else None,
            device=str(first.device) if first is not None else None,
            boxes=raw.boxes,
            box_format=raw.box_format,
            output_size=raw.output_size,
            spatial_scale=None if multi else raw.spatial_scale,
            sampling_ratio=raw.sampling_ratio,
            aligned=raw.aligned,
            image_size=image_size,
            image_size_source=source,
            image_sizes=image_sizes,
            scales=raw.scales,
            level_names=raw.level_names,
            level_shapes=[tuple(int(d) for d in m.shape) for m in maps] if multi else None,
            levels=raw.levels,
            box_indices=raw.box_indices,
            extra=dict(raw.extra),
            error=raw.error,
            explanation=raw.explanation,
            images=images,
        )
        dropped = []
        need = nbytes(raw.boxes) + nbytes(raw.box_indices) + nbytes(raw.levels)
        if not self._fits(need):
            _ = call.findings  # diagnosed now, while the boxes are at hand
            call.boxes = call.box_indices = call.levels = None
            dropped.append(f"boxes ({size_text(need)})")
        if self.keep_features and maps:
            n = raw.features_nbytes()
            if self._fits(n):
                call.features = raw.features_copy()
            else:
                dropped.append(f"features ({size_text(n)})")
        if dropped:
            call.dropped = self._over(dropped)
            self.dropped.append(f"call {call.index} ({call.op}): {call.dropped}")
        self.calls.append(call)

    # ---------------------------------------------------------------- reading

    def findings(self) -> list[Finding]:
        """Every call's findings, in call order (each call's errors first)."""
        return [f for call in list(self.calls) for f in call.findings]

    @property
    def has_errors(self) -> bool:
        """True when any call has an error finding (``roi-lab diagnose`` exits 1 then)."""
        return any(f.severity == "error" for f in self.findings())

    def counts(self) -> dict[str, int]:
        """Number of findings per severity."""
        out = {"error": 0, "warning": 0, "info": 0}
        for f in self.findings():
            out[f.severity] = out.get(f.severity, 0) + 1
        return out

    def summary(self, *, detail: bool = False) -> str:
        """A short report: one header line, then per call what reached the op and what looks wrong.

        Args:
            detail: also print each finding's evidence and fix (what ``roi-lab diagnose`` prints).
        """
        c = self.counts()
        n = len(self.calls)
        head = f"roi_lab capture: {n} call{'s' if n != 1 else ''}"
        if self.images:
            head += f", {len(self.images)} image batch{'es' if len(self.images) != 1 else ''}"
        head += f"; findings: {c['error']} error(s), {c['warning']} warning(s), {c['info']} info(s)"
        lines = [head]
        if not self.calls:
            lines.append(
                "  no ROI pooling call was recorded: was the model run inside the with-block? TorchScript "
                "models are not seen, torch.compile'd regions only in part."
            )
        for call in self.calls:
            lines.append(f"#{call.index} {call.op} in {call.where}")
            lines.append(f"    {call.describe()}")
            if call.error:
                code = call.explanation["code"] if call.explanation else None
                lines.append(f"    raised {call.error}" + (f" (explained: {code})" if code else ""))
            if not call.findings:
                lines.append("    ok: nothing looks wrong")
            for f in call.findings:
                if detail:
                    lines.extend("    " + line for line in str(f).splitlines())
                else:
                    lines.append(f"    {f.severity.upper()} {f.code}: {f.message}")
            if call.dropped:
                lines.append(f"    dropped: {call.dropped}")
        for img in self.images:
            if img.dropped:
                lines.append(f"images {img.index}: {img.dropped}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (no tensors), for ``roi-lab diagnose --format json`` and the app."""
        return {
            "has_errors": self.has_errors,
            "counts": self.counts(),
            "image_size": list(self.image_size) if self.image_size is not None else None,
            "keep_features": self.keep_features,
            "max_bytes": self.max_bytes,
            "bytes_kept": self.bytes_kept,
            "dropped": list(self.dropped),
            "calls": [c.to_dict() for c in self.calls],
            "images": [i.to_dict() for i in self.images],
        }

    def save(self, path: str | Path) -> Path:
        """Write the capture to ``path``: tensors and primitives only, readable with ``torch.load(weights_only=True)``.

        The findings are computed first and saved with it. Returns the path written.
        """
        from roi_lab.capture._file import save_capture

        return save_capture(self, Path(path))

    def __repr__(self) -> str:
        c = self.counts() if self._state != "active" else None
        return (
            f"Capture({len(self.calls)} call{'s' if len(self.calls) != 1 else ''}, {self._state}"
            + (f", {c['error']} errors, {c['warning']} warnings" if c else "")
            + ")"
        )
