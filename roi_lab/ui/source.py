"""Where the image and the feature map come from: the one place every page asks.

Today the image is a bundled sample or an upload, and the features come from the backbone chosen on
the Image & backbone page. Issue 13 adds a third source, a capture file from the user's own model
whose image batch and features replace both: it becomes one more :class:`Source` kind here, and the
pages, which only call :func:`current`, :meth:`Source.working` and :meth:`Source.features`, stay as
they are.

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

__all__ = ["Source", "current", "boxes_for_model", "ModelBoxes"]


@dataclass(frozen=True)
class Source:
    """The current image and how its features are made.

    Attributes:
        kind (str): ``"sample"`` or ``"upload"`` (``"capture"`` later: image and features from a file).
        name (str): for captions.
        image_hash (str): sha1 of the image file: the cache key of everything derived from it.
        max_side (int): the working image's longer side.
        backbone (BackboneChoice | None): the model that makes the features (None for a capture).
    """

    kind: str
    name: str
    image_hash: str
    max_side: int
    backbone: Any
    data: bytes = field(repr=False, compare=False)

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


def current() -> Source | None:
    """The session's source, or None before any image was loaded."""
    from roi_lab.ui.widgets import current_backbone

    ss = st.session_state
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
