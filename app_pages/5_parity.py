"""Page 5: roi_lab.roi_align against torchvision.ops.roi_align: max abs error and timings."""

import streamlit as st
import torch

from roi_lab.errors import RoiLabError
from roi_lab.ui import loaders, parity, source
from roi_lab.ui.state import K

ss = st.session_state
RESULTS = "parity_results"

st.title("Parity & speed")
st.caption(
    "roi_lab.roi_align reimplements torchvision.ops.roi_align in vectorised PyTorch. This page runs both on the "
    "same input on the chosen device and reports the largest absolute difference, pass or FAIL against the "
    f"tolerance {parity.TOLERANCE_REL:g} x max(1, max |torchvision's output|) (float32 rounding), and the median "
    "wall time of a few repeats (time.perf_counter, after a warm-up; CUDA synchronised). The time ratio is "
    "roi_lab / torchvision: below 1, roi_lab is faster. Timings on a shared machine are noisy."
)
devices = loaders.available_devices()
c1, c2 = st.columns(2)
device = c1.selectbox("Device", devices, index=devices.index(ss[K.DEVICE]) if ss[K.DEVICE] in devices else 0,
                      key="parity_device")
repeats = c2.slider("Repeats", 1, 20, 5, key="parity_repeats")

if st.button("Run the comparison", key="parity_run", type="primary"):
    rows, problems = [], []
    dev = torch.device(device)
    with st.spinner("Running both implementations..."), loaders.all_threads():
        src = source.current()
        if src is not None:
            boxes_image = source.boxes_for_model(src.working()).model
            choice = src.backbone
            try:
                result = src.features()
            except RoiLabError as e:
                problems.append(f"Current features unavailable: {e}")
            else:
                if len(boxes_image):
                    rows.append(parity.run_case(
                        f"current: {choice.name} {choice.stage}, your boxes", result.features.to(dev),
                        parity.rois_from_boxes(boxes_image, dev), int(ss[K.OUTPUT_SIZE]),
                        1.0 / result.nominal_stride, int(ss[K.SAMPLING_RATIO]), bool(ss[K.ALIGNED]), repeats,
                    ))
                else:
                    problems.append("No usable boxes: the current-image row is skipped.")
        for case in parity.BENCH_CASES:
            features, rois = parity.random_case(case, dev)
            rows.append(parity.run_case(case.name, features, rois, case.output_size, case.spatial_scale,
                                        case.sampling_ratio, case.aligned, repeats))
    ss[RESULTS] = {"rows": rows, "problems": problems}

if RESULTS in ss:
    for message in ss[RESULTS]["problems"]:
        st.warning(message)
    st.dataframe(ss[RESULTS]["rows"], key="parity_table", hide_index=True,
                 column_config={"max abs error": st.column_config.NumberColumn(format="%.2e"),
                                "tolerance": st.column_config.NumberColumn(format="%.1e"),
                                parity.RATIO: st.column_config.NumberColumn(
                                    help="roi_lab's median time / torchvision's: below 1, roi_lab is faster")})
else:
    st.info("Press the button to run both implementations on the current boxes and a few small cases.")
