"""Semantic segmentation metrics: IoU, Dice, pixel accuracy and (3D) HD95.

Each data sample brings ``pred_sem_seg`` and ``ori_gt_sem_seg`` (or
``gt_sem_seg`` when the original map is absent), both class maps in the
original image's frame. Pixels whose label is ``ignore_index`` count
nowhere. Over the whole evaluation set, per class ``c``::

    I_c = #(pred = c and gt = c)     P_c = #(pred = c)     G_c = #(gt = c)
    IoU_c  = I_c / (P_c + G_c - I_c)          Dice_c = 2 I_c / (P_c + G_c)

(pixels summed over all images before the ratio, as mmsegmentation does);
``aAcc`` = correct pixels / labelled pixels. A class absent from both the
ground truth and the predictions has NaN IoU/Dice and is left out of the
means. With ``hd95=True`` the symmetric 95th-percentile Hausdorff distance
(in voxels, or in ``spacing`` units) is computed per image and class from
the surfaces (mask minus its erosion) with scipy's Euclidean distance
transform, as MONAI's ``compute_hausdorff_distance(percentile=95)``; a class
is averaged over the images where both prediction and ground truth contain
it (images missing it on one side only are counted in ``HD95_missed``).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from scipy import ndimage

from toolbox.evaluation.average_precision import class_names, format_table
from toolbox.structures.seg_data_sample import IGNORE_INDEX

__all__ = ["SegMetric"]


def _as_array(value: Any, what: str, where: str) -> np.ndarray:
    if isinstance(value, dict) and "data" in value:  # PixelData-like records
        value = value["data"]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if value.dtype.kind not in "iub":
        raise ValueError(f"SegMetric: '{what}' of {where} must hold integer class indices, "
                         f"got dtype {value.dtype}")
    return value.astype(np.int64)


def surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` that touch its outside (the image border counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Symmetric 95th-percentile Hausdorff distance between two binary masks.

    NaN when both are empty, inf when exactly one is (MONAI's convention).
    """
    if not pred.any() and not gt.any():
        return float("nan")
    if not pred.any() or not gt.any():
        return float("inf")
    edges_pred, edges_gt = surface(pred), surface(gt)
    sampling = None if spacing is None else tuple(float(s) for s in spacing)
    to_gt = ndimage.distance_transform_edt(~edges_gt, sampling=sampling)[edges_pred]
    to_pred = ndimage.distance_transform_edt(~edges_pred, sampling=sampling)[edges_gt]
    return float(max(np.percentile(to_gt, 95), np.percentile(to_pred, 95)))


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


class SegMetric(BaseMetric):
    """mIoU, mean Dice, pixel accuracy (and HD95) of semantic segmentation.

    Args:
        num_classes: number of classes; default ``len(dataset_meta['classes'])``.
        ignore_index: ground-truth label that is not evaluated (255).
        include_background: keep class 0 in the means (``mIoU``, ``mDice``,
            ``mHD95``); medical benchmarks usually drop it. Its row is always
            in the table.
        hd95: also compute the 95% Hausdorff distance (meant for 3D volumes;
            slow for many large 2D images).
        spacing: voxel size per spatial axis for HD95 (default 1).
        classwise: return per-class values too (``IoU_<class>``, ...).
        collect_device, prefix, collect_dir: see ``mmengine.evaluator.BaseMetric``.

    Returns ``seg/mIoU``, ``seg/mDice``, ``seg/aAcc`` (fractions in [0, 1]),
    ``seg/mHD95`` with ``hd95``, and per class ``seg/IoU_<name>``,
    ``seg/Dice_<name>`` (``seg/HD95_<name>``) with ``classwise``; a per-class
    table is logged.
    """

    default_prefix = "seg"

    def __init__(self, num_classes: int | None = None, ignore_index: int = IGNORE_INDEX,
                 include_background: bool = True, hd95: bool = False,
                 spacing: Sequence[float] | None = None, classwise: bool = True,
                 collect_device: str = "cpu", prefix: str | None = None,
                 collect_dir: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"SegMetric: num_classes must be a positive int, got {num_classes!r}")
        if spacing is not None and (len(spacing) == 0 or min(spacing) <= 0):
            raise ValueError(f"SegMetric: spacing must be positive sizes per axis, got {spacing!r}")
        self.num_classes = num_classes
        self.ignore_index = int(ignore_index)
        self.include_background = bool(include_background)
        self.hd95 = bool(hd95)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.classwise = bool(classwise)

    def _num_classes(self) -> int:
        if self.num_classes is not None:
            return self.num_classes
        classes = (self.dataset_meta or {}).get("classes")
        if not classes:
            raise ValueError("SegMetric: num_classes was not given and dataset_meta has no "
                             "'classes'")
        return len(classes)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Per image: intersection, prediction and ground-truth pixel counts per class."""
        k = self._num_classes()
        for i, sample in enumerate(data_samples):
            if not isinstance(sample, dict):
                sample = sample.to_dict()
            where = sample.get("img_path") or f"sample {i} of the batch"
            gt_key = "ori_gt_sem_seg" if "ori_gt_sem_seg" in sample else "gt_sem_seg"
            if "pred_sem_seg" not in sample or gt_key not in sample:
                raise KeyError(f"SegMetric: {where} needs 'pred_sem_seg' and 'ori_gt_sem_seg' "
                               f"(or 'gt_sem_seg'); got keys {sorted(sample)}")
            pred = _as_array(sample["pred_sem_seg"], "pred_sem_seg", where)
            gt = _as_array(sample[gt_key], gt_key, where)
            if pred.ndim == gt.ndim + 1 and pred.shape[0] == 1:  # [1, *S] maps
                pred = pred[0]
            if gt.ndim == pred.ndim + 1 and gt.shape[0] == 1:
                gt = gt[0]
            if pred.shape != gt.shape:
                raise ValueError(f"SegMetric: pred_sem_seg of {where} has shape {pred.shape} "
                                 f"but {gt_key} has {gt.shape}")
            valid = gt != self.ignore_index
            bad = valid & ((gt < 0) | (gt >= k))
            if bad.any():
                raise ValueError(f"SegMetric: {gt_key} of {where} has label "
                                 f"{int(gt[bad][0])} outside [0, {k}) and not ignore_index "
                                 f"{self.ignore_index}")
            if ((pred[valid] < 0) | (pred[valid] >= k)).any():
                raise ValueError(f"SegMetric: pred_sem_seg of {where} has classes outside "
                                 f"[0, {k})")
            p, g = pred[valid], gt[valid]
            result = dict(
                intersect=np.bincount(g[p == g], minlength=k)[:k],
                area_pred=np.bincount(p, minlength=k)[:k],
                area_gt=np.bincount(g, minlength=k)[:k])
            if self.hd95:
                masked_pred = np.where(valid, pred, -1)
                masked_gt = np.where(valid, gt, -1)
                result["hd95"] = np.array([hd95(masked_pred == c, masked_gt == c, self.spacing)
                                           for c in range(k)])
            self.results.append(result)

    def compute_metrics(self, results: list) -> dict[str, float]:
        k = self._num_classes()
        intersect = np.sum([r["intersect"] for r in results], axis=0).astype(np.float64)
        area_pred = np.sum([r["area_pred"] for r in results], axis=0).astype(np.float64)
        area_gt = np.sum([r["area_gt"] for r in results], axis=0).astype(np.float64)
        union = area_pred + area_gt - intersect
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, intersect / union, np.nan)
            dice = np.where(union > 0, 2 * intersect / (area_pred + area_gt), np.nan)
        labelled = area_gt.sum()
        start = 0 if self.include_background else 1
        metrics = dict(mIoU=_nanmean(iou[start:]), mDice=_nanmean(dice[start:]),
                       aAcc=float(intersect.sum() / labelled) if labelled else float("nan"))
        names = class_names(self.dataset_meta, k - 1)[:k]
        header = ["class", "gt pixels", "IoU", "Dice"]
        columns = [area_gt.astype(np.int64), iou, dice]
        per_class = dict(IoU=iou, Dice=dice)
        if self.hd95:
            values = np.stack([r["hd95"] for r in results])  # [images, k]
            finite = np.where(np.isfinite(values), values, np.nan)
            counted = np.isfinite(values).sum(0)
            with np.errstate(invalid="ignore"):
                hd = np.where(counted > 0, np.nansum(finite, 0) / np.maximum(counted, 1), np.nan)
            missed = np.isinf(values).sum(0)
            metrics["mHD95"] = _nanmean(hd[start:])
            metrics["HD95_missed"] = int(missed[start:].sum())
            header += ["HD95", "HD95 missed"]
            columns += [hd, missed]
            per_class["HD95"] = hd
        rows = [[name] + [col[c] for col in columns] for c, name in enumerate(names)]
        summary = ["mean" if self.include_background else "mean (no class 0)", int(labelled),
                   metrics["mIoU"], metrics["mDice"]]
        if self.hd95:
            summary += [metrics["mHD95"], metrics["HD95_missed"]]
        print_log("\n" + format_table(header, rows, title="Segmentation per class:",
                                      summary=summary) + f"\naAcc: {metrics['aAcc']:.4f}",
                  logger="current", level=logging.INFO)
        if self.classwise:
            for key, values in per_class.items():
                for c, name in enumerate(names):
                    metrics[f"{key}_{str(name).replace(' ', '_')}"] = float(values[c])
        return metrics
