"""Image intake: bytes from an upload -> RGB uint8 array, safely.

Users upload anything, so :func:`decode_image` reads the width and height that the file *declares*
in its header before OpenCV sees a byte of pixel data, and refuses images above a pixel cap. A
100-byte PNG can declare 20000 x 20000 pixels (1.2 GB once decoded); it is refused in microseconds.

Bounds (see :mod:`roi_lab._limits`), each with its own guard:

- pixels: the header's width x height <= ``max_pixels`` (default 50 MP). Behind it, independent of
  these parsers, OpenCV's own ``OPENCV_IO_MAX_IMAGE_PIXELS`` (set before cv2 loads) refuses an image
  whose size *as its decoder reads it* is larger, before allocating, and the decoded array's size is
  checked against the header: a file that declares one size and decodes to another (a TIFF that
  repeats its ImageWidth tag, say) is refused.
- memory: the decoded buffer (channels x bytes per sample, from the header) <= ``max_pixels`` x 8 bytes
  (16-bit RGBA), and the conversion to uint8 works in slices of about a million values, so the peak is
  the decoded image plus the RGB result plus a few MB (no full-size uint32 or float temporaries).
- time: a JPEG with more than 100 scans (SOS markers) is refused before decoding: each scan is a pass over
  the whole image, and a progressive JPEG of 20,000 tiny scans took minutes.

Why not Pillow for the header: OpenCV still decodes, so Pillow would be a second parser too (the guard that
counts is OpenCV's own limit, which reads the header the decoder uses); and ``Image.open`` refuses sizes
above 179 MP without saying the size, needs a whole TIFF (strips and all) and hands a whole WebP to libwebp,
which allocates the canvas. Decoding with Pillow instead would truncate 16-bit colour (v >> 8) rather than
round it.

Supported: PNG, JPEG, WebP, BMP, TIFF and GIF (first frame). Grayscale, grayscale + alpha, RGBA
(alpha dropped, not composited), palette and 16-bit images all come out as ``ndarray[H, W, 3]``
uint8 in RGB order. JPEG EXIF orientation is applied, as a browser does.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import cv2
import numpy as np

from roi_lab._limits import DECODED_BYTES_PER_PIXEL, DEFAULT_MAX_PIXELS, MAX_JPEG_SCANS, OPENCV_PIXEL_CEILING
from roi_lab.errors import ImageDecodeError, InputValueError, describe

__all__ = ["decode_image", "read_image_size", "resize_to_max_side", "SUPPORTED_FORMATS", "DEFAULT_MAX_PIXELS"]

SUPPORTED_FORMATS = ("PNG", "JPEG", "WebP", "BMP", "TIFF", "GIF")
_SUPPORTED_TEXT = "a PNG, JPEG, WebP, BMP, TIFF or GIF image"

# Start bytes of common files that are not images we decode, to name them in the error.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or .docx/.xlsx/.npz)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x93NUMPY", "a .npy array"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (b"8BPS", "a Photoshop .psd file"),
    (b"\x76\x2f\x31\x01", "an OpenEXR image"),
)


def _fail(expected: str, got: str, fix: str) -> ImageDecodeError:
    return ImageDecodeError("decode_image", expected=expected, got=got, fix=fix)


def _truncated(fmt: str, n: int) -> ImageDecodeError:
    return _fail(
        f"a complete {fmt} file",
        f"{n} bytes that end inside the {fmt} header (truncated upload?)",
        "upload the whole file again, or re-save it as PNG",
    )


def _sniff_other(data: bytes) -> str:
    """Name of a non-image file type, or a short preview of the first bytes."""
    for sig, name in _OTHER_SIGNATURES:
        if data.startswith(sig):
            return name
    if data[4:8] == b"ftyp":
        brand = data[8:12].decode("latin-1")
        kind = "an HEIC/HEIF image" if brand.startswith(("hei", "hev", "mif", "msf")) else (
            "an AVIF image" if brand.startswith("avi") else f"an ISO media file (brand {brand!r}, e.g. MP4/MOV)")
        return kind
    head = data[:256].lstrip()
    if head[:5].lower() in (b"<?xml", b"<svg ") or b"<svg" in head[:256].lower():
        return "an SVG/XML text file"
    try:
        text = data[:64].decode("utf-8")
        if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
            return f"text starting with {text[:24]!r}"
    except UnicodeDecodeError:
        pass
    return f"{len(data)} bytes starting with {data[:8]!r}"


# --------------------------------------------------------------------------- header parsers
class _Header(NamedTuple):
    width: int
    height: int
    pixel_bytes: int  # bytes per pixel of OpenCV's decoded buffer (channels x bytes per sample), an upper bound
    flags: int = cv2.IMREAD_UNCHANGED  # how OpenCV decodes it


# A colour PNG (RGB, palette, RGBA) is decoded straight to BGR at its own depth: libpng drops the alpha (which
# the RGB result drops anyway) and OpenCV's PNG decoder, which holds two copies of the image while decoding,
# holds two 3-channel copies instead of two 4-channel ones (7000 x 7000 RGBA 16-bit: 0.56 GB, not 0.75 GB).
# EXIF orientation stays ignored for PNG, as before. Gray PNGs keep one channel (IMREAD_UNCHANGED).
_PNG_COLOUR_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 3}  # colour type -> channels OpenCV returns with those flags


def _png_size(data: bytes) -> _Header:
    if len(data) < 26:
        raise _truncated("PNG", len(data))
    if data[12:16] != b"IHDR":
        raise _fail("a PNG whose first chunk is IHDR", f"first chunk {data[12:16]!r}", "re-save the image as PNG")
    w, h = struct.unpack(">II", data[16:24])
    depth, colour = data[24], data[25]
    flags = cv2.IMREAD_UNCHANGED if colour in (0, 4) else _PNG_COLOUR_FLAGS
    return _Header(w, h, _PNG_CHANNELS.get(colour, 4) * (2 if depth == 16 else 1), flags)


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> _Header:
    """Walk the JPEG marker segments up to the first SOFn frame header."""
    i, n = 2, len(data)
    while True:
        while i < n and data[i] == 0xFF and i + 1 < n and data[i + 1] == 0xFF:  # fill bytes
            i += 1
        if i + 1 >= n:
            raise _truncated("JPEG", n)
        if data[i] != 0xFF:
            raise _fail("a JPEG with valid marker segments", f"byte {data[i]:#04x} at offset {i} where a marker "
                        "should start (corrupt file)", "re-save the image as PNG or JPEG")
        marker = data[i + 1]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers, no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):
            raise _fail("a JPEG with a frame header (SOF) before the image data",
                        "none (corrupt or truncated JPEG)", "re-save the image as PNG or JPEG")
        if i + 4 > n:
            raise _truncated("JPEG", n)
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                raise _truncated("JPEG", n)
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return _Header(w, h, 3, cv2.IMREAD_COLOR)  # 8-bit BGR; EXIF orientation applied as a browser does
        if length < 2:
            raise _fail("a JPEG with valid marker segments", f"a segment of length {length} at offset {i}",
                        "re-save the image as PNG or JPEG")
        i += 2 + length


def _gif_size(data: bytes) -> _Header:
    if len(data) < 10:
        raise _truncated("GIF", len(data))
    w, h = struct.unpack("<HH", data[6:10])
    return _Header(w, h, 4)


def _bmp_size(data: bytes) -> _Header:
    if len(data) < 26:
        raise _truncated("BMP", len(data))
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack("<HH", data[18:22])
        return _Header(w, h, 4)
    w, h = struct.unpack("<ii", data[18:26])
    return _Header(abs(w), abs(h), 4)  # negative height = top-down rows


def _webp_size(data: bytes) -> _Header:
    if len(data) < 30:
        raise _truncated("WebP", len(data))
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: frame tag (3) + start code 9d 01 2a + 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            raise _fail("a WebP (VP8) with a valid start code", f"{data[23:26]!r}", "re-save the image as PNG")
        w, h = struct.unpack("<HH", data[26:30])
        return _Header(w & 0x3FFF, h & 0x3FFF, 4)
    if chunk == b"VP8L":  # lossless: signature 0x2f + 14-bit (w-1), 14-bit (h-1)
        if data[20] != 0x2F:
            raise _fail("a WebP (VP8L) with signature 0x2f", f"{data[20]:#04x}", "re-save the image as PNG")
        (bits,) = struct.unpack("<I", data[21:25])
        return _Header((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 4)
    if chunk == b"VP8X":  # extended: 24-bit (canvas w-1), (canvas h-1) after 4 flag bytes
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return _Header(w, h, 4)
    raise _fail("a WebP with a VP8, VP8L or VP8X chunk", f"chunk {chunk!r}", "re-save the image as PNG")


_TIFF_TYPE_SIZES = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8 (BigTIFF)
_TIFF_TAGS = {256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample", 277: "SamplesPerPixel"}


def _tiff_size(data: bytes) -> _Header:
    """Width, height (tags 256, 257) and decoded bytes per pixel (258, 277) from the first IFD of a classic or
    BigTIFF file. A tag given twice is refused: libtiff and this parser could each pick another one."""
    n = len(data)
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(order + "H", data[2:4])
    big = version == 43
    try:
        if big:
            (ifd,) = struct.unpack(order + "Q", data[8:16])
            (count,) = struct.unpack(order + "Q", data[ifd : ifd + 8])
            start, entry_size, inline = ifd + 8, 20, 8
        else:
            (ifd,) = struct.unpack(order + "I", data[4:8])
            (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
            start, entry_size, inline = ifd + 2, 12, 4
    except struct.error:
        raise _truncated("TIFF", n) from None
    if start + count * entry_size > n:
        raise _truncated("TIFF", n)
    values: dict[int, list[int]] = {}
    for k in range(count):
        e = start + k * entry_size
        tag, typ = struct.unpack(order + "HH", data[e : e + 4])
        if tag not in _TIFF_TAGS:
            continue
        if tag in values:
            raise _fail(f"a TIFF whose first image has one {_TIFF_TAGS[tag]} tag",
                        f"tag {tag} ({_TIFF_TAGS[tag]}) given twice in the first IFD (decoders disagree on which "
                        "one counts: a malformed or hostile file)", "re-save the image as PNG")
        size = _TIFF_TYPE_SIZES.get(typ) if typ != 16 or big else None
        if size is None:
            raise _fail(f"a TIFF with SHORT or LONG {_TIFF_TAGS[tag]} tags", f"tag {tag} of type {typ}",
                        "re-save the image as PNG")
        (n_values,) = struct.unpack(order + ("Q" if big else "I"), data[e + 4 : e + 4 + (8 if big else 4)])
        n_values = max(1, min(int(n_values), 16))  # BitsPerSample has one value per sample; the largest counts
        field = data[e + 4 + inline : e + 4 + 2 * inline]
        if n_values * size > inline:  # stored at an offset
            (offset,) = struct.unpack(order + ("Q" if big else "I"), field)
            field = data[offset : offset + n_values * size]
            if len(field) < n_values * size:
                raise _truncated("TIFF", n)
        fmt = order + {2: "H", 4: "I", 8: "Q"}[size] * (len(field[: n_values * size]) // size)
        values[tag] = list(struct.unpack(fmt, field[: n_values * size])) or [0]
    if 256 not in values or 257 not in values:
        raise _fail("a TIFF whose first image has ImageWidth and ImageLength tags", "a TIFF without them",
                    "re-save the image as PNG")
    bits = max(values.get(258, [1]))
    sample_bytes = 1 if bits <= 8 else 2 if bits <= 16 else 4 if bits <= 32 else 8
    samples = values.get(277, [1])[0]
    return _Header(values[256][0], values[257][0], max(samples, 1) * sample_bytes)


_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}  # BITMAPCOREHEADER .. BITMAPV5HEADER


def _detect(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"BM") and len(data) >= 18 and struct.unpack("<I", data[14:18])[0] in _BMP_HEADER_SIZES:
        return "BMP"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    return None


_PARSERS = {"PNG": _png_size, "JPEG": _jpeg_size, "GIF": _gif_size, "BMP": _bmp_size, "WebP": _webp_size,
            "TIFF": _tiff_size}


def _as_bytes(data: object) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1:
        return data.tobytes()
    fix = "pass the file's bytes, e.g. decode_image(open(path, 'rb').read())"
    if hasattr(data, "read"):
        fix = "pass the bytes, e.g. decode_image(uploaded_file.getvalue()) or decode_image(f.read())"
    raise _fail("the image file's bytes", describe(data), fix)


def read_image_size(data: bytes) -> tuple[str, int, int]:
    """Format, width and height that an image file declares in its header, without decoding it.

    Args:
        data (bytes): the file's bytes.

    Returns:
        (format, width, height): e.g. ``("PNG", 640, 480)``.

    Raises:
        ImageDecodeError: empty data, not a supported image, or a header cut short.

    Example:
        >>> import struct, zlib
        >>> ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
        >>> crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        >>> png = b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc
        >>> read_image_size(png)
        ('PNG', 20000, 20000)
    """
    fmt, header = _read_header(_as_bytes(data))
    return fmt, int(header.width), int(header.height)


def _read_header(data: bytes) -> tuple[str, _Header]:
    if not data:
        raise _fail(f"{_SUPPORTED_TEXT}", "empty data (0 bytes)", "choose a file that is not empty")
    fmt = _detect(data)
    if fmt is None:
        raise _fail(_SUPPORTED_TEXT, _sniff_other(data), "convert it to PNG or JPEG first")
    return fmt, _PARSERS[fmt](data)


_SLICE_VALUES = 1 << 20  # values converted per step from 16-bit / float: bounds the temporaries to a few MB


def _to_uint8(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.uint16:
        return ((block.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)
    return np.round(np.clip(np.nan_to_num(block), 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_rgb_uint8(img: np.ndarray, fmt: str) -> np.ndarray:
    """OpenCV's IMREAD_UNCHANGED output (gray, gray+alpha, BGR, BGRA; 8/16-bit or float) -> RGB uint8.

    16-bit and float images are converted a slice of rows at a time into the preallocated result, so the
    peak memory is the input, the ``[H, W, 3]`` result and a few MB, whatever the image size.
    """
    if img.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise _fail("8-bit, 16-bit or floating-point pixels", f"{fmt} with {img.dtype} pixels",
                    "re-save the image as 8-bit PNG")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels not in (1, 2, 3, 4):
        raise _fail("1, 2, 3 or 4 channels", f"{fmt} with {channels} channels", "re-save the image as RGB PNG")
    if img.dtype == np.uint8:
        if channels == 3:
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if channels == 4:
            return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        gray = img if img.ndim == 2 else img[:, :, 0]  # gray, gray + alpha
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    img = img if img.ndim == 3 else img[:, :, None]
    order = [2, 1, 0] if channels >= 3 else [0, 0, 0]  # BGR(A) -> RGB; gray (+ alpha) -> replicated
    h, w = img.shape[:2]
    out = np.empty((h, w, 3), np.uint8)
    step = max(1, _SLICE_VALUES // max(1, 3 * w))
    for r in range(0, h, step):
        out[r : r + step] = _to_uint8(img[r : r + step][:, :, order])
    return out


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an uploaded image to RGB uint8, refusing oversized images before decoding them.

    The header's declared width x height is checked against ``max_pixels`` first; OpenCV decodes
    only images that pass. Alpha is dropped (not composited), gray is replicated to three channels,
    16-bit values are scaled by 255/65535 and rounded, and JPEG EXIF orientation is applied.

    Args:
        data (bytes): the file's bytes (``bytes``, ``bytearray`` or ``memoryview``).
        max_pixels (int): the largest width * height accepted (default 50 megapixels).

    Returns:
        ndarray[H, W, 3]: uint8, RGB order.

    Raises:
        ImageDecodeError: empty or truncated data, not a supported image, larger than ``max_pixels`` (declared
            or decoded), a decoded buffer over ``max_pixels`` x 8 bytes, or a JPEG of more than 100 scans.

    Example:
        >>> import cv2, numpy as np
        >>> bgr = np.zeros((2, 3, 3), np.uint8); bgr[..., 2] = 255   # pure red in OpenCV's BGR order
        >>> rgb = decode_image(cv2.imencode(".png", bgr)[1].tobytes())
        >>> rgb.shape, rgb.dtype, rgb[0, 0].tolist()
        ((2, 3, 3), dtype('uint8'), [255, 0, 0])
    """
    if not isinstance(max_pixels, (int, np.integer)) or isinstance(max_pixels, bool) or max_pixels <= 0:
        raise InputValueError("decode_image(max_pixels=...)", expected="a positive int", got=describe(max_pixels),
                              fix="e.g. max_pixels=50_000_000")
    data = _as_bytes(data)
    fmt, header = _read_header(data)
    w, h = int(header.width), int(header.height)
    if w <= 0 or h <= 0:
        raise _fail(f"a {fmt} image with a positive width and height", f"a header declaring {w} x {h} pixels",
                    "the file is corrupt; re-save it")
    if w * h > max_pixels:
        raise _fail(
            f"an image of at most {max_pixels:,} pixels",
            f"a {fmt} header declaring {w} x {h} = {w * h:,} pixels ({w * h * 3 / 1e9:.2f} GB as RGB)",
            f"downscale the image first, or raise the cap: decode_image(data, max_pixels={w * h:_})",
        )
    if w * h > OPENCV_PIXEL_CEILING:
        raise _fail(
            f"an image of at most {OPENCV_PIXEL_CEILING:,} pixels, the OPENCV_IO_MAX_IMAGE_PIXELS limit of this "
            "process's OpenCV", f"a {fmt} header declaring {w} x {h} = {w * h:,} pixels",
            f"start Python with OPENCV_IO_MAX_IMAGE_PIXELS={w * h} in the environment (OpenCV reads it once, "
            "when cv2 is imported), or downscale the image first",
        )
    if w * h * header.pixel_bytes > max_pixels * DECODED_BYTES_PER_PIXEL:
        raise _fail(
            f"a decoded image of at most {max_pixels * DECODED_BYTES_PER_PIXEL:,} bytes (max_pixels x "
            f"{DECODED_BYTES_PER_PIXEL}: 16-bit RGBA at the pixel cap)",
            f"a {fmt} of {w} x {h} pixels with {header.pixel_bytes} bytes per pixel = "
            f"{w * h * header.pixel_bytes:,} bytes",
            "re-save it with 8 or 16 bits per channel (not 32-bit or float), or raise the cap: "
            f"decode_image(data, max_pixels={-(-w * h * header.pixel_bytes // DECODED_BYTES_PER_PIXEL):_})",
        )
    if fmt == "JPEG":
        if data.rfind(b"\xff\xd9") < 0:
            raise _fail("a complete JPEG file (ending with the EOI marker FFD9)",
                        f"{len(data)} bytes without one (truncated upload?)", "upload the whole file again")
        scans = data.count(b"\xff\xda")  # SOS markers; entropy-coded data never holds FF DA (byte stuffing)
        if scans > MAX_JPEG_SCANS:
            raise _fail(
                f"a JPEG of at most {MAX_JPEG_SCANS} scans (encoders write at most a few dozen)",
                f"{scans:,} scans (SOS markers): each is a pass over the whole image, so decoding would take "
                "minutes (a decompression time bomb)",
                "re-save the image as baseline JPEG or PNG",
            )
    buf = np.frombuffer(data, np.uint8)
    try:
        img = cv2.imdecode(buf, header.flags)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE" in str(exc):  # OpenCV's own header read found more pixels than ours
            raise _fail(f"a {fmt} file whose pixel data matches its declared {w} x {h} pixels",
                        f"pixel data that OpenCV reads as larger than its limit of {OPENCV_PIXEL_CEILING:,} pixels "
                        "(a malformed or hostile file)", "re-save the image as PNG") from None
        raise _fail(f"a decodable {fmt} image", f"OpenCV error: {str(exc).strip().splitlines()[-1]}",
                    "the file is corrupt or truncated; upload it again or re-save it as PNG") from None
    if img is None or img.size == 0:
        raise _fail(f"a decodable {fmt} image", f"{len(data)} bytes that OpenCV could not decode "
                    "(corrupt or truncated file)", "upload the whole file again, or re-save it as PNG")
    got_h, got_w = img.shape[:2]
    # the guard that does not trust the header parser: EXIF orientation may swap a JPEG's sides, nothing else
    if (got_w, got_h) != (w, h) and not (fmt == "JPEG" and (got_w, got_h) == (h, w)):
        raise _fail(f"a {fmt} file whose pixel data matches its declared {w} x {h} pixels",
                    f"pixel data of {got_w} x {got_h} pixels (a malformed or hostile file)",
                    "re-save the image as PNG")
    return _to_rgb_uint8(img, fmt)


def resize_to_max_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale so the longer side is at most ``max_side``; return the image and the scale.

    Convention:
        Pixel-corner coordinates (pixel ``i`` covers ``[i, i + 1)``). The resize maps a point
        ``x`` of the original to exactly ``x * scale`` in the result (OpenCV is given ``fx = fy =
        scale``, not a target size), so ``boxes_image_new = boxes_image * scale`` and
        ``boxes_image = boxes_image_new / scale`` hold exactly. The output size is
        ``round(W * scale) x round(H * scale)``. Images already small enough are returned as is
        with ``scale = 1.0``. Downscaling uses area averaging (``cv2.INTER_AREA``).

    Args:
        image (ndarray[H, W, C] or ndarray[H, W]): any dtype OpenCV can resize.
        max_side (int): the largest allowed side, in pixels.

    Returns:
        (ndarray, float): the resized image and ``scale = new / old``.

    Example:
        >>> import numpy as np
        >>> small, scale = resize_to_max_side(np.zeros((1000, 800, 3), np.uint8), 500)
        >>> small.shape, scale
        ((500, 400, 3), 0.5)
    """
    if not isinstance(max_side, (int, np.integer)) or isinstance(max_side, bool) or max_side <= 0:
        raise InputValueError("resize_to_max_side(max_side=...)", expected="a positive int", got=describe(max_side),
                              fix="e.g. max_side=800")
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise InputValueError("resize_to_max_side(image=...)", expected="a non-empty ndarray[H, W, C] or [H, W]",
                              got=describe(image), fix="pass the array returned by decode_image")
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0
    scale = max_side / max(h, w)
    if round(min(h, w) * scale) < 1:  # OpenCV rounds the output size; a side of 0 pixels is an assertion
        need = max(h, w) // (2 * min(h, w)) + 1  # smallest max_side with min(h, w) * scale > 0.5
        raise InputValueError(
            "resize_to_max_side(max_side=...)",
            expected=f"a max_side that keeps both sides at least 1 pixel (>= {need} for this image)",
            got=f"max_side={max_side} for a {w} x {h} image: the short side would be "
            f"{min(h, w) * scale:.2g} pixels",
            fix=f"crop the image to the region of interest, or use max_side={need}",
        )
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return resized, scale
