"""Page 1: pick an image and a backbone; see the feature map, its strides and the weights in use."""

import streamlit as st

from roi_lab.errors import RoiLabError
from roi_lab.geometry import feature_geometry
from roi_lab.ui import figures, loaders, source, state, widgets
from roi_lab.ui.state import K
from roi_lab.ui.views import intended_feature

ss = st.session_state
st.title("Image & backbone")
st.caption(
    "The image and the feature map every other page uses. The model sees the image resized so its longer "
    f"side is at most {ss[K.MAX_SIDE]} px; boxes stay in your image's own pixels and are scaled with it."
)

# ----------------------------------------------------------------------------- image
source_kind = widgets.source_ui()
if source_kind == "sample":
    names = loaders.sample_names()
    if names:
        widgets.sample_ui(names)
    else:
        st.warning("No bundled samples were found in sample_data/; upload an image instead.")
else:
    new_upload = widgets.image_upload_ui()
    if new_upload is not None:
        state.use_upload(*new_upload)

if ss[K.IMAGE_ERROR]:
    kept = f" The current image ({ss[K.IMAGE_NAME]}) is kept." if ss[K.IMAGE_BYTES] is not None else ""
    st.error(f"That upload was refused.{kept}\n\n{ss[K.IMAGE_ERROR]}")
if ss[K.IMAGE_NOTE]:  # what the new image did to the box table: never a silent replacement
    st.info(ss[K.IMAGE_NOTE])
widgets.box_offer_ui()

src = source.current()
if src is None:
    st.info("Pick a sample or upload an image to start.")
    st.stop()
working = src.working()
h, w = working.size

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
top, bottom = st.columns(3), st.columns(3)
top[0].metric("Feature map", f"[{n}, {c}, {fh}, {fw}]", help="N, C, h, w")
top[1].metric("Forward pass", f"{result.forward_ms:.0f} ms", help="the first pass for this image and stage")
top[2].metric("Device", result.device, help="where the forward pass ran (CUDA when present, by default)")
bottom[0].metric("Nominal stride", f"{geo.nominal_stride[1]:g}", help="the spacing of the cells in image px")
bottom[1].metric(
    "Effective stride (y, x)", f"{geo.effective_stride[0]:.3f}, {geo.effective_stride[1]:.3f}",
    help="image size / feature size",
)
bottom[2].metric(
    "Drift (y, x)", f"{geo.drift_px[0]:g}, {geo.drift_px[1]:g} px",
    help="how far the map's far edge lands past the image edge under the nominal stride",
)
if geo.divisible:
    st.caption(
        f"The image ({w} x {h}) is divisible by the stride: spatial_scale = 1/{geo.nominal_stride[1]:g} is exact."
    )
else:
    st.warning(
        f"The image ({w} x {h} px) is not divisible by the stride {geo.nominal_stride[1]:g}: the map's far edge "
        f"lands {geo.drift_px[1]:g} px (x) / {geo.drift_px[0]:g} px (y) past the image edge. Use "
        f"spatial_scale = 1/{geo.nominal_stride[1]:g}, not feature_size / image_size."
    )

# ----------------------------------------------------------------------------- show
left, right = st.columns(2)
with left:
    resized = f" (resized from {working.original_size[1]} x {working.original_size[0]})" if working.scale != 1 else ""
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
