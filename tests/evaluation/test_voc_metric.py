"""VOCMetric against cases worked by hand (arithmetic in the comments).

Boxes are x1 y1 x2 y2 in continuous coordinates: area = (x2 - x1) * (y2 - y1).
"""
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from toolbox.errors import ConfigArgumentError
from toolbox.evaluation import voc_metric as voc_module
from toolbox.evaluation.average_precision import voc_average_precision
from toolbox.evaluation.voc_metric import VOCMetric
from toolbox.registry import METRICS
from toolbox.structures import DetDataSample
from _samples import make_sample


def sample(img_id, dets, gts):
    return make_sample(img_id, dets, gts, shape=(100, 100))


def evaluate(samples, classes=("a",), **kwargs):
    metric = METRICS.build(dict(type="VOCMetric", **kwargs))
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    return metric.evaluate(len(samples))


A, B = [0, 0, 10, 10], [20, 20, 30, 30]  # two 10x10 GT boxes (area 100)

# One image, GTs A and B of class 'a', three detections:
#   0.9  [0,0,10,10]   IoU(A) = 100/100 = 1.0  -> TP
#   0.8  [40,40,50,50] no overlap              -> FP
#   0.7  [20,20,30,26] IoU(B) = 60/100 = 0.6   -> TP
# cumTP = 1,1,2  cumFP = 0,1,1  ->  recall = 1/2, 1/2, 2/2 ; precision = 1/1, 1/2, 2/3
# area:  envelope p(r) = 1 on (0, 0.5], 2/3 on (0.5, 1]  -> 0.5*1 + 0.5*2/3 = 5/6
# 11pt:  t = 0.0..0.5 (6 points): max p at recall >= t = 1
#        t = 0.6..1.0 (5 points): only the third point (recall 1) -> 2/3
#        (6*1 + 5*2/3) / 11 = (28/3) / 11 = 28/33
MAIN_CASE = [sample(1, [(A, 0.9, 0), ([40, 40, 50, 50], 0.8, 0), ([20, 20, 30, 26], 0.7, 0)],
                    [(A, 0, False), (B, 0, False)])]
EXPECTED_MAIN = {"11points": 28 / 33, "area": 5 / 6}


def test_ap_from_hand_worked_precision_recall_points():
    recall, precision = [0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]
    assert voc_average_precision(recall, precision, "area") == pytest.approx(5 / 6)
    assert voc_average_precision(recall, precision, "11points") == pytest.approx(28 / 33)
    # recall exactly 0.3 must count at t = 0.3: 4 points (0, .1, .2, .3) at precision 1 -> 4/11
    assert voc_average_precision([0.3], [1.0], "11points") == pytest.approx(4 / 11)
    # area with a precision dip that the envelope fills: recall .25,.5,.75 with p 1,.5,.75
    # envelope on (0,.25]: 1, (.25,.5]: .75, (.5,.75]: .75, (.75,1]: 0 -> .25 + .1875 + .1875
    assert voc_average_precision([.25, .5, .75], [1, .5, .75], "area") == pytest.approx(0.625)


def test_registered_and_arguments_checked():
    assert isinstance(METRICS.build(dict(type="VOCMetric")), VOCMetric)
    with pytest.raises(ConfigArgumentError, match="eval_mod"):
        METRICS.build(dict(type="VOCMetric", eval_mod="area"))
    with pytest.raises(ValueError, match="eval_mode"):
        VOCMetric(eval_mode="12points")
    with pytest.raises(ValueError, match="iou_thr"):
        VOCMetric(iou_thr=1.5)
    with pytest.raises(ValueError, match="iou_thr"):
        VOCMetric(iou_thr=[])


@pytest.mark.parametrize("mode", ["11points", "area"])
def test_two_gts_three_detections(mode):
    out = evaluate(MAIN_CASE, eval_mode=mode)
    assert out["pascal_voc/AP50"] == pytest.approx(EXPECTED_MAIN[mode])
    assert out["pascal_voc/mAP"] == pytest.approx(EXPECTED_MAIN[mode])
    assert set(out) == {"pascal_voc/AP50", "pascal_voc/mAP"}


@pytest.mark.parametrize("mode", ["11points", "area"])
def test_detection_on_difficult_gt_is_neither_tp_nor_fp(mode):
    # GT A normal, GT B difficult. Detections:
    #   0.9 on B (IoU 1)  -> ignored (not FP, and B is not a positive)
    #   0.8 on A (IoU 1)  -> TP
    #   0.7 no overlap    -> FP
    # positives = 1; counted: TP, FP -> recall 1, 1 ; precision 1, 1/2
    # area: envelope 1 on (0, 1] -> AP 1 ; 11pt: every t reached at precision 1 -> AP 1
    # (were the first detection a FP, precision at recall 1 would be 1/2 -> AP 0.5 / 6.5/11)
    case = [sample(1, [(B, 0.9, 0), (A, 0.8, 0), ([40, 40, 50, 50], 0.7, 0)],
                   [(A, 0, False), (B, 0, True)])]
    assert evaluate(case, eval_mode=mode)["pascal_voc/mAP"] == pytest.approx(1.0)
    # an image whose only GT is difficult and no detection: still AP 1 (not a missed positive)
    case.append(sample(2, [], [(A, 0, True)]))
    assert evaluate(case, eval_mode=mode)["pascal_voc/mAP"] == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["11points", "area"])
def test_duplicate_detection_is_fp(mode):
    # GTs A, B. 0.9 on A -> TP ; 0.8 [0,0,10,9] IoU(A) = 90/100 but A taken -> FP (duplicate);
    # 0.7 on B -> TP. Same TP/FP sequence as the main case -> 5/6 (area), 28/33 (11pt).
    case = [sample(1, [(A, 0.9, 0), ([0, 0, 10, 9], 0.8, 0), (B, 0.7, 0)],
                   [(A, 0, False), (B, 0, False)])]
    assert evaluate(case, eval_mode=mode)["pascal_voc/mAP"] == pytest.approx(EXPECTED_MAIN[mode])


@pytest.mark.parametrize("mode, expected", [("area", 0.5), ("11points", 6 / 11)])
def test_detection_takes_its_best_gt_only(mode, expected):
    # GTs A = [0,0,10,10] and C = [0,0,10,8] (overlapping). Detections:
    #   0.9 [0,0,10,10]  best IoU: A (1.0) -> TP
    #   0.8 [0,0,10,9.5] IoU(A) = 95/100 = .95, IoU(C) = 80/95 = .84 -> best is A, taken -> FP
    #       (VOC devkit: no fall-back to C even though C is free and above 0.5)
    # positives 2: recall 1/2, 1/2 ; precision 1, 1/2
    # area: 0.5 * 1 = 0.5 ; 11pt: t = 0..0.5 -> 1 (6 points), t > 0.5 -> 0  => 6/11
    case = [sample(1, [(A, 0.9, 0), ([0, 0, 10, 9.5], 0.8, 0)],
                   [(A, 0, False), ([0, 0, 10, 8], 0, False)])]
    assert evaluate(case, eval_mode=mode)["pascal_voc/mAP"] == pytest.approx(expected)


@pytest.mark.parametrize("mode, expected_b, expected_map", [
    # class a: the main case (28/33 or 5/6); class b: 2/3 (below); class c: no GT -> left out
    ("11points", 2 / 3, (28 / 33 + 2 / 3) / 2),   # = 25/33
    ("area", 2 / 3, (5 / 6 + 2 / 3) / 2),         # = 3/4
])
def test_mean_over_classes_with_gt_across_images(mode, expected_b, expected_map):
    # class b, one GT in each of images 1 and 2; its detections sorted over both images:
    #   0.95 image 2, no overlap -> FP ; 0.6 image 1 on its GT -> TP ; 0.5 image 2 on its GT -> TP
    #   0.1 image 1 on the class-a GT B -> FP (classes never match each other's GT)
    #   recall 0, 1/2, 1, 1 ; precision 0, 1/2, 2/3, 1/2
    #   envelope 2/3 on (0, 1] -> area 2/3 ; 11pt: max p at recall >= t is 2/3 for all t -> 2/3
    # class c: one detection (0.99 on A) but no GT -> no AP, not in the mean.
    img1 = sample(1, [(A, 0.9, 0), ([40, 40, 50, 50], 0.8, 0), ([20, 20, 30, 26], 0.7, 0),
                      ([60, 60, 70, 70], 0.6, 1), (B, 0.1, 1), (A, 0.99, 2)],
                  [(A, 0, False), (B, 0, False), ([60, 60, 70, 70], 1, False)])
    img2 = sample(2, [([0, 0, 5, 5], 0.95, 1), ([50, 50, 60, 60], 0.5, 1)],
                  [([50, 50, 60, 60], 1, False)])
    out = evaluate([img1, img2], classes=("a", "b", "c"), eval_mode=mode, classwise=True)
    assert out["pascal_voc/AP_a"] == pytest.approx(EXPECTED_MAIN[mode])
    assert out["pascal_voc/AP_b"] == pytest.approx(expected_b)
    assert "pascal_voc/AP_c" not in out
    assert out["pascal_voc/mAP"] == pytest.approx(expected_map)


def test_class_with_gt_but_no_detection_counts_as_zero():
    # class a: perfect (AP 1); class b: one GT, no detection (AP 0) -> mean 1/2
    case = [sample(1, [(A, 0.9, 0)], [(A, 0, False), (B, 1, False)])]
    assert evaluate(case, classes=("a", "b"), eval_mode="area")["pascal_voc/mAP"] == 0.5


def test_threshold_is_inclusive_and_several_thresholds():
    # one GT A, one detection [0,0,10,5]: IoU = 50/100 = 0.5 exactly.
    # >= 0.5 -> TP at 0.5 (AP 1); 0.5 < 0.75 -> FP at 0.75 (AP 0); mAP = mean = 0.5
    case = [sample(1, [([0, 0, 10, 5], 0.9, 0)], [(A, 0, False)])]
    out = evaluate(case, iou_thr=[0.5, 0.75], eval_mode="area")
    assert out == {"pascal_voc/AP50": 1.0, "pascal_voc/AP75": 0.0, "pascal_voc/mAP": 0.5}


def test_legacy_pixel_convention():
    # GT [0,0,9,9], detection [0,0,9,4].
    # continuous: areas 81 and 36, intersection 36 -> IoU 36/81 = 0.444 < 0.5 -> FP -> AP 0
    # +1 pixels:  areas 10*10 = 100 and 10*5 = 50, intersection 50 -> IoU 0.5 -> TP -> AP 1
    case = [sample(1, [([0, 0, 9, 4], 0.9, 0)], [([0, 0, 9, 9], 0, False)])]
    assert evaluate(case, eval_mode="area")["pascal_voc/mAP"] == 0.0
    assert evaluate(case, eval_mode="area", legacy_coordinates=True)["pascal_voc/mAP"] == 1.0


def test_through_mmengine_evaluator_with_det_data_samples():
    # The main case as DetDataSample objects: mmengine converts them to dicts before process.
    ds = DetDataSample(metainfo=dict(img_id=1, ori_shape=(100, 100)))
    ds.pred_instances = InstanceData(
        bboxes=torch.tensor([A, [40, 40, 50, 50], [20, 20, 30, 26]], dtype=torch.float32),
        scores=torch.tensor([0.9, 0.8, 0.7]), labels=torch.tensor([0, 0, 0]))
    ds.ori_gt_instances = InstanceData(
        bboxes=torch.tensor([A, B], dtype=torch.float32), labels=torch.tensor([0, 0]),
        ignore=torch.tensor([False, False]))
    evaluator = Evaluator(VOCMetric(eval_mode="area"))
    evaluator.dataset_meta = dict(classes=("a",))
    evaluator.process([ds], {})
    assert evaluator.evaluate(1)["pascal_voc/mAP"] == pytest.approx(5 / 6)


def test_table_logged(monkeypatch):
    messages = []
    monkeypatch.setattr(voc_module, "print_log", lambda msg, **kw: messages.append(msg))
    evaluate(MAIN_CASE, classes=("a", "zebra"), eval_mode="area")
    table = messages[-1]
    assert "zebra" in table and "0.8333" in table and "| mean" in table
    zebra_row = next(line for line in table.splitlines() if "zebra" in line)
    assert zebra_row.split("|")[-2].strip() == "-"  # no GT -> no AP


def test_bad_inputs_named():
    metric = VOCMetric()
    with pytest.raises(KeyError, match="ori_gt_instances"):
        metric.process({}, [{"img_id": 1, "pred_instances": MAIN_CASE[0]["pred_instances"]}])
    with pytest.raises(KeyError, match="pred_instances"):
        metric.process({}, [{"img_id": 1}])
    with pytest.raises(ValueError, match="out of range"):
        evaluate([sample(1, [(A, 0.9, 3)], [(A, 0, False)])], classes=("a",))
