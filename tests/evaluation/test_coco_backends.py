"""faster-coco-eval gives every number pycocotools gives (CocoMetric and
ProposalRecallMetric, ``backend=``): on a shipped evaluation (the synthetic
val set's COCO JSON as ``ann_file``), on a dense case of 2,000 images x 100
detections with crowd boxes and empty images, and on the small edge cases."""
import json

import numpy as np
import pytest
import torch

from toolbox.evaluation._coco import resolve_backend, run_coco_eval, coco_from_samples
from toolbox.evaluation.coco_metric import CocoMetric
from toolbox.evaluation.proposal_metric import ProposalRecallMetric

import faster_coco_eval  # noqa: E402,F401 - the fast-eval extra, part of the test extra
BACKENDS = ("pycocotools", "faster_coco_eval")


def dense_samples(num_images=2000, dets_per_image=100, num_classes=10, seed=0,
                  empty_every=20, crowd_prob=0.05):
    """Data samples (dicts) with 0-15 ground-truth boxes (every ``empty_every``-th
    image none), crowd boxes, object sizes across small/medium/large, and
    ``dets_per_image`` detections: jittered ground truth (often the wrong class)
    and random boxes, random scores."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(num_images):
        n_gt = 0 if i % empty_every == 0 else int(rng.integers(1, 16))
        wh = np.exp(rng.uniform(np.log(4), np.log(400), (n_gt, 2)))
        xy = rng.uniform(0, 1, (n_gt, 2)) * (np.array([640, 480]) - wh).clip(1)
        gt = np.concatenate([xy, xy + wh], 1)
        gt_labels = rng.integers(0, num_classes, n_gt)
        crowd = rng.random(n_gt) < crowd_prob
        n_near = min(dets_per_image // 2, 4 * n_gt)
        src = rng.integers(0, max(n_gt, 1), n_near)
        near = gt[src] + rng.normal(0, 1, (n_near, 4)) * np.repeat(wh[src] * 0.1, 2, 1) \
            if n_gt else np.zeros((0, 4))
        near_labels = np.where(rng.random(n_near) < 0.7, gt_labels[src] if n_gt else 0,
                               rng.integers(0, num_classes, n_near))
        n_far = dets_per_image - n_near
        fwh = np.exp(rng.uniform(np.log(4), np.log(400), (n_far, 2)))
        fxy = rng.uniform(0, 600, (n_far, 2))
        boxes = np.concatenate([near, np.concatenate([fxy, fxy + fwh], 1)])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        labels = np.concatenate([near_labels, rng.integers(0, num_classes, n_far)])
        scores = rng.random(dets_per_image)
        samples.append(dict(
            img_id=i + 1, ori_shape=(480, 640),
            pred_instances=dict(bboxes=torch.from_numpy(boxes).float(),
                                scores=torch.from_numpy(scores).float(),
                                labels=torch.from_numpy(labels)),
            ori_gt_instances=dict(bboxes=torch.from_numpy(gt).float(),
                                  labels=torch.from_numpy(gt_labels),
                                  ignore=torch.from_numpy(crowd))))
    return samples


def _evaluate(metric_cls, samples, backend, **kwargs):
    metric = metric_cls(backend=backend, **kwargs)
    metric.dataset_meta = dict(classes=tuple(f"c{k}" for k in range(10)))
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys() and a
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-12), key


@pytest.mark.slow
def test_dense_2000_images_100_detections_every_number_equal():
    samples = dense_samples()
    ref = _evaluate(CocoMetric, samples, "pycocotools")
    fast = _evaluate(CocoMetric, samples, "faster_coco_eval")
    _assert_same(ref, fast)
    assert 0.0 < ref["bbox_mAP"] < 1.0 and len(ref) > 12  # summary + per-class APs

    # and the whole precision / recall arrays, not only their means
    results = [dict(img_id=s["img_id"], ori_shape=s["ori_shape"],
                    pred={k: v.numpy() for k, v in s["pred_instances"].items()},
                    gt={k: v.numpy() for k, v in s["ori_gt_instances"].items()})
               for s in samples[:500]]
    from toolbox.evaluation._coco import coco_detections
    dets = coco_detections(results, list(range(1, 11)))
    evals = []
    for backend in BACKENDS:
        gt, ids = coco_from_samples(results, tuple(f"c{k}" for k in range(10)),
                                    list(range(1, 11)), backend)
        evals.append(run_coco_eval(gt, dets, backend, img_ids=ids, cat_ids=range(1, 11),
                                   max_dets=(1, 10, 100)))
    for key in ("precision", "recall"):
        np.testing.assert_allclose(evals[0].eval[key], evals[1].eval[key], atol=1e-12)


def test_shipped_eval_with_ann_file(tmp_path):
    """The synthetic val set's own COCO JSON as ann_file, and detections near it."""
    from toolbox.datasets.synthetic import SyntheticCocoDataset
    ds = SyntheticCocoDataset(data_root=str(tmp_path / "synth"), split="val", num_images=30,
                              image_size=128, test_mode=True, pipeline=[])
    ann_file = ds.ann_file
    coco = json.loads(open(ann_file).read())
    rng = np.random.default_rng(1)
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    cat_ids = sorted(c["id"] for c in coco["categories"])
    samples = []
    for img in coco["images"]:
        anns = by_image.get(img["id"], [])
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                  a["bbox"][1] + a["bbox"][3]] for a in anns] + [[5, 5, 40, 50]]
        boxes = np.asarray(boxes) + rng.normal(0, 2, (len(boxes), 4))
        labels = [cat_ids.index(a["category_id"]) for a in anns] + [0]
        samples.append(dict(img_id=img["id"], ori_shape=(img["height"], img["width"]),
                            pred_instances=dict(bboxes=torch.tensor(boxes).float(),
                                                scores=torch.rand(len(boxes)),
                                                labels=torch.tensor(labels))))
    out = []
    for backend in BACKENDS:
        metric = CocoMetric(ann_file=ann_file, backend=backend)
        metric.dataset_meta = ds.metainfo
        metric.process({}, samples)
        out.append(metric.compute_metrics(metric.results))
    _assert_same(*out)
    assert out[0]["bbox_mAP_50"] > 0.5


def test_crowd_boxes_and_empty_images_small_cases():
    cases = [
        # crowd GT overlapped by detections (ignored), an image without GT but
        # with detections (false positives), an image with GT but no detections
        [dict(img_id=1, ori_shape=(100, 100),
              pred_instances=dict(bboxes=torch.tensor([[0., 0, 50, 50], [0, 0, 90, 90],
                                                       [10, 10, 30, 30]]),
                                  scores=torch.tensor([0.9, 0.8, 0.7]),
                                  labels=torch.tensor([0, 0, 1])),
              ori_gt_instances=dict(bboxes=torch.tensor([[0., 0, 50, 50], [0, 0, 95, 95]]),
                                    labels=torch.tensor([0, 0]),
                                    ignore=torch.tensor([False, True]))),
         dict(img_id=2, ori_shape=(100, 100),
              pred_instances=dict(bboxes=torch.tensor([[5., 5, 20, 20]]),
                                  scores=torch.tensor([0.95]), labels=torch.tensor([1])),
              ori_gt_instances=dict(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long(),
                                    ignore=torch.zeros(0, dtype=torch.bool))),
         dict(img_id=3, ori_shape=(100, 100),
              pred_instances=dict(bboxes=torch.zeros(0, 4), scores=torch.zeros(0),
                                  labels=torch.zeros(0).long()),
              ori_gt_instances=dict(bboxes=torch.tensor([[1., 1, 60, 70]]),
                                    labels=torch.tensor([1]),
                                    ignore=torch.tensor([False])))],
    ]
    for samples in cases + [dense_samples(60, 30, seed=3, empty_every=4, crowd_prob=0.3)]:
        _assert_same(*(_evaluate(CocoMetric, samples, b) for b in BACKENDS))
        _assert_same(*(_evaluate(ProposalRecallMetric, samples, b,
                                 proposal_nums=(1, 10, 100)) for b in BACKENDS))


def test_proposal_recall_dense_equal():
    samples = dense_samples(300, 100, seed=5)
    _assert_same(*(_evaluate(ProposalRecallMetric, samples, b) for b in BACKENDS))


def test_backend_choice():
    assert resolve_backend("auto") == "faster_coco_eval"  # installed here: the default
    assert CocoMetric().backend == "faster_coco_eval"
    assert CocoMetric(backend="pycocotools").backend == "pycocotools"
    with pytest.raises(ValueError, match="'backend' must be one of"):
        ProposalRecallMetric(backend="detectron2")
