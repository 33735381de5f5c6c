"""Page 4: paste boxes or an error message; get findings, an explanation, and the real ops' behaviour."""

import streamlit as st

from roi_lab.errors import RoiLabError
from roi_lab.ui import capture_ui, captured, loaders, source, views, widgets
from roi_lab.ui.parse import BoxTextError, parse_boxes_text
from roi_lab.ui.repro import reproduce
from roi_lab.ui.state import K

ss = st.session_state
EXAMPLE_BOXES = "tensor([[0., 60., 50., 180., 170.],\n        [0., 268., 48., 393., 173.]])"

st.title("Diagnose & explain")
src = source.current()
st.caption(
    "Paste what your code passes to the op, with the image and feature-map sizes: roi_lab.diagnose says what "
    "looks wrong and how to fix it. Or paste an error message or traceback: roi_lab.explain_error names the "
    "cause. Nothing pasted is evaluated. "
    + ("The form below starts from the captured call: the table's boxes (its boxes) as rois, its frame, its map's "
       "shape and its own spatial_scale." if src is not None and src.kind == "capture" else
       "The example below is your current boxes as rois with spatial_scale left at its default.")
)

# defaults from the current image, when there is one
default_image, default_features, default_scale = "450, 600", "1, 1024, 29, 38", ""
example_boxes = EXAMPLE_BOXES
captured_map, call_settings = None, {}  # a capture: its real map and the call's parameters, for the reproduction
if src is not None and src.kind == "capture":
    cap, call, view = src.capture(), src.call, src.view
    working = src.working()
    h, w = working.size
    shape = captured.map_shape(call, view)
    scale = captured.spatial_scale_of(call, view)
    default_image = f"{h}, {w}"
    if shape is not None and len(shape) == 4:
        default_features = f"1, {shape[1]}, {shape[2]}, {shape[3]}"  # one image of the batch, as on the other pages
    default_scale = captured.scale_text(scale) if scale is not None else ""
    boxes_model = source.boxes_for_model(working).model
    if len(boxes_model):
        example_boxes = views.rois_text(boxes_model, limit=len(boxes_model))
    try:
        captured_map = src.features().features
    except RoiLabError:
        captured_map = None
    call_settings = {"output_size": int(ss[K.OUTPUT_SIZE]), "sampling_ratio": int(ss[K.SAMPLING_RATIO]),
                     "aligned": bool(ss[K.ALIGNED])}
    with st.expander(f"Recorded with the capture: call #{call.index} ({call.op}), {len(call.findings)} finding(s)",
                     expanded=True):
        st.caption(f"{src.name}: `roi_lab.diagnose` on all of the call's boxes when it ran. {call.describe()}.")
        if not call.findings:
            st.success("Nothing looked wrong with this call.")
        capture_ui.findings_ui(call.findings)
        capture_ui.missing_ui(captured.missing(cap, call))
    st.caption(
        "Below: the boxes of the table (the call's, in its frame's pixels) with the call's spatial_scale"
        + (f" for level {captured.level_name(call, view)}" if captured.level_name(call, view) else "")
        + (", on your captured map." if captured_map is not None else "; the map was not kept, so the reproduction "
           "runs on a random map of its shape.")
    )
elif src is not None:
    working = src.working()
    h, w = working.size
    info = loaders.stage_info(ss[K.BACKBONE])
    stage = ss[K.STAGE] if ss[K.STAGE] in info["stages"] else info["default_stage"]
    s = info["strides"][stage]
    default_image = f"{h}, {w}"
    default_features = f"1, {info['channels'].get(stage, 256)}, {-(-h // s)}, {-(-w // s)}"
    boxes_model = source.boxes_for_model(working).model  # the model input's pixels: what the op's tensor sees
    if len(boxes_model):
        example_boxes = views.rois_text(boxes_model)

tab_boxes, tab_error = st.tabs(["Boxes", "Error message"])
with tab_boxes:
    text = st.text_area("Boxes (JSON, a list, or a printed tensor / array)", example_boxes, height=120,
                        key="diag_boxes")
    c1, c2, c3, c4 = st.columns(4)
    op = c1.selectbox("Op", ["roi_align", "crop_and_resize"], key="diag_op")
    image_text = c2.text_input("Image size (H, W)", default_image, key="diag_image_size")
    feature_text = c3.text_input("Feature shape (N, C, h, w)", default_features, key="diag_feature_shape")
    scale_text = c4.text_input(
        "spatial_scale (empty: default 1.0)", default_scale, key="diag_scale", disabled=op != "roi_align"
    )
    problems = []
    try:
        parsed = parse_boxes_text(text)
    except BoxTextError as e:
        parsed = None
        problems.append(str(e))
    try:
        image_size = views.parse_size(image_text, "Image size")
    except ValueError as e:
        image_size = None
        problems.append(str(e))
    try:
        feature_shape = views.parse_shape(feature_text, 4, "Feature shape")
    except ValueError as e:
        feature_shape = None
        problems.append(str(e))
    try:
        spatial_scale = views.parse_scale(scale_text) if op == "roi_align" else None
    except ValueError as e:
        spatial_scale = None
        problems.append(str(e))
    for message in problems:
        st.error(message)

    if not problems:
        from roi_lab.diagnose import diagnose  # not `from roi_lab import diagnose`: the submodule shadows it

        findings = diagnose(parsed["values"], image_size=image_size, features=feature_shape, op=op,
                            spatial_scale=spatial_scale)
        st.subheader("Findings")
        if not findings:
            st.success("Nothing looks wrong with these boxes for this image and feature map.")
        capture_ui.findings_ui(findings)
        error_codes = {f.code for f in findings if f.severity == "error"}

        st.subheader("Reproduce")
        real = captured_map is not None and feature_shape == tuple(captured_map.shape)
        on_map = (
            "on your captured map, with the call's output size {output_size}, sampling_ratio {sampling_ratio} and "
            "aligned={aligned} (the settings of your call)".format(**call_settings) if real else
            "on a random feature map of this shape (at most 16 channels)"
        )
        st.caption(
            f"Runs torchvision.ops.roi_align and roi_lab on these boxes, {on_map}, and shows what each really read: "
            "the share of its samples that fall off the map, the share of all-zero output bins and, when the "
            "diagnoser found errors, the largest difference to the correctly configured call (the same boxes with "
            "its fixes applied). torchvision is not called on input that makes it read out of bounds (NaN / inf "
            "boxes, a batch index outside the batch)."
        )
        if st.button("Run the ops on this input", key="diag_reproduce"):
            outcomes = reproduce(parsed["values"], op=op, feature_shape=feature_shape, spatial_scale=spatial_scale,
                                 dtype=parsed.get("dtype"), image_size=image_size,
                                 error_codes=error_codes or None,
                                 **({"features": captured_map, **call_settings} if real else {}))
            for o in outcomes:
                with st.container(border=True):
                    st.markdown(f"**{o.impl}**: {o.status}")
                    if o.status == "raised":
                        st.code(o.detail, language="text", wrap_lines=True)
                    elif o.status == "refused":
                        st.warning(o.detail)
                    elif error_codes or o.suspicious:
                        st.warning(f"Ran without an error, but on this input it reads the wrong thing: {o.detail}; "
                                   f"{o.read or 'see the findings above'}. "
                                   + (f"Findings: {', '.join(sorted(error_codes))}." if error_codes else ""))
                    else:
                        st.success(f"{o.detail}; {o.read}." if o.read else o.detail)

with tab_error:
    error_text = st.text_area("Error message or traceback", "", height=180, key="diag_error",
                              placeholder="RuntimeError: Expected tensor for argument #1 'input' to have ...")
    if error_text.strip():
        from roi_lab import explain_error

        explanation = explain_error(error_text)
        if explanation is None:
            st.info("No known ROIAlign / CropAndResize error pattern matched this text.")
        else:
            st.error(f"**{explanation.code}** ({explanation.framework}): {explanation.cause}")
            st.caption("Matched")
            st.code(explanation.matched, language="text", wrap_lines=True)  # verbatim: no Markdown
            widgets.fix_block(explanation.fix)
