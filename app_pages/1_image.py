"""Page 1: pick an image and a backbone, or open a capture of your own model; see the feature map, its strides
and the weights in use (or the captured call, its findings and its map)."""

import streamlit as st

from roi_lab.errors import RoiLabError
from roi_lab.geometry import feature_geometry
from roi_lab.ui import capture_ui, figures, loaders, source, state, widgets
from roi_lab.ui.state import K
from roi_lab.ui.views import intended_feature

ss = st.session_state
st.title("Image & backbone")
intro = st.empty()  # filled after the intake below: an upload in this run may change the source

# ----------------------------------------------------------------------------- image
source_kind = widgets.source_ui()
if source_kind == "sample":
    names = loaders.sample_names()
    if names:
        widgets.sample_ui(names)
    else:
        st.warning("No bundled samples were found in sample_data/; upload an image instead.")
elif source_kind == "upload":
    new_upload = widgets.image_upload_ui()
    if new_upload is not None:
        state.use_upload(*new_upload)
else:
    new_capture = capture_ui.capture_upload_ui()
    if new_capture is not None:
        state.use_capture(*new_capture)
    if ss[K.CAPTURE_BYTES] is None:
        st.info("No capture is open: the current image and backbone stay until you open one. Make one with "
                "`with roi_lab.capture(keep_features=True) as cap: model(images)` and `cap.save(\"capture.pt\")`, "
                "or `roi-lab capture script.py`.")

if ss[K.SOURCE] == "capture" and ss[K.CAPTURE_BYTES] is not None:
    intro.caption("The image and the feature map every other page uses, from a capture of your own model: its "
                  "image batch at its own size (the pixels its boxes are in) and the map the call pooled from.")
else:
    intro.caption(
        "The image and the feature map every other page uses. The model sees the image resized so its longer "
        f"side is at most {ss[K.MAX_SIDE]} px; boxes stay in your image's own pixels and are scaled with it."
    )

if ss[K.IMAGE_ERROR]:
    kept = f" The current image ({ss[K.IMAGE_NAME]}) is kept." if ss[K.IMAGE_BYTES] is not None else ""
    st.error(f"That upload was refused.{kept}\n\n{ss[K.IMAGE_ERROR]}")
if ss[K.CAPTURE_ERROR] and source_kind == "capture":
    kept = (f" The current capture ({ss[K.CAPTURE_NAME]}) is kept." if ss[K.CAPTURE_BYTES] is not None else
            f" The current image ({ss[K.IMAGE_NAME]}) is kept." if ss[K.IMAGE_BYTES] is not None else "")
    st.error(f"That capture file was refused.{kept}\n\n{ss[K.CAPTURE_ERROR]}")
if ss[K.IMAGE_NOTE]:  # what the new image did to the box table: never a silent replacement
    st.info(ss[K.IMAGE_NOTE])
widgets.box_offer_ui()


src = source.current()
if src is None:
    st.info("Pick a sample or upload an image to start.")
    st.stop()
working = src.working()
h, w = working.size

if src.kind == "capture":  # a capture of your model: its image, boxes, map and findings
    capture_ui.capture_section(src, working)
else:
    # ----------------------------------------------------------------------------- backbone
    st.subheader("Backbone")
    choice = widgets.backbone_ui()
    src = source.current()  # with the choice just made
    try:
        result = src.features()
    except RoiLabError as e:
        st.error(str(e))
        st.stop()

    if result.weights_kind == "random":
        st.info(f"Weights: {result.weights_source}.")
    else:
        st.success(f"Weights: {result.weights_source}.")

    geo = feature_geometry((h, w), tuple(result.features.shape[-2:]), stride=result.nominal_stride)
    n, c, fh, fw = result.features.shape
    top = st.columns(3)
    top[0].metric("Feature map", f"[{n}, {c}, {fh}, {fw}]", help="N, C, h, w")
    top[1].metric("Forward pass", f"{result.forward_ms:.0f} ms", help="the first pass for this image and stage")
    top[2].metric("Device", result.device, help="where the forward pass ran (CUDA when present, by default)")
    widgets.stride_metrics_ui(geo, "image")

    # ----------------------------------------------------------------------------- show
    left, right = st.columns(2)
    with left:
        oh, ow = working.original_size
        resized = f" (resized from {ow} x {oh})" if working.scale != 1 else ""
        st.image(working.image, caption=f"{ss[K.IMAGE_NAME]}: {w} x {h} px{resized}")
    with right:
        kind = widgets.summary_kind_ui()
        summary = loaders.summary(src.feature_key, kind, result.features)
        boxes_feature = intended_feature(source.boxes_for_model(working).model, result.nominal_stride)
        fig = figures.feature_map_figure(
            summary, boxes_feature, boxes_feature, focus=None, title=f"{choice.stage} ({kind}), boxes in feature cells",
            height=420,
        )
        st.plotly_chart(fig, key="feature_summary_chart", config={"displayModeBar": False})
