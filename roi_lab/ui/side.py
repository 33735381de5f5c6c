"""What the Side-by-side page shows, computed from the cached pieces in :mod:`roi_lab.ui.loaders`.

The page draws; this module decides what: the variants of the boxes for your settings, one channel
view of every variant's crop of the box shown, the verdicts, the overview's pictures and figure.
Everything per rerun is either a cache hit or small (one-channel crops, 17 small pictures), which
keeps a change of the box shown, the channel view or a setting well under the page's 150 ms budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roi_lab.ui import figures, loaders, overview, views

__all__ = ["SideData", "compute", "details", "state_meta"]

RGB_SIZE = overview.RGB_SIZE  # bins of the RGB read-out in the details


@dataclass(frozen=True)
class SideData:
    """Everything the overview needs for one box and one set of settings."""

    variants: list[Any]  # of the box shown only (K = 1)
    variants_key: tuple
    crops: views.CropViews  # maps [V, PH, PW] of the box shown, shared ranges, differences to yours
    errors: dict[str, str]  # kind -> the op's message, for variants whose input it refused
    verdicts: list[views.Verdict]
    figure: Any  # the overview figure


def compute(src: Any, feats: Any, stride: int, boxes: Any, settings: Any, view: str, index: int,
            focus: int) -> SideData:
    """The overview for box ``focus``.

    Args:
        src (roi_lab.ui.source.Source): where the image and features come from (cache keys).
        feats (Tensor[1, C, h, w]): the feature map (CPU).
        stride (int): its nominal stride.
        boxes (roi_lab.ui.source.ModelBoxes): the usable boxes.
        settings (CropSettings): output size, sampling ratio, aligned of your call.
        view, index: the channel view (``"mean"``, ``"max"``, ``"index"`` with ``index``, ``"pca"``).
    """
    working = src.working()
    h, w = working.size
    fh, fw = int(feats.shape[-2]), int(feats.shape[-1])
    sig = tuple(tuple(round(float(v), 3) for v in row) for row in boxes.model)
    # the variants of the box shown only: a new box, a dragged one included, costs one box's variants and crops
    variants_key = ((sig[focus],), (h, w), (fh, fw), stride, settings.output_size, settings.sampling_ratio,
                    settings.aligned, settings.angle_degrees)
    variants = loaders.variants(*variants_key)
    crops, errors = overview.crop_views_of(  # the notebook's path (roi_lab.viz), through the cached loaders
        variants, feats, view, index, settings.output_size,
        full=lambda: loaders.variant_crops(src.feature_key, variants_key, settings.output_size, variants, feats),
        of_view=lambda: loaders.variant_maps((src.feature_key, view, index), variants_key, settings.output_size,
                                             variants, loaders.channel_map(src.feature_key, view, index, feats),
                                             feats),
    )
    pictures = loaders.overview_pictures(src.image_key, variants_key, 0, figures.PICTURE_SIZE, variants,
                                         working.image)
    verdicts, fig = overview.overview(variants, crops, errors, pictures, scale=boxes.scale, view=view,
                                      meta=state_meta(len(sig), focus, view, index, settings))
    return SideData(variants, variants_key, crops, errors, verdicts, fig)


def state_meta(boxes: int, focus: int, view: str, index: int, settings: Any, kind: str | None = None) -> dict:
    """What a figure shows, as plotly ``layout.meta``: the browser benchmark and test wait for it to change."""
    meta = {"boxes": boxes, "focus": focus, "view": view, "index": index, "output_size": settings.output_size,
            "sampling_ratio": settings.sampling_ratio, "aligned": settings.aligned, "angle": settings.angle_degrees}
    return meta if kind is None else {**meta, "kind": kind}


def details(src: Any, feats: Any, stride: int, boxes: Any, data: SideData, kind: str, focus: int,
            meta: dict | None = None) -> dict[str, Any]:
    """One variant in detail: its figure (feature map, samples on the image, RGB read-out, crop, difference),
    the variant, its verdict and the op's message if it refused the image crop."""
    working = src.working()
    i = [v.kind.value for v in data.variants].index(kind)
    summary = loaders.summary(src.feature_key, "mean", feats)
    rgb = loaders.variant_rgb(src.image_key, data.variants_key, i, 0, RGB_SIZE, data.variants, working.image)
    image = loaders.image_uri(src.image_hash, src.max_side, 320, working.image)
    fig = overview.details(data.variants, i, data.crops, summary, boxes.model[focus], stride, image, working.size,
                           rgb["rgb"], meta={**(data.figure.layout.meta or {}), **(meta or {}), "kind": kind})
    return {"variant": data.variants[i], "verdict": data.verdicts[i], "figure": fig, "rgb_error": rgb["error"]}
