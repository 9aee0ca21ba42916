"""Drawing pieces of the 'scenes' generator (:mod:`toolbox.datasets.scenes_gen`):
shape geometry, backgrounds, object fills and unannotated distractors.

Every function draws from the ``rng`` it is given (a ``numpy.random.Generator``),
so an image is a pure function of its generator's seed.
"""
from __future__ import annotations

import numpy as np
import cv2

__all__ = ["shape_polygons", "shape_mask", "background", "fill_object", "distractors"]

_SHIFT = 3  # fillPoly fixed-point bits: vertices on a 1/8 px grid
_ONE = 1 << _SHIFT


def _turn(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _ellipse(a: float, b: float, cx: float = 0.0) -> np.ndarray:
    n = int(np.clip(max(a, b) * 1.3, 12, 64))
    t = np.arange(n) * (2 * np.pi / n)
    return np.stack([cx + a * np.cos(t), b * np.sin(t)], 1)


def shape_polygons(rng, kind: str, size: float) -> list:
    """``[(vertices (K, 2), value)]`` centred at the origin, about ``size`` px
    across, randomly turned; value 1 paints, 0 cuts a hole (ring, crescent).

    The class is in the geometry: an ellipse is elongated (axes ratio
    0.4-0.75), a ring has a hole, an arrow a shaft and a head, a crescent is
    a disc bitten by a larger offset one, a kite a four-sided diamond whose
    top is longer than its bottom.
    """
    r = size / 2
    if kind == "ellipse":
        polys = [(_ellipse(r, r * rng.uniform(0.4, 0.75)), 1)]
    elif kind == "ring":
        squash, hole = rng.uniform(0.85, 1.0), rng.uniform(0.5, 0.68)
        polys = [(_ellipse(r, r * squash), 1), (_ellipse(r * hole, r * hole * squash), 0)]
    elif kind == "arrow":
        shaft, head_len, head = (size * rng.uniform(0.08, 0.14), size * rng.uniform(0.3, 0.42),
                                 size * rng.uniform(0.22, 0.3))
        neck = r - head_len
        polys = [(np.array([[-r, -shaft], [neck, -shaft], [neck, -head], [r, 0.0],
                            [neck, head], [neck, shaft], [-r, shaft]]), 1)]
    elif kind == "crescent":
        bite = r * rng.uniform(0.8, 0.95)
        polys = [(_ellipse(r, r), 1), (_ellipse(bite, bite, r * rng.uniform(0.35, 0.55)), 0)]
    elif kind == "kite":
        top, half = size * rng.uniform(0.58, 0.72), size * rng.uniform(0.3, 0.42)
        mid = (top - (size - top)) / 2
        polys = [(np.array([[0.0, -top + mid], [half, mid], [0.0, size - top + mid],
                            [-half, mid]]), 1)]
    else:
        raise ValueError(kind)
    angle = rng.uniform(0, 2 * np.pi)
    return [(_turn(p, angle), v) for p, v in polys]


def _fill(canvas: np.ndarray, pts: np.ndarray, value: int) -> None:
    cv2.fillPoly(canvas, [np.round(pts * _ONE).astype(np.int32)], int(value), cv2.LINE_8, _SHIFT)


def shape_mask(rng, kind: str, size: float) -> np.ndarray:
    """A uint8 mask (1 = the shape) just large enough to hold it (1 px margin)."""
    polys = shape_polygons(rng, kind, size)
    outer = np.concatenate([p for p, v in polys if v])
    lo, hi = outer.min(0), outer.max(0)
    offset = 1 - lo + rng.uniform(0, 1, 2)
    w, h = (int(v) for v in np.ceil(hi - lo) + 3)
    canvas = np.zeros((h, w), np.uint8)
    for pts, value in polys:
        _fill(canvas, pts + offset, value)
    return canvas


# --------------------------------------------------------------------------
# backgrounds


def _colours(rng, n: int) -> np.ndarray:
    return rng.uniform(0, 255, (n, 3)).astype(np.float32)


def background(rng, h: int, w: int) -> np.ndarray:
    """A uint8 RGB background: tiles, soft blobs, a gradient or photo-like
    multi-scale noise, often vignetted."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(4))
    if kind == 0:
        img = _tiles(rng, yy, xx)
    elif kind == 1:
        img = _blobs(rng, h, w)
    elif kind == 2:
        theta = rng.uniform(0, 2 * np.pi)
        proj = xx * np.cos(theta) + yy * np.sin(theta)
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
        c0, c1 = _colours(rng, 2)
        img = c0 + (c1 - c0) * t[..., None]
    else:
        img = _photo_noise(rng, h, w)
    if kind == 2 or rng.random() < 0.5:
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        r2 = ((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2
        img = img * np.clip(1 - rng.uniform(0.6, 1.6) * r2, 0.2, 1)[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _tiles(rng, yy, xx) -> np.ndarray:
    tile, theta = rng.uniform(8, 40), rng.uniform(0, np.pi / 2)
    u = (xx * np.cos(theta) + yy * np.sin(theta)) / tile
    v = (-xx * np.sin(theta) + yy * np.cos(theta)) / (tile * rng.uniform(0.5, 2))
    checker = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    c0 = _colours(rng, 1)[0]
    c1 = np.clip(c0 + rng.uniform(-70, 70, 3), 0, 255).astype(np.float32)
    img = c0 + (c1 - c0) * checker[..., None]
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 2.0))
    return img


def _blobs(rng, h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.float32)
    img[:] = _colours(rng, 1)[0]
    for _ in range(int(rng.integers(6, 20))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(8, max(9, w // 3))), int(rng.integers(8, max(9, h // 3))))
        colour = tuple(float(c) for c in _colours(rng, 1)[0])
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(4, 12))


def _photo_noise(rng, h: int, w: int) -> np.ndarray:
    """1/f-like noise (octaves of upsampled random grids) through a 3-colour ramp."""
    t = np.zeros((h, w), np.float32)
    for cells in (3, 6, 12, 24, 48):
        grid = rng.standard_normal((cells, max(2, int(cells * w / h)))).astype(np.float32)
        t += cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) / cells ** 0.7
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    c0, c1, c2 = _colours(rng, 3)
    low = np.minimum(t * 2, 1)[..., None]
    high = np.maximum(t * 2 - 1, 0)[..., None]
    return c0 + (c1 - c0) * low + (c2 - c1) * high


# --------------------------------------------------------------------------
# objects and distractors


def _pick_colour(rng, local_mean: np.ndarray) -> np.ndarray:
    """A random colour, the first of 8 that differs from the local background
    by more than 60 (RGB distance), else the most different one."""
    hsv = np.stack([rng.integers(0, 180, 8), rng.integers(40, 256, 8),
                    rng.integers(40, 256, 8)], 1).astype(np.uint8)[None]
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32)
    dist = np.linalg.norm(rgb - local_mean, axis=1)
    far = np.flatnonzero(dist > 60)
    return rgb[int(far[0]) if len(far) else int(np.argmax(dist))]


def fill_object(rng, img: np.ndarray, mask: np.ndarray, x0: int, y0: int,
                flat: bool = False) -> None:
    """Paint ``mask`` into ``img`` at (x0, y0): flat, a gradient, hatched or
    outlined (``flat``: always flat)."""
    region = img[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return
    colour = _pick_colour(rng, region[ys, xs].astype(np.float32).mean(0))
    style = 0 if flat else int(rng.integers(4))
    paint = np.broadcast_to(colour, (len(ys), 3)).astype(np.float32)
    theta = rng.uniform(0, np.pi)
    proj = xs * np.cos(theta) + ys * np.sin(theta)
    other = np.clip(colour + rng.uniform(-90, 90, 3), 0, 255).astype(np.float32)
    if style == 1:  # gradient across the object
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
        paint = paint + (other - colour) * t[:, None].astype(np.float32)
    elif style == 2:  # hatching
        stripes = np.sin(proj * (2 * np.pi / rng.uniform(3, 8))) > 0
        paint = np.where(stripes[:, None], other, paint)
    elif style == 3:  # a contrasting outline inside the mask
        rim = (mask > 0) & ~cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
        paint = np.where(rim[ys, xs][:, None], 255 - colour, paint)
    region[ys, xs] = np.clip(paint + 0.5, 0, 255).astype(np.uint8)


def distractors(rng, img: np.ndarray, classes, min_size: int) -> None:
    """3-12 things that are not objects: outlines of the classes' shapes, cut-off
    parts of them, other filled polygons and scribbles."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(3, 13))):
        kind = int(rng.integers(4))
        size = float(np.exp(rng.uniform(np.log(min_size), np.log(0.3 * min(h, w)))))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = rng.uniform(0, 1, 2) * (w, h)
        if kind == 0:  # an outline of a class shape
            for pts, _ in shape_polygons(rng, classes[int(rng.integers(len(classes)))], size):
                cv2.polylines(img, [np.round((pts + centre) * _ONE).astype(np.int32)], True,
                              colour, int(rng.integers(1, 3)), cv2.LINE_AA, _SHIFT)
        elif kind == 1:  # part of a class shape, cut by a straight line
            _partial_shape(rng, img, classes[int(rng.integers(len(classes)))], size, colour)
        elif kind == 2:  # another filled polygon (3-5 corners)
            n = int(rng.integers(3, 6))
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            pts = np.stack([np.cos(t), np.sin(t)], 1) * size / 2 + centre
            _fill_colour(img, pts, colour)
        else:  # a scribble
            steps = rng.uniform(-size, size, (int(rng.integers(3, 7)), 2))
            pts = np.cumsum(steps, 0) + centre
            cv2.polylines(img, [pts.astype(np.int32)], False, colour, int(rng.integers(1, 4)))


def _fill_colour(img: np.ndarray, pts: np.ndarray, colour: tuple) -> None:
    cv2.fillPoly(img, [np.round(pts * _ONE).astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)


def _partial_shape(rng, img: np.ndarray, kind: str, size: float, colour: tuple) -> None:
    mask = shape_mask(rng, kind, size)
    h, w = img.shape[:2]
    if mask.shape[0] >= h or mask.shape[1] >= w:
        return
    ys, xs = np.nonzero(mask)
    theta = rng.uniform(0, 2 * np.pi)
    proj = (xs - xs.mean()) * np.cos(theta) + (ys - ys.mean()) * np.sin(theta)
    keep = proj < np.quantile(proj, rng.uniform(0.3, 0.6)) if len(proj) else proj > 0
    y0, x0 = int(rng.integers(0, h - mask.shape[0])), int(rng.integers(0, w - mask.shape[1]))
    img[ys[keep] + y0, xs[keep] + x0] = colour
