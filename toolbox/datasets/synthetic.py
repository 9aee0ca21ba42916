"""The synthetic shapes dataset, generated on first use, as COCO or VOC."""
from __future__ import annotations

import os
from typing import Sequence

from toolbox.datasets import _synthetic_gen as gen
from toolbox.datasets._cache import cache_root, ensure_split
from toolbox.datasets._synthetic_gen import (CLASSES, SPLIT_DEFAULT_SIZES, SyntheticSpec,
                                             parse_long_tail)
from toolbox.datasets.coco import CocoDataset
from toolbox.datasets.voc import VOCDataset

__all__ = ["SyntheticCocoDataset", "SyntheticVOCDataset"]


# --------------------------------------------------------------------------
# the on-disk cache


def split_dir(spec: SyntheticSpec, data_root: str | None) -> str:
    """``<data_root>/<split>``, or ``<cache>/<split>-<hash>`` without a data_root."""
    if data_root is not None:
        return os.path.join(data_root, spec.split)
    return os.path.join(cache_root("synthetic"), f"{spec.split}-{spec.variant_hash()}")


def ensure_generated(spec: SyntheticSpec, data_root: str | None = None) -> str:
    """Generate the split unless it is already there; return its folder
    (see :mod:`toolbox.datasets._cache`)."""
    return ensure_split(split_dir(spec, data_root), spec, gen.generate, "synthetic dataset")


def _prepare(split, data_root, num_images, image_size, seed, long_tail, max_objects,
             min_object_size) -> str:
    profile, imbalance = parse_long_tail(long_tail)
    spec = SyntheticSpec(
        split=split,
        num_images=int(num_images if num_images is not None
                       else SPLIT_DEFAULT_SIZES.get(split, 250)),
        image_size=int(image_size), seed=int(seed), max_objects=int(max_objects),
        min_object_size=int(min_object_size), long_tail_profile=profile,
        long_tail_imbalance=imbalance)
    return ensure_generated(spec, data_root)


class SyntheticCocoDataset(CocoDataset):
    """Coloured shapes on textured backgrounds, read through the COCO loader.

    The split is generated on first use (deterministically from ``seed``)
    into ``<data_root>/<split>/`` or, without ``data_root``, into
    ``$TOOLBOX_DATA_DIR/synthetic/<split>-<hash>`` (default
    ``~/.cache/toolbox/synthetic/...``); later uses read the files.

    Args:
        split: 'train' or 'val' (any name works; each has its own images).
        num_images: images in the split (default 1000 for train, 250 otherwise).
        image_size: side of the square images in pixels.
        seed: the generator seed.
        long_tail: e.g. ``dict(profile='exponential', imbalance=100)``: train
            instance counts fall off from the first class to the last by that
            ratio ('step': half the classes are rarer by ``imbalance``). Other
            splits stay balanced so per-class AP stays comparable.
        max_objects: objects per image are drawn uniformly from 1..max_objects.
        min_object_size: the smallest shape's diameter in pixels.

    The other arguments are :class:`CocoDataset`'s. Classes: circle,
    square, triangle, star, hexagon, cross.
    """

    METAINFO = dict(classes=CLASSES)

    def __init__(self, split: str = "train", data_root: str | None = None,
                 num_images: int | None = None, image_size: int = 256, seed: int = 0,
                 long_tail: dict | None = None, max_objects: int = 8,
                 min_object_size: int = 10, pipeline: Sequence[dict] = (),
                 test_mode: bool = False, filter_empty_gt: bool = True,
                 metainfo: dict | None = None, with_mask: bool = False,
                 skip_bad_images: bool | None = None,
                 max_bad_images: float = 0.05):
        self.split = split
        root = _prepare(split, data_root, num_images, image_size, seed, long_tail,
                        max_objects, min_object_size)
        super().__init__(data_root=root, ann_file=f"annotations/instances_{split}.json",
                         img_dir="JPEGImages", pipeline=pipeline, test_mode=test_mode,
                         filter_empty_gt=filter_empty_gt, metainfo=metainfo,
                         with_mask=with_mask, skip_bad_images=skip_bad_images,
                         max_bad_images=max_bad_images)


class SyntheticVOCDataset(VOCDataset):
    """The same synthetic images and boxes, read through the VOC XML loader.

    Same arguments as :class:`SyntheticCocoDataset` (no masks: VOC XML has
    none); the same parameters give the very same files.
    """

    METAINFO = dict(classes=CLASSES)

    def __init__(self, split: str = "train", data_root: str | None = None,
                 num_images: int | None = None, image_size: int = 256, seed: int = 0,
                 long_tail: dict | None = None, max_objects: int = 8,
                 min_object_size: int = 10, pipeline: Sequence[dict] = (),
                 test_mode: bool = False, filter_empty_gt: bool = True,
                 metainfo: dict | None = None, skip_bad_images: bool | None = None,
                 max_bad_images: float = 0.05):
        self.split = split
        root = _prepare(split, data_root, num_images, image_size, seed, long_tail,
                        max_objects, min_object_size)
        super().__init__(data_root=root, ann_file=f"ImageSets/Main/{split}.txt",
                         pipeline=pipeline, test_mode=test_mode,
                         filter_empty_gt=filter_empty_gt, metainfo=metainfo,
                         skip_bad_images=skip_bad_images,
                         max_bad_images=max_bad_images)
