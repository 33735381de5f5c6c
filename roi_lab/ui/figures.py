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
    "image_figure",
    "feature_map_figure",
    "points_figure",
    "crop_heatmap",
    "diff_heatmap",
    "rgb_figure",
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
        shapes=box_shapes(boxes, color=REGION_COLOR, width=2),
        annotations=annotations,
        dragmode="select" if selectable else "pan",
        selectdirection="any",
        newselection={"line": {"color": INTENDED_COLOR, "width": 2}},
        height=height,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        showlegend=False,
        **_pixel_axes(w, h, show=True),
    )
    return fig


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

    Args:
        summary (ndarray[h, w] float | ndarray[h, w, 3] uint8): from ``roi_lab.backbone.feature_summary``.
        regions_feature (ndarray[K, 4]): xyxy feature sample coordinates: where the op really samples.
        intended_feature (ndarray[K, 4]): xyxy feature sample coordinates: where it should sample.
        focus (int | None): the box drawn thicker.
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
    if focus is not None and 0 <= focus < len(regions) and np.all(np.isfinite(regions[focus])):
        # widen the view to the focus region (capped) so a region that leaves the map is seen leaving it
        x1, y1, x2, y2 = regions[focus]
        cap_x, cap_y = 2.0 * fw, 2.0 * fh
        axes["xaxis"]["range"] = [max(min(-0.5, x1 - 1), -cap_x), min(max(fw - 0.5, x2 + 1), fw + cap_x)]
        axes["yaxis"]["range"] = [min(max(fh - 0.5, y2 + 1), fh + cap_y), max(min(-0.5, y1 - 1), -cap_y)]
    fig = _figure(
        [trace],
        shapes=shapes,
        title={"text": title, "font": {"size": 12}},
        height=height,
        margin=_MARGIN,
        dragmode=False,
        **axes,
    )
    return fig


def points_figure(
    image_uri: str,
    image_size: tuple[int, int],
    points_image: np.ndarray,
    region_image: np.ndarray,
    intended_image: np.ndarray,
    *,
    uri_scale: float = 1.0,
    title: str = "",
    height: int = 240,
) -> go.Figure:
    """The image with one box's sampling points (scatter), the region sampled and the intended box.

    Args:
        points_image (ndarray[P, 2]): (x, y) image px.
        region_image (ndarray[4]): xyxy image px, what the op samples.
        intended_image (ndarray[4]): xyxy image px, the box the user meant.
    """
    h, w = image_size
    pts = np.asarray(points_image, dtype=np.float64).reshape(-1, 2)
    scatter = {"type": "scatter", "x": pts[:, 0], "y": pts[:, 1], "mode": "markers",
               "marker": {"size": 3, "color": REGION_COLOR}, "hoverinfo": "skip", "showlegend": False}
    shapes = box_shapes(intended_image, color=INTENDED_COLOR, dash="dash", width=2) + box_shapes(
        region_image, color=REGION_COLOR, width=2
    )
    # show the whole image plus any points that fall outside it
    x_lo = min(0.0, float(pts[:, 0].min())) if len(pts) else 0.0
    x_hi = max(float(w), float(pts[:, 0].max())) if len(pts) else float(w)
    y_lo = min(0.0, float(pts[:, 1].min())) if len(pts) else 0.0
    y_hi = max(float(h), float(pts[:, 1].max())) if len(pts) else float(h)
    axes = _pixel_axes(w, h)
    axes["xaxis"]["range"] = [x_lo, x_hi]
    axes["yaxis"]["range"] = [y_hi, y_lo]
    fig = _figure(
        [_image_trace(image_uri, uri_scale), scatter],
        shapes=shapes, title={"text": title, "font": {"size": 12}}, height=height, margin=_MARGIN, dragmode=False,
        **axes,
    )
    return fig


def crop_heatmap(crop: np.ndarray, zmin: float, zmax: float, *, title: str = "", height: int = 200,
                 colorscale: str = "Viridis") -> go.Figure:
    """One crop's channel view, ndarray[PH, PW], on a shared color scale ``[zmin, zmax]``."""
    fig = _figure(
        [
            {
                "type": "heatmap",
                "z": np.asarray(crop, dtype=np.float32),
                "zmin": zmin,
                "zmax": zmax,
                "colorscale": colorscale,
                "colorbar": {"thickness": 8, "len": 0.9},
                "hovertemplate": "bin (%{y}, %{x}): %{z:.3g}<extra></extra>",
            }
        ],
        title={"text": title, "font": {"size": 12}}, height=height, margin=_MARGIN, dragmode=False,
        yaxis={"autorange": "reversed", "scaleanchor": "x", "visible": False}, xaxis={"visible": False},
    )
    return fig


def diff_heatmap(diff: np.ndarray, zabs: float, *, title: str = "", height: int = 200) -> go.Figure:
    """Difference to the correct crop, ndarray[PH, PW], on a shared symmetric scale ``[-zabs, zabs]``."""
    return crop_heatmap(diff, -zabs, zabs, title=title, height=height, colorscale="RdBu_r")


def rgb_figure(crop: np.ndarray, *, title: str = "", height: int = 200) -> go.Figure:
    """What an op cropped from the RGB image: ndarray[PH, PW, 3] uint8."""
    fig = _figure(
        [{"type": "image", "z": np.asarray(crop, dtype=np.uint8), "hoverinfo": "skip"}],
        title={"text": title, "font": {"size": 12}}, height=height, margin=_MARGIN, dragmode=False,
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
    )
    return fig


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
