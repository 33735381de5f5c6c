"""``*_ui()`` helpers: draw a group of widgets and return plain values.

These are the widgets whose values persist across pages (explicit keys, bound to the plain state
keys of :class:`roi_lab.ui.state.K` by :func:`roi_lab.ui.state.bind`) and the image intake. Widgets
used by one page only (the Diagnose form, the Parity button) live on that page, with explicit keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from roi_lab.ui import boxtable, guard, loaders, state
from roi_lab.ui.figures import CHANNEL_VIEWS
from roi_lab.ui.state import K, bind

__all__ = [
    "source_ui",
    "sample_ui",
    "image_upload_ui",
    "summary_kind_ui",
    "BackboneChoice",
    "CropSettings",
    "backbone_ui",
    "current_backbone",
    "box_format_ui",
    "crop_settings_ui",
    "channel_view_ui",
    "focus_box_ui",
    "detail_kind_ui",
    "show_details_ui",
    "box_offer_ui",
    "show_notes",
    "notes_box",
    "fix_block",
    "CHANNEL_LABELS",
    "stride_metrics_ui",
]

WEIGHT_MODES = ("auto", "none", "path")
WEIGHT_LABELS = {
    "auto": "auto (pretrained if cached locally, else random init)",
    "none": "none (random init, seed 0)",
    "path": "a checkpoint file",
}


@dataclass(frozen=True)
class BackboneChoice:
    name: str
    stage: str
    device: str
    weights: str  # "auto", "none" or a path


@dataclass(frozen=True)
class CropSettings:
    output_size: int
    sampling_ratio: int
    aligned: bool
    angle_degrees: float = 30.0  # the rotated variants turn every box by it, counter-clockwise


def _ensure_option(key: str, options: Sequence, fallback) -> None:
    """Keep a persisted widget value valid when its options change (e.g. stages of another backbone)."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = fallback


SOURCES = {"sample": "Bundled sample", "upload": "Upload your own", "capture": "Capture file (your model)"}


def source_ui() -> str:
    """Bundled sample, upload, or a capture file of the user's own model."""
    _ensure_option(K.SOURCE, tuple(SOURCES), "sample")
    return st.radio("Image source", list(SOURCES), horizontal=True, format_func=SOURCES.get,
                    **bind(K.SOURCE, then=state.source_changed))


def sample_ui(names: Sequence[str]) -> str:
    """Pick a bundled sample; picking one loads it (image and its known boxes)."""
    _ensure_option(K.SAMPLE, names, loaders.default_sample(list(names)))
    name = st.selectbox(
        "Sample", list(names), format_func=lambda n: loaders.sample_info(n).title,
        **bind(K.SAMPLE, then=lambda: state.load_sample_into_state(st.session_state[K.SAMPLE])),
    )
    st.caption(f"Licence: {loaders.sample_info(name).licence}")
    if st.session_state[K.IMAGE_SAMPLE] != name:
        st.button("Use this sample", key="use_sample", on_click=guard.callback(state.load_sample_into_state),
                  args=(name,))
    return name


def image_upload_ui() -> tuple[bytes, str] | None:
    """The image uploader; returns (bytes, file name) once per new upload, else None."""
    upload = st.file_uploader(
        "Upload an image (PNG, JPEG, WebP, BMP, TIFF or GIF)", key="image_upload",
        help="Large images are resized for the model; the file is decoded only after its declared size is checked.",
    )
    if upload is None or upload.file_id == st.session_state[K.UPLOAD_SEEN]:
        return None
    st.session_state[K.UPLOAD_SEEN] = upload.file_id
    return upload.getvalue(), upload.name


def summary_kind_ui() -> str:
    from roi_lab.backbone import SUMMARY_KINDS

    _ensure_option(K.SUMMARY, SUMMARY_KINDS, SUMMARY_KINDS[0])
    return st.selectbox("Feature summary", SUMMARY_KINDS, **bind(K.SUMMARY))


def _backbone_changed() -> None:
    """A new backbone starts at its own default stage (resnet50_fpn: P4, not the C4 a ResNet left)."""
    st.session_state[K.STAGE] = loaders.stage_info(st.session_state[K.BACKBONE])["default_stage"]


def current_backbone() -> BackboneChoice:
    """The backbone chosen on the Image & backbone page, read from session state (draws nothing)."""
    ss = st.session_state
    weights = (ss[K.WEIGHTS_PATH].strip() or "auto") if ss[K.WEIGHTS] == "path" else ss[K.WEIGHTS]
    return BackboneChoice(name=ss[K.BACKBONE], stage=ss[K.STAGE], device=ss[K.DEVICE], weights=weights)


def backbone_ui() -> BackboneChoice:
    """Backbone, stage, device and weights selectors."""
    from roi_lab.backbone import BACKBONES

    _ensure_option(K.BACKBONE, BACKBONES, "resnet50" if "resnet50" in BACKBONES else BACKBONES[0])
    cols = st.columns(4)
    name = cols[0].selectbox("Backbone", BACKBONES, **bind(K.BACKBONE, then=_backbone_changed))
    info = loaders.stage_info(name)
    _ensure_option(K.STAGE, info["stages"], info["default_stage"])
    stage = cols[1].selectbox(
        "Stage", info["stages"], **bind(K.STAGE),
        format_func=lambda s: f"{s} (stride {info['strides'][s]}, {info['channels'].get(s, '?')} ch)",
    )
    devices = loaders.available_devices()
    _ensure_option(K.DEVICE, devices, state.default_device())
    device = cols[2].selectbox("Device", devices, **bind(K.DEVICE), help="CUDA when this machine has a GPU")
    _ensure_option(K.WEIGHTS, WEIGHT_MODES, "auto")
    mode = cols[3].selectbox("Weights", WEIGHT_MODES, format_func=WEIGHT_LABELS.get, **bind(K.WEIGHTS))
    weights = mode
    if mode == "path":
        path = st.text_input("Checkpoint path (read with torch.load(weights_only=True))", **bind(K.WEIGHTS_PATH))
        weights = path.strip() or "auto"
    return BackboneChoice(name=name, stage=stage, device=device, weights=weights)


def box_format_ui() -> tuple[str, str]:
    """The box format and space the user's own code uses: (``"xyxy"``..., ``"absolute"|"normalized"``)."""
    _ensure_option(K.BOX_FORMAT, boxtable.FORMATS, "xyxy")
    _ensure_option(K.BOX_SPACE, boxtable.SPACES, "absolute")
    cols = st.columns(2)
    fmt = cols[0].selectbox(
        "Box format of your code", boxtable.FORMATS, **bind(K.BOX_FORMAT),
        format_func=lambda f: f"{f} ({', '.join(boxtable.columns_for(f))})",
    )
    space = cols[1].selectbox(
        "Coordinates", boxtable.SPACES, **bind(K.BOX_SPACE),
        format_func=lambda s: "absolute (image pixels)" if s == "absolute" else "normalized (x / W, y / H)",
    )
    return fmt, space


def crop_settings_ui(cols: Sequence = ()) -> CropSettings:
    """Output size, sampling ratio and aligned: the settings of *your* call (the reference); and the angle the
    rotated variants turn the boxes by."""
    cols = list(cols) or st.columns(4)
    output_size = cols[0].slider("Output size (PH = PW)", 2, 28, **bind(K.OUTPUT_SIZE))
    sampling_ratio = cols[1].slider("Sampling ratio (0 = adaptive)", 0, 4, **bind(K.SAMPLING_RATIO))
    aligned = cols[2].toggle("aligned=True", **bind(K.ALIGNED),
                             help="the half-pixel offset (torchvision's aligned=True); off: legacy aligned=False")
    angle = cols[3].slider("Box angle of the rotated panels (degrees, counter-clockwise)", -180, 180, step=5,
                           **bind(K.BOX_ANGLE),
                           help="the rotated panels turn every box by this angle, counter-clockwise about its "
                           "centre (detectron2's convention); at 0 or 180 the angle mix-ups vanish")
    return CropSettings(int(output_size), int(sampling_ratio), bool(aligned), float(angle))


CHANNEL_LABELS = {"mean": "mean over C", "max": "max over C", "index": "one channel", "pca": "PCA (1st)"}


def channel_view_ui(channels: int, col=None) -> tuple[str, int]:
    """How to show a [C, PH, PW] crop as one map: mean / max / one channel / first PCA component."""
    col = col or st
    _ensure_option(K.CHANNEL_VIEW, CHANNEL_VIEWS, "mean")
    view = col.segmented_control("Channel view", CHANNEL_VIEWS, **bind(K.CHANNEL_VIEW), format_func=CHANNEL_LABELS.get)
    view = view or "mean"
    index = 0
    if view == "index":
        if int(st.session_state.get(K.CHANNEL_INDEX, 0) or 0) >= channels:
            st.session_state[K.CHANNEL_INDEX] = 0
        index = int(col.number_input(f"Channel (0..{channels - 1})", 0, max(channels - 1, 0), step=1,
                                     **bind(K.CHANNEL_INDEX)))
    return view, index


PILL_BOXES = 12  # up to this many boxes, the box shown is one click on its number (no list to open)


def focus_box_ui(labels: Sequence[str], col=None) -> int:
    """Which box the overview shows: pills numbered like the boxes on the image (one click), or a list when
    there are more than ``PILL_BOXES``. Labels are the numbers (and the box's label in the list)."""
    col = col or st
    n = len(labels)
    if not 0 <= int(st.session_state.get(K.FOCUS_BOX, 0) or 0) < n:
        st.session_state[K.FOCUS_BOX] = 0
    if n <= PILL_BOXES:
        value = col.pills("Box shown", list(range(n)), format_func=lambda i: str(i + 1), required=True,
                          **bind(K.FOCUS_BOX, kind="pills"),
                          help="the numbers of the boxes on the image; drag on the image to add one")
    else:
        value = col.selectbox("Box shown", list(range(n)), format_func=lambda i: f"{i + 1}: {labels[i]}",
                              **bind(K.FOCUS_BOX, kind="list"))
    return int(value if value is not None else st.session_state[K.FOCUS_BOX])


def detail_kind_ui(col=None) -> str:
    """The variant whose details are drawn; labels are the fixed titles (they never change with a setting)."""
    from roi_lab.geometry import VARIANT_TITLES, VariantKind

    col = col or st
    kinds = [k.value for k in VariantKind]
    _ensure_option(K.DETAIL_KIND, kinds, VariantKind.IMAGE_SPACE_BOXES.value)
    titles = {k.value: t for k, t in VARIANT_TITLES.items()}
    return col.selectbox("Details for", kinds, format_func=titles.__getitem__, **bind(K.DETAIL_KIND))


def show_details_ui(col=None) -> bool:
    """On demand: the details figure is one more chart for the browser to draw on every change."""
    col = col or st
    return bool(col.toggle("Details of one variant: feature map, samples, RGB read-out, difference",
                           **bind(K.SHOW_DETAILS)))


def box_offer_ui() -> None:
    """The button that takes the boxes a new image brought, when the table held the user's own."""
    offer = st.session_state.get(K.BOX_OFFER)
    if offer:
        st.button(offer["label"], key="accept_box_offer", on_click=guard.callback(state.accept_offer))


def show_notes(notes: Sequence[boxtable.Note], where=None) -> None:
    """Render (level, message) notes as st.error / st.warning / st.info."""
    where = where or st
    for level, message in notes:
        {"error": where.error, "warning": where.warning}.get(level, where.info)(message)


def notes_box(notes: Sequence[boxtable.Note], height: int = 150) -> None:
    """Notes in a box of fixed height (scrolls inside): what is above and below never moves as notes come and go."""
    box = st.container(height=height, border=True, key="notes_box")
    if notes:
        show_notes(notes, box)
    else:
        box.caption("Notes about your last change appear here.")


def fix_block(fix: str, label: str = "Fix") -> None:
    """A fix: code as wrapped, highlighted Python; a sentence as plain text (never highlighted as code)."""
    from roi_lab.ui.views import looks_like_code

    st.caption(label)
    if looks_like_code(fix):
        st.code(fix, language="python", wrap_lines=True)
    else:
        st.text(fix)


def stride_metrics_ui(geo, what: str = "image") -> None:
    """The stride metrics of a map on its image (``roi_lab.geometry.FeatureGeometry``), and whether the image is
    divisible by the stride; ``what`` names the image in the words (``"image"``, ``"frame"``)."""
    bottom = st.columns(3)
    bottom[0].metric("Nominal stride", f"{geo.nominal_stride[1]:g}", help="the spacing of the cells in image px")
    bottom[1].metric(
        "Effective stride (y, x)", f"{geo.effective_stride[0]:.3f}, {geo.effective_stride[1]:.3f}",
        help=f"{what} size / feature size",
    )
    bottom[2].metric(
        "Drift (y, x)", f"{geo.drift_px[0]:g}, {geo.drift_px[1]:g} px",
        help=f"how far the map's far edge lands past the {what} edge under the nominal stride",
    )
    (gh, gw), s = geo.image_size, geo.nominal_stride[1]
    if geo.divisible:
        st.caption(f"The {what} ({gw} x {gh}) is divisible by the stride: spatial_scale = 1/{s:g} is exact.")
    else:
        st.warning(
            f"The {what} ({gw} x {gh} px) is not divisible by the stride {s:g}: the map's far edge lands "
            f"{geo.drift_px[1]:g} px (x) / {geo.drift_px[0]:g} px (y) past the {what} edge. Use "
            f"spatial_scale = 1/{s:g}, not feature_size / image_size."
        )
