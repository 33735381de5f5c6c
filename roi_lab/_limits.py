"""Bounds on hostile input, in one place, and OpenCV's own pixel limit (set before cv2 loads).

Every reader of user input in ROI Lab is bounded by one of these numbers; the error that refuses an input
names the bound and how to get under it.

OpenCV reads ``OPENCV_IO_MAX_IMAGE_PIXELS`` once, when ``cv2`` is first imported, and from then on refuses
(``cv2.error``) any image whose size, *as its own decoder reads the header*, exceeds it, before allocating
the pixels. That is the guard behind :func:`roi_lab.image.decode_image`'s header check that does not depend
on ROI Lab's header parsers agreeing with OpenCV's. ``roi_lab/__init__`` imports this module first, so the
variable is set before any ROI Lab module imports ``cv2``; a value already in the environment is kept. When
``cv2`` was imported before ``roi_lab``, OpenCV keeps what it read then (its default is 2**30 pixels) and
:data:`OPENCV_PIXEL_CEILING` says so; ``decode_image``'s check of the decoded size still holds.
Side effect: in a process that imports ``roi_lab`` before ``cv2``, ``cv2.imread`` and ``cv2.imdecode``
refuse images above :data:`DEFAULT_MAX_PIXELS` too (set the variable yourself to choose another bound).
"""

from __future__ import annotations

import os
import sys

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DECODED_BYTES_PER_PIXEL",
    "MAX_JPEG_SCANS",
    "OPENCV_PIXEL_CEILING",
    "MAX_BOX_FILE_BYTES",
    "MAX_BOXES",
    "MAX_TEXT_FILE_BYTES",
]

#: decode_image's default cap on width * height (50 MP: 150 MB as RGB uint8).
DEFAULT_MAX_PIXELS = 50_000_000
#: decode_image refuses images whose decoded buffer (channels x bytes per sample, as the header declares
#: them) would exceed max_pixels times this: 8 bytes is 16-bit RGBA, so only float / 32-bit TIFFs are affected.
DECODED_BYTES_PER_PIXEL = 8
#: the most scans (SOS markers) decode_image lets through in a JPEG; each scan is a pass over the image, and
#: encoders write at most a few dozen (libjpeg's progressive script: 10; mozjpeg's: under 20).
MAX_JPEG_SCANS = 100
#: the largest box file read_boxes and the CLI read: one image's boxes take kilobytes, a COCO file of a few
#: thousand images fits. The worst 8 MiB of JSON ("[[],[],...]") parses in ~2 s into ~0.2 GB of Python lists.
MAX_BOX_FILE_BYTES = 8 * 1024 * 1024
#: the most boxes read_boxes returns from one file (one image: COCO has at most a few hundred).
MAX_BOXES = 100_000
#: the largest error text `roi-lab explain` reads from a file or stdin.
MAX_TEXT_FILE_BYTES = 4 * 1024 * 1024

_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
_OPENCV_DEFAULT_PIXELS = 1 << 30  # OpenCV's own default (loadsave.cpp)
_CV2_LOADED_FIRST = "cv2" in sys.modules
_USER_VALUE = os.environ.get(_ENV)
if _USER_VALUE is None and not _CV2_LOADED_FIRST:
    os.environ[_ENV] = str(DEFAULT_MAX_PIXELS)


def _ceiling() -> int:
    if _USER_VALUE is not None:
        try:
            return int(_USER_VALUE)
        except ValueError:  # OpenCV also reads suffixed forms ("100M"); assume its default then
            return _OPENCV_DEFAULT_PIXELS
    return _OPENCV_DEFAULT_PIXELS if _CV2_LOADED_FIRST else DEFAULT_MAX_PIXELS


#: the most pixels this process's OpenCV decodes (see the module docstring).
OPENCV_PIXEL_CEILING = _ceiling()
