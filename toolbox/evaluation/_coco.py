"""COCO plumbing shared by the COCO-style metrics: the evaluation backend
(faster-coco-eval when installed, pycocotools otherwise or on request),
ground truth and detections from the samples in pycocotools' formats, and the
summary of a ``COCOeval`` the way ``COCOeval.summarize`` computes it.

Backends: ``'pycocotools'`` is the reference; ``'faster_coco_eval'`` (the
``fast-eval`` extra) gives the same ``eval['precision']`` / ``['recall']``
arrays, with ``evaluate`` and ``accumulate`` in C++ (about 7x faster on dense
results: ``benchmarks/coco_eval.py``); ``'auto'`` picks it when importable.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

AREAS = (("all", ""), ("small", "_s"), ("medium", "_m"), ("large", "_l"))
BACKENDS = ("auto", "faster_coco_eval", "pycocotools")


def faster_coco_eval_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, owner: str = "CocoMetric") -> str:
    """``'auto'`` -> ``'faster_coco_eval'`` when installed, else ``'pycocotools'``."""
    if backend not in BACKENDS:
        raise ValueError(f"{owner}: 'backend' must be one of {', '.join(map(repr, BACKENDS))}, "
                         f"got {backend!r}")
    if backend == "auto":
        return "faster_coco_eval" if faster_coco_eval_available() else "pycocotools"
    if backend == "faster_coco_eval" and not faster_coco_eval_available():
        raise ImportError(f"{owner}: backend='faster_coco_eval' needs the faster-coco-eval "
                          "package: pip install 'toolbox[fast-eval]' (or backend='auto')")
    return backend


def coco_classes(backend: str):
    """``(COCO, COCOeval)`` of ``backend`` (a resolved name)."""
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO as FastCOCO
        from faster_coco_eval import COCOeval_faster

        def fast_eval(gt, dt, iou_type):
            return COCOeval_faster(gt, dt, iou_type, print_function=lambda *a, **k: None)
        return FastCOCO, fast_eval
    return COCO, COCOeval


def load_coco(path: str, backend: str = "pycocotools"):
    """The COCO ground truth object of ``backend`` for the JSON at ``path``."""
    cls, _ = coco_classes(backend)
    with quiet():
        return cls(path)


def run_coco_eval(coco_gt, dets: list, backend: str, *, img_ids, cat_ids=None,
                  max_dets, iou_thrs=None):
    """Evaluate results-format boxes ``dets`` against ``coco_gt`` (a COCO of
    the same ``backend``); ``cat_ids=None`` is pycocotools' class-agnostic mode
    (``useCats=0``). Returns the evaluated and accumulated ``COCOeval``."""
    _, make_eval = coco_classes(backend)
    with quiet():
        coco_dt = _results_coco(coco_gt, dets, backend)
        ev = make_eval(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = list(img_ids)
        if cat_ids is None:
            ev.params.useCats = 0
        else:
            ev.params.catIds = list(cat_ids)
        ev.params.maxDets = list(max_dets)
        if iou_thrs is not None:
            ev.params.iouThrs = np.asarray(iou_thrs, np.float64)
        ev.evaluate()
        ev.accumulate()
    return ev


def quiet():
    """Swallow pycocotools' progress prints."""
    return contextlib.redirect_stdout(io.StringIO())


def plain_id(img_id: Any):
    if isinstance(img_id, torch.Tensor):
        img_id = img_id.item()
    return img_id.item() if isinstance(img_id, np.generic) else img_id


def coco_from_samples(results: list, classes: tuple, cat_ids: list,
                      backend: str = "pycocotools"):
    """A COCO object from ``ori_gt_instances``, and the image ids it uses
    (the samples' ids when they are all integers, else 1, 2, ...)."""
    original = [r["img_id"] for r in results]
    integers = all(isinstance(i, int) and not isinstance(i, bool) for i in original)
    eval_ids = original if integers else list(range(1, len(results) + 1))
    images, annotations = [], []
    for res, img_id in zip(results, eval_ids):
        height, width = res["ori_shape"]
        images.append(dict(id=img_id, height=height, width=width))
        gt = res["gt"]
        for (x1, y1, x2, y2), label, ignore in zip(gt["bboxes"], gt["labels"], gt["ignore"]):
            w, h = float(x2 - x1), float(y2 - y1)
            annotations.append(dict(  # ids start at 1: pycocotools reads 0 as "unmatched"
                id=len(annotations) + 1, image_id=img_id,
                category_id=cat_ids[label], bbox=[float(x1), float(y1), w, h],
                area=w * h, iscrowd=int(ignore)))
    coco = coco_classes(backend)[0]()
    coco.dataset = dict(images=images, annotations=annotations,
                        categories=[dict(id=c, name=n) for c, n in zip(cat_ids, classes)])
    with quiet():
        coco.createIndex()
    return coco, eval_ids


def coco_detections(results: list, cat_ids: list, image_ids: list | None = None) -> list[dict]:
    """Predictions in COCO results format (xywh boxes), with the samples' ids
    (or ``image_ids``, one per result). Vectorised per image: the same floats
    as converting box by box, a few times faster on dense results."""
    cats = np.asarray(cat_ids)
    ids = [r["img_id"] for r in results] if image_ids is None else image_ids
    dets: list[dict] = []
    for res, img_id in zip(results, ids):
        pred = res["pred"]
        boxes = np.asarray(pred["bboxes"], np.float64).reshape(-1, 4)
        if not len(boxes):
            continue
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
        scores = np.asarray(pred["scores"], np.float64).reshape(-1).tolist()
        labels = cats[np.asarray(pred["labels"], np.int64).reshape(-1)].tolist()
        dets.extend({"image_id": img_id, "category_id": c, "bbox": b, "score": sc}
                    for b, sc, c in zip(xywh, scores, labels))
    return dets


def _results_coco(coco_gt, dets: list, backend: str):
    """``coco_gt.loadRes(dets)``; for faster-coco-eval the same object built
    without loadRes's per-detection Python loop (area, id and iscrowd added
    in one pass; the bbox-as-polygon ``segmentation`` is not needed for box IoU)."""
    if backend != "faster_coco_eval" or not dets:
        return coco_gt.loadRes(dets)
    img_ids = set(coco_gt.getImgIds())
    if any(d["image_id"] not in img_ids for d in dets):
        raise ValueError("detections name an image that is not in the ground truth")
    for index, det in enumerate(dets, 1):
        bbox = det["bbox"]
        det["area"] = bbox[2] * bbox[3]
        det["id"] = index
        det["iscrowd"] = 0
    res = coco_classes(backend)[0]()
    res.dataset = dict(images=list(coco_gt.dataset["images"]), annotations=dets,
                       categories=[dict(c) for c in coco_gt.dataset["categories"]])
    with quiet():
        res.createIndex()
    return res


def reduce_coco_eval(ev: COCOeval, precision: bool, iou=None, area="all", max_dets=None) -> float:
    """Mean of the valid (> -1) entries, as ``COCOeval.summarize`` computes it."""
    p = ev.params
    values = ev.eval["precision" if precision else "recall"]  # [T,R,K,A,M] / [T,K,A,M]
    if iou is not None:
        values = values[np.isclose(p.iouThrs, iou)]
    values = values[..., p.areaRngLbl.index(area), p.maxDets.index(max_dets)]
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0
