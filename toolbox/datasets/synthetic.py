"""The synthetic shapes dataset, generated on first use, as COCO or VOC."""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from typing import Sequence

from toolbox.datasets import _synthetic_gen as gen
from toolbox.datasets._synthetic_gen import (CLASSES, SPLIT_DEFAULT_SIZES, SyntheticSpec,
                                             parse_long_tail)
from toolbox.datasets.coco import CocoDataset
from toolbox.datasets.voc import VOCDataset
from toolbox.errors import DataError

try:
    import fcntl
except ImportError:  # not POSIX: the atomic rename alone keeps datasets whole
    fcntl = None

__all__ = ["SyntheticCocoDataset", "SyntheticVOCDataset"]

logger = logging.getLogger("toolbox.datasets")


# --------------------------------------------------------------------------
# the on-disk cache


def default_cache_root() -> str:
    base = os.environ.get("TOOLBOX_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "toolbox")
    return os.path.join(base, "synthetic")


def split_dir(spec: SyntheticSpec, data_root: str | None) -> str:
    """``<data_root>/<split>``, or ``<cache>/<split>-<hash>`` without a data_root."""
    if data_root is not None:
        return os.path.join(data_root, spec.split)
    return os.path.join(default_cache_root(), f"{spec.split}-{spec.variant_hash()}")


def ensure_generated(spec: SyntheticSpec, data_root: str | None = None) -> str:
    """Generate the split unless it is already there; return its folder.

    Generation runs under an exclusive lock next to the folder, into a
    temporary folder renamed into place at the end, so concurrent processes
    (e.g. distributed ranks) never see half a dataset.
    """
    target = split_dir(spec, data_root)
    if _check_existing(target, spec):
        return target
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _check_existing(target, spec):
                return target
            for stale in os.listdir(parent):  # left by a process that died mid-way
                if fcntl is not None and stale.startswith(f".{name}.tmp-"):
                    shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
            tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}-{threading.get_ident()}")
            start = time.perf_counter()
            logger.info("generating the synthetic '%s' split (%d images, first use)",
                        spec.split, spec.num_images)
            try:
                gen.generate(spec, tmp)
                if os.path.isdir(target):
                    os.rmdir(target)  # an empty folder (anything else was refused above)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            logger.info("generated the synthetic '%s' split (%d images) in %.1f s into %s",
                        spec.split, spec.num_images, time.perf_counter() - start, target)
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _check_existing(target: str, spec: SyntheticSpec) -> bool:
    """True if ``target`` holds this exact split; DataError if it holds something else."""
    meta_path = os.path.join(target, "meta.json")
    if os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            found = json.load(f).get("parameters", {})
        wanted = json.loads(json.dumps(spec.as_dict()))
        if found != wanted:
            diff = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
            raise DataError(f"{target} holds a synthetic dataset with other parameters "
                            f"(found, wanted): {diff}; use another data_root or delete it")
        return True
    if os.path.isdir(target) and os.listdir(target):
        raise DataError(f"{target} exists, is not empty and is not a synthetic dataset "
                        "(no meta.json); use another data_root")
    return False


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
                 skip_bad_images: bool = False):
        self.split = split
        root = _prepare(split, data_root, num_images, image_size, seed, long_tail,
                        max_objects, min_object_size)
        super().__init__(data_root=root, ann_file=f"annotations/instances_{split}.json",
                         img_dir="JPEGImages", pipeline=pipeline, test_mode=test_mode,
                         filter_empty_gt=filter_empty_gt, metainfo=metainfo,
                         with_mask=with_mask, skip_bad_images=skip_bad_images)


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
                 metainfo: dict | None = None, skip_bad_images: bool = False):
        self.split = split
        root = _prepare(split, data_root, num_images, image_size, seed, long_tail,
                        max_objects, min_object_size)
        super().__init__(data_root=root, ann_file=f"ImageSets/Main/{split}.txt",
                         pipeline=pipeline, test_mode=test_mode,
                         filter_empty_gt=filter_empty_gt, metainfo=metainfo,
                         skip_bad_images=skip_bad_images)
