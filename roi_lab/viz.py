"""Notebook figures: the app's own figures for your image, feature map and boxes, as ``plotly`` figures.

Each function returns a ``plotly.graph_objects.Figure`` (a notebook shows it; ``fig.write_html(path)`` saves it)
built by the same code as the app's Side-by-side page: the variants from :func:`roi_lab.make_variants`, their
crops, pictures and verdicts from :mod:`roi_lab.ui.overview`, the figures from :mod:`roi_lab.ui.figures`.

- :func:`boxes_figure`: the image with the boxes drawn where ROIAlign reads them.
- :func:`side_by_side`: one box passed with your settings and in every common wrong way (image-space boxes,
  the wrong stride, y/x swapped, normalized vs pixels, ``aligned`` flipped, TF's ``crop_and_resize``, ...): where
  each samples, its crop on one colour scale, and its verdict in words.
- :func:`variant_details`: one of those variants in detail: the feature map with the sampled region, the
  sample points on the image, what it reads (RGB), its crop and the difference to your settings' crop.

Needs plotly, imported on first use (``import roi_lab.viz`` stays light): ``pip install 'roi-lab[viz]'``, or
``'roi-lab[app]'`` for the app too. Streamlit is not needed.

Convention:
    ``image`` is the image the backbone saw, ndarray[H, W, 3] uint8 RGB (or Tensor[3, H, W] in 0..1);
    ``boxes_image`` are xyxy in its pixels (corners: pixel ``i`` covers ``[i, i + 1)``); ``features`` is the
    map pooled from, Tensor[N, C, h, w]; its stride is inferred as ``2 ** round(log2(H / h))`` unless given.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch

from roi_lab.errors import InputValueError, ShapeError, describe

__all__ = ["boxes_figure", "side_by_side", "variant_details", "VIEWS"]

VIEWS = ("mean", "max", "index", "pca")  # the channel views of the crops (roi_lab.ui.figures.CHANNEL_VIEWS)
INSTALL = "pip install 'roi-lab[viz]' (or 'roi-lab[app]' for the app too)"


def _builders() -> tuple[Any, Any]:
    """``roi_lab.ui.figures`` and ``roi_lab.ui.overview``, or a clear error when plotly is not installed."""
    if importlib.util.find_spec("plotly") is None:
        raise ModuleNotFoundError(f"roi_lab.viz draws with plotly, which is not installed: {INSTALL}", name="plotly")
    from roi_lab.ui import figures, overview

    return figures, overview


def _image(image: Any, where: str) -> np.ndarray:
    """ndarray[H, W, 3] uint8 RGB from an RGB array (uint8, or float in 0..1), a gray array, or Tensor[(1,) 3, H, W]."""
    x = image
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() == 3 and x.shape[0] in (1, 3):
            x = x.permute(1, 2, 0)
        x = x.numpy()
    if isinstance(x, np.ndarray) and x.ndim == 2:
        x = x[:, :, None]
    if isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    if not (isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[2] == 3 and min(x.shape[:2]) >= 1
            and x.dtype.kind in "uif"):
        raise ShapeError(
            f"{where}(image=...)",
            expected="an RGB image ndarray[H, W, 3] uint8 (or float in 0..1, a gray ndarray[H, W], Tensor[3, H, W])",
            got=describe(image),
            fix="e.g. image, _ = roi_lab.load_sample('coffee'), or cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)",
        )
    if x.dtype != np.uint8:
        x = np.nan_to_num(x.astype(np.float64), nan=0.0)
        x = np.clip(np.round(x * 255.0 if x.max(initial=0) <= 1.0 else x), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def _features(features: Any, batch_index: int, where: str) -> torch.Tensor:
    """Tensor[1, C, h, w] float32 on the CPU: image ``batch_index`` of the map."""
    f = features
    if isinstance(f, torch.Tensor) and f.dim() == 3:
        f = f[None]
    if not (isinstance(f, torch.Tensor) and f.dim() == 4 and f.is_floating_point() and min(f.shape) >= 1):
        raise ShapeError(
            f"{where}(features=...)",
            expected="the feature map pooled from, a floating Tensor[N, C, h, w]",
            got=describe(features),
            fix="pass your backbone's output for the image, "
            "e.g. roi_lab.load_backbone('resnet50').features(image)['C4']",
        )
    if isinstance(batch_index, bool) or not isinstance(batch_index, int) or not 0 <= batch_index < f.shape[0]:
        raise InputValueError(
            f"{where}(batch_index=...)",
            expected=f"an image index in [0, {f.shape[0] - 1}] of the features' batch",
            got=describe(batch_index),
            fix="batch_index=0",
        )
    return f[batch_index : batch_index + 1].detach().to("cpu", torch.float32).contiguous()


def _boxes(boxes_image: Any, where: str) -> torch.Tensor:
    from roi_lab.boxes import as_boxes

    b = as_boxes(boxes_image, where, "boxes_image").float().cpu()
    if not len(b):
        raise ShapeError(f"{where}(boxes_image=...)", expected="at least one box, Tensor[K, 4] xyxy image px",
                         got=describe(boxes_image), fix="e.g. [[120, 200, 560, 480]]")
    return b


def _box_index(box: Any, k: int, where: str) -> int:
    if isinstance(box, bool) or not isinstance(box, int) or not -k <= box < k:
        raise InputValueError(f"{where}(box=...)", expected=f"the index of one of the {k} boxes, in [0, {k - 1}]",
                              got=describe(box), fix="box=0")
    return box % k


def _view(view: Any, where: str) -> str:
    if view not in VIEWS:
        raise InputValueError(f"{where}(view=...)", expected=f"one of {', '.join(VIEWS)}", got=describe(view),
                              fix="view='mean'")
    return str(view)


def _variants(where: str, image: Any, features: Any, boxes_image: Any, box: int, stride: Any, output_size: int,
              sampling_ratio: int, aligned: bool, batch_index: int,
              angle_degrees: float) -> tuple[np.ndarray, torch.Tensor, list[Any], float, int]:
    """(image, map, the variants of box ``box``, the stride used, that box's index) for one figure."""
    from roi_lab.geometry import feature_geometry, make_variants

    img = _image(image, where)
    feats = _features(features, batch_index, where)
    b = _boxes(boxes_image, where)
    i = _box_index(box, len(b), where)
    h, w = img.shape[:2]
    fh, fw = int(feats.shape[-2]), int(feats.shape[-1])
    if stride is None:
        stride = feature_geometry((h, w), (fh, fw)).nominal_stride
    variants = make_variants(b[i : i + 1], image_size=(h, w), feature_size=(fh, fw), stride=stride,
                             output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned,
                             angle_degrees=angle_degrees)
    return img, feats, variants, float(variants[0].stride[0]), i


def boxes_figure(image: Any, boxes_image: Any, labels: Any = None, *, height: int = 480, max_side: int = 800) -> Any:
    """The image with the boxes drawn on it, in its own pixels (the app's image figure).

    Args:
        image (ndarray[H, W, 3] uint8): RGB (see the module's Convention).
        boxes_image (Tensor[K, 4]): xyxy image px.
        labels (list[str] | None): one per box, drawn at its top-left corner; None: the box numbers.
        height (int): figure height in CSS px.
        max_side (int): the image is sent downscaled to this longer side (the axes stay in full pixels).

    Returns:
        plotly.graph_objects.Figure
    """
    figures, _ = _builders()
    where = "roi_lab.viz.boxes_figure"
    img = _image(image, where)
    b = _boxes(boxes_image, where).numpy()
    labels = [str(k) for k in range(len(b))] if labels is None else [str(x) for x in labels]
    uri, scale = figures.image_data_uri(img, max_side)
    return figures.image_figure(uri, img.shape[:2], b, labels, uri_scale=scale, selectable=False, height=height)


def side_by_side(image: Any, features: Any, boxes_image: Any, *, box: int = 0, stride: float | None = None,
                 output_size: int = 7, sampling_ratio: int = 2, aligned: bool = True, view: str = "mean",
                 channel: int = 0, batch_index: int = 0, angle_degrees: float = 30.0) -> Any:
    """Box ``box`` passed with your settings and in every common wrong way: the app's Side-by-side overview.

    Per variant (your settings first, framed): a picture of where it samples (the whole image and the whole
    sampled region, off-image hatched), its crop (one colour scale for all, hover for values) and its verdict
    (IoU with the box, % of samples off the map, how far its edges are off, how much its crop differs).

    Args:
        image (ndarray[H, W, 3] uint8), features (Tensor[N, C, h, w]), boxes_image (Tensor[K, 4]): see the
            module's Convention.
        box (int): the box shown.
        stride (float | None): the map's nominal stride; None: inferred from the sizes.
        output_size, sampling_ratio, aligned: your roi_align call's settings.
        view (str): the crops' channel view: ``"mean"``, ``"max"``, ``"index"`` (channel ``channel``), ``"pca"``.
        batch_index (int): the image of the features' batch the boxes belong to.
        angle_degrees (float): the rotated panels turn the box by this angle, counter-clockwise.

    Returns:
        plotly.graph_objects.Figure
    """
    figures, overview = _builders()
    where = "roi_lab.viz.side_by_side"
    view = _view(view, where)
    img, feats, variants, _, _ = _variants(where, image, features, boxes_image, box, stride, output_size,
                                           sampling_ratio, aligned, batch_index, angle_degrees)
    crops, errors = overview.crop_views_of(variants, feats, view, channel, output_size)
    pictures = overview.overview_pictures(variants, 0, figures.PICTURE_SIZE, img)
    _, fig = overview.overview(variants, crops, errors, pictures, view=view)
    return fig


def variant_details(image: Any, features: Any, boxes_image: Any, kind: Any = "image_space_boxes", *, box: int = 0,
                    stride: float | None = None, output_size: int = 7, sampling_ratio: int = 2, aligned: bool = True,
                    view: str = "mean", channel: int = 0, batch_index: int = 0, angle_degrees: float = 30.0) -> Any:
    """One variant of box ``box`` in detail: the app's details figure (five panels).

    The feature map with the region the variant samples (solid) and the box meant (dashed), its sample points
    on the image, what it reads from the image (RGB), its crop, and the crop minus your settings' crop.

    Args:
        kind (str | roi_lab.VariantKind): the variant, e.g. ``"image_space_boxes"``, ``"wrong_stride_x2"``,
            ``"yx_swapped"``, ``"tf_crop_and_resize"``, ``"roi_pool"``, ``"clockwise_flipped"``; ``"correct"`` is
            your own settings.
        The others: as for :func:`side_by_side`.

    Returns:
        plotly.graph_objects.Figure
    """
    figures, overview = _builders()
    from roi_lab.backbone import feature_summary
    from roi_lab.geometry import VariantKind

    where = "roi_lab.viz.variant_details"
    view = _view(view, where)
    kinds = [k.value for k in VariantKind]
    value = kind.value if isinstance(kind, VariantKind) else kind
    if value not in kinds:
        raise InputValueError(f"{where}(kind=...)", expected=f"one of {', '.join(kinds)}", got=describe(kind),
                              fix="kind='image_space_boxes'")
    img, feats, variants, stride_used, i = _variants(where, image, features, boxes_image, box, stride, output_size,
                                                     sampling_ratio, aligned, batch_index, angle_degrees)
    j = [v.kind.value for v in variants].index(value)
    crops, _ = overview.crop_views_of(variants, feats, view, channel, output_size)
    rgb = overview.variant_rgb(variants[j], 0, overview.RGB_SIZE, img)
    box_image = _boxes(boxes_image, where)[i].numpy()
    return overview.details(variants, j, crops, feature_summary(feats, "mean"), box_image, stride_used,
                            figures.image_data_uri(img, 320), img.shape[:2], rgb["rgb"],
                            meta={"kind": value}, title=variants[j].title)
