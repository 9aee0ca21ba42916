"""Pascal VOC detection mAP (VOC2007 11-point and VOC2010+ area modes).

Conventions (the choices VOC evaluators differ on, stated once):

* **Matching** follows the VOC devkit: per class, detections are taken by
  descending score (ties: stable, in data order); each takes the ground
  truth (GT) of its image with the highest IoU (first on ties). If that IoU
  is ``>= iou_thr`` (the MATLAB devkit's ``>=``; py-faster-rcnn's port uses
  ``>``): a ``difficult`` GT makes the detection *ignored* (neither TP nor
  FP); an unmatched GT makes it a TP and marks the GT matched; an already
  matched GT makes it a FP (a duplicate). A detection does not fall back to
  its second-best GT. Below the threshold it is a FP.
* **Positives** per class are the non-difficult GTs (``ignore=False``).
* **IoU** uses continuous coordinates: area ``(x2 - x1) * (y2 - y1)``, no
  "+1". Boxes produced by this toolbox are continuous (x2 is the right edge,
  not the last pixel), and pycocotools does the same, so both metrics see the
  same IoU. ``legacy_coordinates=True`` adds the VOC devkit's +1 to widths
  and heights (what mmdet does for VOC) to reproduce numbers reported that way.
* **AP** from the precision/recall curve: see
  :func:`toolbox.evaluation.average_precision.voc_average_precision`.
* **Mean** over the classes that have at least one non-difficult GT among the
  evaluated images; a class without GT has no AP (shown as '-', left out of
  the mean) since its recall is undefined.
"""
from __future__ import annotations

import logging
from numbers import Real
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from torchvision.ops import box_iou

from toolbox.evaluation.average_precision import (VOC_EVAL_MODES, class_names, format_table,
                                                  read_ground_truth, read_predictions,
                                                  voc_average_precision)

__all__ = ["VOCMetric"]

TP, FP, IGNORED = 1, 0, -1


class VOCMetric(BaseMetric):
    """Pascal VOC mAP of box detections.

    Args:
        iou_thr: IoU threshold(s) for a match; a sequence gives one
            ``AP<100*thr>`` per threshold and ``mAP`` their mean.
        eval_mode: ``'11points'`` (VOC2007) or ``'area'`` (VOC2010+).
        classwise: also return ``AP_<class>`` for every class with GT (the
            per-class table is always logged).
        legacy_coordinates: use the VOC devkit's +1 pixel convention for IoU.
        collect_device, prefix, collect_dir: see ``mmengine.evaluator.BaseMetric``.

    Returns (through ``evaluate``): ``pascal_voc/mAP``, ``pascal_voc/AP50``
    (one ``AP<t>`` per threshold) and optionally ``pascal_voc/AP_<class>``.
    """

    default_prefix = "pascal_voc"

    def __init__(self, iou_thr: float | Sequence[float] = 0.5, eval_mode: str = "11points",
                 classwise: bool = False, legacy_coordinates: bool = False,
                 collect_device: str = "cpu", prefix: str = "pascal_voc",
                 collect_dir: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        thrs = [iou_thr] if isinstance(iou_thr, Real) else list(iou_thr)
        if not thrs or not all(isinstance(t, Real) and 0 < t <= 1 for t in thrs):
            raise ValueError(f"iou_thr must be a number in (0, 1] or a non-empty sequence "
                             f"of them, got {iou_thr!r}")
        if eval_mode not in VOC_EVAL_MODES:
            raise ValueError(f"eval_mode must be one of {VOC_EVAL_MODES}, got {eval_mode!r}")
        self.iou_thrs = [float(t) for t in thrs]
        self.eval_mode = eval_mode
        self.classwise = classwise
        self.legacy_coordinates = legacy_coordinates

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Keep the predictions and original-coordinate GT of each image."""
        for sample in data_samples:
            self.results.append(dict(pred=read_predictions(sample),
                                     gt=read_ground_truth(sample)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        labels = [r[k]["labels"] for r in results for k in ("pred", "gt")]
        max_label = max((int(lab.max()) for lab in labels if lab.size), default=-1)
        classes = class_names(self.dataset_meta, max_label)

        # rows[c][t] = (AP, recall) of class c at threshold t; counts[c] = (gts, dets)
        rows, counts = [], []
        for cls in range(len(classes)):
            outcomes, num_gts = self._match_class(results, cls)
            counts.append((num_gts, outcomes.shape[1]))
            rows.append([self._ap_and_recall(o, num_gts) for o in outcomes])

        has_gt = np.array([n > 0 for n, _ in counts], bool)
        aps = np.array([[ap for ap, _ in r] for r in rows]).reshape(len(classes), -1)
        recalls = np.array([[rc for _, rc in r] for r in rows]).reshape(len(classes), -1)
        if not has_gt.any():
            print_log("VOCMetric: no class has a non-difficult ground-truth box; "
                      "mAP is undefined (NaN).", logger="current", level=logging.WARNING)
        mean_ap = aps[has_gt].mean(0) if has_gt.any() else np.full(len(self.iou_thrs), np.nan)
        mean_rc = recalls[has_gt].mean(0) if has_gt.any() else mean_ap

        self._log_table(classes, counts, aps, recalls, mean_ap, mean_rc)
        metrics = {f"AP{round(t * 100)}": float(m) for t, m in zip(self.iou_thrs, mean_ap)}
        metrics["mAP"] = float(mean_ap.mean())
        if self.classwise:
            for name, ok, ap in zip(classes, has_gt, aps.mean(1)):
                if ok:
                    metrics[f"AP_{name.replace(' ', '_')}"] = float(ap)
        return metrics

    # -- matching ---------------------------------------------------------
    def _iou(self, boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
        a, b = torch.from_numpy(boxes), torch.from_numpy(gt_boxes)
        if self.legacy_coordinates:
            a = a + a.new_tensor([0, 0, 1, 1])
            b = b + b.new_tensor([0, 0, 1, 1])
        return box_iou(a, b).numpy()

    def _match_class(self, results: list, cls: int) -> tuple[np.ndarray, int]:
        """Outcomes (TP/FP/IGNORED, shape [thresholds, detections]) of one class's
        detections over all images, by descending score, and its positive count."""
        all_scores, all_outcomes, num_gts = [], [], 0
        for res in results:
            pred, gt = res["pred"], res["gt"]
            keep = pred["labels"] == cls
            order = np.argsort(-pred["scores"][keep], kind="stable")
            boxes, scores = pred["bboxes"][keep][order], pred["scores"][keep][order]
            gt_keep = gt["labels"] == cls
            gt_boxes, ignore = gt["bboxes"][gt_keep], gt["ignore"][gt_keep]
            num_gts += int((~ignore).sum())

            outcome = np.full((len(self.iou_thrs), len(boxes)), FP, np.int8)
            if len(boxes) and len(gt_boxes):
                ious = self._iou(boxes, gt_boxes)
                best, best_iou = ious.argmax(1), ious.max(1)
                for t, thr in enumerate(self.iou_thrs):
                    matched = np.zeros(len(gt_boxes), bool)
                    for d in np.flatnonzero(best_iou >= thr):  # still by descending score
                        g = best[d]
                        if ignore[g]:
                            outcome[t, d] = IGNORED
                        elif not matched[g]:
                            outcome[t, d], matched[g] = TP, True
            all_scores.append(scores)
            all_outcomes.append(outcome)
        scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
        outcomes = (np.concatenate(all_outcomes, axis=1) if all_outcomes
                    else np.zeros((len(self.iou_thrs), 0), np.int8))
        return outcomes[:, np.argsort(-scores, kind="stable")], num_gts

    def _ap_and_recall(self, outcome: np.ndarray, num_gts: int) -> tuple[float, float]:
        """AP and final recall of one class at one threshold (NaN without GT)."""
        if num_gts == 0:
            return float("nan"), float("nan")
        counted = outcome[outcome != IGNORED]
        tp = np.cumsum(counted == TP)
        fp = np.cumsum(counted == FP)
        recall = tp / num_gts
        precision = tp / np.maximum(tp + fp, 1)
        ap = voc_average_precision(recall, precision, self.eval_mode)
        return ap, float(recall[-1]) if len(recall) else 0.0

    def _log_table(self, classes, counts, aps, recalls, mean_ap, mean_rc) -> None:
        header = ["class", "gts", "dets"]
        for t in self.iou_thrs:
            header += [f"recall@{t:g}", f"AP{round(t * 100)}"]
        rows, summary = [], ["mean", "", ""]
        for name, (gts, dets), ap_row, rc_row in zip(classes, counts, aps, recalls):
            rows.append([name, gts, dets] + [v for pair in zip(rc_row, ap_row) for v in pair])
        summary += [v for pair in zip(mean_rc, mean_ap) for v in pair]
        title = (f"Pascal VOC AP per class ({self.eval_mode} mode"
                 f"{', +1 pixel convention' if self.legacy_coordinates else ''}):")
        print_log("\n" + format_table(header, rows, title=title, summary=summary),
                  logger="current")
