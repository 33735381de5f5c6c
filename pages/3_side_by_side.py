"""Page 3: the same boxes passed correctly and in every common wrong way, side by side."""

import streamlit as st

from roi_lab.errors import RoiLabError
from roi_lab.ui import boxtable, figures, loaders, state, views, widgets
from roi_lab.ui.state import K

RGB_SIZE = 56  # bins of the RGB crop: enough to recognise what was cropped
# Small charts: no mode bar, and Plotly's own theme (Streamlit's theme pass costs browser time per chart)
CHART = {"config": {"displayModeBar": False}, "theme": None}
THUMB_SIDE = 320  # longer side of the image under the sample points

ss = st.session_state
st.title("Side by side")
st.caption(
    "Each panel passes the same intended boxes (dashed, cyan) to the op the way one common bug does, and shows "
    "where the op really samples (solid, red), what it reads from the image, the crop, and its difference to "
    "the correct crop. All crop heatmaps share one color scale; all differences share another."
)
if not state.image_ready():
    st.info("Pick an image on the Image & backbone page first.")
    st.stop()

working = loaders.working_image(ss[K.IMAGE_HASH], ss[K.MAX_SIDE], ss[K.IMAGE_BYTES])
h, w = working.size
boxes_image, labels, notes = boxtable.usable_boxes(ss[K.BOXES], (h, w))
widgets.show_notes([n for n in notes if n[0] != "info"])
if not len(boxes_image):
    st.warning("No usable boxes: draw or fix boxes on the Boxes page (the table keeps your rows).")
    st.stop()

choice = widgets.current_backbone()
name, stage, device, weights = choice.name, choice.stage, choice.device, choice.weights
try:
    with st.spinner(f"Loading {name}..."):
        loaders.backbone(name, weights, device)
    with st.spinner(f"Forward pass to {stage}..."):
        result = loaders.features(ss[K.IMAGE_HASH], ss[K.MAX_SIDE], name, weights, device, stage, working.image)
except RoiLabError as e:
    st.error(f"The backbone could not run; change it on the Image & backbone page.\n\n{e}")
    st.stop()
feats = result.features
_, channels, fh, fw = feats.shape
stride = result.nominal_stride
st.caption(
    f"{name} {stage}: features [1, {channels}, {fh}, {fw}] at stride {stride} for a {w} x {h} image; "
    f"{len(boxes_image)} boxes. Weights: {result.weights_source}."
)

settings = widgets.crop_settings_ui()
focus = widgets.focus_box_ui(labels)
feature_key = (ss[K.IMAGE_HASH], ss[K.MAX_SIDE], name, weights, device, stage)
image_key = (ss[K.IMAGE_HASH], ss[K.MAX_SIDE])
sig = boxtable.signature(boxes_image)
box = sig[focus]
op_settings = (stride, settings.output_size, settings.sampling_ratio, settings.aligned)
variants_key = (sig, (h, w), (fh, fw), *op_settings)
try:
    variants = loaders.variants(*variants_key)
    rgb = loaders.variant_rgb(image_key, variants_key, RGB_SIZE, variants, working.image)
except RoiLabError as e:
    st.error(str(e))
    st.stop()
summary = loaders.summary(feature_key, "mean", feats)
thumb = loaders.image_uri(ss[K.IMAGE_HASH], ss[K.MAX_SIDE], THUMB_SIDE, working.image)
panel_key = (feature_key, variants_key, focus)
panels = loaders.panel_figures(
    panel_key, focus, stride, (h, w), variants, summary, thumb, boxes_image, rgb["rgb"][:, focus]
)
kinds = [p["panel"].kind for p in panels]
titles = {p["panel"].kind: p["panel"].title for p in panels}
shown = st.multiselect("Variants shown", kinds, default=kinds, key="variants_shown", format_func=titles.get)


def full_crops() -> dict:
    return loaders.variant_crops(feature_key, box, (h, w), *op_settings, feats)


@st.fragment
def crop_panels() -> None:
    """Everything that depends on the channel view; a channel-view change reruns only this."""
    view, index = widgets.channel_view_ui(channels)
    if view == "max":  # not linear in the channels: needs every channel's crop
        crops = full_crops()
        cv, errors = views.crop_views(crops["crops"], "max"), crops["errors"]
    else:  # crop of the channel view == channel view of the crop (the ops are linear in C)
        channel = loaders.channel_map(feature_key, view, index, feats)
        maps = loaders.variant_maps((feature_key, view, index), variants_key, settings.output_size, variants, channel)
        cv, errors = views.crop_views(maps["maps"][:, focus]), maps["errors"]
    errors = {**rgb["errors"], **errors}
    st.caption(
        f"Crop color scale [{cv.zmin:.3g}, {cv.zmax:.3g}] ({view}); difference scale ±{cv.zabs:.3g}. "
        f"Box {focus + 1} ({labels[focus]}), output {settings.output_size} x {settings.output_size}, "
        f"sampling_ratio={settings.sampling_ratio}, aligned={settings.aligned}."
    )
    heatmaps = []
    for i, panel in enumerate(panels):
        p = panel["panel"]
        if p.kind not in shown:
            continue
        with st.container(border=True, key=f"panel_{p.kind}"):
            head, m1, m2 = st.columns([4, 1, 1])
            head.markdown(f"**{p.title}**" + ("" if p.kind != "correct" else " (reference)"))
            head.code(p.description, language="python", wrap_lines=True)
            m1.metric("Samples outside the map", f"{p.outside_fraction:.0%}", help="for the box shown")
            m2.metric("IoU with the intended box", f"{p.iou:.2f}", help="region sampled vs the box meant")
            if p.kind in errors:
                st.warning(f"The op refused this input: {errors[p.kind]}")
            cols = st.columns(5)
            cols[0].plotly_chart(panel["feature"], key=f"feat_{p.kind}", **CHART)
            cols[1].plotly_chart(panel["points"], key=f"pts_{p.kind}", **CHART)
            cols[2].plotly_chart(panel["rgb"], key=f"rgb_{p.kind}", **CHART)
            crop_fig = figures.crop_heatmap(cv.maps[i], cv.zmin, cv.zmax, title=f"crop ({view})")
            heatmaps.append((p.title, crop_fig))
            cols[3].plotly_chart(crop_fig, key=f"crop_{p.kind}", **CHART)
            cols[4].plotly_chart(
                figures.diff_heatmap(cv.diffs[i], cv.zabs, title="minus the correct crop"),
                key=f"diff_{p.kind}", **CHART,
            )
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download the crops, all channels (.npz)",
        data=lambda: views.crops_npz(
            kinds, full_crops()["crops"], rgb["rgb"][:, focus], boxes_image[focus],
            {"output_size": settings.output_size, "sampling_ratio": settings.sampling_ratio,
             "aligned": settings.aligned, "stride": stride},
        ),
        file_name="roi_lab_crops.npz", key="download_crops", on_click="ignore",
    )
    d2.download_button(
        "Download the crop heatmaps (HTML)", data=lambda: figures.figure_html(heatmaps),
        file_name="roi_lab_crops.html", mime="text/html", key="download_crops_html", on_click="ignore",
    )


crop_panels()
