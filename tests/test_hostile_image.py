"""Hostile images: the pixel-cap bypass, decode-time and decode-memory bombs, degenerate resizes.

Each test builds its hostile file here (struct + zlib, or OpenCV's own encoder for the base image) and
checks that decode_image refuses it with an ImageDecodeError naming the bound, or decodes it within the
bound. A bounded Hypothesis campaign mutates the headers of valid images of every format.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import roi_lab.image as image_mod
from roi_lab._limits import MAX_JPEG_SCANS
from roi_lab.errors import ImageDecodeError, InputValueError
from roi_lab.image import decode_image, read_image_size, resize_to_max_side

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(pixels: np.ndarray, color_type: int, bit_depth: int = 8, declared: tuple[int, int] | None = None) -> bytes:
    """A PNG from raw rows (filter 0), written without OpenCV; 16-bit big-endian; ``declared`` (W, H) in IHDR."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w = pixels.shape[:2]
    raw = pixels.astype(">u2" if bit_depth == 16 else np.uint8).reshape(h, -1).view(np.uint8).reshape(h, -1)
    rows = zlib.compress(b"".join(b"\x00" + raw[i].tobytes() for i in range(h)), 6)
    ihdr = struct.pack(">IIBBBBB", *(declared or (w, h)), bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- 1. pixel-cap bypass
def _tiff_repeating_size_tags(real: tuple[int, int], fake: tuple[int, int], order: str = "first") -> bytes:
    """An 8-bit gray, deflate-compressed TIFF whose IFD gives ImageWidth and ImageLength twice: ``real`` (what
    libtiff, and so OpenCV, decodes: it keeps the first) and ``fake`` (what a parser keeping the last reads)."""
    (rw, rh), (fw, fh) = real, fake
    pixels = zlib.compress(b"\x00" * (rw * rh), 9)
    sizes = [(256, rw), (256, fw), (257, rh), (257, fh)]
    if order == "last":
        sizes = [(256, fw), (256, rw), (257, fh), (257, rh)]
    tags = [*sizes, (258, 8), (259, 8), (262, 1), (273, None), (278, rh), (279, len(pixels))]
    data_offset = 8 + 2 + 12 * len(tags) + 4
    entries = b"".join(
        struct.pack("<HHII", tag, 4, 1, data_offset if value is None else value) for tag, value in tags
    )
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags)) + entries + b"\x00" * 4 + pixels


def test_tiff_repeating_its_size_tags_is_refused():
    """The issue's bypass: the old parser kept the last ImageWidth (16 x 16), libtiff the first (300 x 300)."""
    data = _tiff_repeating_size_tags((300, 300), (16, 16))
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, max_pixels=1000)
    msg = str(info.value)
    assert "expects a TIFF whose first image has one ImageWidth tag" in msg
    assert "tag 256 (ImageWidth) given twice in the first IFD" in msg
    with pytest.raises(ImageDecodeError, match="given twice"):
        read_image_size(data)


def test_tiff_size_tags_in_either_order_are_refused():
    with pytest.raises(ImageDecodeError, match="given twice"):
        decode_image(_tiff_repeating_size_tags((300, 300), (16, 16), order="last"), max_pixels=1000)


def _lying_parser(monkeypatch, fmt: str, width: int, height: int) -> None:
    """Make the header parser of ``fmt`` declare ``width x height`` whatever the file says: a stand-in for any
    future disagreement between ROI Lab's parsers and OpenCV's decoders."""
    header = getattr(image_mod, "_Header", None)
    lie = header(width, height, 3) if header else (width, height)
    monkeypatch.setitem(image_mod._PARSERS, fmt, lambda data: lie)


@pytest.mark.parametrize("ext, fmt", [(".png", "PNG"), (".bmp", "BMP"), (".tiff", "TIFF"), (".webp", "WebP")])
def test_decoded_size_is_checked_whatever_the_header_parser_says(monkeypatch, ext, fmt):
    rgb = np.zeros((40, 50, 3), np.uint8)
    data = cv2.imencode(ext, rgb)[1].tobytes()
    _lying_parser(monkeypatch, fmt, 4, 4)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, max_pixels=100)
    msg = str(info.value)
    assert f"expects a {fmt} file whose pixel data matches its declared 4 x 4 pixels" in msg
    assert "got pixel data of 50 x 40 pixels (a malformed or hostile file)" in msg


_OPENCV_GUARD = r"""
import os, sys
import numpy as np
{first}
import roi_lab.image
import cv2
from roi_lab._limits import OPENCV_PIXEL_CEILING
print(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS"), OPENCV_PIXEL_CEILING)
sys.path.insert(0, {tests!r})
from test_hostile_image import _png
png = _png(np.zeros((1, 1), np.uint8), 0, declared=(7072, 7072))  # 50,013,184 pixels: OpenCV reads the header
try:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    print("decoded", None if img is None else img.shape)
except cv2.error as exc:
    print("refused", "CV_IO_MAX_IMAGE_PIXELS" in str(exc))
try:
    roi_lab.image.decode_image(png, max_pixels=60_000_000)
except roi_lab.image.ImageDecodeError as exc:
    print(str(exc).splitlines()[0])
"""


def _run_guard(first: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    code = _OPENCV_GUARD.format(first=first, tests=os.path.join(REPO, "tests"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_opencv_refuses_images_above_the_cap_by_its_own_header_read():
    """The second guard: importing roi_lab sets OPENCV_IO_MAX_IMAGE_PIXELS before cv2 loads, so OpenCV's decoder
    refuses an image of more than 50 MP by *its* reading of the header, before allocating the pixels."""
    lines = _run_guard(first="")
    assert lines[0] == "50000000 50000000"
    assert lines[1] == "refused True"
    assert lines[2].startswith("decode_image expects an image of at most 50,000,000 pixels, the "
                               "OPENCV_IO_MAX_IMAGE_PIXELS limit of this process's OpenCV; got a PNG header "
                               "declaring 7072 x 7072 = 50,013,184 pixels")


def test_opencv_ceiling_when_cv2_was_imported_first():
    """cv2 imported before roi_lab: OpenCV keeps its own default (2**30 pixels) and the ceiling says so."""
    lines = _run_guard(first="import cv2")
    assert lines[0] == "None 1073741824"


# --------------------------------------------------------------------------- 2. decode-time bombs
def _segments(jpg: bytes) -> list[tuple[int, int, int]]:
    """(start, end, marker) of each JPEG segment after SOI; an SOS segment runs to the end of its scan data."""
    i, out = 2, []
    while i < len(jpg):
        marker = jpg[i + 1]
        if marker == 0xD9:
            out.append((i, i + 2, marker))
            break
        j = i + 2 + int.from_bytes(jpg[i + 2 : i + 4], "big")
        if marker == 0xDA:  # entropy-coded data: up to the next marker that is not a stuffed FF00 or an RSTn
            while not (jpg[j] == 0xFF and jpg[j + 1] != 0x00 and not 0xD0 <= jpg[j + 1] <= 0xD7):
                j += 1
        out.append((i, j, marker))
        i = j
    return out


def progressive_jpeg_with_scans(n_scans: int, hw: tuple[int, int] = (64, 64)) -> bytes:
    """A progressive JPEG of a flat image with its smallest scan repeated until it has ``n_scans`` scans
    (libjpeg warns "inconsistent progression sequence" and decodes on: every scan is another pass)."""
    jpg = cv2.imencode(".jpg", np.full((*hw, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    scans = [s for s in _segments(jpg) if s[2] == 0xDA]
    small = min(scans, key=lambda s: s[1] - s[0])
    end = scans[-1][1]
    out = jpg[:end] + jpg[small[0] : small[1]] * (n_scans - len(scans)) + jpg[end:]
    assert out.count(b"\xff\xda") == n_scans
    return out


def test_jpeg_with_too_many_scans_is_refused_before_decoding(monkeypatch):
    data = progressive_jpeg_with_scans(MAX_JPEG_SCANS + 1)
    monkeypatch.setattr("roi_lab.image.cv2.imdecode", lambda *a: pytest.fail("decoded a scan bomb"))
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    msg = str(info.value)
    assert "expects a JPEG of at most 100 scans (encoders write at most a few dozen); got 101 scans" in msg
    assert "(a decompression time bomb)" in msg
    assert "Fix: re-save the image as baseline JPEG or PNG" in msg


def test_jpeg_with_the_most_scans_allowed_decodes():
    out = decode_image(progressive_jpeg_with_scans(MAX_JPEG_SCANS))
    assert out.shape == (64, 64, 3)
    assert abs(int(out[10, 10, 0]) - 128) <= 2  # flat grey survives the repeated refinement scans


def test_ordinary_progressive_jpeg_is_far_below_the_scan_limit():
    jpg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8),
                       [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert jpg.count(b"\xff\xda") <= 12
    assert decode_image(jpg).shape == (64, 64, 3)


def _traced_peak(fn, *args):
    """Peak bytes traced by tracemalloc while running fn (numpy and OpenCV's numpy allocator are traced)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_conversion_to_uint8_has_no_full_size_temporaries(dtype, channels):
    """The old conversion made full-size uint32 (or float) copies: a 7000 x 7000 16-bit RGBA PNG peaked at
    1.87 GB. Now the peak beyond the input is the [H, W, 3] uint8 result plus slices of ~1M values."""
    h, w = 1500, 1000
    img = np.ones((h, w, channels) if channels > 1 else (h, w), dtype)
    result_bytes = h * w * 3
    out, peak = _traced_peak(image_mod._to_rgb_uint8, img, "TIFF")
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert peak < result_bytes + 24 * 2**20, f"peak {peak / 2**20:.1f} MiB for a {result_bytes / 2**20:.1f} MiB result"


def test_16bit_conversion_is_exact_across_slices(monkeypatch):
    """Slicing must not change values: round(v * 255 / 65535) everywhere, with slices of 7 rows here."""
    monkeypatch.setattr(image_mod, "_SLICE_VALUES", 7 * 3 * 11)
    rng = np.random.default_rng(4)
    bgra = rng.integers(0, 65536, (50, 11, 4), dtype=np.uint16)
    out = image_mod._to_rgb_uint8(bgra, "PNG")
    expected = np.round(bgra[..., [2, 1, 0]].astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)  # exact: both are round-half-up of v / 257 (257 is odd)


def test_16bit_rgba_png_peak_memory_is_the_decoded_image_plus_the_result():
    h, w = 1200, 1000
    data = _png(np.full((h, w, 4), 40000, np.uint16), color_type=6, bit_depth=16)
    out, peak = _traced_peak(decode_image, data)
    assert out.shape == (h, w, 3) and int(out[0, 0, 0]) == round(40000 * 255 / 65535)
    decoded, result = h * w * 6, h * w * 3  # decoded straight to BGR 16-bit (alpha dropped by libpng)
    assert peak < decoded + result + 24 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_float64_tiff_over_the_decoded_bytes_budget_is_refused(monkeypatch):
    """A float64 RGBA TIFF is 32 bytes per pixel: 4x what the pixel cap allows for (max_pixels x 8 bytes)."""
    data = cv2.imencode(".tiff", np.random.default_rng(0).random((20, 20, 4)))[1].tobytes()
    assert read_image_size(data)[1:] == (20, 20)
    monkeypatch.setattr("roi_lab.image.cv2.imdecode", lambda *a: pytest.fail("decoded past the budget"))
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, max_pixels=1000)
    msg = str(info.value)
    assert "expects a decoded image of at most 8,000 bytes (max_pixels x 8: 16-bit RGBA at the pixel cap)" in msg
    assert "got a TIFF of 20 x 20 pixels with 32 bytes per pixel = 12,800 bytes" in msg
    assert "decode_image(data, max_pixels=1_600)" in msg


def test_float_tiff_within_the_budget_decodes():
    data = cv2.imencode(".tiff", np.full((20, 20, 3), 0.5, np.float32))[1].tobytes()
    out = decode_image(data, max_pixels=2000)  # 12 bytes per pixel x 400 = 4,800 <= 16,000
    assert out.shape == (20, 20, 3) and int(out[0, 0, 0]) == 128


# --------------------------------------------------------------------------- resize of extreme aspect ratios
@pytest.mark.parametrize("hw, max_side, need", [((10, 20000), 800, 1001), ((1, 100000), 800, 50001),
                                                ((20000, 10), 800, 1001)])
def test_resize_that_would_round_a_side_to_zero_is_refused(hw, max_side, need):
    img = np.zeros((*hw, 3), np.uint8)
    with pytest.raises(InputValueError) as info:
        resize_to_max_side(img, max_side)
    msg = str(info.value)
    assert f"expects a max_side that keeps both sides at least 1 pixel (>= {need} for this image)" in msg
    assert f"got max_side={max_side} for a {hw[1]} x {hw[0]} image" in msg
    out, scale = resize_to_max_side(img, need)  # the suggested max_side works
    assert min(out.shape[:2]) == 1 and max(out.shape[:2]) == need and scale == need / max(hw)


# --------------------------------------------------------------------------- bounded fuzz campaign
def _seed_files() -> list[bytes]:
    rgb = np.random.default_rng(7).integers(0, 256, (12, 9, 3), dtype=np.uint8)
    files = [cv2.imencode(ext, rgb)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp", ".gif")]
    files.append(_png(np.full((5, 6, 4), 1000, np.uint16), color_type=6, bit_depth=16))
    files.append(cv2.imencode(".tiff", np.full((5, 6), 0.25, np.float32))[1].tobytes())
    return files


_SEEDS = _seed_files()


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, len(_SEEDS) - 1),
    edits=st.lists(st.tuples(st.integers(0, 160), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(1, 400)),
)
def test_fuzz_mutated_headers_decode_within_the_cap_or_fail_cleanly(seed, edits, cut):
    """Any byte edit in the header region (and any truncation) gives either an ImageDecodeError or an RGB array
    of the size the header declares and at most max_pixels pixels: never another exception, never more."""
    data = bytearray(_SEEDS[seed])
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    data = bytes(data[:cut] if cut else data)
    max_pixels = 4096
    try:
        out = decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError:
        return
    _, w, h = read_image_size(data)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[0] * out.shape[1] <= max_pixels
    assert out.shape[:2] in ((h, w), (w, h))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(real=st.tuples(st.integers(1, 90), st.integers(1, 90)), fake=st.tuples(st.integers(1, 90),
       st.integers(1, 90)), order=st.sampled_from(["first", "last"]))
def test_fuzz_repeated_tiff_size_tags_never_pass_the_cap(real, fake, order):
    with pytest.raises(ImageDecodeError, match="given twice"):
        decode_image(_tiff_repeating_size_tags(real, fake, order), max_pixels=2000)
