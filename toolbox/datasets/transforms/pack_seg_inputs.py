"""Turn a segmentation result dict into ``dict(inputs, data_samples=SegDataSample)``."""
from __future__ import annotations

import numpy as np
import torch

from toolbox.datasets.transforms.pack import image_tensor
from toolbox.structures.seg_data_sample import SegDataSample

__all__ = ["PackSegInputs"]

DEFAULT_META_KEYS = ("img_id", "img_path", "seg_map_path", "ori_shape", "img_shape",
                     "pad_shape", "scale_factor", "crop_offset", "flip", "flip_direction",
                     "flip_axes", "spacing", "reduce_zero_label")


class PackSegInputs:
    """Pack the image or volume as a tensor (``uint8`` stays ``uint8``, else
    float32) and the labels as a ``SegDataSample``.

    * images (``img`` ``[H, W]`` or ``[H, W, C]``, as :class:`LoadImage`
      leaves them) become ``inputs`` ``[C, H, W]``;
    * volumes (``img`` ``[C, D, H, W]``, as :class:`LoadVolume` leaves them)
      stay ``[C, D, H, W]``;
    * ``gt_seg_map`` -> ``gt_sem_seg`` and ``ori_gt_seg_map`` ->
      ``ori_gt_sem_seg`` (``LongTensor``), when present;
    * ``meta_keys`` found in the results go to the metainfo; the geometry
      keys missing from it get the identity (no resize, crop, flip, padding).
    """

    def __init__(self, meta_keys: tuple[str, ...] = DEFAULT_META_KEYS):
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        img = np.asarray(results["img"])
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim == 3:  # image [H, W, C]
            inputs = image_tensor(img.transpose(2, 0, 1))
        elif img.ndim == 4:  # volume [C, D, H, W]
            inputs = image_tensor(img)
        else:
            raise ValueError(f"PackSegInputs: 'img' of {results.get('img_path')} must be "
                             f"[H, W(, C)] or [C, D, H, W], got shape {img.shape}")
        spatial = tuple(int(s) for s in inputs.shape[1:])
        ones = (1.0,) * len(spatial)
        defaults = dict(ori_shape=spatial, img_shape=spatial, pad_shape=spatial,
                        scale_factor=ones, crop_offset=(0.0,) * len(spatial), flip=False,
                        flip_direction=None)
        meta = {k: results[k] for k in self.meta_keys if k in results}
        for k, v in defaults.items():
            if k in self.meta_keys:
                meta.setdefault(k, v)
        sample = SegDataSample(metainfo=meta)
        for src, dst in (("gt_seg_map", "gt_sem_seg"), ("ori_gt_seg_map", "ori_gt_sem_seg")):
            if results.get(src) is not None:
                seg = np.ascontiguousarray(results[src]).astype(np.int64)
                setattr(sample, dst, torch.from_numpy(seg))
        if "gt_sem_seg" in sample and tuple(sample.gt_sem_seg.shape) != spatial:
            raise ValueError(f"PackSegInputs: gt_seg_map of {results.get('img_path')} has shape "
                             f"{tuple(sample.gt_sem_seg.shape)} but the image is {spatial}; a "
                             "transform did not keep them in sync")
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f"PackSegInputs(meta_keys={self.meta_keys})"
