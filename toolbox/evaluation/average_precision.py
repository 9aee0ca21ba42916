"""Shared helpers of the detection metrics: reading data samples, VOC average
precision, and plain-text tables for the log.

Not a component module (the leading underscore keeps it out of the registry).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from mmengine.structures import BaseDataElement

__all__ = ["VOC_EVAL_MODES", "as_dict", "class_names", "format_table", "read_ground_truth",
           "read_predictions", "to_numpy", "voc_average_precision"]

VOC_EVAL_MODES = ("11points", "area")


def to_numpy(value: Any, dtype=None) -> np.ndarray:
    """A tensor, array or sequence as a NumPy array (on the CPU)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    return array.astype(dtype, copy=False) if dtype is not None else array


def as_dict(element: Any, where: str) -> dict:
    if isinstance(element, BaseDataElement):
        return element.to_dict()
    if isinstance(element, dict):
        return element
    raise TypeError(f"{where}: expected a dict or an mmengine data element, "
                    f"got {type(element).__name__}")


def read_predictions(sample: Any) -> dict:
    """``pred_instances`` of a data sample as NumPy ``bboxes``/``scores``/``labels``."""
    sample = as_dict(sample, "data sample")
    if "pred_instances" not in sample:
        raise KeyError("data sample has no 'pred_instances' (bboxes, scores, labels "
                       "in original image coordinates); got keys "
                       f"{sorted(sample)}")
    pred = as_dict(sample["pred_instances"], "pred_instances")
    for key in ("bboxes", "scores", "labels"):
        if key not in pred:
            raise KeyError(f"pred_instances has no '{key}'; got keys {sorted(pred)}")
    return dict(bboxes=to_numpy(pred["bboxes"], np.float64).reshape(-1, 4),
                scores=to_numpy(pred["scores"], np.float64).reshape(-1),
                labels=to_numpy(pred["labels"], np.int64).reshape(-1))


def read_ground_truth(sample: Any, required: bool = True) -> dict | None:
    """``ori_gt_instances`` of a data sample as NumPy ``bboxes``/``labels``/``ignore``.

    ``ignore`` (COCO ``iscrowd``, VOC ``difficult``) defaults to all False.
    Returns None when the field is absent and ``required`` is False.
    """
    sample = as_dict(sample, "data sample")
    if "ori_gt_instances" not in sample:
        if not required:
            return None
        raise KeyError("data sample has no 'ori_gt_instances' (ground-truth bboxes, "
                       "labels and ignore flags in original image coordinates); the "
                       "dataset must keep them for evaluation. Got keys "
                       f"{sorted(sample)}")
    gt = as_dict(sample["ori_gt_instances"], "ori_gt_instances")
    bboxes = to_numpy(gt.get("bboxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)
    labels = to_numpy(gt.get("labels", np.zeros(0)), np.int64).reshape(-1)
    ignore = gt.get("ignore")
    ignore = (np.zeros(len(labels), bool) if ignore is None
              else to_numpy(ignore, bool).reshape(-1))
    if not len(bboxes) == len(labels) == len(ignore):
        raise ValueError("ori_gt_instances: 'bboxes', 'labels' and 'ignore' must have "
                         f"the same length, got {len(bboxes)}, {len(labels)}, {len(ignore)}")
    return dict(bboxes=bboxes, labels=labels, ignore=ignore)


def voc_average_precision(recall: np.ndarray, precision: np.ndarray, mode: str) -> float:
    """Average precision of one precision/recall curve (detections by descending score).

    * ``'area'`` (VOC2010+): area under the monotone precision envelope
      ``p_interp(r) = max_{r' >= r} p(r')``, summed where recall changes.
    * ``'11points'`` (VOC2007): mean over ``t = 0, 0.1, ..., 1`` of the highest
      precision at recall ``>= t`` (0 when recall never reaches ``t``). The
      thresholds are ``k / 10`` exactly, so a recall of exactly 0.3 counts at
      ``t = 0.3`` (``np.arange(0, 1.1, 0.1)`` would give 0.30000000000000004).
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if mode == "area":
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([0.0], precision, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    if mode == "11points":
        total = 0.0
        for k in range(11):
            reached = precision[recall >= k / 10]
            total += reached.max() if reached.size else 0.0
        return total / 11
    raise ValueError(f"eval_mode must be one of {VOC_EVAL_MODES}, got {mode!r}")


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        return "-" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                 title: str | None = None, summary: Sequence[Any] | None = None,
                 digits: int = 4) -> str:
    """A plain-text table; floats get ``digits`` decimals and NaN shows as '-'.

    ``summary`` is an optional last row (e.g. the mean) set apart by a rule.
    """
    cells = [[str(h) for h in header]] + [[_cell(v, digits) for v in row] for row in rows]
    if summary is not None:
        cells.append([_cell(v, digits) for v in summary])
    if any(len(row) != len(header) for row in cells):
        raise ValueError("format_table: every row needs one cell per header column")
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(row):  # first column left-aligned (names), the rest right-aligned
        return "|" + "|".join(
            f" {c.ljust(w) if i == 0 else c.rjust(w)} "
            for i, (c, w) in enumerate(zip(row, widths))) + "|"

    body = cells[1:-1] if summary is not None else cells[1:]
    out = [title] if title else []
    out += [rule, line(cells[0]), rule] + [line(r) for r in body]
    if summary is not None:
        out += [rule, line(cells[-1])]
    out.append(rule)
    return "\n".join(out)


def class_names(dataset_meta: dict | None, max_label: int) -> tuple[str, ...]:
    """``dataset_meta['classes']``, or ``'0', '1', ...`` up to the largest label seen.

    Raises when a label is out of range for the declared classes.
    """
    classes = (dataset_meta or {}).get("classes")
    if classes is None:
        return tuple(str(i) for i in range(max_label + 1))
    classes = tuple(str(c) for c in classes)
    if max_label >= len(classes):
        raise ValueError(f"label {max_label} is out of range for the "
                         f"{len(classes)} classes in dataset_meta['classes']")
    return classes
