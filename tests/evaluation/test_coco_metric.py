"""CocoMetric against hand-worked cases and against pycocotools run directly.

COCO conventions used in the arithmetic below: IoU thresholds 0.50:0.05:0.95
(10 values, a match needs IoU >= threshold); AP at one threshold is the mean
over 101 recall points r = 0, 0.01, ..., 1 of the precision envelope
max_{r' >= r} p(r') (0 where recall r is never reached); mAP is the mean over
the 10 thresholds. Boxes: x1 y1 x2 y2, area (x2 - x1) * (y2 - y1).
"""
import json

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from toolbox.evaluation import coco_metric as coco_module
from toolbox.evaluation.coco_metric import CocoMetric
from toolbox.registry import METRICS
from toolbox.structures import DetDataSample
from _samples import make_sample

SUMMARY = ["bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l",
           "AR@1", "AR@10", "AR@100", "AR_s@100", "AR_m@100", "AR_l@100"]


def sample(img_id, dets, gts, shape=(200, 200)):
    return make_sample(img_id, dets, gts, shape)


def evaluate(samples, meta=None, **kwargs):
    metric = METRICS.build(dict(type="CocoMetric", **kwargs))
    metric.dataset_meta = meta if meta is not None else dict(classes=("a",))
    metric.process({}, samples)
    return metric.evaluate(len(samples))


A, B = [0, 0, 10, 10], [20, 20, 30, 30]


def test_registered_and_bad_arguments(tmp_path):
    assert isinstance(METRICS.build(dict(type="CocoMetric")), CocoMetric)
    with pytest.raises(ValueError, match="metric"):
        CocoMetric(metric="segm")
    with pytest.raises(FileNotFoundError, match="ann_file"):
        CocoMetric(ann_file=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="proposal_nums"):
        CocoMetric(proposal_nums=(100, 10))
    with pytest.raises(ValueError, match="iou_thrs"):
        CocoMetric(iou_thrs=[0.5, 1.2])
    with pytest.raises(KeyError, match="img_id"):
        CocoMetric().process({}, [{"pred_instances": {}}])
    with pytest.raises(KeyError, match="ori_gt_instances"):
        CocoMetric().process({}, [{"img_id": 1, "pred_instances": sample(1, [], [])[
            "pred_instances"]}])


def test_perfect_detections_score_one_everywhere():
    # Boxes in all three COCO area ranges: small < 32^2, medium in [32^2, 96^2], large > 96^2.
    # Every GT detected exactly (IoU 1 >= every threshold) and nothing else -> precision 1 at
    # every recall, recall 1: every AP and AR is 1.
    small, medium, large = [5, 5, 25, 25], [30, 30, 80, 80], [0, 0, 150, 150]  # 400, 2500, 22500
    samples = [sample(1, [(small, 0.9, 0), (medium, 0.8, 1)], [(small, 0, 0), (medium, 1, 0)]),
               sample(2, [(large, 0.7, 1)], [(large, 1, 0)])]
    out = evaluate(samples, meta=dict(classes=("a", "b")))
    for key in SUMMARY:
        assert out[f"coco/{key}"] == pytest.approx(1.0), key
    assert out["coco/bbox_AP_a"] == pytest.approx(1.0)


@pytest.mark.parametrize("det, iou, expected", [
    # IoU 0.62 >= 0.50, 0.55, 0.60 and < 0.65: AP 1 at 3 thresholds, 0 at 7 -> mAP 3/10
    ([0, 0, 10, 6.2], 0.62, 0.3),
    # IoU exactly 0.6: pycocotools' thresholds hold 0.6 exactly (linspace), the test is
    # "IoU < t -> no match", so 0.6 matches at t = 0.6 -> again 3 thresholds -> 0.3
    ([0, 0, 10, 6], 0.6, 0.3),
    # IoU 0.58: matches 0.50 and 0.55 only -> 2/10
    ([0, 0, 10, 5.8], 0.58, 0.2),
])
def test_single_detection_at_known_iou(det, iou, expected):
    # one GT A (area 100), one detection [0,0,10,h]: intersection 10h, union 100 -> IoU h/10.
    # matched at t: precision 1 at recall 1 -> AP_t = 1 ; unmatched: recall 0 -> AP_t = 0.
    out = evaluate([sample(1, [(det, 0.9, 0)], [(A, 0, 0)])])
    assert out["coco/bbox_mAP_50"] == pytest.approx(1.0)
    assert out["coco/bbox_mAP_75"] == pytest.approx(0.0)
    assert out["coco/bbox_mAP"] == pytest.approx(expected)


def test_false_positive_above_true_positive_101_point_interpolation():
    # GTs A, B; detections 0.9 on A (TP), 0.8 far away (FP), 0.7 on B (TP), all IoU 1 or 0,
    # so every threshold gives the same curve:
    #   recall 1/2, 1/2, 1 ; precision 1, 1/2, 2/3 ; envelope 1, 2/3, 2/3
    #   r = 0.00 .. 0.50 (51 points): first point with recall >= r is the first -> 1
    #   r = 0.51 .. 1.00 (50 points): the third -> 2/3
    #   AP = (51 * 1 + 50 * 2/3) / 101 = 253/303 = 0.83498  (VOC area mode would give 5/6)
    # AR@1 keeps only the top detection of the image (TP on A) -> recall 1/2; AR@10 -> 1.
    out = evaluate([sample(1, [(A, 0.9, 0), ([100, 100, 110, 110], 0.8, 0), (B, 0.7, 0)],
                           [(A, 0, 0), (B, 0, 0)])])
    assert out["coco/bbox_mAP_50"] == pytest.approx(253 / 303)
    assert out["coco/bbox_mAP"] == pytest.approx(253 / 303)
    assert out["coco/AR@1"] == pytest.approx(0.5)
    assert out["coco/AR@10"] == pytest.approx(1.0)


def test_crowd_ground_truth_is_ignored():
    # GT A normal, crowd region C = [20,20,40,40]. Detections:
    #   0.9 [22,22,28,28] inside C: plain IoU 36/400 = 0.09 would make it a FP, but against a
    #       crowd box pycocotools uses intersection / detection area = 36/36 = 1 -> ignored
    #   0.8 on A -> TP
    # the crowd box is not a positive: recall 1/1, precision 1 -> AP 1 at every threshold.
    # (counted as FP first: precision 1/2 at recall 1 -> AP 0.5)
    crowd = [20, 20, 40, 40]
    out = evaluate([sample(1, [([22, 22, 28, 28], 0.9, 0), (A, 0.8, 0)],
                           [(A, 0, 0), (crowd, 0, 1)])])
    assert out["coco/bbox_mAP"] == pytest.approx(1.0)
    assert out["coco/AR@100"] == pytest.approx(1.0)


def test_results_json_and_category_ids(tmp_path):
    dets = [([1, 2, 11, 22], 0.9, 0), ([5, 5, 8, 9], 0.5, 1)]
    samples = [sample(7, dets, [(A, 0, 0)])]
    # cat_ids given: label 0 -> 3, label 1 -> 7 ; bbox x1,y1,x2,y2 -> x, y, w, h
    evaluate(samples, meta=dict(classes=("a", "b"), cat_ids=(3, 7)),
             outfile_prefix=str(tmp_path / "out" / "res"))
    written = json.loads((tmp_path / "out" / "res.bbox.json").read_text())
    assert [d["image_id"] for d in written] == [7, 7]
    assert [d["category_id"] for d in written] == [3, 7]
    assert written[0]["bbox"] == pytest.approx([1, 2, 10, 20])
    assert written[1]["bbox"] == pytest.approx([5, 5, 3, 4])
    assert [d["score"] for d in written] == pytest.approx([0.9, 0.5])
    # no cat_ids: label + 1
    evaluate(samples, meta=dict(classes=("a", "b")), outfile_prefix=str(tmp_path / "plain"))
    written = json.loads((tmp_path / "plain.bbox.json").read_text())
    assert [d["category_id"] for d in written] == [1, 2]


def _random_case(seed=0, num_images=4):
    """Samples with jittered detections, GT of two classes, some crowd boxes."""
    rng = np.random.default_rng(seed)
    samples = []
    for img_id in range(1, num_images + 1):
        gts, dets = [], []
        for _ in range(rng.integers(2, 6)):
            x, y = rng.uniform(0, 120, 2)
            w, h = rng.uniform(8, 80, 2)
            box = [round(x, 1), round(y, 1), round(x + w, 1), round(y + h, 1)]
            label, crowd = int(rng.integers(0, 2)), int(rng.random() < 0.15)
            gts.append((box, label, crowd))
            for _ in range(rng.integers(0, 3)):  # jittered copies, sometimes the wrong class
                jitter = rng.normal(0, 0.12 * min(w, h), 4)
                det = [float(v) for v in np.array(box) + jitter]
                det_label = label if rng.random() < 0.8 else 1 - label
                dets.append((det, float(rng.uniform(0.05, 1)), det_label))
        dets.append(([0, 0, 30, 30], float(rng.uniform(0, 1)), 0))  # a background FP
        samples.append(sample(img_id, dets, gts))
    return samples


def _write_gt_json(samples, path, cat_ids=(3, 7), names=("a", "b")):
    """COCO JSON of the samples' GT written directly (xywh, box area, iscrowd), plus an
    extra image that is never processed and so must not affect the scores."""
    images, anns = [], []
    for s in samples:
        images.append(dict(id=s["img_id"], width=200, height=200, file_name=f"{s['img_id']}.jpg"))
        gt = s["ori_gt_instances"]
        for box, label, crowd in zip(gt["bboxes"].tolist(), gt["labels"].tolist(),
                                     gt["ignore"].tolist()):
            x1, y1, x2, y2 = box
            anns.append(dict(id=len(anns) + 1, image_id=s["img_id"], category_id=cat_ids[label],
                             bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1),
                             iscrowd=int(crowd)))
    images.append(dict(id=999, width=200, height=200, file_name="999.jpg"))
    anns.append(dict(id=len(anns) + 1, image_id=999, category_id=cat_ids[0],
                     bbox=[0, 0, 50, 50], area=2500, iscrowd=0))
    path.write_text(json.dumps(dict(
        images=images, annotations=anns,
        categories=[dict(id=c, name=n) for c, n in zip(cat_ids, names)])))


def test_ann_file_and_in_memory_agree_and_match_pycocotools(tmp_path):
    samples = _random_case()
    ann_file = tmp_path / "gt.json"
    _write_gt_json(samples, ann_file)
    meta = dict(classes=("a", "b"), cat_ids=(3, 7))
    in_memory = evaluate(samples, meta=meta)
    from_file = evaluate(samples, meta=meta, ann_file=str(ann_file),
                         outfile_prefix=str(tmp_path / "res"))
    assert set(in_memory) == set(from_file)
    for key in in_memory:
        assert from_file[key] == pytest.approx(in_memory[key], abs=1e-12), key
    assert 0.2 < in_memory["coco/bbox_mAP"] < 0.95  # a non-trivial case

    # pycocotools run directly on the same files (its default maxDets 1/10/100)
    gt = COCO(str(ann_file))
    ev = COCOeval(gt, gt.loadRes(str(tmp_path / "res.bbox.json")), "bbox")
    ev.params.imgIds = [s["img_id"] for s in samples]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    for key, reference in zip(SUMMARY, ev.stats):
        assert from_file[f"coco/{key}"] == pytest.approx(reference, abs=1e-12), key


def test_ann_file_classes_mapped_by_name(tmp_path):
    # dataset classes in another order than the file's categories and no cat_ids given:
    # the category of each label is found by name ('b' -> 7, 'a' -> 3).
    samples = [sample(1, [(A, 0.9, 0), (B, 0.8, 1)], [(A, 1, 0), (B, 0, 0)])]
    ann_file = tmp_path / "gt.json"
    _write_gt_json(samples, ann_file, cat_ids=(3, 7), names=("a", "b"))
    # GT label 1 -> cat 7 ('b') holds A; GT label 0 -> cat 3 ('a') holds B.
    # meta classes ('b', 'a'): prediction label 0 ('b') on A and label 1 ('a') on B: perfect.
    out = evaluate(samples, meta=dict(classes=("b", "a")), ann_file=str(ann_file),
                   outfile_prefix=str(tmp_path / "res"))
    written = json.loads((tmp_path / "res.bbox.json").read_text())
    assert [d["category_id"] for d in written] == [7, 3]
    assert out["coco/bbox_mAP"] == pytest.approx(1.0)


def test_string_image_ids_through_mmengine_evaluator():
    # DetDataSample objects with VOC-style string ids; one class, the FP-above-TP case.
    ds = DetDataSample(metainfo=dict(img_id="000005", ori_shape=(100, 100)))
    ds.pred_instances = InstanceData(
        bboxes=torch.tensor([A, [60, 60, 70, 70], B], dtype=torch.float32),
        scores=torch.tensor([0.9, 0.8, 0.7]), labels=torch.tensor([0, 0, 0]))
    ds.ori_gt_instances = InstanceData(bboxes=torch.tensor([A, B], dtype=torch.float32),
                                       labels=torch.tensor([0, 0]),
                                       ignore=torch.tensor([False, False]))
    evaluator = Evaluator(CocoMetric())
    evaluator.dataset_meta = dict(classes=("a",))
    evaluator.process([ds], {})
    assert evaluator.evaluate(1)["coco/bbox_mAP"] == pytest.approx(253 / 303)


def test_custom_thresholds_and_proposal_nums():
    # only IoU 0.5: the single IoU-0.58 detection is matched -> mAP = AP50 = 1, no AP75 key
    out = evaluate([sample(1, [([0, 0, 10, 5.8], 0.9, 0)], [(A, 0, 0)])],
                   iou_thrs=[0.5], proposal_nums=(1, 5))
    assert out["coco/bbox_mAP"] == out["coco/bbox_mAP_50"] == pytest.approx(1.0)
    assert "coco/bbox_mAP_75" not in out
    assert {"coco/AR@1", "coco/AR@5", "coco/AR_s@5"} <= set(out)


def test_no_detections_gives_zeros():
    out = evaluate([sample(1, [], [(A, 0, 0)])])
    assert set(out) == {f"coco/{k}" for k in SUMMARY}
    assert all(v == 0.0 for v in out.values())


def test_per_class_table_logged(monkeypatch):
    messages = []
    monkeypatch.setattr(coco_module, "print_log", lambda msg, **kw: messages.append(msg))
    # class a: IoU-0.62 case (AP .3, AP50 1, AP75 0); class 'b b': no GT and no detection
    out = evaluate([sample(1, [([0, 0, 10, 6.2], 0.9, 0)], [(A, 0, 0)])],
                   meta=dict(classes=("a", "b b")))
    table = next(m for m in messages if "per category" in m)
    row_a = next(line for line in table.splitlines() if line.startswith("| a "))
    assert [c.strip() for c in row_a.split("|")[1:-1]] == ["a", "1", "0.3000", "1.0000", "0.0000"]
    row_b = next(line for line in table.splitlines() if line.startswith("| b b"))
    assert row_b.split("|")[3].strip() == "-"
    assert out["coco/bbox_AP_a"] == pytest.approx(0.3) and "coco/bbox_AP_b_b" not in out
