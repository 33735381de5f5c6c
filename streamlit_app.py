"""ROI Lab app entrypoint: st.navigation over pages/ (placeholder home until the pages land)."""

import streamlit as st

st.set_page_config(page_title="ROI Lab", page_icon="🔲", layout="wide")


def home() -> None:
    st.title("ROI Lab")
    st.write(
        "See and check what reaches ROIAlign / CropAndResize: image vs feature space, stride, "
        "box format, normalization and the half-pixel offset."
    )


st.navigation([st.Page(home, title="Home", default=True)]).run()
