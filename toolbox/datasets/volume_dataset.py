"""3D segmentation from a folder of volumes and a folder of label volumes."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from toolbox.datasets.label_map_base import LabelMapDataset

from toolbox.datasets.base import join_path, require_dir
from toolbox.datasets.seg_dataset import read_split_file, resolve_classes
from toolbox.datasets.transforms.base import Compose
from toolbox.datasets.transforms.load_volume import VOLUME_SUFFIXES, read_volume, volume_suffix
from toolbox.errors import DataError
from toolbox.structures.seg_data_sample import IGNORE_INDEX

__all__ = ["VolumeDataset"]


class VolumeDataset(LabelMapDataset):
    """Volumes in ``img_dir`` with same-named label volumes in ``label_dir``.

    Files are NIfTI (``.nii`` / ``.nii.gz``, read with nibabel, an optional
    dependency) or NumPy (``.npy`` / ``.npz``); see
    :mod:`toolbox.datasets.transforms.load_volume` for the axis convention.
    A sample ``name`` is ``<img_dir>/<name><suffix>`` with
    ``<label_dir>/<name><suffix>`` (any supported suffix each), the MSD /
    nnU-Net layout (``imagesTr`` / ``labelsTr``). ``split_file`` (one name
    per line) selects samples, else every volume of ``img_dir`` is used.
    ``label_dir=None`` gives unlabelled samples (inference only).

    Labels are class indices in ``[0, len(classes))``, 255 ignored; the
    pipeline's :class:`LoadVolume` raises :class:`DataError` naming the file
    for a wrong number of dimensions, an image/label shape mismatch or an
    out-of-range label.
    """

    METAINFO: dict = dict(classes=())

    def __init__(self, data_root: str | None = None, img_dir: str = "images",
                 label_dir: str | None = "labels", split_file: str | None = None,
                 classes: Sequence[str] | None = None, metainfo: dict | None = None,
                 ignore_index: int = IGNORE_INDEX, pipeline: Sequence[dict] = (),
                 test_mode: bool = False):
        self.data_root = data_root
        self.img_dir = join_path(data_root, img_dir)
        self.label_dir = join_path(data_root, label_dir) if label_dir is not None else None
        self.split_file = join_path(data_root, split_file) if split_file else None
        self.ignore_index = int(ignore_index)
        self.test_mode = test_mode
        self._metainfo = dict(self.METAINFO, **(metainfo or {}))
        self._metainfo["classes"] = resolve_classes(type(self).__name__,
                                                    self.METAINFO.get("classes", ()),
                                                    classes, metainfo)
        self._metainfo["ignore_index"] = self.ignore_index
        self.data_list: list[dict] = self.load_data_list()
        self.pipeline = Compose(pipeline)
        self._frequencies: dict | None = None

    @staticmethod
    def _by_name(folder: str) -> dict[str, str]:
        found = {}
        for f in sorted(os.listdir(folder)):
            suffix = volume_suffix(f)
            if suffix is not None and not f.startswith("."):
                found.setdefault(f[:-len(suffix)], os.path.join(folder, f))
        return found

    def load_data_list(self) -> list[dict]:
        images = self._by_name(require_dir(self.img_dir, "volume folder"))
        labels = self._by_name(require_dir(self.label_dir, "label volume folder")) \
            if self.label_dir is not None else {}
        if self.split_file:
            names = read_split_file(self.split_file)
            missing = [n for n in names if n not in images]
            if missing:
                raise DataError(f"volume '{missing[0]}' listed in {self.split_file} has no "
                                f"file {VOLUME_SUFFIXES} in {self.img_dir}")
        else:
            names = sorted(images)
            if not names:
                raise DataError(f"no volume file {VOLUME_SUFFIXES} in {self.img_dir}")
        records = []
        for name in names:
            record = dict(img_id=name, img_path=images[name])
            if self.label_dir is not None:
                if name not in labels:
                    raise DataError(f"volume {images[name]} has no label volume '{name}"
                                    f"{{{','.join(VOLUME_SUFFIXES)}}}' in {self.label_dir}")
                record["seg_map_path"] = labels[name]
            records.append(record)
        return records

    def prepare_results(self, idx: int) -> dict:
        """The un-transformed result dict of one sample (before ``LoadVolume``)."""
        return dict(self.data_list[idx], ignore_index=self.ignore_index,
                    num_classes=self.num_classes)

    def read_labels(self, record: dict) -> np.ndarray:
        if "seg_map_path" not in record:
            raise DataError(f"{type(self).__name__}: class frequencies need labels "
                            "(label_dir is None)")
        return read_volume(record["seg_map_path"], "label")[0].astype(np.int64)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(img_dir={self.img_dir!r}, volumes={len(self)}, "
                f"classes={self.num_classes}, test_mode={self.test_mode})")
