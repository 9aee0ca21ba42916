"""COCO-format detection / instance segmentation dataset."""
from __future__ import annotations

import numbers
import os
from typing import Sequence

import numpy as np

from toolbox.datasets.base import (DetDataset, join_path, load_json, require_dir,
                                   resolve_image_dir, sanitize_boxes)
from toolbox.errors import DataError

__all__ = ["CocoDataset"]


class CocoDataset(DetDataset):
    """A COCO ``instances_*.json`` file plus its image folder.

    Args:
        data_root: folder that relative ``ann_file`` / image paths start from.
        ann_file: the annotation JSON.
        data_prefix: ``dict(img='train2017/')``, the image folder (or ``img_dir``).
        img_dir: the image folder, as an alternative to ``data_prefix``.
        pipeline: transform configs, built through ``toolbox.registry.TRANSFORMS``.
        test_mode: keep images without annotations; the JSON may lack
            ``annotations`` (image-info files).
        filter_empty_gt: in training, drop images with no non-crowd box.
        metainfo: ``dict(classes=(...))`` keeps only those categories (by
            name, in that order); the others' annotations are ignored.
        with_mask: decode ``segmentation`` (polygons / RLE) into ``gt_masks``.
        skip_bad_images: skip (warn and count) images that are missing, fail
            to decode or differ in size from the annotation, instead of
            raising; default: in training, not in ``test_mode``.
        max_bad_images: the share of images that may be skipped before the
            run stops with the list of bad files.
        num_images: keep only the first images (after ``filter_empty_gt``),
            for short runs (``short_run.num_images``).
        label_cat_ids: the COCO category id of each label index, for a model
            trained elsewhere with another label space (torchvision's and
            DETR's COCO models use the 91-index space: label == category id,
            ``list(range(91))``). Ids the file lacks become classes named
            ``'N/A'``; categories of the file not listed are ignored.
            Excludes ``metainfo['classes']``.

    Labels are 0-based in the order of ``metainfo['classes']`` (categories
    sorted by id); ``metainfo['cat_ids'][label]`` is the COCO category id.
    ``iscrowd`` (or ``ignore``) annotations go to ``ignored_instances``.
    COCO boxes are ``[x, y, w, h]`` in continuous pixel coordinates and
    become ``x1 y1 x2 y2 = x, y, x + w, y + h``, clipped to the image; boxes
    with no area are dropped with one warning.
    """

    METAINFO = dict(classes=())

    def __init__(self, data_root: str | None = None, ann_file: str = "",
                 data_prefix: dict | None = None, img_dir: str | None = None,
                 pipeline: Sequence[dict] = (), test_mode: bool = False,
                 filter_empty_gt: bool = True, metainfo: dict | None = None,
                 with_mask: bool = False, skip_bad_images: bool | None = None,
                 max_bad_images: float = 0.05, num_images: int | None = None,
                 label_cat_ids: Sequence[int] | None = None):
        if label_cat_ids is not None:
            if metainfo and metainfo.get("classes") is not None:
                raise DataError(f"{type(self).__name__}: give 'label_cat_ids' or "
                                "metainfo['classes'], not both")
            ids = list(label_cat_ids)
            if (not ids or not all(isinstance(i, numbers.Integral) for i in ids)
                    or len(set(ids)) != len(ids)):
                raise DataError(f"{type(self).__name__}: 'label_cat_ids' must be distinct "
                                f"integer category ids, got {label_cat_ids!r}")
        self.label_cat_ids = None if label_cat_ids is None else [int(i) for i in label_cat_ids]
        img_dir = resolve_image_dir(data_prefix, img_dir, type(self).__name__)
        super().__init__(data_root=data_root, ann_file=ann_file, img_dir=img_dir,
                         pipeline=pipeline, test_mode=test_mode,
                         filter_empty_gt=filter_empty_gt, metainfo=metainfo,
                         with_mask=with_mask, skip_bad_images=skip_bad_images,
                         max_bad_images=max_bad_images, num_images=num_images)

    def load_data_list(self) -> list[dict]:
        path = self.ann_file
        if not path:
            raise DataError(f"{type(self).__name__}: ann_file is required")
        data = load_json(path, "COCO annotation file")
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object with 'images' and "
                            f"'categories', got {type(data).__name__}")
        for key in ("images", "categories") + (() if self.test_mode else ("annotations",)):
            if not isinstance(data.get(key), list):
                raise DataError(f"{path}: missing or malformed '{key}' list")
        if self.img_dir is not None:
            require_dir(self.img_dir, "image folder")

        cat_ids, classes = self._select_categories(data["categories"], path)
        label_of = {cid: i for i, cid in enumerate(cat_ids)}
        known_cats = {c["id"] for c in data["categories"]}
        self._metainfo.update(classes=classes, cat_ids=tuple(cat_ids))

        images: dict = {}
        for img in data["images"]:
            try:
                img_id, file_name = img["id"], img["file_name"]
                height, width = int(img["height"]), int(img["width"])
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}: image entry {img!r} lacks id/file_name/height/"
                                f"width ({e})") from e
            if img_id in images:
                raise DataError(f"{path}: duplicate image id {img_id}")
            images[img_id] = dict(img_id=img_id, img_path=join_path(self.img_dir, file_name),
                                  height=height, width=width, anns=[])

        for ann in data.get("annotations", []):
            img_id, cat_id = ann.get("image_id"), ann.get("category_id")
            if img_id not in images:
                raise DataError(f"{path}: annotation {ann.get('id')} refers to unknown "
                                f"image_id {img_id!r}")
            if cat_id not in known_cats:
                raise DataError(f"{path}: annotation {ann.get('id')} refers to unknown "
                                f"category_id {cat_id!r}")
            if cat_id in label_of:
                images[img_id]["anns"].append(ann)

        dropped = 0
        data_list = []
        for info in images.values():
            anns = info.pop("anns")
            boxes = np.zeros((len(anns), 4), np.float32)
            for i, ann in enumerate(anns):
                bbox = ann.get("bbox")
                if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                        or not all(isinstance(v, numbers.Real) for v in bbox)):
                    raise DataError(f"{path}: annotation {ann.get('id')} has a malformed "
                                    f"bbox {bbox!r} (expected [x, y, w, h])")
                x, y, w, h = bbox
                boxes[i] = (x, y, x + w, y + h)
            keep, n_bad = self._sanitize(boxes, info["width"], info["height"],
                                         info["img_path"])
            dropped += n_bad
            anns = [a for a, k in zip(anns, keep) if k]
            labels = [label_of[a["category_id"]] for a in anns]
            ignore = [bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0)) for a in anns]
            segs = None
            if self.with_mask:
                segs = [a.get("segmentation") or _box_polygon(b)
                        for a, b in zip(anns, boxes[keep])]
            data_list.append(self._record(info["img_id"], info["img_path"], info["height"],
                                          info["width"], boxes[keep], labels, ignore, segs))
        self._warn_dropped(dropped, os.path.basename(path))
        return data_list

    def _select_categories(self, categories: list, path: str) -> tuple[list, tuple]:
        try:
            cats = sorted(categories, key=lambda c: c["id"])
            by_name = {c["name"]: c["id"] for c in cats}
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}: every category needs an 'id' and a 'name' ({e})") from e
        if self.label_cat_ids is not None:
            names = {c["id"]: c["name"] for c in cats}
            return list(self.label_cat_ids), tuple(names.get(i, "N/A")
                                                   for i in self.label_cat_ids)
        wanted = self._metainfo_override.get("classes")
        if wanted is None:
            return [c["id"] for c in cats], tuple(c["name"] for c in cats)
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise DataError(f"metainfo classes {unknown} are not categories of {path}; "
                            f"it has: {sorted(by_name)}")
        return [by_name[n] for n in wanted], tuple(wanted)


def _box_polygon(box) -> list:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]

