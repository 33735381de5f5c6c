"""Record every ROI pooling call of a real model, and diagnose each one.

``with roi_lab.capture() as cap: model(images)`` records, for every call of ``torchvision.ops.roi_align`` /
``RoIAlign`` / ``roi_pool`` / ``RoIPool`` / ``ps_roi_align`` / ``MultiScaleRoIAlign`` (every pooler inside
torchvision's Faster / Mask / Keypoint R-CNN), ``roi_lab.roi_align`` / ``crop_and_resize`` /
``MultiScaleRoIAlign``, detectron2's ``ROIPooler`` and mmcv's ``RoIAlign`` (when installed) and direct
``torch.ops.torchvision.*`` pooling ops: who called it, the map's shape, dtype and device, a CPU copy of the
boxes as passed, the parameters, for multi-scale poolers the per-level scales and the level of every box,
the image size the boxes refer to, and the op's error if it raised. Each call's ``findings`` are
:func:`roi_lab.diagnose` on it (per pyramid level for multi-scale poolers).

What it costs and what it changes:
    The ops still run, unchanged, on the arguments given (the wrappers call the originals; see
    :mod:`roi_lab.capture._hooks`). Per call: a copy of the boxes to CPU (a device sync on CUDA) and a walk
    up the stack, a few tenths of a millisecond; per torch function call in the block, one Python call of
    the TorchFunctionMode (a few microseconds); entering and leaving the outermost capture, a few ms (a scan
    of ``sys.modules``). Findings are computed when first read, not during the run. The feature maps are
    copied only with ``keep_features=True``; everything kept (boxes, levels, maps, image batches) stays within
    ``max_bytes``, and what did not fit is listed in ``cap.dropped`` and the call's ``dropped``.

Scope:
    Calls in the ``with`` block's thread (and contexts copied from it) are recorded; other threads are not,
    unless they open their own capture. Nested captures each record what runs inside them. Everything is
    restored when the last capture ends, also when the model raises. Not seen: TorchScript'ed models (the
    interpreter bypasses Python), and aliases of the roi_lab ops taken before the capture (``from roi_lab
    import roi_align as ra``; torchvision's ops are still seen through the mode). ``torch.compile`` traces
    as if no capture were active (no graph breaks); a compiled region's pooling is recorded only where the
    compiled code still calls the torchvision op through Python (as the ``eager`` backend does), at op level.

Example:
    >>> import torch, torchvision, roi_lab
    >>> features = torch.zeros(1, 8, 50, 64)  # stride 16 of an 800 x 1024 image
    >>> rois = torch.tensor([[0.0, 100, 50, 900, 600]])  # image pixels
    >>> with roi_lab.capture(image_size=(800, 1024)) as cap:
    ...     _ = torchvision.ops.roi_align(features, rois, 7, spatial_scale=1.0)  # forgot 1/16
    >>> call = cap.calls[0]
    >>> call.op, call.box_format, call.feature_shape, call.spatial_scale
    ('torchvision.ops.roi_align', 'rois [K,5]', (1, 8, 50, 64), 1.0)
    >>> [f.code for f in call.findings]
    ['IMAGE_SPACE_BOXES']
"""

from __future__ import annotations

from typing import Any

from roi_lab.capture._file import CaptureFileError, load_capture
from roi_lab.capture._records import CapturedCall, CapturedImages
from roi_lab.capture._script import DEFAULT_OUTPUT, run_script
from roi_lab.capture._session import DEFAULT_MAX_BYTES, Capture

__all__ = [
    "Capture",
    "CaptureFileError",
    "CapturedCall",
    "CapturedImages",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_OUTPUT",
    "capture",
    "load_capture",
    "run_script",
]


def capture(*, image_size: Any = None, keep_features: bool = False, max_bytes: int = DEFAULT_MAX_BYTES) -> Capture:
    """A context manager that records every ROI pooling call made inside its ``with`` block.

    Args:
        image_size ((H, W) | None): the image (for a padded batch, the padded size) the boxes are in pixels
            of. None: taken from the last ``GeneralizedRCNNTransform`` output of a torchvision detection
            model, else from a multi-scale pooler's ``image_shapes``, else unknown (the findings then use
            only what the map and the boxes show).
        keep_features (bool): also keep a CPU copy of each call's feature map(s) and of the transformed
            image batch (for the app); off by default.
        max_bytes (int): the most bytes of tensors kept in total (boxes first, then maps and image batches);
            256 MiB. What does not fit is dropped and listed in ``cap.dropped`` (a call whose boxes are
            dropped is diagnosed on the spot, so its findings remain).

    Returns:
        Capture: use it as ``with roi_lab.capture() as cap:``; afterwards ``cap.calls``, ``cap.findings()``,
        ``cap.summary()``, ``cap.save(path)``.

    Raises:
        InputValueError: a malformed ``image_size``, ``keep_features`` or ``max_bytes``.
    """
    return Capture(image_size=image_size, keep_features=keep_features, max_bytes=max_bytes)
