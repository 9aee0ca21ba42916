"""The synthetic detection sets, generated on first use, as COCO or VOC.

Two generators: 'shapes' (:mod:`toolbox.datasets.synthetic_generation`, the
set the recipes were tuned on) and 'scenes' (:mod:`toolbox.datasets.scenes_gen`,
a differently drawn set they were not tuned on).
"""
from __future__ import annotations

import os
from typing import Sequence

from toolbox.datasets import scenes_gen
from toolbox.datasets import synthetic_generation as gen
from toolbox.datasets.split_cache import cache_root, ensure_split
from toolbox.datasets.synthetic_generation import (CLASSES, SPLIT_DEFAULT_SIZES, SyntheticSpec,
                                                   parse_long_tail)
from toolbox.datasets.coco import CocoDataset
from toolbox.datasets.voc import VOCDataset
from toolbox.errors import DataError

__all__ = ["SyntheticCocoDataset", "SyntheticVOCDataset"]

GENERATORS = ("shapes", "scenes")
_CACHE_KINDS = dict(shapes="synthetic", scenes="synthetic_scenes")


def generator_classes(generator: str = "shapes") -> tuple:
    """The class names of a generator's set."""
    _check_generator(generator)
    return CLASSES if generator == "shapes" else scenes_gen.CLASSES


def _check_generator(generator) -> None:
    if generator not in GENERATORS:
        raise DataError(f"generator must be one of {GENERATORS}, got {generator!r}")


def _generator_of(spec) -> str:
    return "scenes" if isinstance(spec, scenes_gen.SceneSpec) else "shapes"


# --------------------------------------------------------------------------
# the on-disk cache


def split_dir(spec, data_root: str | None) -> str:
    """``<data_root>/<split>``, or ``<cache>/<split>-<hash>`` without a data_root
    (the cache folder is ``synthetic`` for the shapes, ``synthetic_scenes``
    for the scenes)."""
    if data_root is not None:
        return os.path.join(data_root, spec.split)
    kind = _CACHE_KINDS[_generator_of(spec)]
    return os.path.join(cache_root(kind), f"{spec.split}-{spec.variant_hash()}")


def ensure_generated(spec, data_root: str | None = None) -> str:
    """Generate the split (a :class:`SyntheticSpec` or a scenes ``SceneSpec``)
    unless it is already there; return its folder (see
    :mod:`toolbox.datasets.split_cache`)."""
    if _generator_of(spec) == "scenes":
        return ensure_split(split_dir(spec, data_root), spec, scenes_gen.generate,
                            "synthetic dataset")
    return ensure_split(split_dir(spec, data_root), spec, gen.generate, "synthetic dataset")


def _prepare(generator, split, data_root, num_images, image_size, seed, long_tail,
             max_objects, min_object_size) -> str:
    _check_generator(generator)
    if generator == "scenes":
        if long_tail is not None:
            raise DataError("long_tail is a shapes-generator option; the scenes "
                            "generator keeps its classes balanced")
        spec = scenes_gen.scene_spec(split, num_images, image_size, seed, max_objects,
                                     min_object_size)
        return ensure_generated(spec, data_root)
    profile, imbalance = parse_long_tail(long_tail)
    spec = SyntheticSpec(
        split=split,
        num_images=int(num_images if num_images is not None
                       else SPLIT_DEFAULT_SIZES.get(split, 250)),
        image_size=int(image_size if image_size is not None else 256), seed=int(seed),
        max_objects=int(max_objects if max_objects is not None else 8),
        min_object_size=int(min_object_size if min_object_size is not None else 10),
        long_tail_profile=profile, long_tail_imbalance=imbalance)
    return ensure_generated(spec, data_root)


class _GeneratorClasses:
    """``METAINFO['classes']`` per ``generator``, for the dataset instance and
    (through :meth:`classes_of_config`) for config checks before building."""

    METAINFO = dict(classes=CLASSES)

    def _use_generator(self, generator: str) -> None:
        _check_generator(generator)
        self.generator = generator
        if generator != "shapes":  # an instance attribute: the class keeps the shapes'
            self.METAINFO = dict(classes=generator_classes(generator))

    @classmethod
    def classes_of_config(cls, cfg: dict) -> tuple:
        """The classes a dataset built from ``cfg`` (its keyword arguments) has."""
        return generator_classes(cfg.get("generator", "shapes"))


class SyntheticCocoDataset(_GeneratorClasses, CocoDataset):
    """Synthetic detection images, read through the COCO loader.

    The split is generated on first use (deterministically from ``seed``)
    into ``<data_root>/<split>/`` or, without ``data_root``, into
    ``$TOOLBOX_DATA_DIR/synthetic/<split>-<hash>`` (``synthetic_scenes/`` for
    the scenes; default ``~/.cache/toolbox/...``); later uses read the files.

    Args:
        split: 'train' or 'val' (any name works; each has its own images).
        num_images: images in the split (default 1000 for train, 250 otherwise).
        image_size: shapes: the side of the square images (default 256);
            scenes: the upper bound of the longest side (default 400; each
            image has its own size and aspect, 0.6-1.8).
        seed: the generator seed.
        long_tail: shapes only, e.g. ``dict(profile='exponential',
            imbalance=100)``: train instance counts fall off from the first
            class to the last by that ratio ('step': half the classes are
            rarer by ``imbalance``). Other splits stay balanced.
        max_objects: shapes: objects per image are drawn from 1..max_objects
            (default 8); scenes: the most objects of a crowded image (default 30).
        min_object_size: the smallest object's diameter in pixels (10).
        generator: 'shapes' (default: coloured circle, square, triangle, star,
            hexagon, cross on textured backgrounds) or 'scenes' (ellipse,
            ring, arrow, crescent, kite; non-square images, crowded scenes,
            distractors and ``iscrowd`` clusters, see
            :mod:`toolbox.datasets.scenes_gen`).

    The other arguments are :class:`CocoDataset`'s. ``iscrowd`` regions (scenes)
    go to ``ignored_instances``.
    """

    def __init__(self, split: str = "train", data_root: str | None = None,
                 num_images: int | None = None, image_size: int | None = None,
                 seed: int = 0, long_tail: dict | None = None,
                 max_objects: int | None = None, min_object_size: int | None = None,
                 pipeline: Sequence[dict] = (), test_mode: bool = False,
                 filter_empty_gt: bool = True, metainfo: dict | None = None,
                 with_mask: bool = False, skip_bad_images: bool | None = None,
                 max_bad_images: float = 0.05, generator: str = "shapes"):
        self.split = split
        self._use_generator(generator)
        root = _prepare(generator, split, data_root, num_images, image_size, seed, long_tail,
                        max_objects, min_object_size)
        super().__init__(data_root=root, ann_file=f"annotations/instances_{split}.json",
                         img_dir="JPEGImages", pipeline=pipeline, test_mode=test_mode,
                         filter_empty_gt=filter_empty_gt, metainfo=metainfo,
                         with_mask=with_mask, skip_bad_images=skip_bad_images,
                         max_bad_images=max_bad_images)


class SyntheticVOCDataset(_GeneratorClasses, VOCDataset):
    """The same synthetic images and boxes, read through the VOC XML loader.

    Same arguments as :class:`SyntheticCocoDataset` (no masks: VOC XML has
    none); the same parameters give the very same files. The scenes'
    ``iscrowd`` regions are ``difficult`` objects here (``ignored_instances``).
    """

    def __init__(self, split: str = "train", data_root: str | None = None,
                 num_images: int | None = None, image_size: int | None = None,
                 seed: int = 0, long_tail: dict | None = None,
                 max_objects: int | None = None, min_object_size: int | None = None,
                 pipeline: Sequence[dict] = (), test_mode: bool = False,
                 filter_empty_gt: bool = True, metainfo: dict | None = None,
                 skip_bad_images: bool | None = None, max_bad_images: float = 0.05,
                 generator: str = "shapes"):
        self.split = split
        self._use_generator(generator)
        root = _prepare(generator, split, data_root, num_images, image_size, seed, long_tail,
                        max_objects, min_object_size)
        super().__init__(data_root=root, ann_file=f"ImageSets/Main/{split}.txt",
                         pipeline=pipeline, test_mode=test_mode,
                         filter_empty_gt=filter_empty_gt, metainfo=metainfo,
                         skip_bad_images=skip_bad_images,
                         max_bad_images=max_bad_images)
