"""ROI Lab app entrypoint: page config, shared session state, and st.navigation over pages/."""

import streamlit as st

from roi_lab.ui.state import init_state

st.set_page_config(page_title="ROI Lab", page_icon=":material/crop_free:", layout="wide")

init_state()

PAGES = [
    st.Page("pages/1_image.py", title="Image & backbone", icon=":material/image:", default=True),
    st.Page("pages/2_boxes.py", title="Boxes", icon=":material/crop_free:"),
    st.Page("pages/3_side_by_side.py", title="Side by side", icon=":material/compare:"),
    st.Page("pages/4_diagnose.py", title="Diagnose & explain", icon=":material/troubleshoot:"),
    st.Page("pages/5_parity.py", title="Parity & speed", icon=":material/speed:"),
]

st.navigation(PAGES).run()
