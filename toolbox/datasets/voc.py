"""Pascal VOC detection dataset (XML annotations)."""
from __future__ import annotations

import os
import warnings
from collections import Counter
from typing import Sequence

import numpy as np

from toolbox.datasets.base import (DataWarning, DetDataset, join_path, parse_xml,
                                   require_dir, require_file, resolve_image_dir,
                                   sanitize_boxes)
from toolbox.errors import DataError

__all__ = ["VOCDataset"]

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")


class VOCDataset(DetDataset):
    """A VOC-style folder: ``Annotations/*.xml``, ``ImageSets/Main/<split>.txt``,
    ``JPEGImages/``.

    Args:
        data_root: the folder holding the three sub-folders (e.g. ``VOC2007/``).
        ann_file: the split's image-id list, e.g. ``ImageSets/Main/trainval.txt``.
        data_prefix: ``dict(img='JPEGImages/', ann='Annotations/')`` (defaults),
            or give ``img_dir`` / ``ann_dir``.
        metainfo: ``dict(classes=(...))`` replaces the 20 VOC classes; objects
            of other classes are skipped (one warning with the counts).
        img_suffix: extension of the image files.

    Objects marked ``difficult`` go to ``ignored_instances`` (and
    ``ori_gt_instances.ignore``), as VOC evaluation ignores them.

    Coordinates: VOC boxes are 1-based inclusive pixel indices, so
    ``xmin..xmax`` covers the continuous span ``[xmin - 1, xmax]``; they become
    ``x1 y1 x2 y2 = xmin - 1, ymin - 1, xmax, ymax`` (0-based, continuous, the
    toolbox convention), clipped to the image.
    """

    METAINFO = dict(classes=VOC_CLASSES)

    def __init__(self, data_root: str | None = None,
                 ann_file: str = "ImageSets/Main/trainval.txt",
                 data_prefix: dict | None = None, img_dir: str | None = None,
                 ann_dir: str | None = None, pipeline: Sequence[dict] = (),
                 test_mode: bool = False, filter_empty_gt: bool = True,
                 metainfo: dict | None = None, skip_bad_images: bool | None = None,
                 max_bad_images: float = 0.05, num_images: int | None = None,
                 img_suffix: str = ".jpg"):
        name = type(self).__name__
        img_dir = resolve_image_dir(data_prefix, img_dir, name) or "JPEGImages"
        prefix_ann = (data_prefix or {}).get("ann")
        if prefix_ann is not None and ann_dir is not None and prefix_ann != ann_dir:
            raise DataError(f"{name}: data_prefix['ann']={prefix_ann!r} and "
                            f"ann_dir={ann_dir!r} disagree; give one of them")
        self.xml_dir = join_path(data_root, prefix_ann or ann_dir or "Annotations")
        self.img_suffix = img_suffix
        super().__init__(data_root=data_root, ann_file=ann_file, img_dir=img_dir,
                         pipeline=pipeline, test_mode=test_mode,
                         filter_empty_gt=filter_empty_gt, metainfo=metainfo,
                         skip_bad_images=skip_bad_images,
                         max_bad_images=max_bad_images, num_images=num_images)

    def load_data_list(self) -> list[dict]:
        list_file = require_file(self.ann_file, "VOC image-set file")
        require_dir(self.xml_dir, "VOC annotation folder")
        require_dir(self.img_dir, "VOC image folder")
        with open(list_file, encoding="utf-8") as f:
            img_ids = [line.split()[0] for line in f if line.strip()]
        label_of = {c: i for i, c in enumerate(self._metainfo["classes"])}
        skipped: Counter = Counter()
        dropped = 0
        data_list = []
        for img_id in img_ids:
            xml_path = os.path.join(self.xml_dir, f"{img_id}.xml")
            img_path = os.path.join(self.img_dir, f"{img_id}{self.img_suffix}")
            root = parse_xml(xml_path, "VOC annotation file")
            width, height = self._image_size(root, xml_path, img_path)
            boxes, labels, ignore = [], [], []
            for k, obj in enumerate(root.findall("object")):
                name = (obj.findtext("name") or "").strip()
                if name not in label_of:
                    skipped[name] += 1
                    continue
                box = obj.find("bndbox")
                try:
                    xmin, ymin, xmax, ymax = (float(box.findtext(t)) for t in
                                              ("xmin", "ymin", "xmax", "ymax"))
                    difficult = int(float(obj.findtext("difficult") or 0))
                except (AttributeError, TypeError, ValueError) as e:
                    raise DataError(f"{xml_path}: object {k} ('{name}') has a malformed "
                                    f"bndbox/difficult ({e})") from e
                boxes.append((xmin - 1, ymin - 1, xmax, ymax))
                labels.append(label_of[name])
                ignore.append(bool(difficult))
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
            keep, n_bad = self._sanitize(boxes, width, height, img_path)
            dropped += n_bad
            data_list.append(self._record(img_id, img_path, height, width, boxes[keep],
                                          np.asarray(labels, np.int64)[keep],
                                          np.asarray(ignore, bool)[keep]))
        if skipped:
            warnings.warn(f"{sum(skipped.values())} object(s) of classes not in "
                          f"metainfo['classes'] were skipped in {list_file}: "
                          f"{dict(skipped.most_common(10))}", DataWarning, stacklevel=3)
        self._warn_dropped(dropped, os.path.basename(list_file))
        return data_list

    @staticmethod
    def _image_size(root, xml_path: str, img_path: str) -> tuple[int, int]:
        size = root.find("size")
        try:
            w, h = int(float(size.findtext("width"))), int(float(size.findtext("height")))
            if w > 0 and h > 0:
                return w, h
        except (AttributeError, TypeError, ValueError):
            pass
        # No usable <size>: read it from the image header (no full decode).
        from PIL import Image

        require_file(img_path, f"image of {xml_path}")
        try:
            with Image.open(img_path) as im:
                return im.size
        except OSError as e:
            raise DataError(f"cannot read the size of image {img_path}: {e}") from e
