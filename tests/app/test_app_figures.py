"""Figure builders and channel views, without a browser: shapes, axes, shared color scales, PCA."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

from roi_lab.ui import figures, views

URI, URI_SCALE = figures.image_data_uri(np.zeros((60, 80, 3), np.uint8))


def validated(fig: go.Figure) -> go.Figure:
    """Run plotly's validators over a builder's output (the builders skip them for speed)."""
    return go.Figure(fig.to_dict())


@pytest.fixture
def count_layout_calls(monkeypatch):
    """Count update_layout calls and forbid add_shape (one layout for all shapes, never a loop)."""
    calls = {"update_layout": 0}
    original = go.Figure.update_layout

    def update_layout(self, *args, **kwargs):
        calls["update_layout"] += 1
        return original(self, *args, **kwargs)

    def add_shape(self, *args, **kwargs):
        raise AssertionError("add_shape called: shapes must be set in one layout")

    monkeypatch.setattr(go.Figure, "update_layout", update_layout)
    monkeypatch.setattr(go.Figure, "add_shape", add_shape)
    return calls


def test_image_figure_draws_every_box_in_image_pixels_with_box_select(count_layout_calls):
    boxes = np.array([[10, 5, 30, 25], [40, 10, 70, 50], [0, 0, 80, 60]], dtype=float)
    fig = validated(figures.image_figure(URI, (60, 80), boxes, ["a", "b", "c"], uri_scale=URI_SCALE))
    assert count_layout_calls["update_layout"] == 0  # the layout is given once, at construction
    shapes = fig.layout.shapes
    assert len(shapes) == 3
    assert [(s.x0, s.y0, s.x1, s.y1) for s in shapes] == [tuple(b) for b in boxes.tolist()]
    assert fig.layout.dragmode == "select"
    assert tuple(fig.layout.xaxis.range) == (0, 80)
    assert tuple(fig.layout.yaxis.range) == (60, 0)  # y reversed: row 0 on top, like the image
    assert [a.text for a in fig.layout.annotations] == ["a", "b", "c"]
    image = fig.data[0]
    # pixel j covers [j, j + 1]: the first pixel's centre is at 0.5
    assert (image.x0, image.y0, image.dx, image.dy) == (0.5, 0.5, 1.0, 1.0)
    grid = fig.data[1]
    assert grid.type == "scatter" and grid.marker.opacity == 0  # invisible points make selections fire


def test_image_figure_thumbnail_is_drawn_at_full_size():
    uri, scale = figures.image_data_uri(np.zeros((600, 800, 3), np.uint8), 200)
    assert scale == 0.25
    fig = figures.image_figure(uri, (600, 800), np.zeros((0, 4)), uri_scale=scale, selectable=False)
    image = fig.data[0]
    assert image.dx == 4.0 and image.x0 == 2.0  # 200 encoded px span 800 image px
    assert len(fig.layout.shapes) == 0 and fig.layout.dragmode == "pan"


def test_image_data_uri_round_trips_through_png():
    import base64

    import cv2

    img = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    uri, scale = figures.image_data_uri(img, fmt="png")
    assert uri.startswith("data:image/png;base64,") and scale == 1.0
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded[..., ::-1], img)


def test_feature_map_figure_has_intended_and_region_boxes_in_one_layout(count_layout_calls):
    summary = np.random.default_rng(0).random((10, 12)).astype(np.float32)
    intended = np.array([[1.5, 1.5, 5.5, 4.5], [6.0, 2.0, 9.0, 8.0]])
    regions = intended + 0.5
    fig = validated(figures.feature_map_figure(summary, regions, intended, focus=1))
    assert count_layout_calls["update_layout"] == 0
    dashed = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    solid = [s for s in fig.layout.shapes if s.line.dash == "solid"]
    assert len(dashed) == 2 and len(solid) == 2
    assert [s.line.width for s in solid] == [figures.OTHER_WIDTH, figures.FOCUS_WIDTH]
    # cell (i, j) is centred on (j, i): the map spans [-0.5, w - 0.5]
    assert tuple(fig.layout.xaxis.range) == (-0.5, 11.5)
    assert fig.data[0].x0 == 0 and fig.data[0].dx == 1


def test_feature_map_figure_widens_to_a_region_that_leaves_the_map():
    summary = np.zeros((10, 10), np.float32)
    far = np.array([[2.0, 2.0, 20.0, 18.0]])
    fig = figures.feature_map_figure(summary, far, far / 4, focus=0)
    assert tuple(fig.layout.xaxis.range) == (-0.5, 21.0)  # x2 + 1, within the cap
    assert tuple(fig.layout.yaxis.range) == (19.0, -0.5)
    huge = np.array([[2.0, 2.0, 300.0, 250.0]])
    fig = figures.feature_map_figure(summary, huge, huge / 16, focus=0)
    assert fig.layout.xaxis.range[1] == 30.0  # capped at w + 2 w


def test_points_figure_shows_points_outside_the_image():
    pts = np.array([[-20.0, 5.0], [50.0, 90.0]])
    fig = figures.points_figure(URI, (60, 80), pts, np.array([0, 0, 10, 10.0]), np.array([1, 1, 9, 9.0]),
                                uri_scale=URI_SCALE)
    validated(fig)
    assert tuple(fig.layout.xaxis.range) == (-20.0, 80.0)
    assert tuple(fig.layout.yaxis.range) == (90.0, 0.0)
    assert list(fig.data[1].x) == [-20.0, 50.0]
    assert len(fig.layout.shapes) == 2


def test_crop_heatmaps_share_one_color_scale():
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(4, 6, 3, 3)).astype(np.float32)
    crops[2] *= 10  # one variant reads much larger values
    cv = views.crop_views(crops, "mean")
    mean = crops.mean(axis=1)
    assert cv.zmin == pytest.approx(mean.min()) and cv.zmax == pytest.approx(mean.max())
    figs = [validated(figures.crop_heatmap(cv.maps[i], cv.zmin, cv.zmax)) for i in range(4)]
    assert {(f.data[0].zmin, f.data[0].zmax) for f in figs} == {(cv.zmin, cv.zmax)}
    diffs = [validated(figures.diff_heatmap(cv.diffs[i], cv.zabs)) for i in range(4)]
    assert {(f.data[0].zmin, f.data[0].zmax) for f in diffs} == {(-cv.zabs, cv.zabs)}
    np.testing.assert_allclose(cv.diffs, mean - mean[:1], atol=1e-6)
    assert cv.zabs == pytest.approx(np.abs(mean - mean[:1]).max())
    np.testing.assert_array_equal(cv.diffs[0], 0)  # the correct crop minus itself


def test_rgb_figure_and_html_export():
    fig = validated(figures.rgb_figure(np.zeros((8, 8, 3), np.uint8), title="what it reads"))
    assert fig.data[0].type == "image"
    html = figures.figure_html([("first", fig), ("second", fig)])
    assert html.count("<h3>") == 2 and html.count("plotly.js v") == 1  # plotly.js inlined once: works offline
    assert "<html>" in figures.figure_html(fig) and "plotly.js v" in figures.figure_html(fig)


@pytest.mark.parametrize("view", ["mean", "max", "index"])
def test_reduce_channels_matches_numpy(view):
    x = np.random.default_rng(1).normal(size=(3, 5, 4, 4)).astype(np.float32)
    expected = {"mean": x.mean(1), "max": x.max(1), "index": x[:, 3]}[view]
    np.testing.assert_allclose(figures.reduce_channels(x, view, 3), expected, rtol=1e-6)


def test_pca_view_projects_on_the_leading_eigenvector():
    rng = np.random.default_rng(2)
    axis = rng.normal(size=8)
    axis /= np.linalg.norm(axis)
    data = rng.normal(size=(3, 4, 4, 1)) * 5.0 * axis + rng.normal(size=(3, 4, 4, 8)) * 0.3  # [V, PH, PW, C]
    x = data.transpose(0, 3, 1, 2).astype(np.float32)
    flat = data.reshape(-1, 8) - data.reshape(-1, 8).mean(0)
    _, vecs = np.linalg.eigh(flat.T @ flat)  # independent oracle: eigen-decomposition of the covariance
    top = vecs[:, -1] * np.sign(vecs[np.argmax(np.abs(vecs[:, -1])), -1])
    np.testing.assert_allclose(figures.reduce_channels(x, "pca"), (flat @ top).reshape(3, 4, 4), atol=1e-3)


def test_reduce_channels_refuses_bad_input_with_a_clear_message():
    with pytest.raises(ValueError, match=r"expects crops as ndarray\[V, C, PH, PW\]; got shape \(2, 3\)"):
        figures.reduce_channels(np.zeros((2, 3)), "mean")
    with pytest.raises(ValueError, match="expects view in .* got 'median'"):
        figures.reduce_channels(np.zeros((1, 2, 3, 3)), "median")


def test_shared_ranges_ignore_nan_and_handle_constant_maps():
    assert figures.shared_range([np.array([np.nan, 1.0]), np.array([3.0])]) == (1.0, 3.0)
    assert figures.shared_range([np.full((2, 2), np.nan)]) == (0.0, 1.0)
    assert figures.shared_range([np.zeros(3)]) == (-0.5, 0.5)
    assert figures.symmetric_range([np.zeros(3)]) == 1.0


@pytest.mark.parametrize("view", ["mean", "index", "pca"])
def test_crop_of_the_channel_view_equals_the_channel_view_of_the_crop(view):
    """The Side-by-side page crops a one-channel view of the map; torchvision's roi_align is the oracle."""
    import torchvision

    features = torch.randn(1, 6, 12, 14, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0, 10.0, 20.0, 150.0, 170.0], [0, -40.0, 100.0, 300.0, 260.0]])  # the 2nd leaves the map
    full = torchvision.ops.roi_align(features, rois, 5, 1 / 16, 2, True).numpy()  # [K, C, 5, 5]
    reduced = torchvision.ops.roi_align(views.channel_map(features, view, 2), rois, 5, 1 / 16, 2, True).numpy()
    if view == "pca":  # projection of centred features; out-of-map samples read 0 = the mean feature
        data = features[0].reshape(6, -1).T.double().numpy()
        mean = data.mean(0)
        comp = figures.first_component(data - mean)
        weight_sum = torchvision.ops.roi_align(torch.ones(1, 1, 12, 14), rois, 5, 1 / 16, 2, True).numpy()[:, 0]
        expected = np.einsum("kchw,c->khw", full, comp) - (mean @ comp) * weight_sum
    else:
        expected = full.mean(1) if view == "mean" else full[:, 2]
    np.testing.assert_allclose(reduced[:, 0], expected, atol=1e-4)


def test_channel_map_refuses_max():
    with pytest.raises(ValueError, match="channel_map expects view 'mean', 'index' or 'pca'; got 'max'"):
        views.channel_map(torch.zeros(1, 2, 3, 3), "max")


def test_crops_npz_round_trips():
    import io

    crops = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    rgb = np.zeros((2, 5, 5, 3), np.uint8)
    data = views.crops_npz(["correct", "yx_swapped"], crops, rgb, np.array([1, 2, 3, 4.0]), {"output_size": 4})
    with np.load(io.BytesIO(data)) as z:
        assert list(z["kinds"]) == ["correct", "yx_swapped"]
        np.testing.assert_array_equal(z["crops"], crops)
        assert z["rgb"].shape == (2, 5, 5, 3) and z["box_image"].tolist() == [1, 2, 3, 4] and int(z["output_size"]) == 4


def test_builders_export_exactly_what_a_plain_go_figure_exports():
    """The builders skip copying the default template into each figure; the exported dict and JSON are the same."""
    z = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    built = [
        figures.crop_heatmap(z, 0.0, 1.0, title="crop"),
        figures.diff_heatmap(z - 0.5, 0.5),
        figures.rgb_figure(np.zeros((4, 4, 3), np.uint8)),
        figures.feature_map_figure(z, np.array([[0.5, 0.5, 2.0, 1.5]]), np.array([[0.0, 0.0, 1.0, 1.0]])),
        figures.points_figure(URI, (60, 80), np.array([[5.0, 5.0]]), np.array([4, 4, 6, 6.0]), np.array([4, 4, 6, 6.0]),
                              uri_scale=URI_SCALE),
        figures.image_figure(URI, (60, 80), np.array([[10, 5, 30, 25.0]]), ["a"], uri_scale=URI_SCALE),
    ]
    for fig in built:
        exported = fig.to_dict()
        assert exported["layout"]["template"] == pio.templates[pio.templates.default].to_plotly_json()
        plain = go.Figure(  # built the way the builders did before: no validation, default template copied in
            data=exported["data"], layout={k: v for k, v in exported["layout"].items() if k != "template"},
            _validate=False,
        )
        assert exported == plain.to_dict()
        assert pio.to_json(fig, validate=False) == pio.to_json(plain, validate=False)
        assert fig.to_dict() == exported  # exporting twice gives the same (nothing was mutated)


def test_a_template_set_on_a_built_figure_wins():
    fig = figures.crop_heatmap(np.zeros((2, 2), np.float32), 0.0, 1.0)
    fig.update_layout(template={"layout": {"font": {"size": 9}}})
    assert fig.to_dict()["layout"]["template"] == {"layout": {"font": {"size": 9}}}
