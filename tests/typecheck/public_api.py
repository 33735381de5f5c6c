"""The public API as a user's type checker sees it (``make typecheck`` runs mypy on this file).

Each ``assert_type`` fails the type check when the name's type is lost, e.g. when ``roi_lab.roi_align`` (loaded
lazily by the package's ``__getattr__``) reads as ``Any``: a user's ``mypy`` would then check nothing. The
functions also run, in ``tests/test_typing.py``, so this file cannot drift from what the API does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from typing_extensions import assert_type

import roi_lab
from roi_lab import viz


def ops() -> None:
    features = torch.randn(1, 4, 16, 20)
    boxes = torch.tensor([[2.0, 3.0, 40.0, 50.0]])
    assert_type(roi_lab.roi_align(features, [boxes], 7, spatial_scale=1 / 4, sampling_ratio=2, aligned=True), Tensor)
    pool = roi_lab.RoIAlign(7, 1 / 4, 2, aligned=True)
    pool(features, [boxes])  # nn.Module.__call__ is Any in torch's own types, as for torchvision's modules
    assert_type(pool.forward(features, [boxes]), Tensor)
    tf_boxes, box_indices = roi_lab.to_tf_boxes(boxes, image_size=(64, 80))
    assert_type(tf_boxes, Tensor)
    crops = roi_lab.crop_and_resize(features, tf_boxes, box_indices, (7, 7))
    assert_type(crops, Tensor)
    assert_type(roi_lab.to_rois([boxes]), Tensor)
    assert_type(roi_lab.resnet_feature_size((800, 1000), 16), tuple[int, int])  # overloaded: a pair for a pair
    assert_type(roi_lab.resnet_feature_size(1000, 32), int)
    levels = roi_lab.MultiScaleRoIAlign(["0"], (7, 7), 2)  # output_size (PH, PW): was typed a 1-tuple
    out = levels.forward({"0": features}, [boxes], [(64, 80)])
    assert_type(out, Tensor)
    assert_type(roi_lab.convert_boxes(boxes, src_format="xyxy", dst_format=roi_lab.BoxFormat.CXCYWH), Tensor)


def findings() -> None:
    features = torch.randn(1, 4, 50, 63)
    found = roi_lab.diagnose([torch.tensor([[120.0, 200.0, 560.0, 480.0]])], image_size=(800, 1000),
                             features=features)
    assert_type(found, list[roi_lab.Finding])
    assert_type(roi_lab.has_errors(found), bool)
    assert_type(found[0].code, str)
    assert_type(found[0]._repr_html_(), str)
    explained = roi_lab.explain_error("RuntimeError: The boxes tensor shape is not correct as Tensor[K, 5]")
    assert_type(explained, roi_lab.Explanation | None)
    assert explained is not None
    assert_type(explained.fix, str)


def samples_and_capture() -> None:
    samples = roi_lab.list_samples()
    assert_type(samples, list[roi_lab.Sample])
    assert_type(samples[0].path, Path)
    image, sample = roi_lab.load_sample("synthetic")
    assert_type(image, np.ndarray)
    assert_type(sample, roi_lab.Sample)
    geometry = roi_lab.feature_geometry((800, 1000), (50, 63))
    assert_type(geometry, roi_lab.FeatureGeometry)
    variants = roi_lab.make_variants(torch.tensor([[10.0, 10.0, 50.0, 60.0]]), image_size=(128, 128),
                                     feature_size=(8, 8), stride=16)
    assert_type(variants, list[roi_lab.Variant])
    with roi_lab.capture(image_size=(64, 80)) as cap:
        roi_lab.roi_align(torch.randn(1, 4, 16, 20), [torch.tensor([[2.0, 3.0, 40.0, 50.0]])], 7)
    assert_type(cap.calls, list[roi_lab.CapturedCall])
    assert_type(cap.summary(), str)
    assert_type(cap._repr_markdown_(), str)


def errors() -> None:
    try:
        roi_lab.roi_align(torch.randn(1, 4, 16, 20), torch.zeros(3, 4), 7)
    except roi_lab.RoiLabError as e:
        assert_type(e.fix, str)
        assert_type(e, roi_lab.RoiLabError)


def figures(image: np.ndarray, features: Tensor, boxes: Tensor) -> None:
    """Needs plotly at run time; the figures are typed ``Any`` (plotly ships no types)."""
    viz.side_by_side(image, features, boxes, box=0, view="mean")
    viz.variant_details(image, features, boxes, "image_space_boxes")
    viz.boxes_figure(image, boxes)
