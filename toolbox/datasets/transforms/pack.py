"""Turn the result dict into the model's input: ``dict(inputs, data_samples)``."""
from __future__ import annotations

import numpy as np
import torch
from mmengine.structures import InstanceData

from toolbox.structures import DetDataSample

__all__ = ["PackDetInputs"]

DEFAULT_META_KEYS = ("img_id", "img_path", "ori_shape", "img_shape", "pad_shape",
                     "scale_factor", "crop_offset", "flip", "flip_direction")


def _instances(bboxes, labels, masks=None, ignore=None) -> InstanceData:
    inst = InstanceData()
    inst.bboxes = torch.as_tensor(np.asarray(bboxes, np.float32).reshape(-1, 4))
    inst.labels = torch.as_tensor(np.asarray(labels, np.int64).reshape(-1))
    if masks is not None:
        inst.masks = torch.as_tensor(np.asarray(masks).astype(bool))
    if ignore is not None:
        inst.ignore = torch.as_tensor(np.asarray(ignore, bool).reshape(-1))
    return inst


def image_tensor(img: np.ndarray) -> torch.Tensor:
    """A ``[C, ...]`` array as a tensor: ``uint8`` stays ``uint8`` (the data
    preprocessor casts and normalises on the device), anything else float32."""
    tensor = torch.from_numpy(np.ascontiguousarray(img))
    return tensor if tensor.dtype == torch.uint8 else tensor.float()


class PackDetInputs:
    """Pack the image as ``Tensor[3, H, W]`` (``uint8`` as loaded, float32 after
    a float transform such as ``Normalize``) and the rest as a ``DetDataSample``.

    ``gt_instances`` holds the boxes to train on and ``ignored_instances``
    the crowd/difficult ones (both in ``img_shape`` coordinates, with
    ``masks`` when present); ``ori_gt_instances`` holds every annotation in
    original image coordinates with an ``ignore`` flag, for the metrics.
    Missing meta keys default to the identity geometry.
    """

    def __init__(self, meta_keys: tuple[str, ...] = DEFAULT_META_KEYS):
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        img = np.asarray(results["img"])
        if img.ndim == 2:
            img = img[..., None]
        inputs = image_tensor(img.transpose(2, 0, 1))
        h, w = img.shape[:2]
        defaults = dict(ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w),
                        scale_factor=(1.0, 1.0), crop_offset=(0.0, 0.0), flip=False,
                        flip_direction=None)
        sample = DetDataSample()
        sample.set_metainfo({k: results.get(k, defaults.get(k)) for k in self.meta_keys})

        if "gt_bboxes" in results:
            ignore = np.asarray(results.get("gt_ignore_flags",
                                            np.zeros(len(results["gt_bboxes"]), bool)), bool)
            bboxes = np.asarray(results["gt_bboxes"], np.float32).reshape(-1, 4)
            labels = np.asarray(results["gt_labels"], np.int64).reshape(-1)
            masks = results.get("gt_masks")
            sample.gt_instances = _instances(bboxes[~ignore], labels[~ignore],
                                             None if masks is None else masks[~ignore])
            sample.ignored_instances = _instances(bboxes[ignore], labels[ignore],
                                                  None if masks is None else masks[ignore])
        if "ori_gt_bboxes" in results:
            n = len(results["ori_gt_bboxes"])
            sample.ori_gt_instances = _instances(
                results["ori_gt_bboxes"], results["ori_gt_labels"],
                results.get("ori_gt_masks"),
                results.get("ori_gt_ignore_flags", np.zeros(n, bool)))
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f"PackDetInputs(meta_keys={self.meta_keys})"
