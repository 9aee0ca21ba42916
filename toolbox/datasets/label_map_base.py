"""What the 2D and 3D segmentation datasets share: the sample list,
metainfo, class counts from the label maps, and the pipeline call."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from toolbox.datasets.transforms.load_seg_annotation import check_labels

# LabelMapDataset is the base class of the label-map datasets, not a component
__all__: list[str] = []


class LabelMapDataset(Dataset):
    """Base of :class:`SegDataset` and :class:`VolumeDataset`.

    Subclasses fill ``data_list`` (records with ``img_path`` and, when
    labelled, ``seg_map_path``), ``_metainfo``, ``ignore_index`` and
    ``pipeline``, and implement ``prepare_results`` and ``read_labels``.
    """

    _frequencies: dict | None = None

    @property
    def metainfo(self) -> dict:
        return dict(self._metainfo)

    @property
    def num_classes(self) -> int:
        return len(self._metainfo["classes"])

    def full_init(self) -> None:
        """Nothing to do (the list is built in ``__init__``); present so
        mmengine's dataset wrappers (``RepeatDataset``...) accept the dataset."""

    def __len__(self) -> int:
        return len(self.data_list)

    def get_data_info(self, idx: int) -> dict:
        return self.data_list[idx]

    def prepare_results(self, idx: int) -> dict:
        raise NotImplementedError

    def read_labels(self, record: dict) -> np.ndarray:
        """The label map of one record as int64 (ignore index kept)."""
        raise NotImplementedError

    def __getitem__(self, idx: int) -> dict:
        return self.pipeline(self.prepare_results(idx))

    def class_frequencies(self) -> dict:
        """Per-class pixel/voxel counts (``instance_counts``), samples
        containing each class (``image_counts``) and ``num_images``, from every
        label map (read once, then cached), for the long-tail losses."""
        if self._frequencies is None:
            k = self.num_classes
            elements = np.zeros(k, np.int64)
            samples = np.zeros(k, np.int64)
            for record in self.data_list:
                seg = self.read_labels(record)
                check_labels(seg, k, self.ignore_index, record.get("seg_map_path"))
                counts = np.bincount(seg[seg != self.ignore_index].ravel(), minlength=k)[:k]
                elements += counts
                samples += counts > 0
            self._frequencies = dict(instance_counts=elements.tolist(),
                                     image_counts=samples.tolist(),
                                     num_images=len(self.data_list))
        return dict(self._frequencies)
