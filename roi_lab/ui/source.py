"""Where the image and the feature map come from: the one place every page asks.

The image is a bundled sample or an upload, and the features come from the backbone chosen on the
Image & backbone page (:class:`Source`); or both come from a capture file of the user's own model
(:class:`CaptureSource`: the captured image batch, or a blank canvas of its size, and the captured
feature map of the call and level picked). The pages only call :func:`current`, ``working()`` and
``features()`` and read the keys and the backbone's name for captions, which both kinds provide.

Convention:
    Boxes in the table are original-image pixels (see :mod:`roi_lab.ui.state`); the model sees the
    working image, ``scale`` times smaller. :func:`boxes_for_model` converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st

from roi_lab.ui import boxtable
from roi_lab.ui.state import K

__all__ = ["Source", "CaptureSource", "current", "capture_source", "boxes_for_model", "ModelBoxes"]


@dataclass(frozen=True)
class Source:
    """The current image and how its features are made.

    Attributes:
        kind (str): ``"sample"`` or ``"upload"``.
        name (str): for captions.
        image_hash (str): sha1 of the image file: the cache key of everything derived from it.
        max_side (int): the working image's longer side.
        backbone (BackboneChoice): the model that makes the features.
        feature_error_hint (str): what a page says when ``features()`` fails.
    """

    kind: str
    name: str
    image_hash: str
    max_side: int
    backbone: Any
    data: bytes = field(repr=False, compare=False)
    feature_error_hint: str = "The backbone could not run; change it on the Image & backbone page."
    side_note: str = ""  # appended to the Side-by-side caption

    @property
    def image_key(self) -> tuple:
        return (self.image_hash, self.max_side)

    @property
    def feature_key(self) -> tuple:
        b = self.backbone
        return (*self.image_key, b.name, b.weights, b.device, b.stage)

    def working(self) -> Any:
        """The image the model sees (``loaders.WorkingImage``)."""
        from roi_lab.ui import loaders

        return loaders.working_image(self.image_hash, self.max_side, self.data)

    def features(self) -> Any:
        """The feature map (``loaders.FeatureResult``); raises the backbone's RoiLabError."""
        from roi_lab.ui import loaders

        b = self.backbone
        with st.spinner(f"{b.name} {b.stage} on {b.device}..."):
            return loaders.features(*self.image_key, b.name, b.weights, b.device, b.stage, self.working().image)


@dataclass(frozen=True)
class CaptureSource:
    """A capture file: the image batch and the feature map one recorded call saw.

    Attributes:
        kind (str): ``"capture"``.
        name (str): the file's name, for captions.
        capture_hash (str): sha1 of the file: the cache key of the parsed capture.
        view (roi_lab.ui.captured.View): the call, image and level shown (checked against the capture).
        feature_error_hint (str): what a page says when ``features()`` fails.

    Convention:
        The working image is the frame of the call's boxes (the padded batch of a torchvision detector) at
        scale 1: the table's numbers are the numbers the model passed (see :mod:`roi_lab.ui.captured`).
    """

    name: str
    capture_hash: str
    view: Any
    data: bytes = field(repr=False, compare=False)
    kind: str = "capture"
    feature_error_hint: str = ("This capture holds no feature map for this view: Side by side crops the map, so "
                               "it needs one. The Image & backbone page shows what the capture holds.")

    def capture(self) -> Any:
        """The parsed capture (``roi_lab.capture.Capture``; cached per file)."""
        from roi_lab.ui import captured, loaders

        return loaders.capture_file(self.capture_hash, captured.capture_limit(), self.data)

    @property
    def call(self) -> Any:
        """The call shown (``roi_lab.capture.CapturedCall``)."""
        return self.capture().calls[self.view.call]

    @property
    def image_hash(self) -> str:
        return f"capture:{self.capture_hash}:{self.view.call}:{self.view.image}"

    @property
    def max_side(self) -> int:
        return max(self.working().size)

    @property
    def image_key(self) -> tuple:
        return (self.image_hash, self.max_side)

    @property
    def feature_key(self) -> tuple:
        return (*self.image_key, "capture", self.view.level, self.view.only_level)

    @property
    def side_note(self) -> str:
        """For the Side-by-side caption: which panel is the call as it ran (its own spatial_scale)."""
        from roi_lab.ui import captured

        call = self.call
        frame, _ = captured.frame_size(self.capture(), call)
        return " " + captured.panel_of_call(call, self.view, captured.nominal_stride(call, self.view, frame))[1]

    @property
    def backbone(self) -> Any:
        """The captions' "backbone": the user's model, named by the call and the level shown."""
        from roi_lab.ui import captured
        from roi_lab.ui.widgets import BackboneChoice

        call = self.call
        level = captured.level_name(call, self.view)
        return BackboneChoice(name=f"your model's call #{call.index} ({call.op})",
                              stage=f"level {level}" if level else "map", device=str(call.device or "cpu"),
                              weights="captured")

    def working(self) -> Any:
        """The frame as ``loaders.WorkingImage`` (scale 1): the captured image, or a blank canvas of its size."""
        from roi_lab.ui import loaders

        return loaders.capture_working(self.capture_hash, self.view.call, self.view.image, self.capture())

    def features(self) -> Any:
        """The captured map of this view (``loaders.FeatureResult``).

        Raises:
            CaptureDataMissing: the capture kept no maps (``keep_features=False``, or dropped for ``max_bytes``).
        """
        from roi_lab.ui import captured, loaders

        result = loaders.capture_features(self.capture_hash, self.view, self.capture())
        if result is None:
            call = self.call
            shape = captured.map_shape(call, self.view)
            raise captured.CaptureDataMissing(
                f"call #{call.index} ({call.op})",
                expected="its feature map, to crop it (kept with `roi_lab.capture(keep_features=True)`)",
                got="a capture without it" + (f" (the map was {list(shape)})" if shape else "")
                + (f"; {call.dropped}" if call.dropped else ""),
                fix="with roi_lab.capture(keep_features=True) as cap: model(images)  # then cap.save(path) and "
                "open that file here",
            )
        return result


def capture_source() -> CaptureSource | None:
    """The session's capture as a source (its view clamped to what it holds), or None when none is open."""
    from roi_lab.ui import captured, loaders
    from roi_lab.ui.state import capture_view

    ss = st.session_state
    data = ss.get(K.CAPTURE_BYTES)
    if data is None:
        return None
    cap = loaders.capture_file(ss[K.CAPTURE_HASH], captured.capture_limit(), data)
    view = captured.valid_view(cap, capture_view())
    return CaptureSource(str(ss.get(K.CAPTURE_NAME) or "capture"), ss[K.CAPTURE_HASH], view, data)


def current() -> Source | CaptureSource | None:
    """The session's source, or None before any image was loaded."""
    from roi_lab.ui.widgets import current_backbone

    ss = st.session_state
    if ss.get(K.SOURCE) == "capture" and ss.get(K.CAPTURE_BYTES) is not None:
        return capture_source()
    if ss.get(K.IMAGE_BYTES) is None:
        return None
    kind = "sample" if ss.get(K.IMAGE_SAMPLE) else "upload"
    return Source(kind, str(ss[K.IMAGE_NAME]), ss[K.IMAGE_HASH], int(ss[K.MAX_SIDE]), current_backbone(),
                  ss[K.IMAGE_BYTES])


@dataclass(frozen=True)
class ModelBoxes:
    """The usable boxes of the table in both pixel spaces.

    Attributes:
        original (ndarray[K, 4]): xyxy original-image px (the table's numbers).
        model (ndarray[K, 4]): xyxy working-image px (what the model's tensor sees) = original * scale.
        labels (list[str]), notes (list[Note]): from ``boxtable.usable_boxes``.
        scale (float): working / original.
    """

    original: np.ndarray
    model: np.ndarray
    labels: list[str]
    notes: list
    scale: float


def boxes_for_model(working: Any) -> ModelBoxes:
    """The table's usable boxes for this image, in original and in model (working-image) pixels."""
    original, labels, notes = boxtable.usable_boxes(st.session_state[K.BOXES], working.original_size)
    return ModelBoxes(original, original * float(working.scale), labels, notes, float(working.scale))
