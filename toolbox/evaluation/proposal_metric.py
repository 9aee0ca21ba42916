"""Average recall of class-agnostic proposals (RPN, GA-RPN), as reported in
the Faster R-CNN, FPN and Guided Anchoring papers.

pycocotools' ``COCOeval`` in proposal mode (``params.useCats = 0``): every
ground-truth box is one class, each image's proposals are ranked by score,
and AR@n is the recall of the ``n`` best proposals averaged over the IoU
thresholds 0.50:0.05:0.95 (and over images' ground truths). Ground truth is
built from each sample's ``ori_gt_instances`` (``ignore`` -> ``iscrowd``)
as :class:`~toolbox.evaluation.coco_metric.CocoMetric` does; proposals are
read from ``pred_instances`` (``bboxes``, ``scores``; labels are ignored).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from toolbox.evaluation.average_precision import as_dict, format_table, read_ground_truth, to_numpy
from toolbox.evaluation._coco import (AREAS, coco_detections, coco_from_samples, plain_id,
                                      reduce_coco_eval, resolve_backend, run_coco_eval)

__all__ = ["ProposalRecallMetric"]


class ProposalRecallMetric(BaseMetric):
    """AR@n of proposals, plus AR for small / medium / large objects.

    Args:
        proposal_nums: the ``n`` of AR@n, increasing (default 100, 300, 1000);
            the size-split ARs use the last.
        iou_thrs: IoU thresholds averaged over (default 0.50:0.05:0.95).
        backend: ``'auto'`` (faster-coco-eval when installed, else
            pycocotools), ``'faster_coco_eval'`` or ``'pycocotools'``.
        collect_device, prefix, collect_dir: see ``mmengine.evaluator.BaseMetric``.

    Returns (through ``evaluate``): ``proposal/AR@{n}`` for each ``n`` and
    ``proposal/AR_{s,m,l}@{last n}`` (-1 where no ground truth is in that
    size range, as in pycocotools).
    """

    default_prefix = "proposal"

    def __init__(self, proposal_nums: Sequence[int] = (100, 300, 1000),
                 iou_thrs: Sequence[float] | None = None, backend: str = "auto",
                 collect_device: str = "cpu", prefix: str = "proposal",
                 collect_dir: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.backend = resolve_backend(backend, "ProposalRecallMetric")
        nums = list(proposal_nums)
        if not nums or any(not isinstance(n, int) or n <= 0 for n in nums) or nums != sorted(nums):
            raise ValueError(f"ProposalRecallMetric: 'proposal_nums' must be increasing positive "
                             f"integers, got {proposal_nums!r}")
        if iou_thrs is not None:
            iou_thrs = np.asarray(sorted(float(t) for t in iou_thrs), np.float64)
            if not iou_thrs.size or iou_thrs.min() <= 0 or iou_thrs.max() > 1:
                raise ValueError(f"ProposalRecallMetric: 'iou_thrs' must be numbers in (0, 1], "
                                 f"got {iou_thrs.tolist()}")
        self.proposal_nums = nums
        self.iou_thrs = iou_thrs

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Keep each image's id, size, proposals and ground truth."""
        for sample in data_samples:
            sample = as_dict(sample, "data sample")
            if "img_id" not in sample:
                raise KeyError("ProposalRecallMetric: data sample has no 'img_id'; got keys "
                               f"{sorted(sample)}")
            if "pred_instances" not in sample:
                raise KeyError("ProposalRecallMetric: data sample has no 'pred_instances' "
                               f"(proposal bboxes and scores); got keys {sorted(sample)}")
            pred = as_dict(sample["pred_instances"], "pred_instances")
            for key in ("bboxes", "scores"):
                if key not in pred:
                    raise KeyError(f"ProposalRecallMetric: pred_instances has no '{key}'; "
                                   f"got keys {sorted(pred)}")
            scores = to_numpy(pred["scores"], np.float64).reshape(-1)
            gt = read_ground_truth(sample)
            gt["labels"] = np.zeros_like(gt["labels"])  # class-agnostic
            self.results.append(dict(
                img_id=plain_id(sample["img_id"]),
                ori_shape=tuple(int(v) for v in sample.get("ori_shape", (0, 0))[:2]),
                pred=dict(bboxes=to_numpy(pred["bboxes"], np.float64).reshape(-1, 4),
                          scores=scores, labels=np.zeros(len(scores), np.int64)),
                gt=gt))

    def _keys(self) -> list[str]:
        last = self.proposal_nums[-1]
        return [f"AR@{n}" for n in self.proposal_nums] + \
            [f"AR{suffix}@{last}" for _, suffix in AREAS[1:]]

    def compute_metrics(self, results: list) -> dict[str, float]:
        unique: dict = {}
        for res in results:  # an image seen twice counts once
            unique.setdefault(res["img_id"], res)
        results = list(unique.values())
        # one category "object"; the shared COCO helpers build the ground truth
        # and the results-format detections from the samples
        coco_gt, eval_ids = coco_from_samples(results, ("object",), [1], self.backend)
        dets = coco_detections(results, [1], eval_ids)
        if not dets:
            print_log("ProposalRecallMetric: no proposals in any image; every AR is 0.",
                      logger="current", level=logging.WARNING)
            return {key: 0.0 for key in self._keys()}
        ev = run_coco_eval(coco_gt, dets, self.backend, img_ids=eval_ids, cat_ids=None,
                           max_dets=self.proposal_nums, iou_thrs=self.iou_thrs)
        last = self.proposal_nums[-1]
        metrics = {f"AR@{n}": reduce_coco_eval(ev, False, max_dets=n)
                   for n in self.proposal_nums}
        for area, suffix in AREAS[1:]:
            metrics[f"AR{suffix}@{last}"] = reduce_coco_eval(ev, False, area=area, max_dets=last)
        print_log("\n" + format_table(["metric", "value"], list(metrics.items()),
                                      title="Proposal recall (class-agnostic):"),
                  logger="current")
        return metrics
