"""Cached loaders: the only place with ``st.cache_resource`` / ``st.cache_data``.

Models are resources (one per name/weights/device, shared by sessions). Everything derived from an
image is keyed by the image's sha1 and primitives; tensors, arrays and bytes that are already
identified by that hash are passed as ``_``-prefixed arguments, which Streamlit does not hash.
Results holding arrays (the working image, the feature map, crops, pictures) are resources too:
``st.cache_data`` would pickle a copy on every hit (an 8 MB feature map on every rerun). They are
shared read-only: no caller modifies what a loader returns. The variants' crops run one op call per distinct call
(``roi_lab.geometry.crop_features_for_variants`` / ``crop_image_for_variants``), falling back to one
call per variant when an op refuses an input, so the panel of that variant alone shows the error.

Features are computed on the chosen device and cached on the CPU: the crops and figures are
small, and a cached CUDA tensor would pin GPU memory per entry.

Threads: the interactive work (variants, one-channel crops of a few boxes, pictures) is many tiny
ops, which torch's intra-op thread pool slows down (on a busy 2-core machine by up to 10x: threads
wait for a core). :func:`interactive_threads` makes the app's default one thread;
:func:`all_threads` restores the machine's count around the backbone's forward pass and the Parity
page's timings, the two places where more threads pay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import streamlit as st
import torch

__all__ = [
    "WorkingImage",
    "FeatureResult",
    "sample_names",
    "default_sample",
    "sample_info",
    "sample_bytes",
    "working_image",
    "image_uri",
    "backbone",
    "stage_info",
    "features",
    "summary",
    "variants",
    "channel_map",
    "channel_projection",
    "variant_maps",
    "variant_crops",
    "variant_rgb",
    "overview_pictures",
    "available_devices",
    "interactive_threads",
    "all_threads",
]

_MACHINE_THREADS = torch.get_num_threads()


def interactive_threads() -> None:
    """One torch thread for the app's many small ops (see the module docstring)."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


class all_threads:  # noqa: N801 - used as a context manager, like torch.no_grad
    """``with all_threads():`` the machine's torch thread count inside, the previous count after."""

    def __enter__(self) -> None:
        self._previous = torch.get_num_threads()
        torch.set_num_threads(_MACHINE_THREADS)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._previous)

PREFERRED_SAMPLE = "synthetic"


@dataclass(frozen=True)
class WorkingImage:
    """The image the model sees: ``image`` ndarray[H, W, 3] uint8 RGB after ``resize_to_max_side``.

    Attributes:
        scale (float): working / original size (boxes of the original image * scale = working px).
        original_size ((H, W)): the decoded file's size.
    """

    image: np.ndarray
    scale: float
    original_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass(frozen=True)
class FeatureResult:
    """One stage's feature map (on CPU) and how it was made."""

    features: torch.Tensor  # [1, C, h, w] float32, CPU
    stage: str
    forward_ms: float
    device: str
    weights_source: str
    weights_kind: str
    nominal_stride: int


# ----------------------------------------------------------------------------- samples and images
@st.cache_data(show_spinner=False)
def sample_names() -> list[str]:
    from roi_lab.samples import list_samples

    return [s.name for s in list_samples()]


def default_sample(names: list[str]) -> str:
    return PREFERRED_SAMPLE if PREFERRED_SAMPLE in names else names[0]


@st.cache_resource(show_spinner=False)
def sample_info(name: str) -> Any:
    from roi_lab.samples import list_samples

    return {s.name: s for s in list_samples()}[name]


@st.cache_data(show_spinner=False)
def sample_bytes(name: str) -> bytes:
    """The sample's file bytes (a generated sample without a file is encoded as PNG)."""
    sample = sample_info(name)
    if sample.path.is_file():
        return sample.path.read_bytes()
    from roi_lab.samples import load_sample

    image, _ = load_sample(name)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return buf.tobytes()


@st.cache_resource(show_spinner=False, max_entries=8)
def working_image(image_hash: str, max_side: int, _data: bytes) -> WorkingImage:
    """Decode (``roi_lab.decode_image``; raises ImageDecodeError) and resize to ``max_side``.

    Raises:
        InputValueError: the image, or the image resized for the model, has a side under the backbones'
            minimum (a 10 x 20000 strip becomes 0 x 800): refused before resizing.
    """
    from roi_lab.backbone import MIN_IMAGE_SIDE
    from roi_lab.errors import InputValueError
    from roi_lab.image import decode_image, resize_to_max_side

    image = decode_image(_data)
    h, w = (int(image.shape[0]), int(image.shape[1]))
    scale = min(1.0, max_side / max(h, w))
    wh, ww = round(h * scale), round(w * scale)
    if min(h, w, wh, ww) < MIN_IMAGE_SIDE:
        resized = f", {ww} x {wh} once its longer side is resized to {max_side} px" if scale < 1 else ""
        raise InputValueError(
            "the app's image intake",
            expected=f"an image whose sides are all at least {MIN_IMAGE_SIDE} px, also after resizing for the model "
            f"(the backbones' minimum)",
            got=f"{w} x {h} (W x H){resized}",
            fix="upload a larger or less elongated image (crop a long strip into pieces)",
        )
    if scale < 1:
        image, scale = resize_to_max_side(image, max_side)
    return WorkingImage(np.ascontiguousarray(image), float(scale), (h, w))


@st.cache_data(show_spinner=False, max_entries=16)
def image_uri(image_hash: str, max_side: int, thumb_side: int | None, _image: np.ndarray) -> tuple[str, float]:
    """A data URI of the working image (or a thumbnail of it) for Plotly, and its scale."""
    from roi_lab.ui.figures import image_data_uri

    return image_data_uri(_image, thumb_side)


# ----------------------------------------------------------------------------- models and features
def available_devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@st.cache_resource(show_spinner=False, max_entries=3)
def backbone(name: str, weights: str, device: str) -> Any:
    """``roi_lab.load_backbone(name, weights, device)``, one instance per process."""
    from roi_lab.backbone import load_backbone

    return load_backbone(name, weights=weights, device=device)


@st.cache_data(show_spinner=False)
def stage_info(name: str) -> dict[str, Any]:
    """Stages, nominal strides, channels and default stage of a backbone, without building it."""
    from roi_lab.backbone import backbone_info

    info = backbone_info(name)
    return {
        "stages": tuple(info["stages"]),
        "strides": dict(info["nominal_strides"]),
        "channels": dict(info["channels"]),
        "default_stage": info["default_stage"],
    }


@st.cache_resource(show_spinner=False, max_entries=8)
def features(
    image_hash: str, max_side: int, name: str, weights: str, device: str, stage: str, _image: np.ndarray
) -> FeatureResult:
    """One stage's features for the working image (on the CPU); the forward pass runs once per key."""
    bb = backbone(name, weights, device)
    with all_threads():
        out = bb.features(_image, stages=[stage])[stage]
    return FeatureResult(
        features=out.detach().to("cpu", torch.float32).contiguous(),
        stage=stage,
        forward_ms=float(bb.last_forward_ms),
        device=str(bb.device),
        weights_source=str(bb.weights_source),
        weights_kind=str(getattr(bb, "weights_kind", "")),
        nominal_stride=int(bb.nominal_strides[stage]),
    )


@st.cache_resource(show_spinner=False, max_entries=16)
def summary(feature_key: tuple, kind: str, _features: torch.Tensor) -> np.ndarray:
    """``roi_lab.backbone.feature_summary`` of a cached feature map (``feature_key`` names it)."""
    from roi_lab.backbone import feature_summary

    return feature_summary(_features, kind)


@st.cache_resource(show_spinner=False, max_entries=16)
def variants(
    boxes_sig: tuple,
    image_size: tuple[int, int],
    feature_size: tuple[int, int],
    stride: float,
    output_size: int,
    sampling_ratio: int,
    aligned: bool,
    angle_degrees: float = 30.0,
) -> list[Any]:
    """``roi_lab.geometry.make_variants`` for the boxes ``boxes_sig`` (a tuple of xyxy tuples).

    A resource, shared read-only: as data, every rerun would unpickle ~100 small tensors.
    """
    from roi_lab.geometry import make_variants

    return make_variants(
        torch.tensor(boxes_sig, dtype=torch.float32).reshape(-1, 4),
        image_size=image_size,
        feature_size=feature_size,
        stride=stride,
        output_size=output_size,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
        angle_degrees=angle_degrees,
    )


@st.cache_resource(show_spinner=False, max_entries=16)
def channel_map(feature_key: tuple, view: str, index: int, _features: torch.Tensor) -> torch.Tensor:
    """One channel view of the whole feature map, Tensor[1, 1, h, w] (see ``views.channel_map``)."""
    from roi_lab.ui.views import channel_map as reduce_map

    return reduce_map(_features, view, index)


@st.cache_resource(show_spinner=False, max_entries=64)
def variant_maps(
    map_key: tuple,
    variants_key: tuple,
    output_size: int,
    _variants: list[Any],
    _map: torch.Tensor,
    _features: torch.Tensor | None = None,
) -> dict[str, Any]:
    """``roi_lab.ui.overview.variant_maps``: every variant's crops of every box from a one-channel view of the
    map, ndarray[V, K, PH, PW], for all boxes at once (so changing the box shown costs nothing and a
    channel-view change costs one small op call per variant). ``map_key`` names ``_map`` (feature key, view,
    channel); ``variants_key`` names ``_variants`` (boxes and settings of :func:`variants`). RoIPool's max is
    not linear in the channels: its crops come from ``_features`` (the map ``map_key[0]`` names), projected.
    """
    from roi_lab.ui.overview import variant_maps as compute

    projection = None if _features is None else channel_projection(*map_key, _features)
    return compute(_variants, _map, output_size, _features, projection)


@st.cache_resource(show_spinner=False, max_entries=16)
def channel_projection(feature_key: tuple, view: str, index: int, _features: torch.Tensor) -> tuple[Any, float]:
    """The channel view as a projection (``views.channel_projection``) of a cached feature map."""
    from roi_lab.ui.views import channel_projection as project

    return project(_features, view, index)


@st.cache_resource(show_spinner=False, max_entries=16)
def variant_crops(feature_key: tuple, variants_key: tuple, output_size: int, _variants: list[Any],
                  _features: torch.Tensor) -> dict[str, Any]:
    """``roi_lab.ui.overview.variant_crops``: every variant's full crop of every box, ndarray[V, K, C, PH, PW]
    (NaN where the op refused the input). For the "max over channels" view (not linear in the channels) and
    the .npz download; the Side-by-side page makes its variants for the one box it shows, so K is 1 there.
    """
    from roi_lab.ui.overview import variant_crops as compute

    return compute(_variants, _features, output_size)


@st.cache_resource(show_spinner=False, max_entries=32)
def variant_rgb(
    image_key: tuple,
    variants_key: tuple,
    index: int,
    focus: int,
    rgb_size: int,
    _variants: list[Any],
    _image: np.ndarray,
) -> dict[str, Any]:
    """``roi_lab.ui.overview.variant_rgb`` of variant ``index``: what it really crops from the RGB image for
    box ``focus``, ndarray[S, S, 3] uint8; ``error`` holds the op's message when it refused the input."""
    from roi_lab.ui.overview import variant_rgb as compute

    return compute(_variants[index], focus, rgb_size, _image)


@st.cache_resource(show_spinner=False, max_entries=32)
def overview_pictures(
    image_key: tuple,
    variants_key: tuple,
    focus: int,
    size: tuple[int, int],
    _variants: list[Any],
    _image: np.ndarray,
) -> list[np.ndarray]:
    """``roi_lab.ui.overview.overview_pictures``: one picture per variant of where it samples box ``focus``,
    ndarray[height, width, 3] uint8. ``image_key`` / ``variants_key`` name ``_image`` / ``_variants``."""
    from roi_lab.ui.overview import overview_pictures as compute

    return compute(_variants, focus, size, _image)


# ----------------------------------------------------------------------------- capture files
@st.cache_resource(show_spinner=False, max_entries=2)
def capture_file(digest: str, max_bytes: int, _data: bytes) -> Any:
    """``roi_lab.load_capture`` on an uploaded capture file's bytes (``digest`` is their sha1).

    The bytes go to a private temporary file (load_capture reads regular files only, at most ``max_bytes``,
    with ``torch.load(weights_only=True)``) that is removed at once. Two captures are kept: each holds its
    feature maps.

    Raises:
        CaptureFileError: as load_capture (not a capture, too large, refused by weights_only, malformed).
    """
    import os
    import tempfile

    from roi_lab.capture import load_capture

    with tempfile.TemporaryDirectory(prefix="roi_lab_capture_") as tmp:
        path = os.path.join(tmp, "capture.pt")
        with open(path, "wb") as fh:
            fh.write(_data)
        return load_capture(path, max_bytes=max_bytes)


@st.cache_resource(show_spinner=False, max_entries=8)
def capture_working(digest: str, call: int, image: int, _cap: Any) -> WorkingImage:
    """The frame of call ``call``'s boxes as the app's working image (scale 1): the captured batch image
    ``image``, un-normalized, or a blank canvas of the frame's size when the capture kept none."""
    from roi_lab.ui import captured

    c = _cap.calls[call]
    rgb = captured.image_of(_cap, c, image)
    if rgb is None:
        rgb = captured.canvas(captured.checked_frame(_cap, c))
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    return WorkingImage(rgb, 1.0, (h, w))


@st.cache_resource(show_spinner=False, max_entries=8)
def capture_features(digest: str, view: Any, _cap: Any) -> FeatureResult | None:
    """The kept map of ``view`` (``roi_lab.ui.captured.View``) as a FeatureResult; None when not kept."""
    from roi_lab.ui import captured

    call = _cap.calls[view.call]
    fmap = captured.feature_map(call, view)
    if fmap is None:
        return None
    frame, _ = captured.frame_size(_cap, call)
    stride = captured.nominal_stride(call, view, frame)
    names = call.level_names or []
    stage = f"level {names[view.level]}" if view.level is not None and view.level < len(names) else "map"
    return FeatureResult(
        features=fmap,
        stage=stage,
        forward_ms=float("nan"),
        device=str(call.device or "cpu"),
        weights_source=f"your model's, as captured (call #{call.index}, {call.op})",
        weights_kind="captured",
        nominal_stride=int(stride) if float(stride).is_integer() else stride,
    )
