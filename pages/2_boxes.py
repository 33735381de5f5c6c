"""Page 2: draw boxes on the image, edit them in your own box format, import and export them."""

import streamlit as st

from roi_lab.errors import RoiLabError
from roi_lab.ui import boxtable, figures, loaders, state, widgets
from roi_lab.ui.state import K
from roi_lab.ui.views import scale_boxes

ss = st.session_state
st.title("Boxes")
if not state.image_ready():
    st.info("Pick an image on the Image & backbone page first.")
    st.stop()

working = loaders.working_image(ss[K.IMAGE_HASH], ss[K.MAX_SIDE], ss[K.IMAGE_BYTES])
h, w = working.size
fmt, space = widgets.box_format_ui()

# Selections and edits that arrived through session state are applied before the widgets are drawn.
state.handle_selection(f"{K.CHART_PREFIX}{ss[K.BOXES_REV]}", (h, w))
state.handle_edits(f"{K.EDITOR_PREFIX}{ss[K.BOXES_REV]}", fmt, space, (h, w))
rev = ss[K.BOXES_REV]
chart_key, editor_key = f"{K.CHART_PREFIX}{rev}", f"{K.EDITOR_PREFIX}{rev}"

boxes_image, labels, usable_notes = boxtable.usable_boxes(ss[K.BOXES], (h, w))
left, right = st.columns([3, 2])
with left:
    st.caption(
        f"Drag on the image to add a box ({w} x {h} px; the axes are image pixels). "
        "Hold Shift to add several at once."
    )
    uri, uri_scale = loaders.image_uri(ss[K.IMAGE_HASH], ss[K.MAX_SIDE], None, working.image)
    fig = figures.image_figure(uri, (h, w), boxes_image, labels, uri_scale=uri_scale)
    st.plotly_chart(
        fig, key=chart_key, on_select=lambda: state.handle_selection(chart_key, (h, w)), selection_mode="box",
        config={"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "autoScale2d"], "scrollZoom": False},
    )
with right:
    widgets.show_notes(ss[K.BOXES_NOTES])
    widgets.show_notes([n for n in usable_notes if n[0] != "info"])
    if not ss[K.BOXES]:
        st.info("The table is empty: drag on the image, add a row below, import a file or load the preset.")
    cols = boxtable.columns_for(fmt)
    number_format = "%.4f" if space == "normalized" else "%.1f"
    st.data_editor(
        boxtable.to_display(ss[K.BOXES], fmt, space, (h, w)),
        key=editor_key,
        num_rows="dynamic",
        on_change=lambda: state.handle_edits(editor_key, fmt, space, (h, w)),
        column_config={
            "label": st.column_config.TextColumn("label"),
            **{c: st.column_config.NumberColumn(c, format=number_format) for c in cols},
            "status": st.column_config.TextColumn("status", disabled=True),
        },
        width="stretch",
    )
    st.caption(
        f"Shown as {fmt} ({', '.join(cols)}), "
        + ("normalized by the image size (x / W, y / H)." if space == "normalized" else "in image pixels.")
        + " Edits are converted back with roi_lab.convert_boxes."
    )
    b1, b2 = st.columns(2)
    b1.button(
        "Preset: synthetic scene", key="preset_synthetic", help="the synthetic sample and its 8 exact boxes",
        on_click=state.load_sample_into_state, args=("synthetic",),
        disabled="synthetic" not in loaders.sample_names(),
    )
    b2.button("Clear all boxes", key="clear_boxes", on_click=state.set_rows, args=([], [("info", "Cleared.")]))

# ----------------------------------------------------------------------------- import / export
st.subheader("Import and export")
FILE_FORMATS = ("auto", "coco", "voc", "yolo", "json")
imp, exp = st.columns(2)
with imp:
    in_fmt = st.selectbox("Import format", FILE_FORMATS, key="import_format")
    upload = st.file_uploader("Box file (COCO JSON, Pascal VOC XML, YOLO txt, roi_lab JSON)", key="boxes_import")
    st.caption(
        "Coordinates in the file refer to the original image "
        f"({working.original_size[1]} x {working.original_size[0]}); they are scaled to the working image. "
        "The file replaces the table."
    )
    if upload is not None and ss.get("boxes_import_seen") != upload.file_id:
        ss["boxes_import_seen"] = upload.file_id
        from roi_lab.boxes import read_boxes

        try:
            labeled = read_boxes(upload.getvalue(), in_fmt, image_size=working.original_size)
        except RoiLabError as e:  # BoxFileError and friends
            state.add_notes([("error", f"{upload.name} was not imported; the table is unchanged.\n\n{e}")])
        else:
            rows = boxtable.rows_from_boxes(scale_boxes(labeled.boxes_image, working.scale), labeled.labels)
            state.set_rows(rows, [("info", f"Imported {len(rows)} boxes from {upload.name}.")])
        st.rerun()
with exp:
    out_fmt = st.selectbox("Export format", FILE_FORMATS[1:], key="export_format")
    if len(boxes_image):
        from roi_lab.boxes import write_boxes

        ext = {"coco": "json", "voc": "xml", "yolo": "txt", "json": "json"}[out_fmt]
        st.download_button(
            f"Download {len(boxes_image)} boxes ({out_fmt})",
            data=lambda: write_boxes(scale_boxes(boxes_image, 1 / working.scale), out_fmt,
                                     image_size=working.original_size,
                                     labels=labels),
            file_name=f"boxes_{out_fmt}.{ext}",
            key="export_boxes",
            on_click="ignore",
        )
        st.caption("Exported in the original image's pixels.")
    else:
        st.caption("Nothing to export: no usable boxes.")
