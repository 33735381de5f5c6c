"""The Side-by-side overview and one variant's details, computed without Streamlit: one builder, two callers.

The app (:mod:`roi_lab.ui.side`) runs the pieces here through :mod:`roi_lab.ui.loaders`, which caches each
one per key; notebooks (:mod:`roi_lab.viz`) call them directly. Both end in the same figure builders of
:mod:`roi_lab.ui.figures`, through :func:`overview` and :func:`details`, so a notebook shows what the app shows.

No streamlit here; plotly only through :mod:`roi_lab.ui.figures`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import torch

from roi_lab.ui import figures, views

__all__ = ["variant_maps", "variant_crops", "variant_rgb", "overview_pictures", "crop_views_of", "overview",
           "details", "RGB_SIZE"]

RGB_SIZE = 56  # bins of the RGB read-out in the details


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


def _stack_or_nan(crops: list[torch.Tensor | None], shape: tuple[int, ...]) -> np.ndarray:
    """One float32 array [V, *shape] of the variants' crops; NaN for a variant whose op refused the input."""
    missing = np.full(shape, np.nan, np.float32)
    return np.stack([c.numpy().astype(np.float32, copy=False) if c is not None else missing for c in crops])


NOT_LINEAR = ("roi_pool",)  # ops whose crop of a channel view is not that view of the crop (a max per bin)


def variant_maps(variants: list[Any], channel_map: torch.Tensor, output_size: int,
                 features: torch.Tensor | None = None, projection: tuple[torch.Tensor, float] | None = None
                 ) -> dict[str, Any]:
    """Every variant's crops of every box from a one-channel view of the map: ndarray[V, K, PH, PW].

    ROIAlign (avg, rotated or not) and crop_and_resize are linear in the channels (every channel is
    sampled with the same weights), so the crop of a channel view (mean, one channel, a PCA projection)
    equals that view of the crop: one channel instead of C goes through the op, for all boxes at once.
    RoIPool takes a max per bin and channel, which is not linear: its full crop is taken from ``features``
    and projected with ``projection`` (``roi_lab.ui.views.channel_projection``).

    Args:
        variants (list[Variant]): from ``roi_lab.geometry.make_variants``.
        channel_map (Tensor[1, 1, h, w]): from ``roi_lab.ui.views.channel_map``.
        output_size (int): bins per side.
        features (Tensor[1, C, h, w] | None), projection ((Tensor[C], float) | None): the map and the channel
            view as a projection, for the variants of :data:`NOT_LINEAR` ops (needed when there are any).

    Returns:
        ``{"kinds": [str], "maps": ndarray[V, K, PH, PW] (NaN where refused), "errors": {kind: message}}``
    """
    from roi_lab.geometry import crop_features_for_variants

    k = len(variants[0].boxes_passed)
    linear = [i for i, v in enumerate(variants) if v.op not in NOT_LINEAR]
    crops: list[Any] = [None] * len(variants)
    found, errors = _apply_batched(
        [variants[i] for i in linear], lambda vs: crop_features_for_variants(vs, channel_map, output_size),
        lambda v: v.apply(channel_map, output_size),
    )  # [K, 1, PH, PW] each
    for i, c in zip(linear, found, strict=True):
        crops[i] = None if c is None else c[:, 0]
    others = [v for v in variants if v.op in NOT_LINEAR]
    if others:
        if features is None or projection is None:
            raise ValueError("variant_maps needs features and projection for RoIPool variants (a max per bin is "
                             "not linear in the channels); pass features=, projection=views.channel_projection(...)")
        weights, bias = projection
        full, more = _apply_all(others, lambda v: v.apply(features, output_size))  # [K, C, PH, PW] each
        errors.update(more)
        for v, c in zip(others, full, strict=True):
            crops[variants.index(v)] = None if c is None else torch.einsum("c,kchw->khw", weights, c.float()) + bias
    maps = _stack_or_nan(crops, (k, output_size, output_size))
    return {"kinds": [v.kind.value for v in variants], "maps": maps, "errors": errors}


def variant_crops(variants: list[Any], features: torch.Tensor, output_size: int) -> dict[str, Any]:
    """Every variant's full crop of every box, ndarray[V, K, C, PH, PW] (NaN where the op refused the input).

    For the "max over channels" view (not linear in the channels) and the .npz download.

    Returns:
        ``{"kinds": [str], "crops": ndarray[V, K, C, PH, PW], "errors": {kind: message}}``
    """
    from roi_lab.geometry import crop_features_for_variants

    k, c = len(variants[0].boxes_passed), int(features.shape[1])
    crops, errors = _apply_batched(
        variants, lambda vs: crop_features_for_variants(vs, features, output_size),
        lambda v: v.apply(features, output_size),
    )  # [K, C, PH, PW] each
    full = _stack_or_nan(list(crops), (k, c, output_size, output_size))
    return {"kinds": [v.kind.value for v in variants], "crops": full, "errors": errors}


def variant_rgb(variant: Any, focus: int, rgb_size: int, image: np.ndarray) -> dict[str, Any]:
    """What ``variant`` really crops from the RGB image for box ``focus``: ndarray[S, S, 3] uint8.

    Args:
        image (ndarray[H, W, 3] uint8): the image the boxes are in pixels of.

    Returns:
        ``{"rgb": ndarray[S, S, 3] uint8, "error": str | None}``: the op's message when it refused the input
        (the crop is then zeros).
    """
    from roi_lab.errors import RoiLabError

    v = variant
    one = replace(v, region_image=v.region_image[focus : focus + 1],
                  op_kwargs={**v.op_kwargs, **({"box_indices": v.op_kwargs["box_indices"][focus : focus + 1]}
                                               if "box_indices" in v.op_kwargs else {})})
    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    try:
        crop = one.apply_to_image(image_t, rgb_size)[0]  # [3, S, S] in 0..1
    except (RoiLabError, RuntimeError) as e:
        return {"rgb": np.zeros((rgb_size, rgb_size, 3), np.uint8), "error": str(e)}
    return {"rgb": (crop.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), "error": None}


def overview_pictures(variants: list[Any], focus: int, size: tuple[int, int], image: np.ndarray) -> list[np.ndarray]:
    """One picture per variant of where it samples box ``focus`` (``roi_lab.ui.thumbs.render_thumb``),
    ndarray[height, width, 3] uint8, ``size`` = (width, height)."""
    from roi_lab.ui.thumbs import render_thumb

    h, w = image.shape[:2]
    side = 2 * max(size)  # a small copy to draw from: resizing it per picture is cheap
    small = image if max(h, w) <= side else cv2.resize(
        image, (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w)))),
        interpolation=cv2.INTER_AREA)
    out = []
    for v in variants:
        pts = v.points_image[focus][: int(v.num_points[focus])]
        polygon, meant = v.polygon_image, v.polygon_meant
        pic, _ = render_thumb(small, (h, w), v.boxes_meant[focus].numpy(), v.region_image[focus].numpy(),
                              pts.numpy(), size, region_polygon=None if polygon is None else polygon[focus].numpy(),
                              intended_polygon=None if meant is None else meant[focus].numpy())
        out.append(pic)
    return out


def crop_views_of(variants: list[Any], features: torch.Tensor, view: str, index: int, output_size: int, *,
                  full: Callable[[], dict[str, Any]] | None = None,
                  of_view: Callable[[], dict[str, Any]] | None = None) -> tuple[views.CropViews, dict[str, str]]:
    """One channel view of every variant's crop of box 0: the max over the full crops (``view="max"``, not
    linear in the channels), else the crops of the map's channel view (crop of a view == view of the crop).

    ``full()`` / ``of_view()`` give :func:`variant_crops` / :func:`variant_maps` of these variants; by default
    computed here (notebooks), the app passes its cached loaders (``roi_lab.ui.side.compute``).
    """
    refs = views.reference_indices(variants)
    if view == "max":
        crops = full() if full is not None else variant_crops(variants, features, output_size)
        return views.crop_views(crops["crops"][:, 0], "max", refs=refs), crops["errors"]
    maps = of_view() if of_view is not None else variant_maps(variants, views.channel_map(features, view, index),
                                                             output_size, features,
                                                             views.channel_projection(features, view, index))
    return views.crop_views(maps["maps"][:, 0], refs=refs), maps["errors"]


def overview(variants: list[Any], crops: views.CropViews, errors: dict[str, str], pictures: list[np.ndarray],
             *, scale: float = 1.0, view: str = "mean", meta: Any = None) -> tuple[list[views.Verdict], Any]:
    """The verdicts and the overview figure (``figures.overview_figure``) of the variants of one box.

    Args:
        variants (list[Variant]): of one box (K = 1), your settings first.
        crops (CropViews), errors: from :func:`crop_views_of` (or the app's cached equivalent).
        pictures (list[ndarray]): from :func:`overview_pictures`.
        scale (float): working / original image size (the verdicts' offsets are in original px).
    """
    verdicts = views.verdicts(variants, 0, crops.maps, scale, errors)
    refs = views.reference_indices(variants)
    own = [i for i, j in enumerate(refs) if i == j]  # the references: your settings, the rotated one
    fig = figures.overview_figure(verdicts, pictures, crops.maps, crops.zmin, crops.zmax, view=view, meta=meta,
                                  group_start=own[1] if len(own) > 1 else None, framed=own)
    return verdicts, fig


def details(variants: list[Any], i: int, crops: views.CropViews, summary: np.ndarray, box_image: Any,
            stride: float, image: tuple[str, float], image_size: tuple[int, int], rgb: np.ndarray,
            meta: Any = None, title: str = "") -> Any:
    """Variant ``i`` of one box in detail (``figures.details_figure``): the feature map with the regions, the
    samples on the image, the RGB read-out, its crop and its difference to your settings' crop.

    Args:
        box_image (ndarray[4]): the box meant, xyxy image px.
        summary (ndarray[h, w]): the feature map's summary (``roi_lab.backbone.feature_summary``).
        image ((uri, uri_scale)): the image as a data URI (``figures.image_data_uri``) and its scale.
        rgb (ndarray[S, S, 3] uint8): from :func:`variant_rgb`.
    """
    panel = views.panel_data(variants[i], 0)
    box = np.asarray(box_image, dtype=np.float64).reshape(4)
    polygons = None
    if panel.polygon_image is not None and panel.polygon_meant is not None:
        polygons = {"region_image": panel.polygon_image, "intended_image": panel.polygon_meant,
                    "region_feature": panel.polygon_image / stride - 0.5,
                    "intended_feature": panel.polygon_meant / stride - 0.5}
    reference = "your settings'" if views.reference_indices(variants)[i] == 0 else "the rotated reference's"
    return figures.details_figure(
        summary, panel.regions_feature, views.intended_feature(box[None], stride), 0, image, image_size,
        panel.points_image, panel.region_image, box, figures.image_data_uri(rgb, fmt="png")[0],
        crops.maps[i], crops.diffs[i], crops.zmin, crops.zmax, crops.zabs, meta=meta, title=title,
        polygons=polygons, diff_title=f"minus {reference} crop",
    )
