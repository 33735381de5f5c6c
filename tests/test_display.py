"""Notebook display (roi_lab._display): findings, explanations, captured calls and captures as HTML / Markdown.

What a notebook shows must hold the finding's code, evidence and fix, and must not run the user's text as
markup: evidence quotes numbers and file names, a cause quotes an error message, any of which may hold ``<``.
"""

from __future__ import annotations

import torch

import roi_lab
from roi_lab import _display
from roi_lab.diagnose import Finding

HOSTILE = Finding(
    code="IMAGE_SPACE_BOXES",
    severity="error",
    message="boxes <b>look</b> like image px & more",
    evidence="max x = 560 in <script>alert(1)</script>",
    fix="rois[:, 1:] *= 1 / 16  # ``` a fence inside",
)


def test_finding_html_holds_code_evidence_fix_and_escapes_markup():
    html = HOSTILE._repr_html_()
    assert "<b style='color:#c62828'>ERROR</b> <code>IMAGE_SPACE_BOXES</code>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "boxes &lt;b&gt;look&lt;/b&gt; like image px &amp; more" in html
    assert "<pre style=" in html and "rois[:, 1:] *= 1 / 16" in html


def test_finding_markdown_escapes_text_and_fences_code_longer_than_any_backtick_run():
    md = HOSTILE._repr_markdown_()
    assert md.startswith("**ERROR** `IMAGE_SPACE_BOXES`: boxes \\<b\\>look\\</b\\> like image px \\& more")
    assert "*evidence*: max x = 560 in \\<script\\>alert(1)\\</script\\>" in md
    assert "````python\nrois[:, 1:] *= 1 / 16  # ``` a fence inside\n````" in md  # 4 backticks: ``` cannot close it


def test_a_real_finding_and_explanation_display():
    boxes = torch.tensor([[120.0, 200.0, 560.0, 480.0]])
    (first, *_) = roi_lab.diagnose([boxes], image_size=(800, 1000), features=torch.zeros(1, 4, 50, 63))
    assert first.code in first._repr_html_() and first.fix in first._repr_markdown_()
    e = roi_lab.explain_error("RuntimeError: The boxes tensor shape is not correct as Tensor[K, 5]")
    html, md = e._repr_html_(), e._repr_markdown_()
    assert "<code>MISSING_BATCH_INDEX</code> (torchvision)" in html
    assert "The boxes tensor shape is not correct as Tensor[K, 5]" in html
    assert md.startswith("`MISSING_BATCH_INDEX` (torchvision)") and "*cause*:" in md and "*fix*:" in md


def test_capture_display_lists_calls_with_findings_and_says_when_none_was_recorded():
    features = torch.randn(1, 4, 50, 63)
    with roi_lab.capture(image_size=(800, 1000)) as cap:
        roi_lab.roi_align(features, [torch.tensor([[120.0, 200.0, 560.0, 480.0]])], 7)  # image px, scale 1
    html, md = cap._repr_html_(), cap._repr_markdown_()
    head = cap.summary().splitlines()[0]
    assert html.count("IMAGE_SPACE_BOXES") >= 1 and md.count("IMAGE_SPACE_BOXES") >= 1
    call = cap.calls[0]
    title = f"#0 roi_lab.roi_align in {call.where}"
    assert f"<b>{title.replace('<', '&lt;').replace('>', '&gt;')}</b>" in call._repr_html_()  # `<module>`: escaped
    assert html.startswith(f"<div style='font-family:sans-serif;font-size:13px'><b>{head}</b>")
    assert md.startswith("**roi\\_lab capture: 1 call; findings: 1 error(s)")
    with roi_lab.capture() as empty:
        pass
    assert "no ROI pooling call was recorded" in empty._repr_html_()
    assert "no ROI pooling call was recorded" in empty._repr_markdown_()


def test_a_long_capture_shows_the_first_calls_and_says_how_many():
    features = torch.randn(1, 2, 8, 8)
    boxes = [torch.tensor([[0.0, 0.0, 4.0, 4.0]])]
    with roi_lab.capture(image_size=(8, 8)) as cap:
        for _ in range(_display.MAX_CALLS_SHOWN + 3):
            roi_lab.roi_align(features, boxes, 2)
    html = cap._repr_html_()
    shown = _display.MAX_CALLS_SHOWN
    assert f"showing the first {shown} of {shown + 3} calls; cap.summary() lists them all" in html
    assert f"#{shown - 1} " in html and f"#{shown} " not in html
