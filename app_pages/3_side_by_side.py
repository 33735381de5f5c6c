"""Page 3: the same boxes passed with your settings and in every common wrong way, all at a glance."""

import streamlit as st

from roi_lab.errors import RoiLabError
from roi_lab.ui import figures, guard, loaders, persist, side, source, state, timing, views, widgets
from roi_lab.ui.state import K

DRAG_SIDE = 480  # longer side of the image the boxes are dragged on
CHART = {"config": {"displayModeBar": False}, "theme": None}  # Plotly's own theme: no Streamlit pass per chart

ss = st.session_state
st.markdown("### Side by side")
src = source.current()
if src is None:
    st.info("Pick an image on the Image & backbone page first.")
    st.stop()
working = src.working()
h, w = working.size
oh, ow = working.original_size
state.handle_selection(f"{K.SIDE_CHART_PREFIX}{ss[K.BOXES_REV]}", (oh, ow))  # a selection set via state (tests)
boxes = source.boxes_for_model(working)
if not len(boxes.model):
    widgets.show_notes([n for n in boxes.notes if n[0] != "info"])
    st.warning("No usable boxes: draw or fix boxes on the Boxes page (the table keeps your rows).")
    st.stop()
try:
    result = src.features()
except RoiLabError as e:
    st.error(f"{src.feature_error_hint}\n\n{e}")
    st.stop()
feats, stride, b = result.features, result.nominal_stride, src.backbone
_, channels, fh, fw = feats.shape
resized = f" (your image, {ow} x {oh}, resized x{working.scale:.3g})" if working.scale != 1 else ""
st.caption(f"{b.name} {b.stage} on {result.device}: features [1, {channels}, {fh}, {fw}], stride {stride}, for the "
           f"{w} x {h} model input{resized}. Weights: {result.weights_source}." + src.side_note)



@st.fragment
def overview() -> None:
    """The controls, the overview and the details: a change of the box shown or of a setting reruns only this
    (the image to drag on, outside, is neither recomputed nor redrawn)."""
    with timing.run_timer("Side by side overview (fragment)"), guard.guard("Side by side"):
        c_box, c_out, c_sr, c_al, c_view = st.columns([1.2, 1.1, 1.1, 1.05, 2.4])
        focus = widgets.focus_box_ui(boxes.labels, c_box)
        settings = widgets.crop_settings_ui((c_out, c_sr, c_al, angle_col))
        view, index = widgets.channel_view_ui(channels, c_view)
        data = side.compute(src, feats, stride, boxes, settings, view, index, focus)
        if data.variants[0].settings_note:
            st.warning(data.variants[0].settings_note)
        titles = {vd.kind: vd.title for vd in data.verdicts}
        for kind, message in data.errors.items():
            st.warning(f"{titles.get(kind, kind)}: the op refused this input. {message}")
        st.plotly_chart(data.figure, key="overview", **CHART)
        if widgets.show_details_ui():
            details(data, focus)
        downloads(data, settings, focus)
        persist.save()  # a fragment rerun does not reach the entrypoint's save


def details(data: side.SideData, focus: int) -> None:
    c_pick, c_text = st.columns([1, 3])
    kind = widgets.detail_kind_ui(c_pick)
    detail = side.details(src, feats, stride, boxes, data, kind, focus)
    v, verdict = detail["variant"], detail["verdict"]
    with c_text:
        st.markdown(f"**{v.title}** ({verdict.headline}): {verdict.words}.")
        st.text(v.words)
        code_col, fix_col = st.columns(2)
        code_col.caption("What the code does")
        code_col.code(v.code, language="python", wrap_lines=True)
        if v.fix:
            fix_col.caption("What passes the boxes as meant")
            fix_col.code(v.fix, language="python", wrap_lines=True)
        if detail["rgb_error"]:
            st.warning(f"The op refused the image crop: {detail['rgb_error']}")
    st.plotly_chart(detail["figure"], key="details", **CHART)


def downloads(data: side.SideData, settings, focus: int) -> None:
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download the crops of the box shown, all channels (.npz)",
        data=lambda: views.crops_npz(
            [x.kind.value for x in data.variants],
            loaders.variant_crops(src.feature_key, data.variants_key, settings.output_size, data.variants,
                                  feats)["crops"][:, 0],
            boxes.model[focus],
            {"output_size": settings.output_size, "sampling_ratio": settings.sampling_ratio,
             "aligned": settings.aligned, "angle_degrees": settings.angle_degrees, "stride": stride},
        ),
        file_name="roi_lab_crops.npz", key="download_crops", on_click="ignore",
    )
    d2.download_button("Download the overview (HTML)", data=lambda: figures.figure_html(data.figure),
                       file_name="roi_lab_overview.html", mime="text/html", key="download_overview", on_click="ignore")


left, right = st.columns([1, 3.5])
with left:
    chart_key = f"{K.SIDE_CHART_PREFIX}{ss[K.BOXES_REV]}"
    uri, uri_scale = loaders.image_uri(src.image_hash, src.max_side, DRAG_SIDE, working.image)
    st.plotly_chart(
        figures.image_figure(uri, (oh, ow), boxes.original, [f"{i + 1} {lab}" for i, lab in enumerate(boxes.labels)],
                             uri_scale=uri_scale * working.scale,
                             height=280, grid_points=30, axes=False),
        key=chart_key, on_select=lambda: state.handle_selection(chart_key, (oh, ow)), selection_mode="box",
        config={"displayModeBar": False, "scrollZoom": False}, theme=None,
    )
    st.caption("Drag on the image to add a box; it becomes the box shown. The numbers are the boxes' in "
               "\"Box shown\".")
    angle_col = st.container()  # the rotated panels' box angle, drawn (and rerun) by the overview's fragment
with right:
    overview()
