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
    )


def _apply_all(vs: list[Any], fn) -> tuple[list[Any], dict[str, str]]:
    """``fn(variant)`` for every variant; an op that refuses the input gives None and its message."""
    from roi_lab.errors import RoiLabError

    out, errors = [], {}
    for v in vs:
        try:
            out.append(fn(v))
        except (RoiLabError, RuntimeError) as e:
            out.append(None)
            errors[v.kind.value] = str(e)
    return out, errors


def _apply_batched(vs: list[Any], batched, one) -> tuple[list[Any], dict[str, str]]:
    """``batched(vs)`` (one op call per distinct call, see ``roi_lab.geometry.crop_features_for_variants``);
    if an op refuses an input, ``one(v)`` per variant instead so that only that variant shows the error."""
    from roi_lab.errors import RoiLabError

    try:
        return batched(vs), {}
    except (RoiLabError, RuntimeError):
        return _apply_all(vs, one)


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
) -> dict[str, Any]:
    """Every variant's crops of every box from a one-channel view of the map: ndarray[V, K, PH, PW].

    ROIAlign (avg) and crop_and_resize are linear in the channels (every channel is sampled with the
    same weights), so the crop of a channel view (mean, one channel, a PCA projection) equals that
    view of the crop: one channel instead of C goes through the op, for all boxes at once, so
    changing the box shown costs nothing and a channel-view change costs one small op call per
    variant. ``map_key`` names ``_map`` (feature key, view, channel); ``variants_key`` names
    ``_variants`` (boxes and settings of :func:`variants`).
    """
    from roi_lab.geometry import crop_features_for_variants

    k = len(_variants[0].boxes_passed)
    crops, errors = _apply_batched(
        _variants, lambda vs: crop_features_for_variants(vs, _map, output_size), lambda v: v.apply(_map, output_size)
    )  # [K, 1, PH, PW] each
    maps = _stack_or_nan([c[:, 0] if c is not None else None for c in crops], (k, output_size, output_size))
    return {"kinds": [v.kind.value for v in _variants], "maps": maps, "errors": errors}


def _stack_or_nan(crops: list[torch.Tensor | None], shape: tuple[int, ...]) -> np.ndarray:
    """One float32 array [V, *shape] of the variants' crops; NaN for a variant whose op refused the input."""
    missing = np.full(shape, np.nan, np.float32)
    return np.stack([c.numpy().astype(np.float32, copy=False) if c is not None else missing for c in crops])


@st.cache_resource(show_spinner=False, max_entries=16)
def variant_crops(feature_key: tuple, variants_key: tuple, output_size: int, _variants: list[Any],
                  _features: torch.Tensor) -> dict[str, Any]:
    """Every variant's full crop of every box, ndarray[V, K, C, PH, PW] (NaN where the op refused the input).

    For the "max over channels" view (not linear in the channels) and the .npz download; the
    Side-by-side page makes its variants for the one box it shows, so K is 1 there.
    """
    from roi_lab.geometry import crop_features_for_variants

    k, c = len(_variants[0].boxes_passed), int(_features.shape[1])
    crops, errors = _apply_batched(
        _variants, lambda vs: crop_features_for_variants(vs, _features, output_size),
        lambda v: v.apply(_features, output_size),
    )  # [K, C, PH, PW] each
    full = _stack_or_nan(list(crops), (k, c, output_size, output_size))
    return {"kinds": [v.kind.value for v in _variants], "crops": full, "errors": errors}


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
    """What variant ``index`` really crops from the RGB image for box ``focus``: ndarray[S, S, 3] uint8.

    ``error`` holds the op's message when it refused the input (the crop is then zeros).
    """
    from dataclasses import replace

    from roi_lab.errors import RoiLabError

    v = _variants[index]
    one = replace(v, region_image=v.region_image[focus : focus + 1],
                  op_kwargs={**v.op_kwargs, **({"box_indices": v.op_kwargs["box_indices"][focus : focus + 1]}
                                               if "box_indices" in v.op_kwargs else {})})
    image_t = torch.from_numpy(np.ascontiguousarray(_image)).permute(2, 0, 1)[None].float() / 255.0
    try:
        crop = one.apply_to_image(image_t, rgb_size)[0]  # [3, S, S] in 0..1
    except (RoiLabError, RuntimeError) as e:
        return {"rgb": np.zeros((rgb_size, rgb_size, 3), np.uint8), "error": str(e)}
    return {"rgb": (crop.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), "error": None}


@st.cache_resource(show_spinner=False, max_entries=32)
def overview_pictures(
    image_key: tuple,
    variants_key: tuple,
    focus: int,
    size: tuple[int, int],
    _variants: list[Any],
    _image: np.ndarray,
) -> list[np.ndarray]:
    """One picture per variant of where it samples box ``focus`` (``roi_lab.ui.thumbs.render_thumb``),
    ndarray[height, width, 3] uint8. ``image_key`` / ``variants_key`` name ``_image`` / ``_variants``."""
    from roi_lab.ui.thumbs import render_thumb

    h, w = _image.shape[:2]
    side = 2 * max(size)  # a small copy to draw from: resizing it per picture is cheap
    small = _image if max(h, w) <= side else cv2.resize(
        _image, (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w)))),
        interpolation=cv2.INTER_AREA)
    out = []
    for v in _variants:
        pts = v.points_image[focus][: int(v.num_points[focus])]
        pic, _ = render_thumb(small, (h, w), v.boxes_meant[focus].numpy(), v.region_image[focus].numpy(),
                              pts.numpy(), size)
        out.append(pic)
    return out
