"""``*_ui()`` helpers for a capture file: the upload, the view picker, the findings, what is missing.

Widgets bound to persisted state keys (:class:`roi_lab.ui.state.K`) with explicit keys; their options are
indices into the capture (stable across reruns), their labels the capture's own words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from roi_lab.errors import RoiLabError
from roi_lab.geometry import feature_geometry
from roi_lab.ui import captured, figures, loaders, source, state
from roi_lab.ui.state import K, bind
from roi_lab.ui.views import intended_feature
from roi_lab.ui.widgets import fix_block, stride_metrics_ui, summary_kind_ui

__all__ = ["capture_upload_ui", "capture_view_ui", "capture_section", "findings_ui", "missing_ui", "SEVERITY"]

SEVERITY = {"error": st.error, "warning": st.warning, "info": st.info}


def capture_upload_ui() -> tuple[bytes, str] | None:
    """The capture file uploader; returns (bytes, file name) once per new upload, else None."""
    limit = captured.capture_limit()
    upload = st.file_uploader(
        "Open a capture file (.pt, from `cap.save(path)` or `roi-lab capture script.py`)", key="capture_upload",
        help=f"Read with roi_lab.load_capture: at most {captured.size_text(limit)}, torch.load(weights_only=True) "
        "(tensors and primitives only, no code runs), every field checked.",
    )
    if upload is None or upload.file_id == st.session_state[K.CAPTURE_SEEN]:
        return None
    st.session_state[K.CAPTURE_SEEN] = upload.file_id
    return upload.getvalue(), upload.name


def capture_view_ui(cap: Any, view: Any) -> None:
    """Pick the call, the image of its batch and, for multi-scale poolers, the level and its boxes.

    Every change applies the new view (:func:`roi_lab.ui.state.apply_capture_view`): its boxes fill the
    table (or are offered, next to the user's own) and its parameters become the settings of "your call".
    """
    ss = st.session_state
    calls = list(cap.calls)
    call = calls[view.call]
    ss[K.CAPTURE_CALL], ss[K.CAPTURE_IMAGE] = view.call, view.image
    multi = captured.level_name(call, view) is not None
    cols = st.columns([3, 1, 2, 1.4] if multi else [3, 1])
    cols[0].selectbox("Captured call", list(range(len(calls))), format_func=lambda i: captured.call_label(calls[i]),
                      **bind(K.CAPTURE_CALL, then=state.apply_capture_view))
    n = captured.num_images(call)
    cols[1].selectbox("Image of the batch", list(range(n)), format_func=lambda i: f"image {i} of {n}",
                      disabled=n == 1, **bind(K.CAPTURE_IMAGE, then=state.apply_capture_view))
    if multi:
        ss[K.CAPTURE_LEVEL] = view.level
        cols[2].selectbox("Pyramid level", list(range(len(call.level_names))),
                          format_func=lambda i: captured.level_label(call, i, view.image),
                          **bind(K.CAPTURE_LEVEL, then=state.apply_capture_view),
                          help="the map shown; its label counts the boxes the pooler sent there")
        cols[3].toggle("Only the boxes sent to this level", **bind(K.CAPTURE_ONLY_LEVEL, then=state.apply_capture_view),
                       help="off: every box of the image, on this level's map (each box's label names its own level)")


def findings_ui(findings: Sequence[Any]) -> None:
    """Findings (``roi_lab.diagnose.Finding``) as boxes: severity, code and message; evidence; the fix."""
    for f in findings:
        with st.container(border=True):
            SEVERITY.get(f.severity, st.info)(f"**{f.code}** ({f.severity}): {f.message}")
            if f.evidence:
                st.caption("Evidence")
                st.text(f.evidence)
            if f.fix:
                fix_block(f.fix)


def missing_ui(lines: Sequence[str]) -> None:
    """What the capture does not hold and how to get it, one warning each."""
    for line in lines:
        st.warning(line)


def capture_section(src: Any, working: Any) -> None:
    """The Image & backbone page on a capture: the view picker, the call's image and map (or what stands in for
    them), its findings, what the capture lacks and how to get it, and the geometry against the map's shape.

    Args:
        src (roi_lab.ui.source.CaptureSource): the capture and its view.
        working (loaders.WorkingImage): ``src.working()``.
    """
    ss = st.session_state
    h, w = working.size
    cap, view, call = src.capture(), src.view, src.call
    counts = cap.counts()
    st.subheader(f"Capture: {src.name}")
    st.caption(
        f"{len(cap.calls)} recorded call{'s' if len(cap.calls) != 1 else ''}; findings: {counts['error']} error(s), "
        f"{counts['warning']} warning(s), {counts['info']} info(s). The call's image, boxes and feature map replace "
        "the sample and the backbone on every page; its output size, sampling ratio and aligned are the settings "
        "of your call on Side by side."
    )
    capture_view_ui(cap, view)
    frame, frame_from = captured.frame_size(cap, call)
    shape = captured.map_shape(call, view)
    stride = captured.nominal_stride(call, view, frame)
    scale = captured.spatial_scale_of(call, view)
    try:
        result = src.features()
    except RoiLabError:
        result = None  # said below (captured.missing); the geometry needs only the map's shape

    left, right = st.columns([1, 1.15])
    with left:
        kept_image = captured.image_of(cap, call, view.image) is not None
        st.image(working.image, caption=(f"call #{call.index}: batch image {view.image}, {w} x {h} px (the padded "
                                         "batch, un-normalized)" if kept_image else
                                         f"no image in the capture: a blank {w} x {h} canvas (the frame)"))
        boxes = source.boxes_for_model(working)
        intended = intended_feature(boxes.model, stride)
        regions = captured.regions_feature(boxes.model, scale, bool(call.aligned)) if scale else intended
        stage = src.backbone.stage
        if result is not None:
            kind = summary_kind_ui()
            summary = loaders.summary(src.feature_key, kind, result.features)
            title = f"{stage} ({kind}): dashed where the boxes lie, solid where the call sampled"
        else:
            summary = captured.blank_map(shape)
            title = f"{stage}, shape only (not kept): dashed where the boxes lie, solid where the call sampled"
        focus = int(ss[K.FOCUS_BOX]) if 0 <= int(ss[K.FOCUS_BOX]) < len(boxes.model) else None
        if summary is not None:
            if focus is not None:
                title += f"; box {focus + 1} ({boxes.labels[focus]}) in full"
            fig = figures.feature_map_figure(summary, regions, intended, focus=focus, title=title, height=380)
            st.plotly_chart(fig, key="feature_summary_chart", config={"displayModeBar": False})
    with right:
        st.markdown(f"**#{call.index} `{call.op}`** in `{call.where}`")
        st.caption(call.describe())
        missing_ui(captured.missing(cap, call))
        st.markdown("**Findings of this call**: `roi_lab.diagnose` on all its boxes, recorded with the capture")
        if not call.findings:
            st.success("Nothing looks wrong with this call's boxes for its map and image size.")
        findings_ui(call.findings)
        for note in captured.call_notes(call, view, frame, stride):
            st.info(note)
        top = st.columns(3)
        top[0].metric("Feature map", f"{list(shape)}" if shape else "unknown",
                      help="N, C, h, w" + ("" if result is not None else " (recorded; the map itself was not kept)"))
        top[1].metric("spatial_scale of the call", captured.scale_text(scale),
                      help="what the call multiplied the boxes by")
        top[2].metric("Frame (H x W)", f"{frame[0]} x {frame[1]}", help=f"the image the boxes are in: {frame_from}")
        if shape is not None and len(shape) == 4:
            stride_metrics_ui(feature_geometry(frame, tuple(shape[-2:]), stride=stride), "frame")
