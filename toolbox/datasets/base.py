"""Shared dataset code: the detection dataset base, file/annotation error
helpers and the rule that maps predictions back to the original image.

Mapping back to the original image
----------------------------------
Every geometric transform records what it did in the sample's metainfo:

* ``scale_factor`` = (w_scale, h_scale): total scaling from the original
  image to ``img_shape`` (``img_shape`` = round(``ori_shape`` * scale));
* ``crop_offset`` = (x, y): top-left corner of the kept window, measured in
  the *scaled, un-flipped* original frame ((0, 0) without a crop);
* ``flip`` / ``flip_direction``: whether the final image is mirrored
  ('horizontal', 'vertical' or 'diagonal' = both), applied last.

so that, for a point ``x`` of the original image::

    x_img = flip(x * scale_factor - crop_offset)      # flip within img_shape

and a predicted box in ``img_shape`` coordinates maps back as::

    unflipped     = flip(pred)                        # x -> img_w - x, swap x1/x2
    pred_original = (unflipped + crop_offset) / scale_factor

:func:`toolbox.structures.boxes_to_original` implements this (detectors
apply it once to their predictions). Test pipelines only resize, so
there ``pred_original = pred / scale_factor``. Padding (bottom/right only)
changes nothing. Boxes are continuous x1 y1 x2 y2: pixel ``i`` covers
``[i, i + 1)``, so a full-image box is ``(0, 0, w, h)``.
"""
from __future__ import annotations

import json
import os
import warnings
import xml.etree.ElementTree as ET
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from toolbox.datasets.transforms.base import Compose
from toolbox.errors import DataError
from toolbox.structures.box_mapping import boxes_to_original as _boxes_to_original


class BadImageError(DataError):
    """An image file is missing, cannot be decoded or has another size than
    its annotation says (what ``skip_bad_images`` skips at run time)."""


class ImageDecodeError(BadImageError):
    """An image file exists but cannot be decoded."""


class MissingImageError(BadImageError):
    """An image file listed by the annotations does not exist."""


class ImageSizeError(BadImageError):
    """An image's decoded size differs from the size its annotation gives."""


class DataWarning(UserWarning):
    """Annotations were repaired or dropped while loading a dataset."""


# --------------------------------------------------------------------------
# error helpers


def join_path(root: str | None, path: str | None) -> str | None:
    """``path`` under ``root`` unless ``path`` is absolute (or root is None)."""
    if path is None or root is None or os.path.isabs(path):
        return path
    return os.path.join(root, path)


def require_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    return path


def require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise DataError(f"{what} not found (expected a directory): {path}")
    return path


def load_json(path: str, what: str = "annotation file") -> Any:
    """Load JSON; a syntax error names the file, line and column."""
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON in {path}: line {e.lineno}, column {e.colno}: "
                        f"{e.msg}") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}): {e.reason}") from e


def parse_xml(path: str, what: str = "annotation file") -> ET.Element:
    """Parse XML; a syntax error names the file, line and column."""
    require_file(path, what)
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = e.position
        raise DataError(f"malformed XML in {path}: line {line}, column {col}: {e}") from e


def resolve_image_dir(data_prefix: dict | None, img_dir: str | None, owner: str) -> str | None:
    """The image folder from ``data_prefix=dict(img=...)`` or ``img_dir``."""
    prefix = (data_prefix or {}).get("img")
    unknown = set(data_prefix or {}) - {"img", "ann"}
    if unknown:
        raise DataError(f"{owner}: data_prefix accepts the keys 'img' (and 'ann' for VOC), "
                        f"got {sorted(unknown)}")
    if prefix is not None and img_dir is not None and prefix != img_dir:
        raise DataError(f"{owner}: data_prefix['img']={prefix!r} and img_dir={img_dir!r} "
                        "disagree; give one of them")
    return prefix if prefix is not None else img_dir


BOX_PROBLEMS = ("non-finite coordinates (NaN/inf)", "zero or negative width/height",
                "partly outside the image (clipped)")


def box_problems(bboxes: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
    """Per-box masks of what is wrong with x1 y1 x2 y2 boxes of a width x
    height image, keyed by :data:`BOX_PROBLEMS` (a box is counted once, under
    its first problem; a clipped box is kept unless clipping leaves no area)."""
    b = np.asarray(bboxes, np.float64).reshape(-1, 4)
    finite = np.isfinite(b).all(axis=1)
    c = b.copy()
    c[:, 0::2] = c[:, 0::2].clip(0, width)
    c[:, 1::2] = c[:, 1::2].clip(0, height)
    positive = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]) & (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
    clipped = (c != b).any(axis=1)
    return {BOX_PROBLEMS[0]: ~finite, BOX_PROBLEMS[1]: finite & ~positive,
            BOX_PROBLEMS[2]: finite & positive & clipped}


def sanitize_boxes(bboxes: np.ndarray, width: int, height: int,
                   problems: dict | None = None, name: str | None = None
                   ) -> tuple[np.ndarray, int]:
    """Clip x1 y1 x2 y2 boxes to the image; return (keep mask, number dropped).

    Boxes with non-finite coordinates or zero or negative width/height,
    before or after clipping, are dropped (the caller warns once with the
    totals). With ``problems`` (a dict), ``name`` (the image) is appended to
    ``problems[kind]`` once per box for every kind of :func:`box_problems`.
    """
    found = box_problems(bboxes, width, height)
    b = np.asarray(bboxes, np.float32).reshape(-1, 4)
    valid = ~(found[BOX_PROBLEMS[0]] | found[BOX_PROBLEMS[1]])
    b[:, 0::2] = np.nan_to_num(b[:, 0::2]).clip(0, width)
    b[:, 1::2] = np.nan_to_num(b[:, 1::2]).clip(0, height)
    bboxes[...] = b
    if problems is not None:
        for kind, mask in found.items():
            problems.setdefault(kind, []).extend([name] * int(mask.sum()))
    return valid, int((~valid).sum())


def decode_coco_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or compressed RLE) as uint8[H, W]."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict):
        rle = dict(seg)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise DataError(f"unsupported segmentation of type {type(seg).__name__}")
    with warnings.catch_warnings():  # pycocotools vs numpy 2 'copy' keyword notice
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(np.uint8)


# --------------------------------------------------------------------------
# mapping predictions back


def boxes_to_original(bboxes: torch.Tensor, metainfo: dict, clip: bool = False) -> torch.Tensor:
    """Deprecated: use :func:`toolbox.structures.boxes_to_original` (whose
    ``clip`` defaults to True). Maps x1 y1 x2 y2 boxes from ``img_shape`` to
    original image coordinates by the rule above."""
    warnings.warn("toolbox.datasets.base.boxes_to_original is deprecated; use "
                  "toolbox.structures.boxes_to_original (clip defaults to True there)",
                  DeprecationWarning, stacklevel=2)
    return _boxes_to_original(bboxes, metainfo, clip=clip)


# --------------------------------------------------------------------------
# the dataset base


class DetDataset(Dataset):
    """Detection dataset base: subclasses implement :meth:`load_data_list`.

    Each record of ``self.data_list`` is a dict with ``img_id``, ``img_path``,
    ``height``, ``width``, ``bboxes`` (float32[N, 4], x1 y1 x2 y2, clipped),
    ``labels`` (int64[N]), ``ignore_flags`` (bool[N]) and optionally
    ``segmentations`` (one COCO segmentation per box).
    """

    METAINFO: dict = dict(classes=())

    def __init__(self, data_root: str | None = None, ann_file: str = "",
                 img_dir: str | None = None, pipeline: Sequence[dict] = (),
                 test_mode: bool = False, filter_empty_gt: bool = True,
                 metainfo: dict | None = None, with_mask: bool = False,
                 skip_bad_images: bool | None = None, max_bad_images: float = 0.05,
                 num_images: int | None = None):
        self.data_root = data_root
        self.ann_file = join_path(data_root, ann_file)
        self.img_dir = join_path(data_root, img_dir) if img_dir is not None else data_root
        self.test_mode = test_mode
        self.filter_empty_gt = filter_empty_gt
        self.with_mask = with_mask
        self.skip_bad_images = (not test_mode) if skip_bad_images is None else skip_bad_images
        if not 0 <= max_bad_images <= 1:
            raise DataError(f"{type(self).__name__}: 'max_bad_images' is a share of the "
                            f"images in [0, 1], got {max_bad_images!r}")
        self.max_bad_images = float(max_bad_images)
        self.skipped_images: list[str] = []
        self.annotation_problems: dict[str, list[str]] = {}
        self._metainfo = dict(self.METAINFO)
        self._metainfo_override = dict(metainfo or {})
        if "classes" in self._metainfo_override:
            classes = self._metainfo_override["classes"]
            if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
                raise DataError(f"metainfo['classes'] must be a sequence of class names, "
                                f"got {classes!r}")
            self._metainfo_override["classes"] = tuple(classes)
        self._metainfo.update(self._metainfo_override)
        self.data_list: list[dict] = self.load_data_list()
        self.num_images_loaded = len(self.data_list)
        if filter_empty_gt and not test_mode:
            self.data_list = [r for r in self.data_list if (~r["ignore_flags"]).any()]
        if num_images is not None:  # a short run: the first images only
            if int(num_images) < 1:
                raise DataError(f"{type(self).__name__}: 'num_images' must be >= 1, "
                                f"got {num_images!r}")
            self.data_list = self.data_list[:int(num_images)]
        self.pipeline = Compose(pipeline)

    # subclasses ---------------------------------------------------------

    def load_data_list(self) -> list[dict]:
        raise NotImplementedError

    # public API ---------------------------------------------------------

    @property
    def metainfo(self) -> dict:
        return dict(self._metainfo)

    def __len__(self) -> int:
        return len(self.data_list)

    def get_data_info(self, idx: int) -> dict:
        return self.data_list[idx]

    def class_frequencies(self) -> dict:
        """Per-class instance and image counts over the non-ignored annotations.

        ``num_images`` counts the images with at least one such annotation
        (EQL's frequency is ``image_counts[j] / num_images``).
        """
        k = len(self._metainfo["classes"])
        instance_counts = np.zeros(k, np.int64)
        image_counts = np.zeros(k, np.int64)
        num_images = 0
        for r in self.data_list:
            labels = r["labels"][~r["ignore_flags"]]
            instance_counts += np.bincount(labels, minlength=k)[:k]
            image_counts[np.unique(labels)] += 1
            num_images += int(len(labels) > 0)
        return dict(instance_counts=instance_counts.tolist(),
                    image_counts=image_counts.tolist(), num_images=num_images)

    def prepare_results(self, idx: int) -> dict:
        """The un-transformed result dict of one image (before ``LoadImage``)."""
        r = self.data_list[idx]
        results = dict(img_id=r["img_id"], img_path=r["img_path"],
                       ori_shape=(r["height"], r["width"]),
                       gt_bboxes=r["bboxes"].copy(), gt_labels=r["labels"].copy(),
                       gt_ignore_flags=r["ignore_flags"].copy())
        if self.with_mask:
            segs = r.get("segmentations") or []
            masks = np.stack([decode_coco_segmentation(s, r["height"], r["width"])
                              for s in segs]) if segs else \
                np.zeros((0, r["height"], r["width"]), np.uint8)
            results["gt_masks"] = masks
            results["ori_gt_masks"] = masks.copy()
        results["ori_gt_bboxes"] = r["bboxes"].copy()
        results["ori_gt_labels"] = r["labels"].copy()
        results["ori_gt_ignore_flags"] = r["ignore_flags"].copy()
        return results

    def __getitem__(self, idx: int) -> dict:
        n = len(self)
        for _ in range(n):
            try:
                return self.pipeline(self.prepare_results(idx))
            except BadImageError as e:
                if not self.skip_bad_images:
                    raise
                self._skip(self.data_list[idx]["img_path"], e)
                idx = (idx + 1) % n
        raise DataError(f"no image of {type(self).__name__} ({self.ann_file}) could be read")

    def _skip(self, path: str, error: Exception) -> None:
        """Count a bad image; past ``max_bad_images`` of the set, stop with the list."""
        if path in self.skipped_images:
            return
        self.skipped_images.append(path)
        limit = max(1, int(self.max_bad_images * len(self)))
        if len(self.skipped_images) > limit:
            listed = "; ".join(self.skipped_images[:10])
            more = f" (+{len(self.skipped_images) - 10} more)" if len(self.skipped_images) > 10 else ""
            raise DataError(f"{type(self).__name__} ({self.ann_file}): {len(self.skipped_images)} "
                            f"images could not be read, more than max_bad_images="
                            f"{self.max_bad_images:g} of {len(self)}: {listed}{more}; check "
                            f"the files with tools/check_dataset.py") from error
        warnings.warn(f"skipping an image that cannot be read ({error}); "
                      f"{len(self.skipped_images)} skipped so far", DataWarning, stacklevel=3)

    @property
    def num_skipped_images(self) -> int:
        """Images skipped so far by ``skip_bad_images`` (in this process; with
    loader workers each worker counts its own)."""
        return len(self.skipped_images)

    # helpers for subclasses ---------------------------------------------

    def _sanitize(self, boxes: np.ndarray, width: int, height: int, name: str
                  ) -> tuple[np.ndarray, int]:
        """:func:`sanitize_boxes`, recording problems in ``annotation_problems``."""
        return sanitize_boxes(boxes, width, height, self.annotation_problems, name)

    def _warn_dropped(self, count: int, where: str) -> None:
        if count:
            kinds = [f"{len(self.annotation_problems.get(k, []))} with {k}"
                     for k in BOX_PROBLEMS[:2] if self.annotation_problems.get(k)]
            warnings.warn(f"{count} box(es) were dropped from {where}: {', '.join(kinds)} "
                          "(tools/check_dataset.py lists the images)",
                          DataWarning, stacklevel=3)

    @staticmethod
    def _record(img_id, img_path, height, width, bboxes, labels, ignore_flags,
                segmentations=None) -> dict:
        return dict(img_id=img_id, img_path=img_path, height=int(height), width=int(width),
                    bboxes=np.asarray(bboxes, np.float32).reshape(-1, 4),
                    labels=np.asarray(labels, np.int64).reshape(-1),
                    ignore_flags=np.asarray(ignore_flags, bool).reshape(-1),
                    segmentations=segmentations)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(ann_file={self.ann_file!r}, images={len(self)}, "
                f"classes={len(self._metainfo['classes'])}, test_mode={self.test_mode})")
