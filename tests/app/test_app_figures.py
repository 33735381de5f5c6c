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


def test_feature_map_figure_holds_the_whole_region_however_far_it_leaves_the_map():
    """Finding 5: a region that leaves the map is shown whole (it was capped at twice the map and cut off)."""
    summary = np.zeros((10, 10), np.float32)
    far = np.array([[2.0, 2.0, 20.0, 18.0]])
    fig = validated(figures.feature_map_figure(summary, far, far / 4, focus=0))
    x0, x1 = fig.layout.xaxis.range
    y1, y0 = fig.layout.yaxis.range
    assert x0 == -0.5 and y0 == -0.5  # nothing left of / above the map: the map's own edge
    assert x1 > 20.0 and y1 > 18.0  # the region's far edges, with a margin
    huge = np.array([[2.0, 2.0, 300.0, 250.0]])  # image-space boxes at spatial_scale=1 on a stride-16 map: 16x
    fig = figures.feature_map_figure(summary, huge, huge / 16, focus=0)
    assert fig.layout.xaxis.range[1] > 300.0 and fig.layout.yaxis.range[0] > 250.0
    assert fig.layout.plot_bgcolor == figures.OFF_COLOR  # off the map: grey behind the map's heatmap


def test_overview_is_one_figure_with_one_heatmap_one_picture_and_one_text_layer():
    """Finding 6: every variant at a glance in ONE figure: 3 traces, not 55 charts; one colour scale."""
    rng = np.random.default_rng(0)
    v, ph = 11, 7
    maps = rng.normal(size=(v, ph, ph)).astype(np.float32)
    maps[4] = np.nan  # a variant whose op refused the input
    verdicts = [views.Verdict(f"k{i}", f"title {i}", 1.0, 0.0, 0.0, 0.0, "ok", f"IoU 1.00 · {i}% outside",
                              "some words") for i in range(v)]
    pictures = [np.full((figures.PICTURE_SIZE[1], figures.PICTURE_SIZE[0], 3), i * 20, np.uint8) for i in range(v)]
    fig = figures.overview_figure(verdicts, pictures, maps, -1.0, 2.0, view="pca", meta={"focus": 3})
    validated(fig)  # plotly's validators accept it
    assert [t.type for t in fig.data] == ["image", "heatmap", "scatter"]
    heat = fig.data[1]
    assert (heat.zmin, heat.zmax) == (-1.0, 2.0) and heat.colorbar.title.text == "crop (pca)"
    z = np.asarray(heat.z, dtype=np.float64)
    columns, rows = 4, 3
    assert z.shape == (rows * (ph + 1) - 1, columns * (ph + 1) - 1)  # crops with one NaN cell between tiles
    for i in range(v):  # tile i's crop sits in its cell block, hover text names it
        r, c = divmod(i, columns)
        block = z[r * (ph + 1): r * (ph + 1) + ph, c * (ph + 1): c * (ph + 1) + ph]
        np.testing.assert_array_equal(block, maps[i])
        assert heat.customdata[r * (ph + 1)][c * (ph + 1)] == f"title {i}<br>bin (row 0, col 0)"
    assert np.isnan(z[ph, :]).all() and np.isnan(z[:, ph]).all()  # the gaps
    # the crops' cells are square and land in the tiles' crop boxes (design px)
    x = np.asarray(heat.x)
    np.testing.assert_allclose(np.diff(x[: ph + 1]), figures.CROP_SIDE / ph)
    assert x[0] == figures.CROP_AT[0] and x[ph + 1] == figures.TILE[0] + figures.CROP_AT[0]
    text = list(fig.data[2].text)
    assert text.count("<b>title 0</b>") == 1 and "<b>IoU 1.00 · 10% outside</b><br>some words" in text
    assert fig.layout.meta == {"focus": 3}
    assert fig.layout.height == rows * figures.TILE[1]  # 600 px for 11 variants: fits a 1000 px screen


def test_overview_composes_the_pictures_into_one_image_at_their_tiles():
    pictures = [np.full((figures.PICTURE_SIZE[1], figures.PICTURE_SIZE[0], 3), 40 * (i + 1), np.uint8)
                for i in range(3)]
    corners = figures.overview_layout(4, columns=2)
    canvas = figures._compose(pictures, corners, (2 * figures.TILE[0], 2 * figures.TILE[1]))
    for i, (x, y) in enumerate(corners[:3]):
        px, py = x + figures.PICTURE_AT[0], y + figures.PICTURE_AT[1]
        assert (canvas[py: py + figures.PICTURE_SIZE[1], px: px + figures.PICTURE_SIZE[0]] == 40 * (i + 1)).all()
    assert (canvas[corners[3][1] + 50, corners[3][0] + 50] == 255).all()  # the legend's slot stays white


def test_details_figure_shows_the_whole_region_on_map_and_image_and_hovers_values():
    summary = np.zeros((9, 12), np.float32)
    intended = np.array([[1.5, 1.5, 5.5, 4.5]])
    region = intended * 16  # image-space boxes: far off the map
    pts = np.array([[900.0, 700.0], [1400.0, 1100.0]])
    fig = validated(figures.details_figure(
        summary, region, intended, 0, (URI, URI_SCALE), (60, 80), pts, np.array([400.0, 300, 1500, 1200]),
        np.array([10.0, 8, 30, 25]), URI, np.zeros((7, 7)), np.ones((7, 7)), 0.0, 1.0, 1.0, meta={"kind": "x"}))
    assert fig.layout.xaxis.range[1] > region[0, 2] and fig.layout.yaxis.range[0] > region[0, 3]
    assert fig.layout.xaxis2.range[1] > 1500 and fig.layout.yaxis2.range[0] > 1200  # whole region on the image
    assert fig.layout.xaxis2.range[0] == 0 and fig.layout.yaxis2.range[1] == 0  # and the whole image
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 3 and all("%{z" in (t.hovertemplate or "%{z") for t in heatmaps)
    assert (heatmaps[2].zmin, heatmaps[2].zmax) == (-1.0, 1.0)  # the difference: symmetric
    assert fig.layout.meta == {"kind": "x"}


def test_crop_views_share_one_color_scale():
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(4, 6, 3, 3)).astype(np.float32)
    crops[2] *= 10  # one variant reads much larger values
    cv = views.crop_views(crops, "mean")
    mean = crops.mean(axis=1)
    assert cv.zmin == pytest.approx(mean.min()) and cv.zmax == pytest.approx(mean.max())
    np.testing.assert_allclose(cv.diffs, mean - mean[:1], atol=1e-6)
    assert cv.zabs == pytest.approx(np.abs(mean - mean[:1]).max())
    np.testing.assert_array_equal(cv.diffs[0], 0)  # your settings' crop minus itself


def test_html_export_inlines_plotly_once():
    fig = figures.feature_map_figure(np.zeros((3, 3), np.float32), np.zeros((0, 4)), np.zeros((0, 4)), focus=None)
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
    data = views.crops_npz(["correct", "yx_swapped"], crops, np.array([1, 2, 3, 4.0]), {"output_size": 4})
    with np.load(io.BytesIO(data)) as z:
        assert list(z["kinds"]) == ["correct", "yx_swapped"]
        np.testing.assert_array_equal(z["crops"], crops)
        assert z["box_image"].tolist() == [1, 2, 3, 4] and int(z["output_size"]) == 4


def test_builders_export_exactly_what_a_plain_go_figure_exports():
    """The builders skip copying the default template into each figure; the exported dict and JSON are the same."""
    z = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    verdict = views.Verdict("k", "t", 1.0, 0.0, 0.0, 0.0, "ok", "IoU 1.00 · 0% outside", "w")
    picture = np.zeros((figures.PICTURE_SIZE[1], figures.PICTURE_SIZE[0], 3), np.uint8)
    built = [
        figures.feature_map_figure(z, np.array([[0.5, 0.5, 2.0, 1.5]]), np.array([[0.0, 0.0, 1.0, 1.0]])),
        figures.image_figure(URI, (60, 80), np.array([[10, 5, 30, 25.0]]), ["a"], uri_scale=URI_SCALE),
        figures.overview_figure([verdict], [picture], z[None, :3, :3], 0.0, 1.0),
        figures.details_figure(z, np.array([[0.5, 0.5, 2.0, 1.5]]), np.array([[0.0, 0.0, 1.0, 1.0]]), 0,
                               (URI, URI_SCALE), (60, 80), np.array([[5.0, 5.0]]), np.array([4, 4, 6, 6.0]),
                               np.array([4, 4, 6, 6.0]), URI, z, z, 0.0, 1.0, 1.0),
    ]
    for fig in built:
        exported = fig.to_dict()
        assert exported["layout"]["template"] == pio.templates[pio.templates.default].to_plotly_json()
        plain = go.Figure(  # built the way the builders did before: no validation, default template copied in
            data=exported["data"], layout={k: v for k, v in exported["layout"].items() if k != "template"},
            _validate=False,
        )
        assert pio.to_json(exported, validate=False) == pio.to_json(plain.to_dict(), validate=False)
        assert pio.to_json(fig, validate=False) == pio.to_json(plain, validate=False)
        # exporting twice gives the same (nothing was mutated)
        assert pio.to_json(fig.to_dict(), validate=False) == pio.to_json(exported, validate=False)


def test_a_template_set_on_a_built_figure_wins():
    fig = figures.feature_map_figure(np.zeros((2, 2), np.float32), np.zeros((0, 4)), np.zeros((0, 4)), focus=None)
    fig.update_layout(template={"layout": {"font": {"size": 9}}})
    assert fig.to_dict()["layout"]["template"] == {"layout": {"font": {"size": 9}}}


def test_overview_puts_a_group_on_rows_of_its_own_and_frames_the_references():
    """Issue 14: 17 variants. The 13 axis-aligned ones and the legend fill four rows of four; the rotated family
    (from ``group_start``) starts a fifth row; both references are framed."""
    v, ph = 17, 5
    maps = np.arange(v * ph * ph, dtype=np.float32).reshape(v, ph, ph)
    verdicts = [views.Verdict(f"k{i}", f"title {i}", 1.0, 0.0, 0.0, 0.0, "ok", "h", "w") for i in range(v)]
    pictures = [np.zeros((figures.PICTURE_SIZE[1], figures.PICTURE_SIZE[0], 3), np.uint8)] * v
    fig = figures.overview_figure(verdicts, pictures, maps, 0.0, 1.0, group_start=13, framed=(0, 13))
    validated(fig)
    assert fig.layout.height == 5 * figures.TILE[1]
    z = np.asarray(fig.data[1].z, dtype=np.float64)
    for i, (r, c) in [(0, (0, 0)), (12, (3, 0)), (13, (4, 0)), (16, (4, 3))]:
        np.testing.assert_array_equal(z[r * (ph + 1): r * (ph + 1) + ph, c * (ph + 1): c * (ph + 1) + ph], maps[i])
    assert np.isnan(z[3 * (ph + 1): 3 * (ph + 1) + ph, 1 * (ph + 1):]).all()  # row 4: tile 12, then the legend
    colorbar_x = fig.data[1].colorbar.x * 4 * figures.TILE[0]
    assert figures.TILE[0] < colorbar_x < 2 * figures.TILE[0]  # the legend's slot: row 4, column 2
    frames = [s for s in fig.layout.shapes if s.type == "rect"]
    assert sorted((s.x0, s.y0) for s in frames) == [(1, 1), (1, 4 * figures.TILE[1] + 1)]


def test_verdicts_compare_the_rotated_family_with_the_rotated_reference():
    import torch

    from roi_lab.geometry import VariantKind, make_variants

    vs = make_variants(torch.tensor([[64.0, 32.0, 192.0, 120.0]]), image_size=(256, 256), feature_size=(16, 16),
                       stride=16, angle_degrees=40)
    kinds = [v.kind for v in vs]
    refs = views.reference_indices(vs)
    r = kinds.index(VariantKind.ROTATED)
    assert refs == [0] * r + [r] * 4
    maps = np.random.default_rng(0).normal(size=(len(vs), 7, 7)).astype(np.float32)
    maps[r + 1] = maps[r]  # radians-as-degrees crop equal to the rotated reference's
    out = views.verdicts(vs, 0, maps)
    assert out[r].level == "ref" and "rotated reference" in out[r].words
    assert out[r + 1].crop_diff == 0.0 and "crop differs by 0%" in out[r + 1].words
    assert out[r + 1].words.startswith("corners off by up to")
    # the corners' distance: box 128 x 88 about (128, 76); 40 degrees vs 40 * pi / 180 degrees: by hand
    half = np.array([[-64, -44], [64, -44], [64, 44], [-64, 44]], dtype=np.float64)

    def turn(deg):
        t = np.radians(deg)
        return np.stack([half[:, 1] * np.sin(t) + half[:, 0] * np.cos(t),
                         half[:, 1] * np.cos(t) - half[:, 0] * np.sin(t)], 1)

    expected = np.linalg.norm(turn(40) - turn(np.radians(40)), axis=1).max()
    assert out[r + 1].off_px == pytest.approx(expected, rel=1e-4)
    cv = views.crop_views(maps, refs=refs)
    np.testing.assert_array_equal(cv.diffs[r + 2], maps[r + 2] - maps[r])  # to the rotated reference
    np.testing.assert_array_equal(cv.diffs[5], maps[5] - maps[0])  # to your settings


@pytest.mark.parametrize("view", ["mean", "index", "pca"])
def test_channel_projection_is_the_channel_map(view):
    import torch

    x = torch.randn(1, 6, 5, 7, generator=torch.Generator().manual_seed(2))
    w, b = views.channel_projection(x, view, 4)
    projected = torch.einsum("c,nchw->nhw", w, x) + b
    torch.testing.assert_close(projected[:, None], views.channel_map(x, view, 4), atol=1e-5, rtol=1e-5)


def test_thumb_draws_a_turned_region_as_a_polygon():
    from roi_lab.ui import thumbs

    image = np.full((100, 100, 3), 128, np.uint8)
    diamond = np.array([[50.0, 20.0], [80.0, 50.0], [50.0, 80.0], [20.0, 50.0]])
    pic, view = thumbs.render_thumb(image, (100, 100), np.array([20.0, 20, 80, 80]), np.array([20.0, 20, 80, 80]),
                                    None, (100, 100), region_polygon=diamond, intended_polygon=diamond)
    k = 100 / (view[2] - view[0])

    def px(x, y):
        return tuple(pic[int(round((y - view[1]) * k)), int(round((x - view[0]) * k))])

    assert px(65, 35) == thumbs.REGION_RGB  # on the diamond's edge (the solid outline is drawn last)
    assert px(22, 22) == (128, 128, 128)  # the bounding box's corner: no rectangle drawn
