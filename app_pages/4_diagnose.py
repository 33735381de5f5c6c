"""Page 4: paste boxes or an error message; get findings, an explanation, and the real ops' behaviour."""

import streamlit as st

from roi_lab.ui import loaders, source, views, widgets
from roi_lab.ui.parse import BoxTextError, parse_boxes_text
from roi_lab.ui.repro import reproduce
from roi_lab.ui.state import K

ss = st.session_state
SEVERITY = {"error": st.error, "warning": st.warning, "info": st.info}
EXAMPLE_BOXES = "tensor([[0., 60., 50., 180., 170.],\n        [0., 268., 48., 393., 173.]])"

st.title("Diagnose & explain")
st.caption(
    "Paste what your code passes to the op, with the image and feature-map sizes: roi_lab.diagnose says what "
    "looks wrong and how to fix it. Or paste an error message or traceback: roi_lab.explain_error names the "
    "cause. Nothing pasted is evaluated. The example below is your current boxes as rois with spatial_scale left "
    "at its default."
)

# defaults from the current image, when there is one
default_image, default_features = "450, 600", "1, 1024, 29, 38"
example_boxes = EXAMPLE_BOXES
src = source.current()
if src is not None:
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
        "spatial_scale (empty: default 1.0)", "", key="diag_scale", disabled=op != "roi_align"
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
        for f in findings:
            with st.container(border=True):
                SEVERITY.get(f.severity, st.info)(f"**{f.code}** ({f.severity}): {f.message}")
                if f.evidence:
                    st.caption("Evidence")
                    st.text(f.evidence)
                if f.fix:
                    widgets.fix_block(f.fix)
        error_codes = {f.code for f in findings if f.severity == "error"}

        st.subheader("Reproduce")
        st.caption(
            "Runs torchvision.ops.roi_align and roi_lab on these boxes, on a random feature map of this shape "
            "(at most 16 channels), and shows what each really read: the share of its samples that fall off the "
            "map, the share of all-zero output bins and, when the diagnoser found errors, the largest difference "
            "to the correctly configured call (the same boxes with its fixes applied). torchvision is not called "
            "on input that makes it read out of bounds (NaN / inf boxes, a batch index outside the batch)."
        )
        if st.button("Run the ops on this input", key="diag_reproduce"):
            outcomes = reproduce(parsed["values"], op=op, feature_shape=feature_shape, spatial_scale=spatial_scale,
                                 dtype=parsed.get("dtype"), image_size=image_size,
                                 error_codes=error_codes or None)
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
