"""roi_lab.viz in a notebook shows what the app shows: one builder (roi_lab.ui.overview), two callers.

The app's Side-by-side page runs under AppTest with ``roi_lab.ui.side.compute`` wrapped to record its inputs
(the working image, the feature map, the boxes, the settings) and its figure; ``roi_lab.viz.side_by_side`` on
the same inputs must draw the same pictures and crops. The verdict texts are the one expected difference: the
app states offsets in the original image's px (``scale``), a notebook in the px of the image it was given.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from apphelpers import array, make_app, no_exception

from roi_lab import viz
from roi_lab.ui import side


def _traces(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if t.get("mode") != "text"]


def test_notebook_side_by_side_is_the_apps_overview(monkeypatch):
    seen = {}
    compute = side.compute

    def recording(src, feats, stride, boxes, settings, view, index, focus):
        data = compute(src, feats, stride, boxes, settings, view, index, focus)
        seen.update(image=src.working().image.copy(), feats=feats.clone(), stride=stride, boxes=boxes.model.copy(),
                    settings=settings, view=view, index=index, focus=focus, figure=data.figure.to_plotly_json())
        return data

    monkeypatch.setattr(side, "compute", recording)
    at = make_app("side")
    no_exception(at)
    assert seen, "the Side-by-side page did not call roi_lab.ui.side.compute"
    s = seen["settings"]
    fig = viz.side_by_side(seen["image"], seen["feats"], seen["boxes"], box=seen["focus"], stride=seen["stride"],
                           output_size=s.output_size, sampling_ratio=s.sampling_ratio, aligned=s.aligned,
                           view=seen["view"], channel=seen["index"])
    assert isinstance(fig, go.Figure)
    ours, apps = _traces(fig.to_plotly_json()), _traces(seen["figure"])
    assert [t["type"] for t in ours] == [t["type"] for t in apps] and len(ours) >= 2
    for a, b in zip(ours, apps, strict=True):
        if a["type"] == "heatmap":  # the crops: the same op calls on the same inputs; float32 tolerance
            np.testing.assert_allclose(array(a["z"]), array(b["z"]), rtol=1e-5, atol=1e-6)
        else:  # the pictures of where each variant samples: drawn by the same code from the same arrays
            assert a.get("source") == b.get("source")
    assert fig.layout.height == seen["figure"]["layout"]["height"]
    titles = [t for t in fig.to_plotly_json()["data"] if t.get("mode") == "text"]
    assert len(titles) == len([t for t in seen["figure"]["data"] if t.get("mode") == "text"])


@pytest.fixture(scope="module")
def scene():
    import roi_lab

    image, sample = roi_lab.load_sample("synthetic")  # 600 x 450, exact boxes
    features = torch.randn(1, 8, 29, 38, generator=torch.Generator().manual_seed(0))  # a stride-16 map of it
    return image, features, sample.boxes_image


def test_side_by_side_shows_every_variant_with_your_settings_first(scene):
    import roi_lab

    image, features, boxes = scene
    fig = viz.side_by_side(image, features, boxes, box=1)
    text = " | ".join(t for tr in fig.data if getattr(tr, "mode", None) == "text" for t in tr.text)
    parts = text.split(" | ")
    kinds = roi_lab.make_variants(boxes[1:2], image_size=(450, 600), feature_size=(29, 38), stride=16)
    titles = [f"<b>{v.title}</b>" for v in kinds]
    assert [p for p in parts if p in titles] == titles and titles[0] == "<b>Your settings</b>"
    assert parts[parts.index(titles[0]) + 1].startswith("<b>IoU 1.00 · 0% outside</b>")  # the reference
    image_space = next(i for i, p in enumerate(parts) if p.startswith("<b>Image-space boxes"))
    assert "100% outside" in parts[image_space + 1]  # 16x too far out on a stride-16 map: off the map
    (heat,) = [tr for tr in fig.data if tr.type == "heatmap"]
    assert np.isfinite(np.asarray(heat.z, dtype=float)).any()


def test_variant_details_and_boxes_figure(scene):
    image, features, boxes = scene
    fig = viz.variant_details(image, features, boxes, "wrong_stride_x2", box=0, view="max")
    assert isinstance(fig, go.Figure) and len(fig.data) >= 5
    assert fig.layout.meta == {"kind": "wrong_stride_x2"}
    labels = [f"box {i}" for i in range(len(boxes))]
    fig = viz.boxes_figure(image, boxes, labels=labels)
    assert isinstance(fig, go.Figure) and [t.type for t in fig.data] == ["image"]
    assert len(fig.layout.shapes) == len(boxes) and [a.text for a in fig.layout.annotations] == labels
    assert tuple(fig.layout.xaxis.range) == (0, 600) and tuple(fig.layout.yaxis.range) == (450, 0)  # image px
    first = fig.layout.shapes[0]
    assert (first.x0, first.y0, first.x1, first.y1) == tuple(float(v) for v in boxes[0])


def test_bad_input_is_refused_with_what_to_pass(scene):
    from roi_lab.errors import InputValueError, ShapeError

    image, features, boxes = scene
    with pytest.raises(ShapeError) as e:
        viz.side_by_side(np.zeros((4, 4, 5), np.uint8), features, boxes)
    assert "roi_lab.viz.side_by_side(image=...)" in str(e.value) and "array[4, 4, 5] uint8" in str(e.value)
    with pytest.raises(ShapeError, match=r"features=\.\.\.\).*floating Tensor\[N, C, h, w\]"):
        viz.side_by_side(image, torch.zeros(29, 38, dtype=torch.int64), boxes)
    with pytest.raises(InputValueError, match=r"box=\.\.\.\).*in \[0, 7\]"):
        viz.side_by_side(image, features, boxes, box=9)
    with pytest.raises(InputValueError, match=r"view=\.\.\.\).*one of mean, max, index, pca"):
        viz.side_by_side(image, features, boxes, view="median")
    with pytest.raises(InputValueError, match=r"kind=\.\.\.\).*image_space_boxes"):
        viz.variant_details(image, features, boxes, "no_such_variant")
    with pytest.raises(ShapeError, match="at least one box"):
        viz.boxes_figure(image, torch.zeros(0, 4))
