"""The synthetic shapes images with their per-pixel class maps (2D segmentation)."""
from __future__ import annotations

from typing import Sequence

from toolbox.datasets.synthetic_generation import (CLASSES, SPLIT_DEFAULT_SIZES, SyntheticSpec,
                                                   parse_long_tail)
from toolbox.datasets.seg_dataset import SegDataset
from toolbox.datasets.synthetic import ensure_generated

__all__ = ["SyntheticSegDataset"]


class SyntheticSegDataset(SegDataset):
    """The synthetic detection images read as semantic segmentation.

    The files are those of :class:`~toolbox.datasets.synthetic.SyntheticCocoDataset`
    with the same parameters (generated on first use, cached):
    ``JPEGImages/<split>_*.jpg`` and ``SegmentationClass/<split>_*.png``
    where 0 is background and ``k + 1`` the k-th shape (visible pixels), so
    the classes are ``('background', 'circle', 'square', ...)``.

    Args: ``split``, ``data_root``, ``num_images``, ``image_size``, ``seed``,
    ``long_tail``, ``max_objects``, ``min_object_size`` as for the detection
    set; ``pipeline``, ``test_mode`` as for :class:`SegDataset`.
    """

    METAINFO = dict(classes=("background",) + CLASSES)

    def __init__(self, split: str = "train", data_root: str | None = None,
                 num_images: int | None = None, image_size: int = 256, seed: int = 0,
                 long_tail: dict | None = None, max_objects: int = 8,
                 min_object_size: int = 10, pipeline: Sequence[dict] = (),
                 test_mode: bool = False):
        self.split = split
        profile, imbalance = parse_long_tail(long_tail)
        spec = SyntheticSpec(
            split=split, num_images=int(num_images if num_images is not None
                                        else SPLIT_DEFAULT_SIZES.get(split, 250)),
            image_size=int(image_size), seed=int(seed), max_objects=int(max_objects),
            min_object_size=int(min_object_size), long_tail_profile=profile,
            long_tail_imbalance=imbalance)
        root = ensure_generated(spec, data_root)
        super().__init__(data_root=root, img_dir="JPEGImages", seg_map_dir="SegmentationClass",
                         split_file=f"ImageSets/Segmentation/{split}.txt", pipeline=pipeline,
                         test_mode=test_mode)
