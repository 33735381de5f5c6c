"""Page 2: draw boxes on the image, edit them in your own box format, import and export them."""

import streamlit as st

from roi_lab.ui import boxtable, figures, guard, loaders, source, state, widgets
from roi_lab.ui.state import K

ss = st.session_state
st.title("Boxes")
src = source.current()
if src is None:
    st.info("Pick an image on the Image & backbone page first.")
    st.stop()
working = src.working()
oh, ow = working.original_size  # the table, the chart's axes and the files: your image's own pixels
fmt, space = widgets.box_format_ui()

# Selections and edits that arrived through session state are applied before the widgets are drawn.
state.handle_selection(f"{K.CHART_PREFIX}{ss[K.BOXES_REV]}", (oh, ow))
state.handle_edits(f"{K.EDITOR_PREFIX}{ss[K.BOXES_REV]}", fmt, space, (oh, ow))
rev = ss[K.BOXES_REV]
chart_key, editor_key = f"{K.CHART_PREFIX}{rev}", f"{K.EDITOR_PREFIX}{rev}"

boxes = source.boxes_for_model(working)
left, right = st.columns([3, 2])
with left:
    st.caption(f"Drag on the image to add a box ({ow} x {oh} px; the axes are your image's pixels). "
               "Hold Shift to add several at once.")
    uri, uri_scale = loaders.image_uri(src.image_hash, src.max_side, None, working.image)
    fig = figures.image_figure(uri, (oh, ow), boxes.original, boxes.labels, uri_scale=uri_scale * working.scale)
    st.plotly_chart(
        fig, key=chart_key, on_select=lambda: state.handle_selection(chart_key, (oh, ow)), selection_mode="box",
        config={"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "autoScale2d"], "scrollZoom": False},
    )
with right:
    cols = boxtable.columns_for(fmt)
    number_format = "%.4f" if space == "normalized" else "%.1f"
    st.data_editor(
        boxtable.to_display(ss[K.BOXES], fmt, space, (oh, ow)),
        key=editor_key,
        num_rows="dynamic",
        on_change=guard.callback(lambda: state.handle_edits(editor_key, fmt, space, (oh, ow))),
        column_config={
            "label": st.column_config.TextColumn("label"),
            **{c: st.column_config.NumberColumn(c, format=number_format) for c in cols},
            "status": st.column_config.TextColumn("status", disabled=True),
        },
        width="stretch",
        height=300,
    )
    resized = (f" The model sees the image resized to {working.size[1]} x {working.size[0]} (x{working.scale:.3g}); "
               "boxes are scaled with it." if working.scale != 1 else "")
    st.caption(
        f"{fmt} ({', '.join(cols)}) "
        + ("normalized by your image's size (x / W, y / H)" if space == "normalized" else "in your image's pixels")
        + f" ({ow} x {oh}): continuous coordinates, (0, 0) the top-left corner of the top-left pixel, x2 and y2 "
        "exclusive (a box over columns 10..19 has x1 = 10, x2 = 20), torchvision's convention; the numbers of "
        f"your annotation files.{resized}"
    )
    widgets.notes_box(list(ss[K.BOXES_NOTES]) + [n for n in boxes.notes if n[0] != "info"]
                      + ([("info", "The table is empty: drag on the image, add a row, import a file or load the "
                           "preset.")] if not ss[K.BOXES] else []))
    widgets.box_offer_ui()
    b1, b2 = st.columns(2)
    b1.button(
        "Preset: synthetic scene", key="preset_synthetic", help="the synthetic sample and its 8 exact boxes",
        on_click=guard.callback(state.load_sample_into_state), args=("synthetic",), kwargs={"replace_boxes": True},
        disabled="synthetic" not in loaders.sample_names(),
    )
    b2.button("Clear all boxes", key="clear_boxes", on_click=guard.callback(state.edit_rows),
              args=([], [("info", "Cleared.")]))

# ----------------------------------------------------------------------------- import / export
st.subheader("Import and export")
FILE_FORMATS = ("auto", "coco", "voc", "yolo", "json")
imp, exp = st.columns(2)
with imp:
    in_fmt = st.selectbox("Import format", FILE_FORMATS, key="import_format")
    upload = st.file_uploader("Box file (COCO JSON, Pascal VOC XML, YOLO txt, roi_lab JSON)", key="boxes_import")
    st.caption(f"Coordinates in the file are your image's pixels ({ow} x {oh}), like the table. A file with "
               "boxes replaces the table; a file that cannot be read or holds none leaves it as it is.")
    if upload is not None and ss.get(K.IMPORT_SEEN) != upload.file_id:
        ss[K.IMPORT_SEEN] = upload.file_id
        state.import_boxes(upload.getvalue(), upload.name, in_fmt, (oh, ow))
        st.rerun()
with exp:
    out_fmt = st.selectbox("Export format", FILE_FORMATS[1:], key="export_format")
    if len(boxes.original):
        from roi_lab.boxes import write_boxes

        ext = {"coco": "json", "voc": "xml", "yolo": "txt", "json": "json"}[out_fmt]
        try:  # written now (small): a box the format cannot hold is said here, not in a failed download
            exported = write_boxes(boxes.original, out_fmt, image_size=(oh, ow), labels=boxes.labels)
        except Exception as e:  # noqa: BLE001 - write_boxes refuses e.g. YOLO boxes centred off the image
            st.error(f"These boxes cannot be written as {out_fmt}: {guard.message(e)}")
        else:
            st.download_button(f"Download {len(boxes.original)} boxes ({out_fmt})", data=exported,
                               file_name=f"boxes_{out_fmt}.{ext}", key="export_boxes", on_click="ignore")
            st.caption("In your image's pixels, like the table.")
    else:
        st.caption("Nothing to export: no usable boxes.")
