"""Plotly figure builders: data in, figure out. No streamlit here, so tests build them without a browser.

Every builder makes one ``go.Figure(data=[...], layout={...})`` with all rectangles in a single
``shapes=[...]`` list: the layout is set once, never shape by shape (an ``add_shape`` loop, or even
one ``update_layout`` call, re-walks plotly's property tree and costs 10-30 ms per figure). Traces
and layout are plain dicts and the figure is made with ``_validate=False``, plotly's own switch for
trusted input: the Side-by-side page draws dozens of small figures per rerun. The default template is
attached when a figure is exported, not copied into every figure (:class:`_TrustedFigure`). The tests
check every builder's output with plotly's validators instead (``go.Figure(fig.to_dict())``).

Convention:
    Image figures use image pixels on both axes with continuous coordinates: pixel ``(i, j)``
    covers ``[j, j + 1] x [i, i + 1]``, so a box ``[x1, y1, x2, y2]`` is drawn exactly where
    ROIAlign reads it; the x axis runs ``[0, W]`` and the y axis is reversed (``[H, 0]``), and a box
    selection dragged on the figure comes back in the same pixels. Feature-map figures use the
    geometry module's feature *sample* coordinates: cell ``(i, j)`` is centred on ``(x=j, y=i)`` and
    covers ``[j - 0.5, j + 0.5]``; image coordinate ``x`` is feature coordinate ``x / stride - 0.5``.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

__all__ = [
    "CHANNEL_VIEWS",
    "image_data_uri",
    "box_shapes",
    "polygon_shape",
    "image_figure",
    "feature_map_figure",
    "overview_figure",
    "overview_layout",
    "details_figure",
    "LEVEL_COLORS",
    "reduce_channels",
    "first_component",
    "shared_range",
    "symmetric_range",
    "figure_html",
]

CHANNEL_VIEWS: tuple[str, ...] = ("mean", "max", "index", "pca")
INTENDED_COLOR = "#00e5ff"  # what the user meant
REGION_COLOR = "#ff2d55"  # what the variant really samples
FOCUS_WIDTH, OTHER_WIDTH = 3, 1.5
_MARGIN = {"l": 4, "r": 4, "t": 28, "b": 4}


def image_data_uri(image: np.ndarray, max_side: int | None = None, *, fmt: str = "jpeg", quality: int = 88
                   ) -> tuple[str, float]:
    """Encode an RGB uint8 image as a data URI for ``go.Image(source=...)``, optionally downscaled.

    Sending a compressed image is far smaller than a ``z`` array of pixel values.

    Args:
        image (ndarray[H, W, 3] uint8): RGB.
        max_side (int | None): downscale so the longer side is at most this (thumbnails).
        fmt (str): ``"jpeg"`` or ``"png"``.

    Returns:
        (uri, scale): the data URI and ``scale`` = encoded size / original size (1.0 when not scaled).
    """
    h, w = image.shape[:2]
    scale = 1.0
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
        mime = "image/png"
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        mime = "image/jpeg"
    if not ok:  # pragma: no cover - cv2 encodes any uint8 RGB array
        raise RuntimeError("could not encode the image")
    return f"data:{mime};base64,{base64.b64encode(buf.tobytes()).decode('ascii')}", scale


def box_shapes(
    boxes: np.ndarray, *, color: str, focus: int | None = None, dash: str = "solid", width: float = OTHER_WIDTH
) -> list[dict[str, Any]]:
    """Layout rectangle dicts for boxes ndarray[K, 4] xyxy (axis units); the ``focus`` box is drawn thicker."""
    out = []
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4).tolist()):
        out.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "y",
                "x0": x1,
                "y0": y1,
                "x1": x2,
                "y1": y2,
                "line": {"color": color, "width": FOCUS_WIDTH if k == focus else width, "dash": dash},
                "fillcolor": "rgba(0,0,0,0)",
            }
        )
    return out


def polygon_shape(points: np.ndarray, *, color: str, dash: str = "solid", width: float = FOCUS_WIDTH) -> dict[str, Any]:
    """A closed layout path for a polygon ndarray[P, 2] of (x, y) in axis units (a turned box's corners).

    Example:
        >>> polygon_shape(np.array([[0, 0], [2, 0], [2, 1]]), color="red")["path"]
        'M 0 0 L 2 0 L 2 1 Z'
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    path = " L ".join(f"{x:.6g} {y:.6g}" for x, y in pts.tolist())
    return {"type": "path", "xref": "x", "yref": "y", "path": f"M {path} Z",
            "line": {"color": color, "width": width, "dash": dash}, "fillcolor": "rgba(0,0,0,0)"}


def _pixel_axes(w: float, h: float, *, show: bool = False, offset: float = 0.0) -> dict[str, Any]:
    return {
        "xaxis": {"range": [offset, w + offset], "showgrid": False, "zeroline": False, "visible": show,
                  "constrain": "domain"},
        "yaxis": {
            "range": [h + offset, offset],
            "showgrid": False,
            "zeroline": False,
            "visible": show,
            "scaleanchor": "x",
            "scaleratio": 1,
            "constrain": "domain",
        },
    }


@functools.lru_cache(maxsize=4)
def _template_dict(name: str) -> dict[str, Any]:
    """The registered plotly template ``name`` as a plain dict, built once and shared read-only."""
    return pio.templates[name].to_plotly_json()


class _TrustedFigure(go.Figure):
    """A ``go.Figure`` that attaches plotly's default template when it is exported, not when it is built.

    A plain ``go.Figure`` copies the default template (a 7 kB tree) into every new figure and deep-copies
    it again in every ``to_dict()``: about 2 ms of a 3 ms figure. Here the template is added to the
    exported dict as one shared plain dict (treat the export as read-only; Streamlit and
    ``plotly.io.to_json`` only read it), so ``to_dict()`` and the JSON sent to the browser are exactly
    those of a plain ``go.Figure``. ``fig.layout.template`` reads empty; a template set on the figure wins.
    """

    def _initialize_layout_template(self) -> None:  # plotly's hook, called by go.Figure.__init__
        pass

    def to_dict(self) -> dict[str, Any]:
        res = super().to_dict()
        if pio.templates.default is not None and "template" not in res["layout"]:
            default = pio.templates.default
            res["layout"]["template"] = (
                _template_dict(default) if isinstance(default, str) else default.to_plotly_json()
            )
        return res


def _figure(data: list[dict[str, Any]], **layout: Any) -> go.Figure:
    """A figure from plain trace dicts and ONE layout dict (all shapes at once), without plotly's
    per-property validation and without copying the default template into it (see the module
    docstring and :class:`_TrustedFigure`)."""
    layout = {"plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", **layout}  # plain with or without a theme
    return _TrustedFigure(data=data, layout=layout, _validate=False)


def _image_trace(uri: str, uri_scale: float) -> dict[str, Any]:
    d = 1.0 / uri_scale  # image px per encoded px
    return {"type": "image", "source": uri, "x0": d / 2, "y0": d / 2, "dx": d, "dy": d, "hoverinfo": "skip"}


def image_figure(
    image_uri: str,
    image_size: tuple[int, int],
    boxes_image: np.ndarray,
    labels: Sequence[str] = (),
    *,
    uri_scale: float = 1.0,
    selectable: bool = True,
    grid_points: int = 40,
    height: int = 520,
    focus: int | None = None,
    axes: bool = True,
) -> go.Figure:
    """The image with boxes on it; drag on it to select a new box (``dragmode="select"``).

    Args:
        image_uri (str): from :func:`image_data_uri`.
        image_size ((H, W)): working-image size; the axes are these pixels.
        boxes_image (ndarray[K, 4]): xyxy image px.
        labels (list[str]): drawn at each box's top-left corner.
        uri_scale (float): encoded size / working size (thumbnails are drawn at full size).
        selectable (bool): add an invisible grid of points so Plotly's box selection always fires
            a selection event, even over an image trace that has no selectable points of its own.
        grid_points (int): points along the longer side of that grid.
        height (int): figure height in CSS px.
        focus (int | None): the box drawn thicker (the box the Side-by-side page shows).
        axes (bool): draw the pixel axes.

    Returns:
        go.Figure
    """
    h, w = image_size
    data: list[dict[str, Any]] = [_image_trace(image_uri, uri_scale)]
    if selectable:
        step = max(h, w) / grid_points
        gx, gy = np.meshgrid(np.arange(step / 2, w, step), np.arange(step / 2, h, step))
        data.append(
            {
                "type": "scatter",
                "x": gx.ravel(),
                "y": gy.ravel(),
                "mode": "markers",
                "marker": {"size": 4, "opacity": 0},
                "selected": {"marker": {"opacity": 0}},
                "unselected": {"marker": {"opacity": 0}},
                "hoverinfo": "skip",
                "showlegend": False,
            }
        )
    boxes = np.asarray(boxes_image, dtype=np.float64).reshape(-1, 4)
    annotations = [
        {"x": b[0], "y": b[1], "text": str(lab), "showarrow": False, "xanchor": "left", "yanchor": "bottom",
         "font": {"color": "white", "size": 11}, "bgcolor": REGION_COLOR, "borderpad": 1}
        for b, lab in zip(boxes.tolist(), list(labels) + [""] * (len(boxes) - len(labels)), strict=False)
        if lab
    ]
    fig = _figure(
        data,
        shapes=box_shapes(boxes, color=REGION_COLOR, width=2, focus=focus),
        annotations=annotations,
        dragmode="select" if selectable else "pan",
        selectdirection="any",
        newselection={"line": {"color": INTENDED_COLOR, "width": 2}},
        height=height,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        showlegend=False,
        **_pixel_axes(w, h, show=axes),
    )
    return fig


def _whole_view(size_wh: tuple[float, float], boxes: Sequence[np.ndarray], offset: float = 0.0,
                margin: float = 0.04) -> tuple[list[float], list[float]]:
    """x and y axis ranges (y reversed) holding the whole ``[offset, w + offset] x [offset, h + offset]`` area
    and every finite box: nothing a variant samples is cut off (issue 10, finding 5). A side gets a margin
    of ``margin`` of the view only where a box reaches past the area.

    Example:
        >>> _whole_view((10, 5), [np.array([2.0, 1.0, 4.0, 3.0])])
        ([0.0, 10.0], [5.0, 0.0])
        >>> _whole_view((10, 5), [np.array([2.0, 1.0, 30.0, 3.0])], margin=0.1)
        ([0.0, 33.0], [5.0, 0.0])
    """
    w, h = size_wh
    lo = np.array([offset, offset], dtype=np.float64)
    hi = np.array([w + offset, h + offset], dtype=np.float64)
    b_lo, b_hi = lo.copy(), hi.copy()
    for b in boxes:
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        b = b[np.all(np.isfinite(b), axis=1)]
        if len(b):
            b_lo = np.minimum(b_lo, [b[:, [0, 2]].min(), b[:, [1, 3]].min()])
            b_hi = np.maximum(b_hi, [b[:, [0, 2]].max(), b[:, [1, 3]].max()])
    pad = (b_hi - b_lo) * margin
    x0, y0 = np.where(b_lo < lo, b_lo - pad, lo)
    x1, y1 = np.where(b_hi > hi, b_hi + pad, hi)
    return [float(x0), float(x1)], [float(y1), float(y0)]


def feature_map_figure(
    summary: np.ndarray,
    regions_feature: np.ndarray,
    intended_feature: np.ndarray,
    *,
    focus: int | None = 0,
    title: str = "",
    height: int = 240,
) -> go.Figure:
    """A feature-map summary with the sampled regions (solid) and the intended boxes (dashed).

    The view holds the whole map and the whole focus region however far it leaves the map; the area off
    the map is grey (samples there read zeros).

    Args:
        summary (ndarray[h, w] float | ndarray[h, w, 3] uint8): from ``roi_lab.backbone.feature_summary``.
        regions_feature (ndarray[K, 4]): xyxy feature sample coordinates: where the op really samples.
        intended_feature (ndarray[K, 4]): xyxy feature sample coordinates: where it should sample.
        focus (int | None): the box drawn thicker, whose region the view holds; None: the map only.
    """
    fh, fw = summary.shape[:2]
    if summary.ndim == 3:
        trace = {"type": "image", "z": summary, "x0": 0, "y0": 0, "dx": 1, "dy": 1, "hoverinfo": "skip"}
    else:
        trace = {"type": "heatmap", "z": summary, "x0": 0, "y0": 0, "dx": 1, "dy": 1, "colorscale": "Greys",
                 "showscale": False, "hoverinfo": "skip"}
    shapes = box_shapes(intended_feature, color=INTENDED_COLOR, focus=focus, dash="dash") + box_shapes(
        regions_feature, color=REGION_COLOR, focus=focus
    )
    axes = _pixel_axes(fw, fh, offset=-0.5)
    regions = np.asarray(regions_feature, dtype=np.float64).reshape(-1, 4)
    if focus is not None and 0 <= focus < len(regions):
        intended = np.asarray(intended_feature, dtype=np.float64).reshape(-1, 4)
        axes["xaxis"]["range"], axes["yaxis"]["range"] = _whole_view(
            (fw, fh), [regions[focus], intended[focus] if focus < len(intended) else regions[focus]], offset=-0.5)
    fig = _figure(
        [trace],
        shapes=shapes,
        title={"text": title, "font": {"size": 12}},
        height=height,
        margin=_MARGIN,
        dragmode=False,
        plot_bgcolor=OFF_COLOR,
        **axes,
    )
    return fig


def _axis_names(i: int) -> tuple[str, str, str, str]:
    """Layout keys and trace references of subplot ``i`` (0-based): ("xaxis2", "yaxis2", "x2", "y2")."""
    n = "" if i == 0 else str(i + 1)
    return f"xaxis{n}", f"yaxis{n}", f"x{n}", f"y{n}"


def _hidden_axes(layout: dict[str, Any], i: int, x_domain: list[float], y_domain: list[float],
                 x_range: list[float] | None = None, y_range: list[float] | None = None,
                 square: bool = True) -> tuple[str, str]:
    """Add subplot ``i``'s invisible axes (y reversed, aspect 1) to ``layout``; returns the trace refs."""
    xk, yk, xr, yr = _axis_names(i)
    layout[xk] = {"domain": x_domain, "visible": False, "anchor": yr, "constrain": "domain", "fixedrange": True}
    layout[yk] = {"domain": y_domain, "visible": False, "anchor": xr, "constrain": "domain", "fixedrange": True}
    if x_range is not None:
        layout[xk]["range"] = x_range
    if y_range is not None:
        layout[yk]["range"] = y_range
    else:
        layout[yk]["autorange"] = "reversed"
    if square:
        layout[yk]["scaleanchor"] = xr
        layout[yk]["scaleratio"] = 1
    return xr, yr


LEVEL_COLORS = {"ref": "#1f4e79", "ok": "#2e7d32", "warn": "#d35400", "bad": "#c62828"}
OFF_COLOR = "#e6e6e6"  # off the image / off the map


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "<br>".join(textwrap.wrap(text, width)) or " "


TILE = (275, 200)  # design px of one overview tile (width, height); the figure keeps this aspect
PICTURE_AT, PICTURE_SIZE = (4, 24), (156, 117)  # within a tile: the picture's origin and (width, height)
CROP_AT, CROP_SIDE = (166, 24), 104  # within a tile: the crop's origin and side


def overview_layout(n: int, columns: int = 4, tile: tuple[int, int] = TILE,
                    row_starts: Sequence[int] = ()) -> list[tuple[int, int]]:
    """Top-left design-px corner of each of ``n`` tiles, left to right, top to bottom; a tile in ``row_starts``
    begins a new row (a group of its own).

    Example:
        >>> overview_layout(5, columns=4)[-1]
        (0, 200)
        >>> overview_layout(3, columns=4, row_starts=[2])
        [(0, 0), (275, 0), (0, 200)]
    """
    out, p = [], 0
    for i in range(n):
        if i in row_starts:
            p = -(-p // columns) * columns  # the next row's first slot (this one, if the row is fresh)
        out.append(((p % columns) * tile[0], (p // columns) * tile[1]))
        p += 1
    return out


def _compose(pictures: Sequence[np.ndarray], corners: Sequence[tuple[int, int]], size: tuple[int, int]) -> np.ndarray:
    """All pictures pasted into one white RGB canvas ``size`` = (width, height) at their tiles' picture origin."""
    w, h = size
    canvas = np.full((h, w, 3), 255, np.uint8)
    for pic, (x, y) in zip(pictures, corners, strict=False):
        px, py = x + PICTURE_AT[0], y + PICTURE_AT[1]
        ph, pw = pic.shape[:2]
        canvas[py : py + ph, px : px + pw] = pic[: h - py, : w - px]
    return canvas


def overview_figure(
    verdicts: Sequence[Any],
    pictures: Sequence[np.ndarray],
    maps: np.ndarray,
    zmin: float,
    zmax: float,
    *,
    view: str = "mean",
    columns: int = 4,
    wrap: int = 46,
    meta: Any = None,
    group_start: int | None = None,
    framed: Sequence[int] = (0,),
) -> go.Figure:
    """Every variant at a glance, in ONE figure with ONE pair of axes: per variant a picture of where it
    samples, its crop with hover values, and its verdict in words.

    Tiles run left to right, top to bottom, the user's own settings first (framed). Each tile has the
    variant's title coloured by its verdict, its picture (``pictures``: the whole image and the whole
    sampled region, off-image hatched), its crop on one colour scale shared by every crop (the colour
    bar sits in the last tile) and the verdict. For the browser this is three traces: one image (all
    pictures composed server-side into one JPEG), one heatmap (all crops in one grid, NaN between them;
    its cells hover with the variant, the bin and the value) and one text scatter; drawing 11 subplots,
    or 55 charts, costs many times more.

    Args:
        verdicts (list[Verdict]): from ``roi_lab.ui.views.verdicts``, one per variant.
        pictures (list[ndarray[h, w, 3] uint8]): one per variant (``roi_lab.ui.thumbs.render_thumb``) of
            ``PICTURE_SIZE``.
        maps (ndarray[V, PH, PW]): the crops' channel view (NaN: the op refused that variant's input).
        zmin, zmax (float): the shared colour range.
        view (str): the channel view, for the colour bar's title.
        columns (int): tiles per row.
        wrap (int): characters per line of the verdict's words.
        meta: plotly's ``layout.meta``: the state the figure shows (the latency benchmark waits for it).
        group_start (int | None): the first variant of a group drawn on rows of its own (the rotated family);
            the legend's slot then closes the first group.
        framed (list[int]): the tiles framed as references (your settings; the rotated reference).

    Returns:
        go.Figure
    """
    v = len(verdicts)
    ph, pw = int(maps.shape[-2]), int(maps.shape[-1])
    tw, th = TILE
    # one more slot: the colour bar and the legend, after the first group (or after every tile)
    legend_at = v if group_start is None else group_start
    order = [*range(legend_at), v, *range(legend_at, v)]  # tile index per slot; v is the legend
    placed = overview_layout(v + 1, columns, row_starts=[] if group_start is None else [legend_at + 1])
    corners = [(0, 0)] * (v + 1)
    for slot, i in enumerate(order):
        corners[i] = placed[slot]
    rows = max(y for _, y in corners) // th + 1
    width, height = columns * tw, rows * th
    # one heatmap: cell edges of every tile column / row, a NaN gap between tiles
    cell_x, cell_y = CROP_SIDE / pw, CROP_SIDE / ph
    xs = [c * tw + CROP_AT[0] for c in range(columns)]
    ys = [r * th + CROP_AT[1] for r in range(rows)]
    x_edges = [x + j * cell_x for x in xs for j in range(pw + 1)]
    y_edges = [y + i * cell_y for y in ys for i in range(ph + 1)]
    # between consecutive tiles the last edge of one crop and the first of the next bound a NaN gap cell
    z = np.full((len(y_edges) - 1, len(x_edges) - 1), np.nan, np.float32)
    text = np.full(z.shape, "", dtype=object)
    for i, verdict in enumerate(verdicts):
        r, c = corners[i][1] // th, corners[i][0] // tw
        r0, c0 = r * (ph + 1), c * (pw + 1)
        z[r0 : r0 + ph, c0 : c0 + pw] = maps[i]
        text[r0 : r0 + ph, c0 : c0 + pw] = [[f"{verdict.title}<br>bin (row {a}, col {b})" for b in range(pw)]
                                             for a in range(ph)]
    uri, _ = image_data_uri(_compose(pictures, corners, (width, height)), quality=88)
    data = [
        {"type": "image", "source": uri, "x0": 0.5, "y0": 0.5, "dx": 1, "dy": 1, "hoverinfo": "skip"},
        {"type": "heatmap", "z": z, "x": x_edges, "y": y_edges, "customdata": text, "hoverongaps": False,
         "colorscale": "Viridis", "zmin": zmin, "zmax": zmax,
         "hovertemplate": "%{customdata}: %{z:.4g}<extra></extra>",
         "colorbar": {"x": (corners[v][0] + 12) / width, "xanchor": "left",
                      "y": 1 - (corners[v][1] + th * 0.45) / height, "yanchor": "middle",
                      "len": 0.62 * th / height, "thickness": 12,
                      "title": {"text": f"crop ({view})", "side": "right"}, "tickfont": {"size": 10}}},
    ]
    texts: list[tuple[float, float, str, int, str]] = []  # x, y (top-left), text, font size, colour
    shapes: list[dict[str, Any]] = []
    for i, verdict in enumerate(verdicts):
        x, y = corners[i]
        color = LEVEL_COLORS.get(verdict.level, "#333333")
        texts.append((x + 4, y + 3, f"<b>{verdict.title}</b>", 13, color))
        texts.append((x + 4, y + PICTURE_AT[1] + PICTURE_SIZE[1] + 4,
                      f"<b>{verdict.headline}</b><br>{_wrap(verdict.words, wrap)}", 11, color))
        if i in framed:
            shapes.append({"type": "rect", "x0": x + 1, "x1": x + tw - 3, "y0": y + 1, "y1": y + th - 3,
                           "line": {"color": color, "width": 2}, "fillcolor": "rgba(0,0,0,0)"})
    x, y = corners[v]
    texts.append((x + 110, y + 12,
                  f"<span style='color:{INTENDED_COLOR}'><b>- - -</b></span> the box meant<br>"
                  f"<span style='color:{REGION_COLOR}'><b>——</b></span> where the op samples<br>"
                  "hatched: off the image<br>(samples read zeros)<br><br>one colour scale for<br>"
                  "every crop; hover a<br>crop for its values", 10, "#333333"))
    # all text in one text-mode scatter: plotly lays out annotations one by one (a text measurement each),
    # which costs the browser more than the rest of the figure
    data.append({"type": "scatter", "mode": "text", "x": [t[0] for t in texts], "y": [t[1] for t in texts],
                 "text": [t[2] for t in texts], "textposition": "bottom right", "hoverinfo": "skip",
                 "textfont": {"size": [t[3] for t in texts], "color": [t[4] for t in texts]}, "showlegend": False})
    axes = _pixel_axes(width, height)
    for axis in axes.values():
        axis["fixedrange"] = True
    return _figure(data, **axes, shapes=shapes, height=height,
                   margin={"l": 0, "r": 0, "t": 0, "b": 0}, dragmode=False, showlegend=False, hovermode="closest",
                   **({"meta": meta} if meta is not None else {}))


def details_figure(
    summary: np.ndarray,
    regions_feature: np.ndarray,
    intended_feature: np.ndarray,
    focus: int,
    image: tuple[str, float],
    image_size: tuple[int, int],
    points_image: np.ndarray,
    region_image: np.ndarray,
    intended_image: np.ndarray,
    rgb_uri: str,
    crop: np.ndarray,
    diff: np.ndarray,
    zmin: float,
    zmax: float,
    zabs: float,
    *,
    title: str = "",
    height: int = 270,
    meta: Any = None,
    polygons: dict[str, np.ndarray] | None = None,
    diff_title: str = "minus your settings' crop",
) -> go.Figure:
    """One variant in detail, in ONE figure of five panels: the feature map with the regions, the samples on
    the image, what it reads from the image (RGB), its crop and its difference to your settings' crop.

    The first two panels hold the whole map / image and the whole sampled region (off-map and off-image
    areas grey). The crop shares the overview's colour scale; the difference has its own symmetric
    scale. Hover gives the values of both.

    Args:
        summary (ndarray[h, w]): the feature map's summary.
        regions_feature, intended_feature (ndarray[K, 4]): feature sample coordinates (all boxes; ``focus``
            drawn thick).
        image ((uri, uri_scale)): the working image (or a thumbnail of it) and its scale.
        image_size ((H, W)): working-image px.
        points_image (ndarray[P, 2]): (x, y) px of the focus box's samples.
        region_image, intended_image (ndarray[4]): xyxy px.
        rgb_uri (str): the RGB read-out as a data URI.
        crop, diff (ndarray[PH, PW]): the crop (channel view) and crop minus your settings' crop.
        meta: plotly's ``layout.meta`` (see :func:`overview_figure`).
        polygons (dict | None): a turned region (the rotated family): ndarray[4, 2] corners under
            ``"region_feature"``, ``"intended_feature"`` (feature sample coordinates), ``"region_image"``,
            ``"intended_image"`` (image px), drawn instead of the focus box's rectangles.
        diff_title (str): the last panel's title: what the difference is taken to.
    """
    layout: dict[str, Any] = {}
    data: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    gap, n = 0.012, 5
    width = (1.0 - gap * (n - 1)) / n
    dom = [[i * (width + gap), i * (width + gap) + width] for i in range(n)]
    y_dom = [0.0, 0.90]
    titles = ["on the feature map", "samples on the image", "what it reads (RGB)", "crop", diff_title]
    # 1: the feature map
    fh, fw = summary.shape[:2]
    regions = np.asarray(regions_feature, dtype=np.float64).reshape(-1, 4)
    intended = np.asarray(intended_feature, dtype=np.float64).reshape(-1, 4)
    xrange_, yrange = _whole_view((fw, fh), [regions[focus], intended[focus]], offset=-0.5)
    xr, yr = _hidden_axes(layout, 0, dom[0], y_dom, xrange_, yrange)
    data.append({"type": "heatmap", "z": np.asarray(summary, dtype=np.float32), "x0": 0, "y0": 0, "dx": 1, "dy": 1,
                 "colorscale": "Greys", "showscale": False, "hoverinfo": "skip", "xaxis": xr, "yaxis": yr})
    if polygons is None:
        map_shapes = (box_shapes(intended, color=INTENDED_COLOR, focus=focus, dash="dash")
                      + box_shapes(regions, color=REGION_COLOR, focus=focus))
    else:
        map_shapes = [polygon_shape(polygons["intended_feature"], color=INTENDED_COLOR, dash="dash"),
                      polygon_shape(polygons["region_feature"], color=REGION_COLOR)]
    for shape in map_shapes:
        shapes.append({**shape, "xref": xr, "yref": yr})
    # 2: samples on the image
    h, w = image_size
    pts = np.asarray(points_image, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) > 2000:
        pts = pts[np.linspace(0, len(pts) - 1, 2000).round().astype(int)]
    pts_box = np.array([[pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]]) if len(pts) else []
    xrange_, yrange = _whole_view((w, h), [region_image, intended_image, *([pts_box] if len(pts) else [])])
    xr, yr = _hidden_axes(layout, 1, dom[1], y_dom, xrange_, yrange)
    data.append({**_image_trace(image[0], image[1]), "xaxis": xr, "yaxis": yr})
    data.append({"type": "scatter", "x": pts[:, 0], "y": pts[:, 1], "mode": "markers", "xaxis": xr, "yaxis": yr,
                 "marker": {"size": 3, "color": REGION_COLOR}, "hoverinfo": "skip", "showlegend": False})
    if polygons is None:
        image_shapes = (box_shapes(intended_image, color=INTENDED_COLOR, dash="dash", width=2)
                        + box_shapes(region_image, color=REGION_COLOR, width=2))
    else:
        image_shapes = [polygon_shape(polygons["intended_image"], color=INTENDED_COLOR, dash="dash", width=2),
                        polygon_shape(polygons["region_image"], color=REGION_COLOR, width=2)]
    for shape in image_shapes:
        shapes.append({**shape, "xref": xr, "yref": yr})
    # 3: RGB read-out
    xr, yr = _hidden_axes(layout, 2, dom[2], y_dom)
    data.append({"type": "image", "source": rgb_uri, "xaxis": xr, "yaxis": yr, "hoverinfo": "skip"})
    # 4, 5: crop and difference, with hover values
    for i, (z, lo, hi, scale, cbx) in enumerate(((crop, zmin, zmax, "Viridis", dom[3][1]),
                                                 (diff, -zabs, zabs, "RdBu_r", dom[4][1]))):
        xr, yr = _hidden_axes(layout, 3 + i, [dom[3 + i][0], dom[3 + i][1] - 0.03], y_dom)
        data.append({"type": "heatmap", "z": np.asarray(z, dtype=np.float32), "zmin": lo, "zmax": hi,
                     "colorscale": scale, "xaxis": xr, "yaxis": yr,
                     "colorbar": {"x": cbx - 0.028, "xanchor": "left", "len": 0.85, "y": 0.45, "thickness": 8,
                                  "tickfont": {"size": 9}},
                     "hovertemplate": "bin (row %{y}, col %{x}): %{z:.4g}<extra></extra>"})
    annotations = [{"xref": "paper", "yref": "paper", "x": (d[0] + d[1]) / 2, "y": 1.0, "xanchor": "center",
                    "yanchor": "top", "showarrow": False, "text": t, "font": {"size": 12}}
                   for d, t in zip(dom, titles, strict=True)]
    return _figure(data, **layout, shapes=shapes, annotations=annotations, height=height,
                   margin={"l": 0, "r": 0, "t": 22 if title else 4, "b": 0}, dragmode=False, showlegend=False,
                   title={"text": title, "font": {"size": 13}} if title else None, plot_bgcolor=OFF_COLOR,
                   **({"meta": meta} if meta is not None else {}))


def reduce_channels(crops: np.ndarray, view: str = "mean", index: int = 0) -> np.ndarray:
    """Reduce crops ndarray[V, C, PH, PW] to one displayable map per crop, ndarray[V, PH, PW].

    Views: ``"mean"`` and ``"max"`` over channels; ``"index"`` one channel; ``"pca"`` the projection on
    the first principal component of all crops' bins together (one basis for every crop, so the maps
    stay comparable on one color scale; sign fixed so the largest loading is positive).

    Example:
        >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
        >>> reduce_channels(x, "mean").tolist(), reduce_channels(x, "index", 1).tolist()
        ([[[2.0, 3.0], [4.0, 5.0]]], [[[4.0, 5.0], [6.0, 7.0]]])
    """
    x = np.asarray(crops, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"reduce_channels expects crops as ndarray[V, C, PH, PW]; got shape {x.shape}.")
    v, c, ph, pw = x.shape
    if view == "mean":
        return x.mean(axis=1)
    if view == "max":
        return x.max(axis=1)
    if view == "index":
        return x[:, int(np.clip(index, 0, c - 1))].copy()
    if view == "pca":
        data = x.transpose(0, 2, 3, 1).reshape(-1, c).astype(np.float64)  # [V*PH*PW, C]
        data = data - data.mean(axis=0, keepdims=True)
        comp = first_component(data)  # [C]
        return (data @ comp).reshape(v, ph, pw).astype(np.float32)
    raise ValueError(f"reduce_channels expects view in {CHANNEL_VIEWS}; got {view!r}.")


def first_component(data: np.ndarray, iterations: int = 60, tol: float = 1e-7) -> np.ndarray:
    """The first principal axis ndarray[C] of centred rows ndarray[M, C], by power iteration.

    A few matrix-vector products instead of a full SVD (the SVD of a [539, 1024] matrix takes
    seconds on a busy 2-core machine; this takes milliseconds). Deterministic: it starts from the
    row of largest norm. The sign is fixed so the largest-magnitude loading is positive; all-zero
    data gives a zero vector.
    """
    norms = np.einsum("mc,mc->m", data, data)
    if not np.any(norms > 0):
        return np.zeros(data.shape[1])
    v = data[int(np.argmax(norms))].copy()
    v /= np.linalg.norm(v)
    for _ in range(iterations):
        w = data.T @ (data @ v)  # [C]
        n = np.linalg.norm(w)
        if n == 0:
            break
        w /= n
        done = np.abs(w - v).max() < tol
        v = w
        if done:
            break
    return v * np.sign(v[np.argmax(np.abs(v))])


def shared_range(maps: Sequence[np.ndarray]) -> tuple[float, float]:
    """(zmin, zmax) over all finite values of all maps; (0, 1) when there are none."""
    finite = [m[np.isfinite(m)] for m in (np.asarray(a, dtype=np.float64) for a in maps)]
    finite = [f for f in finite if f.size]
    if not finite:
        return 0.0, 1.0
    lo = float(min(f.min() for f in finite))
    hi = float(max(f.max() for f in finite))
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def symmetric_range(maps: Sequence[np.ndarray]) -> float:
    """max |value| over all finite values (for difference maps); 1.0 when all are zero."""
    finite = [m[np.isfinite(m)] for m in (np.asarray(a, dtype=np.float64) for a in maps)]
    zabs = max((float(np.abs(f).max()) for f in finite if f.size), default=0.0)
    return zabs if zabs > 0 else 1.0


def figure_html(figs: go.Figure | Sequence[tuple[str, go.Figure]]) -> str:
    """A self-contained HTML page of one figure, or of titled figures (plotly.js inlined once: works offline)."""
    if isinstance(figs, go.Figure):
        return figs.to_html(include_plotlyjs=True, full_html=True)
    parts = []
    for i, (title, fig) in enumerate(figs):
        parts.append(f"<h3>{title}</h3>" + fig.to_html(include_plotlyjs=i == 0, full_html=False))
    return "<!DOCTYPE html><html><head><meta charset='utf-8'><title>ROI Lab</title></head><body>" + "".join(
        parts) + "</body></html>"
