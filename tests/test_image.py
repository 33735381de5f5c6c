"""Image intake: decode_image, read_image_size, resize_to_max_side.

Oracles: PNGs written byte by byte here (zlib + struct, no OpenCV), shapes of arrays OpenCV encoded,
and hand-made headers that declare huge sizes.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from roi_lab.errors import ImageDecodeError, InputValueError
from roi_lab.image import decode_image, read_image_size, resize_to_max_side


# --------------------------------------------------------------------------- tiny independent PNG writer
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_png(pixels: np.ndarray, color_type: int, bit_depth: int = 8, declared: tuple[int, int] | None = None,
             palette: np.ndarray | None = None) -> bytes:
    """A PNG built from raw rows (filter 0). pixels: [H, W, C] or [H, W]; 16-bit written big-endian."""
    h, w = pixels.shape[:2]
    dw, dh = declared or (w, h)
    raw = pixels.astype(">u2" if bit_depth == 16 else np.uint8).reshape(h, -1).view(np.uint8).reshape(h, -1)
    rows = b"".join(b"\x00" + raw[i].tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", dw, dh, bit_depth, color_type, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    if palette is not None:
        out += _chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    return out + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _rng_image(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _encode(rgb: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return buf.tobytes()


@pytest.fixture
def no_decode(monkeypatch):
    """Any call to cv2.imdecode fails the test: the refusal must come from the header alone."""

    def boom(*args, **kwargs):
        raise AssertionError("cv2.imdecode was called on an image that should have been refused first")

    monkeypatch.setattr("roi_lab.image.cv2.imdecode", boom)


# --------------------------------------------------------------------------- exact intake
def test_rgb_png_written_by_hand_is_exact_and_in_rgb_order():
    rgb = _rng_image(7, 11)
    rgb[0, 0] = (255, 0, 0)  # a pure red pixel must stay red (no BGR swap)
    out = decode_image(make_png(rgb, color_type=2))
    assert out.dtype == np.uint8 and out.shape == (7, 11, 3)
    np.testing.assert_array_equal(out, rgb)
    assert out[0, 0].tolist() == [255, 0, 0]


def test_grayscale_png_is_replicated_to_three_channels():
    gray = _rng_image(5, 9, 1)[..., 0]
    out = decode_image(make_png(gray, color_type=0))
    assert out.shape == (5, 9, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_png_drops_alpha_without_compositing():
    rgba = _rng_image(6, 4, 4)
    rgba[..., 3] = np.arange(24, dtype=np.uint8).reshape(6, 4) * 10  # alpha from 0 (transparent) up
    out = decode_image(make_png(rgba, color_type=6))
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_gray_alpha_png():
    ga = _rng_image(3, 5, 2)
    out = decode_image(make_png(ga, color_type=4))
    np.testing.assert_array_equal(out, np.repeat(ga[..., :1], 3, axis=2))


def test_palette_png():
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
    index = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    out = decode_image(make_png(index, color_type=3, palette=palette))
    np.testing.assert_array_equal(out, palette[index])


def test_16bit_png_scales_to_8bit_exactly():
    values = np.array([0, 257, 257 * 128, 65535, 128, 129, 65535 - 129], np.uint16)
    # round(v * 255 / 65535): 128/257 = 0.498 -> 0; 129/257 = 0.502 -> 1; (65535 - 129)/257 = 254.498 -> 254
    expected = np.array([0, 1, 128, 255, 0, 1, 254], np.uint8)
    rgb16 = np.stack([values, values[::-1], values], axis=1)[None]  # [1, 7, 3]
    out = decode_image(make_png(rgb16, color_type=2, bit_depth=16))
    np.testing.assert_array_equal(out[0, :, 0], expected)
    np.testing.assert_array_equal(out[0, :, 1], expected[::-1])


def test_16bit_gray_png():
    gray16 = np.array([[0, 65535], [257 * 7, 257 * 200]], np.uint16)
    out = decode_image(make_png(gray16, color_type=0, bit_depth=16))
    np.testing.assert_array_equal(out[..., 0], [[0, 255], [7, 200]])
    np.testing.assert_array_equal(out[..., 2], out[..., 0])


@pytest.mark.parametrize(
    "ext, params",
    [(".bmp", []), (".tiff", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".png", [])],
    ids=["bmp", "tiff", "webp-lossless", "png-opencv"],
)
def test_lossless_formats_are_exact(ext, params):
    rgb = _rng_image(13, 17, seed=3)
    np.testing.assert_array_equal(decode_image(_encode(rgb, ext, params)), rgb)


def test_16bit_tiff():
    rgb16 = (np.random.default_rng(1).integers(0, 256, (4, 6, 3)) * 257).astype(np.uint16)
    ok, buf = cv2.imencode(".tiff", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(decode_image(buf.tobytes()), (rgb16 // 257).astype(np.uint8))


@pytest.mark.parametrize("ext", [".jpg", ".webp"])
def test_lossy_formats_keep_colour_order(ext):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :16] = (230, 20, 20)  # red
    rgb[:, 16:32] = (20, 230, 20)  # green
    rgb[:, 32:] = (20, 20, 230)  # blue
    out = decode_image(_encode(rgb, ext, [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else []))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 4
    for block, channel in ((slice(0, 16), 0), (slice(16, 32), 1), (slice(32, 48), 2)):
        assert out[4:28, block].mean(axis=(0, 1)).argmax() == channel


def test_grayscale_jpeg():
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))
    out = decode_image(_encode(gray, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 100]))
    assert out.shape == (16, 32, 3)
    assert np.abs(out[..., 1].astype(int) - gray).max() <= 3


def test_gif_first_frame():
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[:, 6:] = (255, 0, 0)
    out = decode_image(_encode(rgb, ".gif"))
    assert out.shape == (10, 12, 3)
    # OpenCV's GIF encoder quantizes to a palette, so the red comes back close to (255, 0, 0), not exact
    assert out[5, 9, 0] > 240 and out[5, 9, 1:].tolist() == [0, 0] and out[5, 2].tolist() == [0, 0, 0]


def _exif_orientation_app1(orientation: int) -> bytes:
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHII", 0x0112, 3, 1, orientation) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def test_jpeg_exif_orientation_is_applied_like_a_browser():
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[:, :10] = 255  # left half white
    jpg = _encode(rgb, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 100])
    rotated = jpg[:2] + _exif_orientation_app1(6) + jpg[2:]  # 6: rotate 90 degrees clockwise to display
    assert decode_image(jpg).shape == (10, 20, 3)
    out = decode_image(rotated)
    assert out.shape == (20, 10, 3)
    assert out[:8].mean() > 200 and out[12:].mean() < 50  # the white half is now on top


# --------------------------------------------------------------------------- header sizes
@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp", ".tiff", ".gif"])
@pytest.mark.parametrize("hw", [(1, 1), (37, 53), (17, 300)])
def test_read_image_size_matches_the_encoded_array(ext, hw):
    data = _encode(_rng_image(*hw), ext)
    fmt, w, h = read_image_size(data)
    assert (h, w) == hw
    assert fmt == {".png": "PNG", ".jpg": "JPEG", ".webp": "WebP", ".bmp": "BMP", ".tiff": "TIFF", ".gif": "GIF"}[ext]


def test_read_image_size_webp_lossless_and_progressive_jpeg():
    rgb = _rng_image(21, 34)
    assert read_image_size(_encode(rgb, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]))[1:] == (34, 21)
    assert read_image_size(_encode(rgb, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]))[1:] == (34, 21)


def _webp_vp8x(w: int, h: int) -> bytes:
    body = b"\x00\x00\x00\x00" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _tiff_header(w: int, h: int, big_endian: bool = False) -> bytes:
    o = ">" if big_endian else "<"
    head = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(o + "I", 8)
    entries = struct.pack(o + "HHI", 256, 4, 1) + struct.pack(o + "I", w)
    entries += struct.pack(o + "HHI", 257, 3, 1) + struct.pack(o + "H", h) + b"\x00\x00"
    return head + struct.pack(o + "H", 2) + entries + struct.pack(o + "I", 0)


def _huge_jpeg(w: int, h: int) -> bytes:
    jpg = bytearray(_encode(_rng_image(8, 8), ".jpg"))
    i = jpg.index(b"\xff\xc0")
    jpg[i + 5 : i + 9] = struct.pack(">HH", h, w)
    return bytes(jpg)


def _huge_bmp(w: int, h: int) -> bytes:
    bmp = bytearray(_encode(_rng_image(2, 2), ".bmp"))
    bmp[18:26] = struct.pack("<ii", w, -h)  # negative height: top-down rows
    return bytes(bmp)


def _huge_gif(w: int, h: int) -> bytes:
    gif = bytearray(_encode(_rng_image(2, 2), ".gif"))
    gif[6:10] = struct.pack("<HH", w, h)
    return bytes(gif)


HUGE = {
    "png": lambda: make_png(np.zeros((1, 1, 3), np.uint8), color_type=2, declared=(20000, 20000)),
    "jpeg": lambda: _huge_jpeg(20000, 20000),
    "webp-vp8x": lambda: _webp_vp8x(20000, 20000),
    "bmp": lambda: _huge_bmp(20000, 20000),
    "tiff-le": lambda: _tiff_header(20000, 20000),
    "tiff-be": lambda: _tiff_header(20000, 20000, big_endian=True),
    "gif": lambda: _huge_gif(20000, 20000),
}


@pytest.mark.parametrize("kind", list(HUGE))
def test_huge_declared_size_is_refused_before_decoding(kind, no_decode):
    data = HUGE[kind]()
    assert len(data) < 2000
    assert read_image_size(data)[1:] == (20000, 20000)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    msg = str(info.value)
    assert "at most 50,000,000 pixels" in msg
    assert "20000 x 20000 = 400,000,000 pixels" in msg
    assert "max_pixels=400_000_000" in msg  # how to raise the cap


def test_pixel_cap_boundary_and_custom_cap(no_decode):
    data = make_png(np.zeros((1, 1, 3), np.uint8), color_type=2, declared=(101, 99))
    with pytest.raises(ImageDecodeError, match=r"at most 9,998 pixels.*101 x 99 = 9,999 pixels"):
        decode_image(data, max_pixels=9998)


def test_pixel_cap_allows_exactly_max_pixels():
    rgb = _rng_image(99, 101)
    np.testing.assert_array_equal(decode_image(make_png(rgb, color_type=2), max_pixels=9999), rgb)


def test_bad_max_pixels():
    with pytest.raises(InputValueError, match=r"decode_image\(max_pixels=...\) expects a positive int"):
        decode_image(b"", max_pixels=0)


# --------------------------------------------------------------------------- bad input
def test_empty_data():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(b"")
    assert str(info.value) == (
        "decode_image expects a PNG, JPEG, WebP, BMP, TIFF or GIF image; got empty data (0 bytes).\n"
        "Fix: choose a file that is not empty"
    )


@pytest.mark.parametrize(
    "data, got",
    [
        (b"hello, this is a text file\n", "got text starting with 'hello, this is a text fi'"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "got a PDF document"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "got an HEIC/HEIF image"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "got an SVG/XML text file"),
        (bytes(range(200, 256)) * 3, "got 168 bytes starting with"),
        (b"BMW 320i, 2019, blue, 40000 km\n", "got text starting with 'BMW 320i"),  # "BM" but no BMP header
    ],
    ids=["text", "pdf", "heic", "svg", "binary", "bm-text"],
)
def test_non_images_are_named(data, got):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    msg = str(info.value)
    assert msg.startswith("decode_image expects a PNG, JPEG, WebP, BMP, TIFF or GIF image;")
    assert got in msg
    assert "Fix: convert it to PNG or JPEG first" in msg


def test_a_path_instead_of_bytes_says_how_to_read_it():
    with pytest.raises(ImageDecodeError) as info:
        decode_image("photo.png")
    assert str(info.value) == (
        "decode_image expects the image file's bytes; got str 'photo.png'.\n"
        "Fix: pass the file's bytes, e.g. decode_image(open(path, 'rb').read())"
    )


def test_header_cut_short():
    png = make_png(_rng_image(4, 4), color_type=2)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(png[:15])
    assert "expects a complete PNG file; got 15 bytes that end inside the PNG header (truncated upload?)" in str(
        info.value
    )


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp", ".tiff"])
def test_truncated_files(ext):
    data = _encode(_rng_image(64, 64, seed=5), ext)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data[: len(data) // 2])
    msg = str(info.value)
    assert "truncated" in msg
    assert "Fix: upload the whole file again" in msg


def test_truncated_jpeg_message():
    data = _encode(_rng_image(64, 64), ".jpg")
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data[:-2])
    assert "expects a complete JPEG file (ending with the EOI marker FFD9); got" in str(info.value)


def test_corrupt_pixel_data():
    png = bytearray(make_png(_rng_image(8, 8), color_type=2))
    idat = png.index(b"IDAT")
    png[idat + 6 : idat + 30] = b"\x00" * 24  # garbage inside the compressed stream
    with pytest.raises(ImageDecodeError, match="expects a decodable PNG image; got .* OpenCV could not decode"):
        decode_image(bytes(png))


def test_zero_size_header():
    with pytest.raises(ImageDecodeError, match="positive width and height; got a header declaring 0 x 5 pixels"):
        decode_image(make_png(np.zeros((1, 1, 3), np.uint8), color_type=2, declared=(0, 5)))


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        decode_image(b"nope")


# --------------------------------------------------------------------------- resize
def test_resize_noop_when_small_enough():
    img = _rng_image(30, 40)
    out, scale = resize_to_max_side(img, 40)
    assert out is img and scale == 1.0


@pytest.mark.parametrize("hw, max_side, expected", [((1000, 800), 500, (500, 400)), ((450, 600), 512, (384, 512)),
                                                     ((301, 1003), 400, (120, 400))])
def test_resize_shape_and_scale(hw, max_side, expected):
    out, scale = resize_to_max_side(np.zeros((*hw, 3), np.uint8), max_side)
    assert out.shape[:2] == expected
    assert scale == max_side / max(hw)


def _area_average_of_ramp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of the pixel-constant ramp f(x) = floor(x) (pixel k holds value k) over [a, b)."""

    def integral(x):  # integral of floor(t) from 0 to x
        k = np.floor(x)
        return k * (k - 1) / 2 + k * (x - k)

    return (integral(b) - integral(a)) / (b - a)


def test_resize_maps_points_exactly_by_scale():
    """Output pixel j must average exactly the source interval [j / scale, (j + 1) / scale): the
    mapping x_new = x_old * scale that lets boxes be multiplied by the scale. A resize to the rounded
    target size uses a slightly different scale on the short side and fails the same check."""
    h, w = 301, 1003
    rows = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))  # pixel (i, j) holds i
    cols = np.tile(np.arange(w, dtype=np.float32), (h, 1))  # pixel (i, j) holds j
    out_x, scale = resize_to_max_side(cols, 400)
    out_y, _ = resize_to_max_side(rows, 400)
    assert out_x.shape == (120, 400)
    j = np.arange(out_x.shape[1] - 1)  # the last column's interval runs past the image edge
    i = np.arange(out_y.shape[0] - 1)
    np.testing.assert_allclose(out_x[60, j], _area_average_of_ramp(j / scale, (j + 1) / scale), atol=2e-3)
    np.testing.assert_allclose(out_y[i, 10], _area_average_of_ramp(i / scale, (i + 1) / scale), atol=2e-3)
    naive = cv2.resize(rows, (400, 120), interpolation=cv2.INTER_AREA)  # y scale 120 / 301, not 400 / 1003
    assert np.abs(naive[i, 10] - _area_average_of_ramp(i / scale, (i + 1) / scale)).max() > 0.1


def test_resize_bad_arguments():
    with pytest.raises(InputValueError, match=r"resize_to_max_side\(max_side=...\) expects a positive int"):
        resize_to_max_side(np.zeros((4, 4, 3), np.uint8), 0)
    with pytest.raises(InputValueError, match="expects a non-empty ndarray"):
        resize_to_max_side(np.zeros((0, 4, 3), np.uint8), 10)
