"""Read a PNG label map into ``results['gt_seg_map']`` (and ``ori_gt_seg_map``)."""
from __future__ import annotations

import os

import numpy as np

from toolbox.errors import DataError
from toolbox.structures.seg_data_sample import IGNORE_INDEX

__all__ = ["LoadSegAnnotation"]


def read_label_map(path: str, reduce_zero_label: bool = False,
                   ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A single-channel label PNG (grey or palette) as ``int64[H, W]``.

    Palette PNGs (VOC's SegmentationClass) give their palette indices.
    ``reduce_zero_label``: label 0 becomes ``ignore_index`` and the others
    move down by one (for sets whose 0 means "unlabelled").
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise DataError(f"label map not found: {path}")
    try:
        with Image.open(path) as im:
            mode = im.mode
            seg = np.array(im)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot decode label map {path}: {e}") from e
    if seg.ndim != 2:
        raise DataError(f"label map {path} must be single-channel (grey or palette) with one "
                        f"class index per pixel, got mode {mode} with shape {seg.shape}")
    seg = seg.astype(np.int64)
    if reduce_zero_label:
        ignored = seg == ignore_index
        seg = seg - 1
        seg[(seg == -1) | ignored] = ignore_index
    return seg


def check_labels(seg: np.ndarray, num_classes: int | None, ignore_index: int, path: str) -> None:
    """DataError naming ``path`` if a label is outside [0, num_classes) and not ignored."""
    if num_classes is None:
        return
    bad = (seg != ignore_index) & ((seg < 0) | (seg >= num_classes))
    if bad.any():
        values = np.unique(seg[bad])
        raise DataError(f"label map {path} has label(s) {values[:10].tolist()} outside "
                        f"[0, {num_classes}) that are not the ignore index {ignore_index} "
                        f"({int(bad.sum())} pixels)")


class LoadSegAnnotation:
    """Load ``results['seg_map_path']`` into ``gt_seg_map`` (``int64[H, W]``).

    Args:
        reduce_zero_label: None takes the dataset's setting from the results
            (``results['reduce_zero_label']``).
        check_shape: raise if the label map's size differs from the image's
            (``ori_shape``, set by :class:`LoadImage` when it ran first).

    Labels outside ``[0, results['num_classes'])`` other than
    ``results['ignore_index']`` (255) raise :class:`DataError` naming the file.
    ``ori_gt_seg_map`` keeps an untransformed copy for the metrics.
    """

    def __init__(self, reduce_zero_label: bool | None = None, check_shape: bool = True):
        self.reduce_zero_label = reduce_zero_label
        self.check_shape = check_shape

    def __call__(self, results: dict) -> dict:
        path = results.get("seg_map_path")
        if not path:
            raise DataError(f"LoadSegAnnotation: sample {results.get('img_path')!r} has no "
                            "'seg_map_path'")
        reduce = self.reduce_zero_label
        if reduce is None:
            reduce = bool(results.get("reduce_zero_label", False))
        ignore_index = int(results.get("ignore_index", IGNORE_INDEX))
        seg = read_label_map(path, reduce, ignore_index)
        shape = results.get("ori_shape")
        if self.check_shape and shape is not None and tuple(shape[:2]) != seg.shape:
            raise DataError(f"label map {path} is {seg.shape[0]}x{seg.shape[1]} (h x w) but its "
                            f"image {results.get('img_path')} is {shape[0]}x{shape[1]}")
        check_labels(seg, results.get("num_classes"), ignore_index, path)
        results["gt_seg_map"] = seg
        results["ori_gt_seg_map"] = seg.copy()
        results["reduce_zero_label"] = reduce
        return results

    def __repr__(self) -> str:
        return f"LoadSegAnnotation(reduce_zero_label={self.reduce_zero_label})"
