"""ROI Lab app entrypoint: page config, shared session state, and st.navigation over app_pages/.

Every page runs inside :func:`roi_lab.ui.guard.guard` (an exception becomes a message, never a
traceback) and every run ends by saving the session for a browser refresh (:mod:`roi_lab.ui.persist`).
"""

import streamlit as st

from roi_lab.ui import guard, loaders, persist, timing
from roi_lab.ui.state import init_state

st.set_page_config(page_title="ROI Lab", page_icon=":material/crop_free:", layout="wide")
# less empty space around the page: the Side-by-side overview fits a 1600 x 1000 screen
# and no fading of the page while it reruns: in a software-rendered browser that repaint costs more than the rerun
st.html("<style>[data-testid='stMainBlockContainer']{padding:3.6rem 2rem 2rem 2rem}"
        "[data-stale='true']{opacity:1 !important;transition:none !important}</style>")

loaders.interactive_threads()  # many tiny ops: one torch thread (the forward pass takes them all)

PAGES = [
    st.Page("app_pages/1_image.py", title="Image & backbone", icon=":material/image:", default=True),
    st.Page("app_pages/2_boxes.py", title="Boxes", icon=":material/crop_free:"),
    st.Page("app_pages/3_side_by_side.py", title="Side by side", icon=":material/compare:"),
    st.Page("app_pages/4_diagnose.py", title="Diagnose & explain", icon=":material/troubleshoot:"),
    st.Page("app_pages/5_parity.py", title="Parity & speed", icon=":material/speed:"),
]

with guard.guard("Starting the session"):
    init_state()
page = st.navigation(PAGES, position="top")  # in the header: the pages get the whole width
guard.show_callback_error()
with timing.run_timer(page.title):
    try:
        with guard.guard(page.title):
            page.run()
    finally:
        persist.save()
