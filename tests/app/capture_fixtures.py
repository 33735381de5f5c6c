"""Capture files of torchvision's real Faster R-CNN for the app tests, made here (nothing large is committed).

``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` (random weights, no download) with a small
``min_size`` on the bundled coffee photo (400 x 600 -> 128 x 192 after the transform), in eval mode, under
``roi_lab.capture``: with ``keep_features=True`` (~2.4 MB: the four FPN maps and the image batch), without
(~6 KB: boxes, shapes, findings), and with an injected bug (a hand-written box pooler passing image-space
boxes to ``torchvision.ops.roi_align`` with ``spatial_scale=1`` on the stride-16 map). Made once per process.
"""

from __future__ import annotations

import functools
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

import roi_lab
from roi_lab.samples import load_sample

DETECTOR = {
    "weights": None,
    "weights_backbone": None,
    "min_size": 128,
    "max_size": 192,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 50,
}


class ImageSpaceBoxPool(nn.Module):
    """A hand-written box pooler with the classic bug: image-space proposals on P4 (stride 16), spatial_scale=1."""

    def forward(self, features, proposals, image_shapes):
        return torchvision.ops.roi_align(features["2"], proposals, 7, spatial_scale=1.0, sampling_ratio=2)


@dataclass(frozen=True)
class Captures:
    """The file bytes, and what the tests compare the app with."""

    full: bytes  # keep_features=True
    light: bytes  # keep_features=False
    buggy: bytes  # keep_features=True, ImageSpaceBoxPool
    image: torch.Tensor  # [3, 400, 600] in [0, 1]: what the model was given
    fpn: dict  # the model's own FPN maps of the transformed batch, computed again outside the capture


def _saved(cap) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "capture.pt"
        cap.save(path)
        return path.read_bytes()


@functools.lru_cache(maxsize=2)
def captures(min_size: int = 128, max_size: int = 192) -> Captures:
    """The three captures (and references) for the coffee photo resized to ``min_size`` / ``max_size``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # fast on the shared machine
    try:
        torch.manual_seed(0)
        model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
            **{**DETECTOR, "min_size": min_size, "max_size": max_size}).eval()
        rgb, _ = load_sample("coffee")
        image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            with roi_lab.capture(keep_features=True) as full:
                model([image])
            with roi_lab.capture() as light:
                model([image])
            fpn = model.backbone(model.transform([image])[0].tensors)
            model.roi_heads.box_roi_pool = ImageSpaceBoxPool()
            with roi_lab.capture(keep_features=True) as buggy:
                model([image])
    finally:
        torch.set_num_threads(before)
    return Captures(_saved(full), _saved(light), _saved(buggy), image, dict(fpn))


def hostile_pickle() -> bytes:
    """A torch.save archive whose pickle calls os.system when unpickled without weights_only."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    buf = io.BytesIO()
    torch.save({"format": "roi_lab.capture", "version": 1, "calls": [Evil()]}, buf)
    return buf.getvalue()
