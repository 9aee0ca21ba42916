"""Deterministic generator of the synthetic shapes dataset (COCO JSON + VOC XML).

Each image shows 1..``max_objects`` filled shapes (circle, square, triangle,
star, hexagon, cross) in random colours and rotations, on a textured
background (gradients, stripes, smooth noise, fine noise) with clutter that
is not an object (lines, scribbles, arcs, dots). Sizes run from
``min_object_size`` px to half the image; some shapes overlap, later ones
hiding at most half of an earlier one. The class is decided by the shape,
never the colour.

Annotations are *amodal*: an object's polygon, mask and box describe the
whole shape, including any occluded part. The box is the exact extent of the
mask that pycocotools rasterises from the written polygon (vertices on a
0.25 px grid), so COCO boxes, VOC boxes and decoded masks agree exactly.

Layout of one split (``<root>``)::

    JPEGImages/<split>_000000.jpg           RGB, JPEG quality 90
    annotations/instances_<split>.json      COCO
    Annotations/<split>_000000.xml          VOC (1-based pixel indices)
    ImageSets/Main/<split>.txt              VOC image-set list
    SegmentationClass/<split>_000000.png    per-pixel class (0 = background,
    ImageSets/Segmentation/<split>.txt      k + 1 = class k, visible object)
    meta.json                               parameters and statistics

Everything derives from ``seed`` (per-image generators), so the same
parameters give the same bytes, whatever the number of worker processes.
:func:`toolbox.datasets.synthetic.ensure_generated` caches a split on disk.
"""
from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import sys
import zlib
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from toolbox.datasets.base import decode_coco_segmentation
from toolbox.errors import DataError

# SyntheticSpec describes a split; it is not a component
__all__ = ["CLASSES", "GENERATOR_VERSION", "JPEG_QUALITY", "LONG_TAIL_PROFILES",
           "SPLIT_DEFAULT_SIZES", "class_weights", "generate", "parse_long_tail",
           "render_image", "shape_polygon"]

GENERATOR_VERSION = 2
CLASSES = ("circle", "square", "triangle", "star", "hexagon", "cross")
JPEG_QUALITY = 90
SPLIT_DEFAULT_SIZES = dict(train=1000, val=250)
LONG_TAIL_PROFILES = ("exponential", "step")


@dataclass(frozen=True)
class SyntheticSpec:
    """The parameters that define one split; its hash names the cache folder."""

    split: str = "train"
    num_images: int = 1000
    image_size: int = 256
    seed: int = 0
    max_objects: int = 8
    min_object_size: int = 10
    long_tail_profile: str | None = None
    long_tail_imbalance: float = 1.0

    def __post_init__(self):
        if not isinstance(self.split, str) or not self.split.isidentifier():
            raise DataError(f"split must be a name like 'train' or 'val', got {self.split!r}")
        if self.num_images < 1:
            raise DataError(f"num_images must be >= 1, got {self.num_images}")
        if not 48 <= self.image_size <= 2048:
            raise DataError(f"image_size must be in [48, 2048], got {self.image_size}")
        if not 1 <= self.max_objects <= 32:
            raise DataError(f"max_objects must be in [1, 32], got {self.max_objects}")
        if not 4 <= self.min_object_size <= self.image_size // 4:
            raise DataError(f"min_object_size must be in [4, image_size / 4], "
                            f"got {self.min_object_size}")

    def as_dict(self) -> dict:
        return dict(asdict(self), generator_version=GENERATOR_VERSION,
                    classes=list(CLASSES), jpeg_quality=JPEG_QUALITY)

    def variant_hash(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


def parse_long_tail(long_tail: dict | None) -> tuple[str | None, float]:
    """``dict(profile='exponential'|'step', imbalance=100)`` -> (profile, imbalance)."""
    if long_tail is None:
        return None, 1.0
    if not isinstance(long_tail, dict) or set(long_tail) - {"profile", "imbalance"}:
        raise DataError(f"long_tail must be dict(profile=..., imbalance=...), got {long_tail!r}")
    profile = long_tail.get("profile", "exponential")
    imbalance = float(long_tail.get("imbalance", 100))
    if profile not in LONG_TAIL_PROFILES:
        raise DataError(f"long_tail profile must be one of {LONG_TAIL_PROFILES}, got {profile!r}")
    if imbalance < 1:
        raise DataError(f"long_tail imbalance must be >= 1, got {imbalance}")
    return profile, imbalance


def class_weights(profile: str | None, imbalance: float, k: int = len(CLASSES)) -> np.ndarray:
    """Relative instance frequency per class (most frequent first)."""
    if profile is None or imbalance == 1:
        return np.ones(k)
    if profile == "exponential":
        return imbalance ** (-np.arange(k) / (k - 1))
    return np.where(np.arange(k) < k // 2, 1.0, 1.0 / imbalance)  # step


def _exact_counts(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` in proportion to ``weights`` (largest remainder, each >= 1)."""
    raw = total * weights / weights.sum()
    counts = np.maximum(np.floor(raw).astype(int), 1)
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    i = 0
    while counts.sum() < total:
        counts[order[i % len(order)]] += 1
        i += 1
    while counts.sum() > total:
        counts[int(np.argmax(counts))] -= 1
    return counts


# --------------------------------------------------------------------------
# drawing


def shape_polygon(kind: str, radius: float, angle: float) -> np.ndarray:
    """Vertices (K, 2) of a shape centred at the origin, circumradius ``radius``."""
    def ring(n, r, phase=0.0):
        t = angle + phase + np.arange(n) * 2 * np.pi / n
        return np.stack([np.cos(t), np.sin(t)], 1) * np.asarray(r, float).reshape(-1, 1)

    if kind == "circle":
        return ring(max(16, min(64, int(radius * 1.5))), radius)
    if kind == "square":
        return ring(4, radius, np.pi / 4)
    if kind == "triangle":
        return ring(3, radius, -np.pi / 2)
    if kind == "hexagon":
        return ring(6, radius)
    if kind == "star":
        return ring(10, np.tile([radius, radius * 0.45], 5), -np.pi / 2)
    if kind == "cross":
        a, b = radius * 0.35, radius * 0.94  # arm half-width, arm length
        pts = np.array([[a, b], [a, a], [b, a], [b, -a], [a, -a], [a, -b],
                        [-a, -b], [-a, -a], [-b, -a], [-b, a], [-a, a], [-a, b]])
        c, s = np.cos(angle), np.sin(angle)
        return pts @ np.array([[c, s], [-s, c]])
    raise ValueError(kind)


def _background(rng, size: int) -> np.ndarray:
    """A textured RGB uint8 background: gradient, stripes, smooth or fine noise."""
    yy, xx = _grid(size)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = rng.integers(4)
    theta = rng.uniform(0, np.pi)
    proj = xx * np.float32(np.cos(theta)) + yy * np.float32(np.sin(theta))
    if kind == 0:  # linear gradient
        t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
    elif kind == 1:  # stripes, soft or hard
        t = 0.5 + 0.5 * np.sin(proj * np.float32(2 * np.pi * size / rng.uniform(6, 40)))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
        c1 = np.clip(c0 + rng.uniform(-70, 70, 3), 0, 255)
    elif kind == 2:  # smooth colour noise
        k = int(rng.integers(3, 10))
        grid = rng.uniform(0, 255, (k, k, 3)).astype(np.float32)
        img = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        return np.clip(img, 0, 255).astype(np.uint8)
    else:  # fine texture around one colour
        t = cv2.GaussianBlur(_noise(rng, size), (0, 0), rng.uniform(0.8, 2.5))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        c1 = np.clip(c0 + rng.uniform(-90, 90, 3), 0, 255)
    t = t.astype(np.float32)
    # per-channel c0 + (c1 - c0) * t, rounded to uint8 (planes are much faster
    # than broadcasting over a trailing axis of 3)
    return cv2.merge([cv2.convertScaleAbs(t, alpha=float(b - a), beta=float(a))
                      if b >= a else 255 - cv2.convertScaleAbs(t, alpha=float(a - b),
                                                               beta=float(255 - a))
                      for a, b in zip(c0, c1)])


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


@functools.lru_cache(maxsize=4)
def _noise_tile(size: int) -> np.ndarray:
    return np.random.default_rng(20240601).standard_normal((size + 64, size + 64),
                                                           dtype=np.float32)


def _noise(rng, size: int) -> np.ndarray:
    """Unit Gaussian noise (size x size): a random window of a fixed tile, turned."""
    oy, ox, turn = (int(v) for v in rng.integers(0, [65, 65, 8]))
    n = _noise_tile(size)[oy:oy + size, ox:ox + size]
    if turn & 1:
        n = n.T
    if turn & 2:
        n = n[::-1]
    if turn & 4:
        n = n[:, ::-1]
    return np.ascontiguousarray(n)


def _clutter(rng, img: np.ndarray) -> None:
    """Lines, scribbles, open arcs and dots: texture, never an object."""
    size = img.shape[0]
    for _ in range(int(rng.integers(2, 14))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(4)
        thick = int(rng.integers(1, 3))
        if kind == 0:
            p = rng.integers(0, size, 4)
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), colour, thick)
        elif kind == 1:
            pts = np.cumsum(rng.integers(-size // 6, size // 6 + 1, (int(rng.integers(3, 7)), 2)),
                            0) + rng.integers(0, size, 2)
            cv2.polylines(img, [pts.astype(np.int32)], False, colour, thick)
        elif kind == 2:
            c = tuple(int(v) for v in rng.integers(0, size, 2))
            axes = tuple(int(v) for v in rng.integers(size // 16, size // 4, 2))
            start = int(rng.integers(0, 360))
            cv2.ellipse(img, c, axes, 0, start, start + int(rng.integers(40, 200)), colour, thick)
        else:
            for _ in range(int(rng.integers(3, 12))):
                c = tuple(int(v) for v in rng.integers(0, size, 2))
                cv2.circle(img, c, int(rng.integers(1, 3)), colour, -1)


def _pick_colour(rng, local_mean: np.ndarray) -> np.ndarray:
    """A saturated random colour that stands out from the local background."""
    hsv = np.stack([rng.integers(0, 180, 12), rng.integers(100, 256, 12),
                    rng.integers(90, 256, 12)], 1).astype(np.uint8)[None]
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32)
    far = np.linalg.norm(rgb - local_mean, axis=1) > 90
    return rgb[int(np.argmax(far))]  # the first far enough one (else the first)


def render_image(rng, spec: SyntheticSpec, labels: list[int]) -> tuple[np.ndarray, list, np.ndarray]:
    """Draw one image; return (RGB uint8 image, objects, per-pixel owner map)."""
    size = spec.image_size
    img = _background(rng, size)
    _clutter(rng, img)
    img = img.astype(np.float32)
    owner = np.full((size, size), -1, np.int32)
    objects: list[dict] = []
    lo, hi = np.log(spec.min_object_size), np.log(size * 0.5)
    mid = min(np.log(40), lo + 0.6 * (hi - lo))  # 20 % of the shapes are smaller
    sizes = [float(np.exp(rng.uniform(lo, mid) if rng.random() < 0.2 else rng.uniform(mid, hi)))
             for _ in labels]
    order = np.argsort(-np.asarray(sizes), kind="stable")  # big shapes at the back
    for j in order:
        obj = _place(rng, spec, CLASSES[labels[j]], sizes[j], owner, objects)
        if obj is None:
            continue
        obj["label"] = labels[j]
        ys, xs = obj.pop("_pixels")
        colour = _pick_colour(rng, img[ys, xs].mean(0))
        shade = 1 + rng.uniform(-0.15, 0.15) * (xs - xs.mean()) / max(np.ptp(xs), 1)
        img[ys, xs] = np.clip(colour[None] * shade[:, None], 0, 255)
        owner[ys, xs] = len(objects)
        objects.append(obj)
    noise_sigma = rng.uniform(0, 6)
    if noise_sigma > 0.5:
        # sensor-like luminance noise
        img += cv2.cvtColor(_noise(rng, size) * np.float32(noise_sigma), cv2.COLOR_GRAY2RGB)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), objects, owner


def _place(rng, spec, kind, size, owner, objects):
    """Find a spot for a shape; None if every attempt is rejected.

    The polygon is rasterised by pycocotools in a local window; its vertices
    sit on a 0.25 px grid, so shifting by whole pixels is exact and the mask
    equals the one decoded from the full image later.
    """
    img_size = spec.image_size
    overlap_ok = rng.random() < 0.4
    for attempt in range(30):
        if attempt and attempt % 10 == 0:
            size = max(size * 0.7, spec.min_object_size)
        poly = shape_polygon(kind, size / 2, rng.uniform(0, 2 * np.pi))
        lo, hi = poly.min(0), poly.max(0)
        span = img_size - 2 - (hi - lo)
        if (span <= 0).any():
            continue
        centre = 1 - lo + rng.uniform(0, 1, 2) * span
        poly = np.round((poly + centre) * 4) / 4  # 0.25 px grid: exact in binary
        x0, y0 = (int(v) for v in np.floor(poly.min(0)) - 1)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = (min(int(v), img_size) for v in np.ceil(poly.max(0)) + 2)
        local = [float(v) for v in (poly - [x0, y0]).ravel()]
        mask = decode_coco_segmentation([local], y1 - y0, x1 - x0).astype(bool)
        area = int(mask.sum())
        if area < 12:
            continue
        under = owner[y0:y1, x0:x1][mask]
        under = under[under >= 0]
        if len(under) and not overlap_ok:
            continue
        covered = np.bincount(under, minlength=len(objects))
        if any(o["visible"] - c < 0.5 * o["area"] for o, c in zip(objects, covered)):
            continue
        for o, c in zip(objects, covered):
            o["visible"] -= int(c)
            o["overlaps"] = o["overlaps"] or bool(c > 0)
        ys, xs = np.nonzero(mask)
        box = [x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1,
               y0 + int(ys.max()) + 1]
        return dict(polygon=[float(v) for v in poly.ravel()], bbox=box, area=area,
                    visible=area, overlaps=bool(len(under)), _pixels=(ys + y0, xs + x0))
    return None


# --------------------------------------------------------------------------
# writing


def voc_xml(name: str, height: int, width: int, objects: list, classes, database: str) -> str:
    """One image's VOC XML: boxes continuous 0-based -> 1-based inclusive;
    an object with ``iscrowd`` is written ``difficult``."""
    parts = [f"<annotation>\n\t<folder>JPEGImages</folder>\n\t<filename>{name}.jpg</filename>\n"
             f"\t<source><database>{database}</database></source>\n"
             f"\t<size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
             f"\t<segmented>1</segmented>\n"]
    for o in objects:
        x1, y1, x2, y2 = o["bbox"]
        parts.append(f"\t<object>\n\t\t<name>{classes[o['label']]}</name>\n"
                     f"\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
                     f"\t\t<difficult>{int(o.get('iscrowd', 0))}</difficult>\n\t\t<bndbox>"
                     f"<xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax>"
                     f"<ymax>{y2}</ymax></bndbox>\n\t</object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


def _render_one(spec: SyntheticSpec, out_dir: str, i: int, wanted: list[int]) -> list[dict]:
    """Draw image ``i`` and write its JPEG, class PNG and VOC XML; return its objects."""
    rng = np.random.default_rng([spec.seed, zlib.crc32(spec.split.encode()), i])
    img, objects, owner = render_image(rng, spec, wanted)
    name = f"{spec.split}_{i:06d}"
    jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
    _write(os.path.join(out_dir, "JPEGImages", name + ".jpg"), jpg.tobytes())
    lut = np.asarray([o["label"] + 1 for o in objects] + [0], np.uint8)
    class_map = lut[owner]  # owner -1 (background) picks the trailing 0
    _write(os.path.join(out_dir, "SegmentationClass", name + ".png"),
           cv2.imencode(".png", class_map)[1].tobytes())
    _write(os.path.join(out_dir, "Annotations", name + ".xml"),
           voc_xml(name, spec.image_size, spec.image_size, objects, CLASSES,
                   "toolbox synthetic shapes").encode())
    return objects


def generation_workers(num_images: int) -> int:
    """Processes to draw a split with: every core this process may use (up
    to 8, one per 100 images). Generation runs before training, alone, so
    it takes the whole machine (on 2 cores the quickstart's 1250 images
    take ~9 s instead of ~18 s); fork is cheap and safe here (the children
    only draw and write files), elsewhere it stays in one process."""
    if not sys.platform.startswith("linux") or num_images < 200:
        return 1
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, 8, num_images // 100))


def generate(spec: SyntheticSpec, out_dir: str, workers: int | None = None) -> dict:
    """Write one split into ``out_dir``; return its statistics.

    Images are drawn in ``workers`` processes (default: up to 8 on Linux for
    large splits); each image has its own seeded generator, so the files are
    the same whatever the number of workers.
    """
    split_id = zlib.crc32(spec.split.encode())
    for sub in ("JPEGImages", "Annotations", "annotations", "ImageSets/Main",
                "ImageSets/Segmentation", "SegmentationClass"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)

    plan_rng = np.random.default_rng([spec.seed, split_id, 2 ** 31 - 1])
    per_image = plan_rng.integers(1, spec.max_objects + 1, spec.num_images)
    profile = spec.long_tail_profile if spec.split == "train" else None
    counts = _exact_counts(int(per_image.sum()),
                           class_weights(profile, spec.long_tail_imbalance))
    labels = plan_rng.permutation(np.repeat(np.arange(len(CLASSES)), counts))
    bounds = np.concatenate([[0], np.cumsum(per_image)])
    jobs = [(spec, out_dir, i, labels[bounds[i]:bounds[i + 1]].tolist())
            for i in range(spec.num_images)]
    workers = generation_workers(spec.num_images) if workers is None else workers
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            all_objects = pool.starmap(_render_one, jobs, chunksize=16)
    else:
        all_objects = [_render_one(*job) for job in jobs]

    images, annotations, names = [], [], []
    n_small = n_overlap = 0
    for i, objects in enumerate(all_objects):
        name = f"{spec.split}_{i:06d}"
        names.append(name)
        images.append(dict(id=i + 1, file_name=name + ".jpg", height=spec.image_size,
                           width=spec.image_size))
        for o in objects:
            x1, y1, x2, y2 = o["bbox"]
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1,
                                    category_id=o["label"] + 1, bbox=[x1, y1, x2 - x1, y2 - y1],
                                    area=float(o["area"]), iscrowd=0,
                                    segmentation=[o["polygon"]]))
            n_small += o["area"] < 32 * 32
            n_overlap += o["overlaps"]
    n_objects = len(annotations)

    coco = dict(info=dict(description="toolbox synthetic shapes", split=spec.split,
                          parameters=spec.as_dict()),
                licenses=[], images=images, annotations=annotations,
                categories=[dict(id=k + 1, name=c, supercategory="shape")
                            for k, c in enumerate(CLASSES)])
    _write(os.path.join(out_dir, "annotations", f"instances_{spec.split}.json"),
           json.dumps(coco, separators=(",", ":")).encode())
    listing = ("\n".join(names) + "\n").encode()
    _write(os.path.join(out_dir, "ImageSets", "Main", f"{spec.split}.txt"), listing)
    _write(os.path.join(out_dir, "ImageSets", "Segmentation", f"{spec.split}.txt"), listing)
    instance_counts = np.bincount([a["category_id"] - 1 for a in annotations],
                                  minlength=len(CLASSES)).tolist()
    stats = dict(images=spec.num_images, objects=n_objects,
                 objects_per_image=round(n_objects / spec.num_images, 3),
                 fraction_small=round(n_small / max(n_objects, 1), 4),
                 fraction_overlapping=round(n_overlap / max(n_objects, 1), 4),
                 objects_not_placed=int(bounds[-1]) - n_objects,
                 instance_counts=instance_counts)
    meta = dict(parameters=spec.as_dict(), statistics=stats)
    _write(os.path.join(out_dir, "meta.json"), json.dumps(meta, indent=1, sort_keys=True).encode())
    return stats


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
