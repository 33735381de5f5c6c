"""Small server-rendered pictures of where a variant samples: the whole image and the whole sampled region.

One picture per variant for the Side-by-side overview, drawn with OpenCV into an RGB array (a JPEG in
the figure): far cheaper for the browser than a Plotly image plus shapes plus a scatter per variant.

Convention:
    Inputs are in working-image pixels (continuous: pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``).
    The view is the union of the image, the box meant, the sampled region and its samples, plus a small
    margin, so nothing is cut off however far a bug sends the region; everything outside the image is
    hatched grey (off-image: those samples read zeros), and the image is framed.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["INTENDED_RGB", "REGION_RGB", "OFF_IMAGE_RGB", "view_of", "render_thumb", "MAX_POINTS"]

INTENDED_RGB = (0, 229, 255)  # figures.INTENDED_COLOR: the box meant (dashed)
REGION_RGB = (255, 45, 85)  # figures.REGION_COLOR: where the op samples (solid) and its samples
OFF_IMAGE_RGB = (232, 232, 232)
HATCH_RGB = (196, 196, 196)
FRAME_RGB = (70, 70, 70)
MAX_POINTS = 800  # samples drawn per picture (evenly thinned beyond that)


def _sorted_box(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64).reshape(4)
    return np.array([min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])])


def view_of(image_size: tuple[int, int], boxes: list[np.ndarray], points: np.ndarray | None = None,
            margin: float = 0.04) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in image px that holds the whole image, every finite box and every finite point.

    Example:
        >>> view_of((100, 200), [np.array([150., 50., 400., 90.])], margin=0)
        (0.0, 0.0, 400.0, 100.0)
    """
    h, w = image_size
    xs, ys = [0.0, float(w)], [0.0, float(h)]
    for b in boxes:
        b = _sorted_box(b)
        if np.all(np.isfinite(b)):
            xs += [b[0], b[2]]
            ys += [b[1], b[3]]
    if points is not None and len(points):
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        p = p[np.all(np.isfinite(p), axis=1)]
        if len(p):
            xs += [p[:, 0].min(), p[:, 0].max()]
            ys += [p[:, 1].min(), p[:, 1].max()]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return float(x0 - mx), float(y0 - my), float(x1 + mx), float(y1 + my)


@functools.lru_cache(maxsize=8)
def _hatched(width: int, height: int) -> np.ndarray:
    """The off-image background: light grey with diagonal hatching (read-only; copy before drawing)."""
    yy, xx = np.mgrid[0:height, 0:width]
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = OFF_IMAGE_RGB
    canvas[(xx + yy) % 7 == 0] = HATCH_RGB
    canvas.setflags(write=False)
    return canvas


def _dashed_rect(canvas: np.ndarray, x0: int, y0: int, x1: int, y1: int, color, thickness: int = 2,
                 dash: int = 5, gap: int = 3) -> None:
    _dashed_polygon(canvas, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, thickness, dash, gap)


def _dashed_polygon(canvas: np.ndarray, corners: list[tuple[int, int]], color, thickness: int = 2,
                    dash: int = 5, gap: int = 3) -> None:
    import cv2

    def segment(a: tuple[int, int], b: tuple[int, int]) -> None:
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        if length == 0:
            return
        step = dash + gap
        for s in range(0, length, step):
            e = min(s + dash, length)
            p = (a[0] + (b[0] - a[0]) * s // length, a[1] + (b[1] - a[1]) * s // length)
            q = (a[0] + (b[0] - a[0]) * e // length, a[1] + (b[1] - a[1]) * e // length)
            cv2.line(canvas, p, q, color, thickness, cv2.LINE_AA)

    for a, b in zip(corners, corners[1:] + corners[:1], strict=True):
        segment(a, b)


def render_thumb(
    image: np.ndarray,
    image_size: tuple[int, int],
    intended: np.ndarray,
    region: np.ndarray,
    points: np.ndarray | None = None,
    size: tuple[int, int] = (180, 135),
    *,
    region_polygon: np.ndarray | None = None,
    intended_polygon: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The image, the box meant (dashed cyan), the sampled region (red) and its samples, all of them whole.

    Args:
        image (ndarray[h, w, 3] uint8): the working image or a smaller copy of it (drawn at the
            working image's extent ``image_size`` whatever its own resolution).
        image_size ((H, W)): the working image's size in px: the coordinates of the boxes.
        intended (ndarray[4]): xyxy px, the box meant.
        region (ndarray[4]): xyxy px, what the op samples (corners are sorted; non-finite: not drawn).
        points (ndarray[P, 2] | None): (x, y) px of the samples (NaN rows ignored).
        size ((width, height)): the picture's size.
        region_polygon, intended_polygon (ndarray[4, 2] | None): turned boxes' (x, y) corners, px (the
            rotated family), drawn instead of the ``region`` / ``intended`` rectangles.

    Returns:
        (ndarray[height, width, 3] uint8, view): the picture, and the (x0, y0, x1, y1) image-px view it shows.
    """
    import cv2

    tw, th = size
    h, w = image_size
    pts = None if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if pts is not None:
        pts = pts[np.all(np.isfinite(pts), axis=1)]
    outlines = [np.concatenate([p.min(0), p.max(0)]) for p in (region_polygon, intended_polygon) if p is not None]
    vx0, vy0, vx1, vy1 = view_of(image_size, [intended, region, *outlines], pts)
    k = min(tw / max(vx1 - vx0, 1e-9), th / max(vy1 - vy0, 1e-9))
    ox, oy = (tw - (vx1 - vx0) * k) / 2, (th - (vy1 - vy0) * k) / 2

    def u(x: float) -> float:
        return (x - vx0) * k + ox

    def v(y: float) -> float:
        return (y - vy0) * k + oy

    canvas = _hatched(tw, th).copy()  # off-image: hatched
    ix0, iy0 = int(round(u(0))), int(round(v(0)))
    ix1, iy1 = max(int(round(u(w))), ix0 + 1), max(int(round(v(h))), iy0 + 1)
    ix0, iy0, ix1, iy1 = max(ix0, 0), max(iy0, 0), min(ix1, tw), min(iy1, th)
    rw, rh = ix1 - ix0, iy1 - iy0
    if rw > 0 and rh > 0:
        src = np.ascontiguousarray(image[..., :3])
        interp = cv2.INTER_AREA if rw < src.shape[1] else cv2.INTER_LINEAR
        canvas[iy0:iy1, ix0:ix1] = cv2.resize(src, (rw, rh), interpolation=interp)
        cv2.rectangle(canvas, (ix0, iy0), (ix1 - 1, iy1 - 1), FRAME_RGB, 1)
    if pts is not None and len(pts):
        if len(pts) > MAX_POINTS:
            pts = pts[np.linspace(0, len(pts) - 1, MAX_POINTS).round().astype(int)]
        px = np.round((pts[:, 0] - vx0) * k + ox).astype(np.int64)
        py = np.round((pts[:, 1] - vy0) * k + oy).astype(np.int64)
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 2 x 2 px dots, all at once
            qx, qy = px + dx, py + dy
            ok = (qx >= 0) & (qx < tw) & (qy >= 0) & (qy < th)
            canvas[qy[ok], qx[ok]] = REGION_RGB
    def corners(poly: np.ndarray) -> list[tuple[int, int]]:
        return [(int(round(u(x))), int(round(v(y)))) for x, y in np.asarray(poly, dtype=np.float64).reshape(-1, 2)]

    b = _sorted_box(intended)
    if intended_polygon is not None:
        if np.all(np.isfinite(intended_polygon)):
            _dashed_polygon(canvas, corners(intended_polygon), INTENDED_RGB)
    elif np.all(np.isfinite(b)):
        _dashed_rect(canvas, int(round(u(b[0]))), int(round(v(b[1]))), int(round(u(b[2]))), int(round(v(b[3]))),
                     INTENDED_RGB)
    r = _sorted_box(region)
    if region_polygon is not None:
        if np.all(np.isfinite(region_polygon)):
            cv2.polylines(canvas, [np.array(corners(region_polygon), np.int32)], True, REGION_RGB, 2, cv2.LINE_AA)
    elif np.all(np.isfinite(r)):
        cv2.rectangle(canvas, (int(round(u(r[0]))), int(round(v(r[1])))), (int(round(u(r[2]))), int(round(v(r[3])))),
                      REGION_RGB, 2, cv2.LINE_AA)
    return canvas, (vx0, vy0, vx1, vy1)
