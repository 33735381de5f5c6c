"""ROI Lab: see and check what reaches ROIAlign / CropAndResize.

The headless core. Public names are loaded on first use, so ``import roi_lab`` stays cheap and
never imports streamlit or plotly (those live in :mod:`roi_lab.ui` only).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from roi_lab import _limits  # noqa: F401  (first: sets OPENCV_IO_MAX_IMAGE_PIXELS before any cv2 import)

__version__ = "0.2.0.dev0"  # the one version source: pyproject reads it (tool.setuptools.dynamic)

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # ops
    "roi_align": "roi_lab.ops.roi_align",
    "RoIAlign": "roi_lab.ops.roi_align",
    "crop_and_resize": "roi_lab.ops.crop_and_resize",
    "roi_pool": "roi_lab.ops.roi_pool",
    "RoIPool": "roi_lab.ops.roi_pool",
    "roi_align_rotated": "roi_lab.ops.roi_align_rotated",
    "ROIAlignRotated": "roi_lab.ops.roi_align_rotated",
    "assign_fpn_levels": "roi_lab.ops.fpn",
    "fpn_level_table": "roi_lab.ops.fpn",
    "multi_scale_roi_align": "roi_lab.ops.fpn",
    "MultiScaleRoIAlign": "roi_lab.ops.fpn",
    # boxes, geometry
    "BoxFormat": "roi_lab.boxes",
    "BoxSpace": "roi_lab.boxes",
    "convert_boxes": "roi_lab.boxes",
    "to_rois": "roi_lab.boxes",
    "to_tf_boxes": "roi_lab.boxes",
    "read_boxes": "roi_lab.boxes",
    "write_boxes": "roi_lab.boxes",
    "LabeledBoxes": "roi_lab.boxes",
    "FeatureGeometry": "roi_lab.geometry",
    "feature_geometry": "roi_lab.geometry",
    "VariantKind": "roi_lab.geometry",
    "Variant": "roi_lab.geometry",
    "make_variants": "roi_lab.geometry",
    "resnet_feature_size": "roi_lab.geometry",
    # findings
    "diagnose": "roi_lab.diagnose",
    "Finding": "roi_lab.diagnose",
    "has_errors": "roi_lab.diagnose",
    "explain_error": "roi_lab.explain",
    "Explanation": "roi_lab.explain",
    # capture from the user's own pipeline
    "capture": "roi_lab.capture",
    "load_capture": "roi_lab.capture",
    "CapturedCall": "roi_lab.capture",
    # models and images
    "load_backbone": "roi_lab.backbone",
    "Backbone": "roi_lab.backbone",
    "decode_image": "roi_lab.image",
    "BACKBONES": "roi_lab.backbone",
    "backbone_info": "roi_lab.backbone",
    "feature_summary": "roi_lab.backbone",
    "pick_channel": "roi_lab.backbone",
    "resize_to_max_side": "roi_lab.image",
    "read_image_size": "roi_lab.image",
    "Sample": "roi_lab.samples",
    "list_samples": "roi_lab.samples",
    "load_sample": "roi_lab.samples",
    "make_synthetic_scene": "roi_lab.samples",
    # errors
    "RoiLabError": "roi_lab.errors",
    "ShapeError": "roi_lab.errors",
    "InputValueError": "roi_lab.errors",
    "DeviceMismatchError": "roi_lab.errors",
    "DTypeError": "roi_lab.errors",
    "ImageDecodeError": "roi_lab.errors",
    "BoxFileError": "roi_lab.errors",
    "NotSupportedError": "roi_lab.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what type checkers see: the lazily loaded names, with their real types
    from roi_lab.backbone import (
        BACKBONES as BACKBONES,
        Backbone as Backbone,
        backbone_info as backbone_info,
        feature_summary as feature_summary,
        load_backbone as load_backbone,
        pick_channel as pick_channel,
    )
    from roi_lab.boxes import (
        BoxFormat as BoxFormat,
        BoxSpace as BoxSpace,
        LabeledBoxes as LabeledBoxes,
        convert_boxes as convert_boxes,
        read_boxes as read_boxes,
        to_rois as to_rois,
        to_tf_boxes as to_tf_boxes,
        write_boxes as write_boxes,
    )
    from roi_lab.capture import CapturedCall as CapturedCall, load_capture as load_capture
    from roi_lab.diagnose import Finding as Finding, has_errors as has_errors
    from roi_lab.errors import (
        BoxFileError as BoxFileError,
        DeviceMismatchError as DeviceMismatchError,
        DTypeError as DTypeError,
        ImageDecodeError as ImageDecodeError,
        InputValueError as InputValueError,
        NotSupportedError as NotSupportedError,
        RoiLabError as RoiLabError,
        ShapeError as ShapeError,
    )
    from roi_lab.explain import Explanation as Explanation, explain_error as explain_error
    from roi_lab.geometry import (
        FeatureGeometry as FeatureGeometry,
        Variant as Variant,
        VariantKind as VariantKind,
        feature_geometry as feature_geometry,
        make_variants as make_variants,
        resnet_feature_size as resnet_feature_size,
    )
    from roi_lab.image import (
        decode_image as decode_image,
        read_image_size as read_image_size,
        resize_to_max_side as resize_to_max_side,
    )
    from roi_lab.ops.crop_and_resize import crop_and_resize as crop_and_resize
    from roi_lab.ops.fpn import (
        MultiScaleRoIAlign as MultiScaleRoIAlign,
        assign_fpn_levels as assign_fpn_levels,
        fpn_level_table as fpn_level_table,
        multi_scale_roi_align as multi_scale_roi_align,
    )
    from roi_lab.ops.roi_align import RoIAlign as RoIAlign, roi_align as roi_align
    from roi_lab.ops.roi_align_rotated import ROIAlignRotated as ROIAlignRotated, roi_align_rotated as roi_align_rotated
    from roi_lab.ops.roi_pool import RoIPool as RoIPool, roi_pool as roi_pool
    from roi_lab.samples import (
        Sample as Sample,
        list_samples as list_samples,
        load_sample as load_sample,
        make_synthetic_scene as make_synthetic_scene,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'roi_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


# `diagnose` names both a submodule and its function, and so does `capture` (a package). Importing the
# submodule (``import roi_lab.diagnose``) binds the module as an attribute of this package on its first load,
# which would shadow the lazily loaded function; binding the functions here, after that first load, keeps
# ``roi_lab.diagnose`` and ``roi_lab.capture`` the functions for good. roi_lab.capture imports roi_lab.diagnose,
# so diagnose is bound last.
from roi_lab.capture import capture as capture  # noqa: E402
from roi_lab.diagnose import diagnose as diagnose  # noqa: E402
