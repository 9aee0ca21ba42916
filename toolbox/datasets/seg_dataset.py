"""Semantic segmentation from an image folder and a folder of PNG label maps."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from toolbox.datasets.label_map_base import LabelMapDataset

from toolbox.datasets.base import join_path, require_dir, require_file
from toolbox.datasets.transforms.base import Compose
from toolbox.datasets.transforms.load_seg_annotation import read_label_map
from toolbox.errors import DataError
from toolbox.structures.seg_data_sample import IGNORE_INDEX

__all__ = ["SegDataset"]


def resolve_classes(owner: str, default: Sequence[str], classes: Sequence[str] | None,
                    metainfo: dict | None) -> tuple[str, ...]:
    """The class names from ``classes``, ``metainfo['classes']`` or the class default."""
    from_meta = (metainfo or {}).get("classes")
    if classes is not None and from_meta is not None and tuple(classes) != tuple(from_meta):
        raise DataError(f"{owner}: 'classes' and metainfo['classes'] disagree; give one")
    names = classes if classes is not None else from_meta if from_meta is not None else default
    if isinstance(names, str) or not names or not all(isinstance(c, str) for c in names):
        raise DataError(f"{owner}: classes must be a non-empty sequence of class names "
                        f"(index i = label i), got {names!r}")
    return tuple(names)


def read_split_file(path: str) -> list[str]:
    """Names (no suffix) listed one per line; blank lines and '#' comments skipped."""
    require_file(path, "split file")
    with open(path, encoding="utf-8") as f:
        names = [line.split("#", 1)[0].strip() for line in f]
    names = [n for n in names if n]
    if not names:
        raise DataError(f"split file {path} lists no sample")
    return names


class SegDataset(LabelMapDataset):
    """Images in ``img_dir`` with same-named PNG label maps in ``seg_map_dir``.

    A sample ``name`` is ``<img_dir>/<name><img_suffix>`` with
    ``<seg_map_dir>/<name><seg_map_suffix>``; ``split_file`` (one name per
    line) selects the samples, else every image of ``img_dir`` is used.
    Label maps hold one class index per pixel (grey or palette PNG), 255
    (``ignore_index``) for pixels that do not count. ``reduce_zero_label``
    is for sets whose 0 means "unlabelled": 0 becomes 255, the rest k - 1.

    Paths are relative to ``data_root`` unless absolute. Label files are read
    by the pipeline's :class:`LoadSegAnnotation`, which raises
    :class:`DataError` naming the file for a size that differs from its image
    or a label outside ``[0, len(classes))`` other than 255.
    """

    METAINFO: dict = dict(classes=())

    def __init__(self, data_root: str | None = None, img_dir: str = "images",
                 seg_map_dir: str = "labels", split_file: str | None = None,
                 classes: Sequence[str] | None = None, metainfo: dict | None = None,
                 img_suffix: str = ".jpg", seg_map_suffix: str = ".png",
                 reduce_zero_label: bool = False, ignore_index: int = IGNORE_INDEX,
                 pipeline: Sequence[dict] = (), test_mode: bool = False):
        owner = type(self).__name__
        self.data_root = data_root
        self.img_dir = join_path(data_root, img_dir)
        self.seg_map_dir = join_path(data_root, seg_map_dir)
        self.split_file = join_path(data_root, split_file) if split_file else None
        self.img_suffix = img_suffix
        self.seg_map_suffix = seg_map_suffix
        self.reduce_zero_label = bool(reduce_zero_label)
        self.ignore_index = int(ignore_index)
        self.test_mode = test_mode
        self._metainfo = dict(self.METAINFO, **(metainfo or {}))
        self._metainfo["classes"] = resolve_classes(owner, self.METAINFO.get("classes", ()),
                                                    classes, metainfo)
        self._metainfo.update(reduce_zero_label=self.reduce_zero_label,
                              ignore_index=self.ignore_index)
        self.data_list: list[dict] = self.load_data_list()
        self.pipeline = Compose(pipeline)
        self._frequencies: dict | None = None

    def load_data_list(self) -> list[dict]:
        require_dir(self.img_dir, "image folder")
        require_dir(self.seg_map_dir, "label map folder")
        if self.split_file:
            names = read_split_file(self.split_file)
        else:
            names = sorted(f[:-len(self.img_suffix)] for f in os.listdir(self.img_dir)
                           if f.endswith(self.img_suffix))
            if not names:
                raise DataError(f"no '*{self.img_suffix}' image in {self.img_dir}")
        records = []
        for name in names:
            img = os.path.join(self.img_dir, name + self.img_suffix)
            seg = os.path.join(self.seg_map_dir, name + self.seg_map_suffix)
            require_file(img, "image file")
            require_file(seg, f"label map of {img}")
            records.append(dict(img_id=name, img_path=img, seg_map_path=seg))
        return records

    def prepare_results(self, idx: int) -> dict:
        """The un-transformed result dict of one sample (before ``LoadImage``)."""
        return dict(self.data_list[idx], reduce_zero_label=self.reduce_zero_label,
                    ignore_index=self.ignore_index, num_classes=self.num_classes)

    def read_labels(self, record: dict) -> np.ndarray:
        return read_label_map(record["seg_map_path"], self.reduce_zero_label, self.ignore_index)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(img_dir={self.img_dir!r}, samples={len(self)}, "
                f"classes={self.num_classes}, test_mode={self.test_mode})")
