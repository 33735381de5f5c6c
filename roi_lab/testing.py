"""Assertions for your own test suite: put ROI Lab's checks into CI.

:func:`assert_rois_ok` checks one set of boxes before they reach the op; :func:`assert_capture_ok` checks
everything a :func:`roi_lab.capture` recorded. Both raise ``AssertionError`` (so pytest reports a failed
test) with every failing finding, its evidence and fix. The pytest plugin (``roi_lab_pytest``, installed
with roi-lab) adds the ``roi_capture`` fixture, which runs the test inside a capture and fails it on an
error finding.

Example:
    >>> import torch
    >>> from roi_lab.testing import assert_rois_ok
    >>> rois = torch.tensor([[0.0, 100, 50, 900, 600]])  # image pixels
    >>> _ = assert_rois_ok((1, 256, 50, 64), rois, image_size=(800, 1024), spatial_scale=1 / 16)
    >>> assert_rois_ok((1, 256, 50, 64), rois, image_size=(800, 1024))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: roi_lab: 1 error finding in the boxes for roi_align:
    ERROR IMAGE_SPACE_BOXES: ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roi_lab.diagnose import Finding, diagnose
from roi_lab.errors import InputValueError, describe

__all__ = ["assert_capture_ok", "assert_rois_ok"]

_FAIL_ON = {"error": ("error",), "warning": ("error", "warning")}


def _failing(findings: Sequence[Finding], fail_on: str, where: str) -> list[Finding]:
    if fail_on not in _FAIL_ON:
        raise InputValueError(
            f"{where}(fail_on=...)",
            expected='"error" (fail on errors) or "warning" (on errors and warnings)',
            got=describe(fail_on),
            fix='fail_on="error"',
        )
    return [f for f in findings if f.severity in _FAIL_ON[fail_on]]


def _counted(n: int, fail_on: str) -> str:
    what = "error" if fail_on == "error" else "error/warning"
    return f"{n} {what} finding{'s' if n != 1 else ''}"


def _indent(finding: Finding, pad: str) -> str:
    return "\n".join(pad + line for line in str(finding).splitlines())


def assert_rois_ok(
    features: Any,
    boxes: Any,
    *,
    image_size: Any = None,
    spatial_scale: float | None = None,
    op: str = "roi_align",
    box_indices: Any = None,
    fail_on: str = "error",
) -> list[Finding]:
    """Fail (``AssertionError``) when :func:`roi_lab.diagnose` finds an error in these inputs.

    Args:
        features (Tensor[N, C, H, W] | (N, C, H, W)): the map the op pools from, or its shape.
        boxes: what the op gets (see :func:`roi_lab.diagnose`).
        image_size ((H, W) | None): the image the boxes are in pixels of; None: only the map is checked.
        spatial_scale (float | None): roi_align's ``spatial_scale`` (None: torchvision's default 1.0).
        op (str): ``"roi_align"`` or ``"crop_and_resize"``.
        box_indices: crop_and_resize's image index per box.
        fail_on (str): ``"error"`` (default) or ``"warning"`` (fail on warnings too).

    Returns:
        list[Finding]: all findings (infos, and warnings with ``fail_on="error"``) when the check passes.

    Raises:
        AssertionError: with every failing finding, its evidence and its fix.
    """
    findings = diagnose(
        boxes, image_size=image_size, features=features, op=op, spatial_scale=spatial_scale, box_indices=box_indices
    )
    failing = _failing(findings, fail_on, "assert_rois_ok")
    if failing:
        lines = [f"roi_lab: {_counted(len(failing), fail_on)} in the boxes for {op}:"]
        lines += [_indent(f, "") for f in failing]
        raise AssertionError("\n".join(lines))
    return findings


def assert_capture_ok(cap: Any, *, fail_on: str = "error") -> None:
    """Fail (``AssertionError``) when any call recorded by ``cap`` has an error finding.

    Args:
        cap (Capture): from ``with roi_lab.capture() as cap:`` or :func:`roi_lab.load_capture`.
        fail_on (str): ``"error"`` (default) or ``"warning"``.

    Raises:
        AssertionError: naming each failing call (op and caller) with its findings, evidence and fixes.
    """
    lines, total, bad_calls = [], 0, 0
    for call in cap.calls:
        failing = _failing(call.findings, fail_on, "assert_capture_ok")
        if not failing:
            continue
        bad_calls += 1
        total += len(failing)
        lines.append(f"#{call.index} {call.op} in {call.where}")
        lines.append(f"  {call.describe()}")
        lines += [_indent(f, "  ") for f in failing]
    _failing([], fail_on, "assert_capture_ok")  # validates fail_on when nothing was recorded
    if total:
        head = f"roi_lab capture: {_counted(total, fail_on)} in {bad_calls} of {len(cap.calls)} ROI pooling calls:"
        raise AssertionError("\n".join([head, *lines]))
