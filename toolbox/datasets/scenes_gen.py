"""Deterministic generator of the second synthetic detection set, 'scenes'.

A set the recipes were not tuned on, drawn differently from the shapes set
(:mod:`toolbox.datasets.synthetic`): non-square images of varying size
(longest side ``0.6..1`` x ``image_size``, aspect 0.6-1.8), five other
classes whose class is decided by geometry, never colour (ellipse, ring,
arrow, crescent, kite), filled flat, with a gradient, hatched or outlined,
on tiled, blobby, vignetted-gradient or photo-like noise backgrounds, among
distractors that are not annotated (outlines and cut-off parts of the same
shapes, other polygons). A quarter of the images are crowded (15-30 objects,
mostly small, heavy overlap; every object keeps at least
``VISIBLE_FLOOR`` of its area visible), and a few images per split hold one
``iscrowd`` region: a tight cluster of many tiny objects of one class,
annotated as ONE box (COCO ``iscrowd=1`` with the RLE of the cluster, VOC
``<difficult>1</difficult>``), which the loaders put in ``ignored_instances``.

Annotations are amodal (the whole shape, occluded parts included); every
segmentation is a compressed COCO RLE of the painted pixels, and the box is
its exact extent, so COCO boxes, VOC boxes and decoded masks agree.
The on-disk layout is the shapes set's (JPEGImages/, annotations/
instances_<split>.json, Annotations/*.xml with 1-based inclusive boxes,
ImageSets/Main/<split>.txt, SegmentationClass/*.png with 255 on crowd
regions, meta.json with the parameters and statistics). Each image has its
own seeded generator: the same parameters give the same bytes whatever the
number of worker processes.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import zlib
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from toolbox.datasets.synthetic_generation import generation_workers, voc_xml
from toolbox.datasets.scenes_draw import background, distractors, fill_object, shape_mask
from toolbox.errors import DataError

__all__ = ["generate", "render_image", "scene_spec"]

GENERATOR_VERSION = 1
CLASSES = ("ellipse", "ring", "arrow", "crescent", "kite")
JPEG_QUALITY = 90
SPLIT_DEFAULT_SIZES = dict(train=1000, val=250)
DEFAULT_IMAGE_SIZE = 400
DEFAULT_MAX_OBJECTS = 30
DEFAULT_MIN_OBJECT_SIZE = 10
VISIBLE_FLOOR = 0.45      # the share of an object that stays visible
CROWDED_FRACTION = 0.25   # images with 15..max_objects objects
CROWD_FRACTION = 0.06     # images with one iscrowd cluster (at least one per split)
SMALL_AREA = 32 * 32


@dataclass(frozen=True)
class SceneSpec:
    """The parameters of one 'scenes' split; its hash names the cache folder."""

    split: str = "train"
    num_images: int = 1000
    image_size: int = DEFAULT_IMAGE_SIZE  # upper bound of the longest side
    seed: int = 0
    max_objects: int = DEFAULT_MAX_OBJECTS
    min_object_size: int = DEFAULT_MIN_OBJECT_SIZE

    def __post_init__(self):
        if not isinstance(self.split, str) or not self.split.isidentifier():
            raise DataError(f"split must be a name like 'train' or 'val', got {self.split!r}")
        if self.num_images < 1:
            raise DataError(f"num_images must be >= 1, got {self.num_images}")
        if not 96 <= self.image_size <= 2048:
            raise DataError(f"image_size (the longest side) must be in [96, 2048] for the "
                            f"scenes generator, got {self.image_size}")
        if not 1 <= self.max_objects <= 64:
            raise DataError(f"max_objects must be in [1, 64], got {self.max_objects}")
        if not 6 <= self.min_object_size <= self.image_size // 8:
            raise DataError(f"min_object_size must be in [6, image_size / 8], "
                            f"got {self.min_object_size}")

    def as_dict(self) -> dict:
        return dict(asdict(self), generator="scenes", generator_version=GENERATOR_VERSION,
                    classes=list(CLASSES), jpeg_quality=JPEG_QUALITY,
                    visible_floor=VISIBLE_FLOOR)

    def variant_hash(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


def scene_spec(split: str = "train", num_images: int | None = None,
               image_size: int | None = None, seed: int = 0, max_objects: int | None = None,
               min_object_size: int | None = None) -> SceneSpec:
    """A :class:`SceneSpec` with this generator's defaults for the ``None`` arguments."""
    return SceneSpec(
        split=split,
        num_images=int(num_images if num_images is not None
                       else SPLIT_DEFAULT_SIZES.get(split, 250)),
        image_size=int(image_size if image_size is not None else DEFAULT_IMAGE_SIZE),
        seed=int(seed),
        max_objects=int(max_objects if max_objects is not None else DEFAULT_MAX_OBJECTS),
        min_object_size=int(min_object_size if min_object_size is not None
                            else DEFAULT_MIN_OBJECT_SIZE))


# --------------------------------------------------------------------------
# one image


def image_shape(rng, spec: SceneSpec) -> tuple[int, int]:
    """(height, width): longest side 0.6..1 x image_size, aspect w / h in 0.6..1.8."""
    aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.8))))
    longest = rng.uniform(0.6, 1.0) * spec.image_size
    w, h = (longest, longest / aspect) if aspect >= 1 else (longest * aspect, longest)
    return max(int(round(h)), 64), max(int(round(w)), 64)


def _object_sizes(rng, spec: SceneSpec, count: int, short_side: int, crowded: bool) -> list:
    lo = np.log(spec.min_object_size)
    hi = np.log(max(short_side * (0.4 if crowded else 0.7), spec.min_object_size + 1))
    small_hi = min(np.log(max(28, spec.min_object_size + 1)), hi)
    p_small = 0.35 if crowded else 0.1
    return [float(np.exp(rng.uniform(lo, small_hi) if rng.random() < p_small
                         else rng.uniform(small_hi, hi))) for _ in range(count)]


def render_image(rng, spec: SceneSpec, labels: list, crowded: bool, with_crowd: bool):
    """Draw one image; return (RGB uint8 image, objects, per-pixel owner map).

    Objects are dicts with ``label``, ``bbox`` (x1 y1 x2 y2, continuous),
    ``area``, ``mask`` (the local uint8 mask and its x0, y0), ``iscrowd``,
    ``overlaps`` and ``visible`` (pixels not hidden by later objects).
    """
    h, w = image_shape(rng, spec)
    img = background(rng, h, w)
    distractors(rng, img, CLASSES, spec.min_object_size)
    owner = np.full((h, w), -1, np.int32)
    objects: list = []
    keep_out = None
    if with_crowd:
        crowd = _crowd_cluster(rng, spec, img, h, w)
        if crowd is not None:
            owner[_window(crowd)][crowd["mask"][0] > 0] = 0
            objects.append(crowd)
            x1, y1, x2, y2 = crowd["bbox"]
            keep_out = (x1 - 2, y1 - 2, x2 + 2, y2 + 2)
    sizes = _object_sizes(rng, spec, len(labels), min(h, w), crowded)
    for j in np.argsort(-np.asarray(sizes), kind="stable"):  # big ones at the back
        obj = _place(rng, spec, int(labels[j]), sizes[j], owner, objects, keep_out, crowded)
        if obj is not None:
            fill_object(rng, img, obj["mask"][0], obj["mask"][1], obj["mask"][2])
            owner[_window(obj)][obj["mask"][0] > 0] = len(objects)
            objects.append(obj)
    _finish(rng, img)
    return img, objects, owner


def _window(obj) -> tuple:
    mask, x0, y0 = obj["mask"]
    return slice(y0, y0 + mask.shape[0]), slice(x0, x0 + mask.shape[1])


def _finish(rng, img: np.ndarray) -> None:
    """Photo-like finish: sometimes a slight blur, then sensor noise."""
    if rng.random() < 0.3:
        img[:] = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.8))
    sigma = rng.uniform(1, 8)
    noise = rng.standard_normal(img.shape[:2], dtype=np.float32) * np.float32(sigma)
    img[:] = np.clip(img + noise[..., None] + 0.5, 0, 255).astype(np.uint8)


def _local_box(mask: np.ndarray, x0: int, y0: int) -> list:
    ys, xs = np.nonzero(mask)
    return [x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1,
            y0 + int(ys.max()) + 1]


def _place(rng, spec, label, size, owner, objects, keep_out, crowded):
    """Find a spot for one object; None if every attempt is rejected."""
    h, w = owner.shape
    overlap_ok = crowded or rng.random() < 0.5
    for attempt in range(24):
        if attempt and attempt % 8 == 0:
            size = max(size * 0.75, spec.min_object_size)
        mask = shape_mask(rng, CLASSES[label], size)
        mh, mw = mask.shape
        if mh >= h - 2 or mw >= w - 2:
            continue
        x0, y0 = int(rng.integers(1, w - mw)), int(rng.integers(1, h - mh))
        if keep_out is not None and not (x0 + mw <= keep_out[0] or x0 >= keep_out[2]
                                         or y0 + mh <= keep_out[1] or y0 >= keep_out[3]):
            continue
        inside = mask > 0
        area = int(inside.sum())
        if area < 6:
            continue
        under = owner[y0:y0 + mh, x0:x0 + mw][inside]
        under = under[under >= 0]
        if len(under) and not overlap_ok:
            continue
        covered = np.bincount(under, minlength=len(objects))
        if any(c and (o["iscrowd"] or o["visible"] - c < VISIBLE_FLOOR * o["area"])
               for o, c in zip(objects, covered)):
            continue
        for o, c in zip(objects, covered):
            o["visible"] -= int(c)
            o["overlaps"] = o["overlaps"] or bool(c)
        return dict(label=label, bbox=_local_box(mask, x0, y0), area=area, visible=area,
                    overlaps=bool(len(under)), iscrowd=False, mask=(mask, x0, y0))
    return None


def _crowd_cluster(rng, spec, img, h, w):
    """Many tiny objects of one class in a tight cluster, drawn as one region."""
    label = int(rng.integers(len(CLASSES)))
    extent = int(rng.uniform(0.12, 0.22) * min(h, w)) + 12
    if extent >= min(h, w) - 4:
        return None
    region = np.zeros((extent, extent), np.uint8)
    centre, radius = (extent - 1) / 2, extent / 2 - 4
    for _ in range(int(rng.integers(12, 40))):
        tiny = shape_mask(rng, CLASSES[label], rng.uniform(4, 8))
        r, t = radius * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        ty = int(np.clip(centre + r * np.sin(t) - tiny.shape[0] / 2, 0, extent - tiny.shape[0]))
        tx = int(np.clip(centre + r * np.cos(t) - tiny.shape[1] / 2, 0, extent - tiny.shape[1]))
        np.maximum(region[ty:ty + tiny.shape[0], tx:tx + tiny.shape[1]], tiny,
                   out=region[ty:ty + tiny.shape[0], tx:tx + tiny.shape[1]])
    area = int((region > 0).sum())
    if area == 0:
        return None
    x0, y0 = int(rng.integers(1, w - extent)), int(rng.integers(1, h - extent))
    fill_object(rng, img, region, x0, y0, flat=True)
    return dict(label=label, bbox=_local_box(region, x0, y0), area=area, visible=area,
                overlaps=False, iscrowd=True, mask=(region, x0, y0))


# --------------------------------------------------------------------------
# writing


def _rle(obj, h: int, w: int) -> dict:
    from pycocotools import mask as mask_utils

    full = np.zeros((h, w), np.uint8, order="F")
    full[_window(obj)] = obj["mask"][0] > 0
    rle = mask_utils.encode(full)
    return dict(size=[int(h), int(w)], counts=rle["counts"].decode("ascii"))


def _render_one(spec: SceneSpec, out_dir: str, i: int, labels: list, crowded: bool,
                with_crowd: bool) -> dict:
    """Draw image ``i``, write its JPEG, class PNG and VOC XML; return its record."""
    rng = np.random.default_rng([spec.seed, zlib.crc32(spec.split.encode()), i, 2])
    img, objects, owner = render_image(rng, spec, labels, crowded, with_crowd)
    h, w = owner.shape
    name = f"{spec.split}_{i:06d}"
    jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
    _write(os.path.join(out_dir, "JPEGImages", name + ".jpg"), jpg.tobytes())
    lut = np.asarray([255 if o["iscrowd"] else o["label"] + 1 for o in objects] + [0], np.uint8)
    _write(os.path.join(out_dir, "SegmentationClass", name + ".png"),
           cv2.imencode(".png", lut[owner])[1].tobytes())
    _write(os.path.join(out_dir, "Annotations", name + ".xml"),
           voc_xml(name, h, w, objects, CLASSES, "toolbox synthetic scenes").encode())
    anns = [dict(label=o["label"], bbox=o["bbox"], area=o["area"], iscrowd=o["iscrowd"],
                 overlaps=o["overlaps"], visible=o["visible"] / o["area"],
                 rle=_rle(o, h, w)) for o in objects]
    return dict(name=name, height=h, width=w, objects=anns, wanted=len(labels))


def _plan(spec: SceneSpec):
    """Per image: its labels (balanced over the split), crowded or not, crowd or not."""
    rng = np.random.default_rng([spec.seed, zlib.crc32(spec.split.encode()), 2 ** 31 - 2])
    n = spec.num_images
    crowded = rng.random(n) < CROWDED_FRACTION
    normal_hi = min(8, spec.max_objects)
    crowded_lo = min(15, spec.max_objects)
    counts = np.where(crowded, rng.integers(crowded_lo, spec.max_objects + 1, n),
                      rng.integers(1, normal_hi + 1, n))
    with_crowd = np.zeros(n, bool)
    with_crowd[rng.permutation(n)[:max(1, int(round(CROWD_FRACTION * n)))]] = True
    labels = rng.permutation(np.resize(np.arange(len(CLASSES)), int(counts.sum())))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [(labels[bounds[i]:bounds[i + 1]].tolist(), bool(crowded[i]), bool(with_crowd[i]))
            for i in range(n)]


def generate(spec: SceneSpec, out_dir: str, workers: int | None = None) -> dict:
    """Write one split into ``out_dir``; return its statistics."""
    for sub in ("JPEGImages", "Annotations", "annotations", "ImageSets/Main",
                "ImageSets/Segmentation", "SegmentationClass"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    jobs = [(spec, out_dir, i, *plan) for i, plan in enumerate(_plan(spec))]
    workers = generation_workers(spec.num_images) if workers is None else workers
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            records = pool.starmap(_render_one, jobs, chunksize=16)
    else:
        records = [_render_one(*job) for job in jobs]
    coco = _coco(spec, records)
    _write(os.path.join(out_dir, "annotations", f"instances_{spec.split}.json"),
           json.dumps(coco, separators=(",", ":")).encode())
    listing = "".join(r["name"] + "\n" for r in records).encode()
    _write(os.path.join(out_dir, "ImageSets", "Main", f"{spec.split}.txt"), listing)
    _write(os.path.join(out_dir, "ImageSets", "Segmentation", f"{spec.split}.txt"), listing)
    stats = _statistics(spec, records, jobs)
    meta = dict(parameters=spec.as_dict(), statistics=stats)
    _write(os.path.join(out_dir, "meta.json"), json.dumps(meta, indent=1, sort_keys=True).encode())
    return stats


def _coco(spec: SceneSpec, records: list) -> dict:
    images, annotations = [], []
    for i, r in enumerate(records):
        images.append(dict(id=i + 1, file_name=r["name"] + ".jpg", height=r["height"],
                           width=r["width"]))
        for o in r["objects"]:
            x1, y1, x2, y2 = o["bbox"]
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1,
                                    category_id=o["label"] + 1,
                                    bbox=[x1, y1, x2 - x1, y2 - y1], area=float(o["area"]),
                                    iscrowd=int(o["iscrowd"]), segmentation=o["rle"]))
    return dict(info=dict(description="toolbox synthetic scenes", split=spec.split,
                          parameters=spec.as_dict()),
                licenses=[], images=images, annotations=annotations,
                categories=[dict(id=k + 1, name=c, supercategory="scene shape")
                            for k, c in enumerate(CLASSES)])


def _statistics(spec: SceneSpec, records: list, jobs: list) -> dict:
    objs = [o for r in records for o in r["objects"] if not o["iscrowd"]]
    crowds = [o for r in records for o in r["objects"] if o["iscrowd"]]
    n = max(len(objs), 1)
    widths = [r["width"] for r in records]
    heights = [r["height"] for r in records]
    return dict(
        images=spec.num_images, objects=len(objs),
        objects_per_image=round(len(objs) / spec.num_images, 3),
        max_objects_in_an_image=max(sum(not o["iscrowd"] for o in r["objects"])
                                    for r in records),
        crowded_images=int(sum(job[4] for job in jobs)),
        fraction_small=round(sum(o["area"] < SMALL_AREA for o in objs) / n, 4),
        fraction_overlapping=round(sum(o["overlaps"] for o in objs) / n, 4),
        min_visible_fraction=round(min((o["visible"] for o in objs), default=1.0), 4),
        crowd_regions=len(crowds),
        objects_not_placed=int(sum(r["wanted"] for r in records)) - len(objs),
        instance_counts=np.bincount([o["label"] for o in objs],
                                    minlength=len(CLASSES)).tolist(),
        width_range=[min(widths), max(widths)], height_range=[min(heights), max(heights)])


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
