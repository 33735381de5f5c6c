"""Rich display in notebooks: ``_repr_html_`` and ``_repr_markdown_`` for findings, explanations and captures.

Jupyter (and VS Code, Colab) show these in place of the plain repr when a cell ends with a
:class:`~roi_lab.diagnose.Finding`, an :class:`~roi_lab.explain.Explanation`, a
:class:`~roi_lab.capture.CapturedCall` or a ``roi_lab.capture()`` result; ``display(*findings)`` shows a list.
The classes get them from the mixins here (no fields, no state), so their own modules stay as they are.

Everything shown is escaped: evidence quotes the user's numbers, a cause quotes their error text and a
capture the caller's file names, any of which may hold ``<``, ``&`` or markup of its own. HTML is escaped with
:func:`html.escape`; Markdown text is backslash-escaped and code goes into fenced blocks whose fence is longer
than any run of backticks inside.
"""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["FindingDisplay", "ExplanationDisplay", "CapturedCallDisplay", "CaptureDisplay", "MAX_CALLS_SHOWN"]

SEVERITY_COLORS = {"error": "#c62828", "warning": "#d35400", "info": "#1f4e79"}
MAX_CALLS_SHOWN = 50  # a capture of a training loop can hold thousands: cap.summary() has them all
_BOX = "border-left:4px solid {color};padding:4px 10px;margin:4px 0;font-family:sans-serif;font-size:13px"
_CODE = "margin:2px 0;padding:4px 6px;background:#f4f4f4;white-space:pre-wrap;font-size:12px"
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~&])")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _md(text: Any) -> str:
    """Plain text for Markdown: punctuation that Markdown (or the HTML it may hold) reads is backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _md_code(code: Any, lang: str = "") -> str:
    """A fenced code block that ``code`` cannot close early (its fence is longer than any backtick run inside)."""
    code = str(code)
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", code)), default=0))
    return f"{fence}{lang}\n{code}\n{fence}"


def _finding_html(f: Any) -> str:
    color = SEVERITY_COLORS.get(f.severity, "#333333")
    return (
        f"<div style='{_BOX.format(color=color)}'>"
        f"<b style='color:{color}'>{_e(f.severity.upper())}</b> <code>{_e(f.code)}</code>: {_e(f.message)}"
        f"<div><i>evidence</i>: {_e(f.evidence)}</div>"
        f"<div><i>fix</i>:<pre style='{_CODE}'>{_e(f.fix)}</pre></div></div>"
    )


def _finding_markdown(f: Any) -> str:
    return (
        f"**{_md(f.severity.upper())}** `{f.code}`: {_md(f.message)}\n\n"
        f"*evidence*: {_md(f.evidence)}\n\n*fix*:\n\n{_md_code(f.fix, 'python')}\n"
    )


class FindingDisplay:
    """Notebook display of a :class:`~roi_lab.diagnose.Finding`: severity, code, message, evidence and fix."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return _finding_html(self)

    def _repr_markdown_(self) -> str:
        return _finding_markdown(self)


class ExplanationDisplay:
    """Notebook display of an :class:`~roi_lab.explain.Explanation`: code, framework, the matched line,
    cause and fix."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        e: Any = self
        note = f"<div><i>note</i>: {_e(e.note)}</div>" if e.note else ""
        return (
            f"<div style='{_BOX.format(color=SEVERITY_COLORS['error'])}'>"
            f"<code>{_e(e.code)}</code> ({_e(e.framework)})"
            f"<div><i>matched</i>:<pre style='{_CODE}'>{_e(e.matched)}</pre></div>"
            f"<div><i>cause</i>: {_e(e.cause)}</div>"
            f"<div><i>fix</i>:<pre style='{_CODE}'>{_e(e.fix)}</pre></div>{note}</div>"
        )

    def _repr_markdown_(self) -> str:
        e: Any = self
        note = f"\n*note*: {_md(e.note)}\n" if e.note else ""
        return (
            f"`{e.code}` ({_md(e.framework)})\n\n*matched*:\n\n{_md_code(e.matched)}\n\n"
            f"*cause*: {_md(e.cause)}\n\n*fix*:\n\n{_md_code(e.fix, 'python')}\n{note}"
        )


def _call_lines(call: Any) -> tuple[str, str, list[str]]:
    """(title, the one-line description, extra lines: the op's error, what was dropped) of a captured call."""
    extra = []
    if call.error:
        code = call.explanation["code"] if call.explanation else None
        extra.append(f"raised {call.error}" + (f" (explained: {code})" if code else ""))
    if call.dropped:
        extra.append(f"dropped: {call.dropped}")
    return f"#{call.index} {call.op} in {call.where}", call.describe(), extra


def _call_html(call: Any) -> str:
    title, line, extra = _call_lines(call)
    findings = call.findings
    body = "".join(_finding_html(f) for f in findings) or "<div style='color:#2e7d32'>ok: nothing looks wrong</div>"
    worst = findings[0].severity if findings else None
    color = SEVERITY_COLORS.get(worst, "#2e7d32") if worst else "#2e7d32"
    return (
        f"<div style='{_BOX.format(color=color)}'><b>{_e(title)}</b><div>{_e(line)}</div>"
        + "".join(f"<div>{_e(x)}</div>" for x in extra)
        + body
        + "</div>"
    )


def _call_markdown(call: Any) -> str:
    title, line, extra = _call_lines(call)
    parts = [f"**{_md(title)}**", _md(line), *(_md(x) for x in extra)]
    parts += [_finding_markdown(f) for f in call.findings] or ["ok: nothing looks wrong"]
    return "\n\n".join(parts) + "\n"


class CapturedCallDisplay:
    """Notebook display of a :class:`~roi_lab.capture.CapturedCall`: what reached the op, and its findings."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return _call_html(self)

    def _repr_markdown_(self) -> str:
        return _call_markdown(self)


def _capture_head(cap: Any) -> tuple[str, list[str]]:
    """The summary's header line, and the notes under it (no call recorded, calls not shown, what was dropped)."""
    head = cap.summary().splitlines()[0]
    notes = []
    if not cap.calls:
        notes.append("no ROI pooling call was recorded: was the model run inside the with-block? TorchScript "
                     "models are not seen, torch.compile'd regions only in part.")
    if len(cap.calls) > MAX_CALLS_SHOWN:
        notes.append(f"showing the first {MAX_CALLS_SHOWN} of {len(cap.calls)} calls; cap.summary() lists them all")
    notes += [f"images {img.index}: {img.dropped}" for img in cap.images if img.dropped]
    return head, notes


class CaptureDisplay:
    """Notebook display of a capture (``with roi_lab.capture() as cap``): the summary's header, each call
    (the first :data:`MAX_CALLS_SHOWN`) with its findings, evidence and fix."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        cap: Any = self
        head, notes = _capture_head(cap)
        return (
            f"<div style='font-family:sans-serif;font-size:13px'><b>{_e(head)}</b>"
            + "".join(f"<div>{_e(n)}</div>" for n in notes)
            + "".join(_call_html(c) for c in cap.calls[:MAX_CALLS_SHOWN])
            + "</div>"
        )

    def _repr_markdown_(self) -> str:
        cap: Any = self
        head, notes = _capture_head(cap)
        parts = [f"**{_md(head)}**", *(_md(n) for n in notes)]
        parts += [_call_markdown(c) for c in cap.calls[:MAX_CALLS_SHOWN]]
        return "\n\n".join(parts) + "\n"
