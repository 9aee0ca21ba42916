"""COCO box detection metrics computed with pycocotools (the reference) or
faster-coco-eval (the same numbers, faster; the default when installed).

Ground truth is either a COCO JSON file (``ann_file``: real COCO, areas and
``iscrowd`` as annotated) or built in memory from each data sample's
``ori_gt_instances`` (``ignore`` -> ``iscrowd=1``, area = box area, so the
small/medium/large split uses box areas rather than mask areas). Crowd boxes
are then handled by pycocotools: a detection matched to one is ignored, and
crowd boxes are never positives.

The summary numbers are read from ``COCOeval.eval`` (the same reduction as
``COCOeval.summarize``, whose fixed ``maxDets=100`` for AP this metric
replaces by the largest of ``proposal_nums``); pycocotools' own printing is
silenced and the summary and per-class tables are logged instead. A value of
-1 means "no ground truth in that range", as in pycocotools.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from toolbox.evaluation.average_precision import (class_names, format_table, read_ground_truth,
                                                  read_predictions)
from toolbox.evaluation._coco import (AREAS, coco_detections, coco_from_samples, load_coco,
                                      plain_id, reduce_coco_eval, resolve_backend,
                                      run_coco_eval)

__all__ = ["CocoMetric"]

class CocoMetric(BaseMetric):
    """COCO bbox AP/AR.

    Args:
        ann_file: COCO JSON used as ground truth; None builds it from the data
            samples' ``ori_gt_instances``.
        metric: only ``'bbox'`` (masks are not predicted by this toolbox yet).
        classwise: log a per-class AP table and return ``bbox_AP_<class>``.
        outfile_prefix: when set, write the detections to
            ``<outfile_prefix>.bbox.json`` (COCO results format: xywh boxes,
            ``category_id`` from ``dataset_meta['cat_ids']`` or label + 1).
        iou_thrs: IoU thresholds (default pycocotools' 0.50:0.05:0.95).
        proposal_nums: detections kept per image for AR@n; AP uses the last.
        save_pr_curves: a folder; when set, each evaluation writes per-class
            precision-recall curves there as PNG (``pr_<class>.png``: IoU 0.5
            and the mean over the IoU thresholds, 0.5:0.95 by default) and
            ``pr_curves.png`` (every class at IoU 0.5), read from COCOeval's
            precision array (all areas, the largest ``proposal_nums``).
        backend: ``'auto'`` (faster-coco-eval when installed, else
            pycocotools), ``'faster_coco_eval'`` or ``'pycocotools'`` (the
            reference); every number is the same with either.
        collect_device, prefix, collect_dir: see ``mmengine.evaluator.BaseMetric``.

    Returns (through ``evaluate``): ``coco/bbox_mAP``, ``coco/bbox_mAP_50``,
    ``coco/bbox_mAP_75``, ``coco/bbox_mAP_{s,m,l}``, ``coco/AR@{n}`` for each
    of ``proposal_nums`` and ``coco/AR_{s,m,l}@{last n}``.
    """

    default_prefix = "coco"

    def __init__(self, ann_file: str | None = None, metric: str | Sequence[str] = "bbox",
                 classwise: bool = True, outfile_prefix: str | None = None,
                 iou_thrs: Sequence[float] | None = None,
                 proposal_nums: Sequence[int] = (1, 10, 100),
                 save_pr_curves: str | None = None, backend: str = "auto",
                 collect_device: str = "cpu", prefix: str = "coco",
                 collect_dir: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.backend = resolve_backend(backend, "CocoMetric")
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if metrics != ["bbox"]:
            raise ValueError(f"metric must be 'bbox' (the only COCO metric supported), "
                             f"got {metric!r}")
        if ann_file is not None and not Path(ann_file).is_file():
            raise FileNotFoundError(f"ann_file: COCO annotation file {ann_file!r} not found")
        if iou_thrs is not None:
            iou_thrs = np.asarray(sorted(float(t) for t in iou_thrs), np.float64)
            if not iou_thrs.size or iou_thrs.min() <= 0 or iou_thrs.max() > 1:
                raise ValueError(f"iou_thrs must be a non-empty sequence of numbers in "
                                 f"(0, 1], got {iou_thrs.tolist()}")
        nums = list(proposal_nums)
        if not nums or any(not isinstance(n, int) or n <= 0 for n in nums) or nums != sorted(nums):
            raise ValueError(f"proposal_nums must be increasing positive integers, "
                             f"got {proposal_nums!r}")
        self.ann_file = ann_file
        self.classwise = classwise
        self.outfile_prefix = outfile_prefix
        self.iou_thrs = iou_thrs
        self.proposal_nums = nums
        if save_pr_curves is not None and not isinstance(save_pr_curves, (str, Path)):
            raise TypeError(f"save_pr_curves must be a folder path, got {save_pr_curves!r}")
        self.save_pr_curves = save_pr_curves
        self.last_pr_curves: dict | None = None
        self._coco_gt = None

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Keep each image's id, size, predictions and (without ann_file) GT."""
        for sample in data_samples:
            if not isinstance(sample, dict):
                sample = sample.to_dict()
            if "img_id" not in sample:
                raise KeyError("data sample has no 'img_id' (the COCO image id); got keys "
                               f"{sorted(sample)}")
            self.results.append(dict(
                img_id=plain_id(sample["img_id"]),
                ori_shape=tuple(int(v) for v in sample.get("ori_shape", (0, 0))[:2]),
                pred=read_predictions(sample),
                gt=read_ground_truth(sample) if self.ann_file is None else None))

    def compute_metrics(self, results: list) -> dict[str, float]:
        unique: dict = {}
        for res in results:  # an image seen twice counts once
            unique.setdefault(res["img_id"], res)
        results = list(unique.values())

        coco_gt = self._load_ann_file() if self.ann_file else None
        classes, cat_ids = self._categories(results, coco_gt)
        if coco_gt is None:
            coco_gt, eval_ids = coco_from_samples(results, classes, cat_ids, self.backend)
        else:
            missing = [r["img_id"] for r in results if r["img_id"] not in coco_gt.imgs]
            if missing:
                raise ValueError(f"img_id {missing[0]!r} of a data sample is not an image "
                                 f"of ann_file {self.ann_file!r}")
            eval_ids = [r["img_id"] for r in results]

        if self.outfile_prefix:  # with the samples' own image ids
            self._write_results(coco_detections(results, cat_ids))
        dets = coco_detections(results, cat_ids, eval_ids)
        if not dets:
            print_log("CocoMetric: no detections in any image; every AP and AR is 0.",
                      logger="current", level=logging.WARNING)
            return {key: 0.0 for key in self._summary_keys()}

        ev = run_coco_eval(coco_gt, dets, self.backend, img_ids=eval_ids, cat_ids=cat_ids,
                           max_dets=self.proposal_nums, iou_thrs=self.iou_thrs)

        metrics = self._summarize(ev)
        print_log("\n" + format_table(["metric", "value"], list(metrics.items()),
                                      title="COCO bbox evaluation:"), logger="current")
        if self.classwise:
            metrics.update(self._per_class(ev, coco_gt, classes, eval_ids))
        if self.save_pr_curves:
            self._plot_pr_curves(ev, classes)
        return metrics

    # -- ground truth and categories -------------------------------------
    def _load_ann_file(self):
        if self._coco_gt is None:
            self._coco_gt = load_coco(self.ann_file, self.backend)
        return self._coco_gt

    def _categories(self, results: list, coco_gt) -> tuple[tuple, list]:
        """Class names and the COCO category id of each contiguous label."""
        meta = self.dataset_meta or {}
        cat_ids = meta.get("cat_ids")
        labels = [r["pred"]["labels"] for r in results]
        labels += [r["gt"]["labels"] for r in results if r["gt"] is not None]
        max_label = max((int(lab.max()) for lab in labels if lab.size), default=-1)
        if coco_gt is not None and cat_ids is None:
            by_name = {c["name"]: c["id"] for c in coco_gt.loadCats(coco_gt.getCatIds())}
            if meta.get("classes") is not None and all(n in by_name for n in meta["classes"]):
                cat_ids = [by_name[n] for n in meta["classes"]]
            else:
                cat_ids = sorted(by_name.values())
        if coco_gt is not None and meta.get("classes") is None:
            classes = tuple(coco_gt.cats[c]["name"] for c in cat_ids)
        else:  # without names, one per category id (if given) or per label seen
            span = max(max_label, len(cat_ids) - 1 if cat_ids is not None else -1)
            classes = class_names(meta, span)
        cat_ids = [int(c) for c in cat_ids] if cat_ids is not None else \
            list(range(1, len(classes) + 1))
        if len(cat_ids) != len(classes):
            raise ValueError(f"dataset_meta: 'cat_ids' has {len(cat_ids)} entries but there "
                             f"are {len(classes)} classes")
        if max_label >= len(cat_ids):
            raise ValueError(f"label {max_label} is out of range for the {len(cat_ids)} "
                             "categories being evaluated")
        return classes, cat_ids

    # -- detections ---------------------------------------------------------
    def _write_results(self, detections: list[dict]) -> None:
        path = Path(f"{self.outfile_prefix}.bbox.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(detections))
        print_log(f"CocoMetric: detections written to {path}", logger="current")

    # -- summaries -----------------------------------------------------------
    def _summary_keys(self) -> list[str]:
        thrs = self.iou_thrs if self.iou_thrs is not None else np.linspace(0.5, 0.95, 10)
        keys = ["bbox_mAP"] + [f"bbox_mAP_{round(t * 100)}" for t in (0.5, 0.75)
                               if np.isclose(thrs, t).any()]
        keys += [f"bbox_mAP{suffix}" for _, suffix in AREAS[1:]]
        keys += [f"AR@{n}" for n in self.proposal_nums]
        return keys + [f"AR{suffix}@{self.proposal_nums[-1]}" for _, suffix in AREAS[1:]]

    def _summarize(self, ev) -> dict[str, float]:
        last = self.proposal_nums[-1]
        out = {"bbox_mAP": reduce_coco_eval(ev, True, max_dets=last)}
        for t in (0.5, 0.75):
            if np.isclose(ev.params.iouThrs, t).any():
                out[f"bbox_mAP_{round(t * 100)}"] = reduce_coco_eval(ev, True, t, max_dets=last)
        for area, suffix in AREAS[1:]:
            out[f"bbox_mAP{suffix}"] = reduce_coco_eval(ev, True, area=area, max_dets=last)
        for n in self.proposal_nums:
            out[f"AR@{n}"] = reduce_coco_eval(ev, False, max_dets=n)
        for area, suffix in AREAS[1:]:
            out[f"AR{suffix}@{last}"] = reduce_coco_eval(ev, False, area=area, max_dets=last)
        return out

    def _per_class(self, ev, coco_gt, classes: tuple,
                   eval_ids: list) -> dict[str, float]:
        """Per-class AP (all areas, most detections) logged as a table."""
        thrs = ev.params.iouThrs
        precision = ev.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
        columns = [("AP", np.ones(len(thrs), bool))]
        columns += [(f"AP{round(t * 100)}", np.isclose(thrs, t)) for t in (0.5, 0.75)
                    if np.isclose(thrs, t).any()]
        gts = {c: 0 for c in ev.params.catIds}
        for img_id in eval_ids:
            for ann in coco_gt.imgToAnns.get(img_id, []):
                if not ann.get("iscrowd", 0) and ann["category_id"] in gts:
                    gts[ann["category_id"]] += 1

        rows, out = [], {}
        for k, (name, cat_id) in enumerate(zip(classes, ev.params.catIds)):
            row = [name, gts[cat_id]]
            for _, select in columns:
                values = precision[select, :, k]
                values = values[values > -1]
                row.append(float(values.mean()) if values.size else float("nan"))
            rows.append(row)
            if not np.isnan(row[2]):
                out[f"bbox_AP_{name.replace(' ', '_')}"] = row[2]
        print_log("\n" + format_table(["category", "gts"] + [c for c, _ in columns], rows,
                                      title="COCO bbox AP per category:"), logger="current")
        return out

    # -- precision-recall curves ----------------------------------------------
    def _plot_pr_curves(self, ev, classes: tuple) -> list[Path]:
        """Write the PR curves described in the class docstring; returns the
        files and keeps the plotted arrays in ``self.last_pr_curves``
        (``{'recall': R, class: {'single': P at IoU 0.5, 'mean': P over IoUs}}``)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(self.save_pr_curves)
        out.mkdir(parents=True, exist_ok=True)
        thrs, recall = ev.params.iouThrs, ev.params.recThrs
        precision = ev.eval["precision"][:, :, :, 0, -1]  # [T, R, K], all areas, most dets
        at_50 = np.isclose(thrs, 0.5)
        first = int(np.argmax(at_50)) if at_50.any() else 0
        span = f"{thrs.min():.2f}:{thrs.max():.2f}"
        written, summary = [], plt.figure(figsize=(6, 5))
        self.last_pr_curves = {"recall": recall}
        for k, name in enumerate(classes):
            curves = precision[:, :, k]
            if (curves < 0).all():  # no ground truth of this class
                continue
            single = np.clip(curves[first], 0, None)
            mean = np.where(curves > -1, curves, np.nan)
            mean = np.nan_to_num(np.nanmean(mean, axis=0))
            self.last_pr_curves[name] = dict(single=single, mean=mean)
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.plot(recall, single, label=f"IoU={thrs[first]:.2f} (AP {single.mean():.3f})")
            ax.plot(recall, mean, label=f"IoU={span} mean (AP {mean.mean():.3f})")
            ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
                   title=f"{name}: precision-recall")
            ax.grid(alpha=0.3)
            ax.legend(loc="lower left", fontsize=8)
            fig.tight_layout()
            path = out / f"pr_{str(name).replace(' ', '_').replace('/', '_')}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
            summary.gca().plot(recall, single, label=f"{name} ({single.mean():.3f})")
        ax = summary.gca()
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
               title=f"precision-recall at IoU={thrs[first]:.2f} (AP per class)")
        ax.grid(alpha=0.3)
        if written:
            ax.legend(loc="lower left", fontsize=7)
        summary.tight_layout()
        summary.savefig(out / "pr_curves.png", dpi=90)
        plt.close(summary)
        written.append(out / "pr_curves.png")
        print_log(f"CocoMetric: {len(written)} precision-recall plot(s) written to {out}",
                  logger="current")
        return written
