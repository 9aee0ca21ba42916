"""ProposalRecallMetric on hand-worked cases.

COCO proposal-mode conventions used below: every ground truth is one class;
a proposal matches a ground truth at IoU threshold t when IoU >= t, for the
10 thresholds 0.50:0.05:0.95; recall at one threshold is matched / total
non-crowd ground truths (over all images); AR@n averages that recall over
the thresholds using each image's n best-scored proposals. Size ranges:
small area < 32**2, medium < 96**2, large above.
"""
import pytest
import torch
from mmengine.structures import InstanceData

from toolbox.registry import METRICS
from toolbox.structures import DetDataSample
from _samples import make_sample

KEYS = ["AR@100", "AR@300", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000"]
SMALL, MEDIUM, LARGE = [10, 10, 30, 30], [50, 50, 110, 110], [0, 0, 150, 150]


def evaluate(samples, **kwargs):
    metric = METRICS.build(dict(type="ProposalRecallMetric", **kwargs))
    metric.process({}, samples)
    return {k.split("/", 1)[1]: v for k, v in metric.evaluate(len(samples)).items()}


def test_perfect_proposals_recall_everything_in_every_size_range():
    # labels of proposals and ground truths differ: proposal recall is class-agnostic
    samples = [make_sample(1, [(SMALL, 0.9, 3), (MEDIUM, 0.8, 0)], [(SMALL, 0, 0), (MEDIUM, 2, 0)]),
               make_sample(2, [(LARGE, 0.3, 1)], [(LARGE, 1, 0)])]
    out = evaluate(samples)
    assert sorted(out) == sorted(KEYS)
    assert all(out[k] == pytest.approx(1.0) for k in KEYS)


def test_half_of_the_ground_truth_found_gives_half_recall():
    # MEDIUM (60 x 60) is proposed exactly; a large gt (50 x 200 = 10000 > 96**2) is missed
    far = [160, 160, 190, 190]
    out = evaluate([make_sample(1, [(MEDIUM, 0.9, 0), (far, 0.5, 0)],
                                [(MEDIUM, 0, 0), ([0, 0, 50, 200], 0, 0)])])
    assert out["AR@100"] == pytest.approx(0.5)
    assert out["AR_m@1000"] == pytest.approx(1.0) and out["AR_l@1000"] == pytest.approx(0.0)
    assert out["AR_s@1000"] == -1  # no small ground truth


def test_recall_is_averaged_over_iou_thresholds():
    # IoU 72 / 100 = 0.72 matches at t = 0.50, 0.55, 0.60, 0.65, 0.70: 5 of 10 thresholds
    out = evaluate([make_sample(1, [([0, 0, 100, 72], 1.0, 0)], [([0, 0, 100, 100], 0, 0)])])
    assert out["AR@100"] == pytest.approx(0.5)
    # with only t = 0.5 it is found
    assert evaluate([make_sample(1, [([0, 0, 100, 72], 1.0, 0)], [([0, 0, 100, 100], 0, 0)])],
                    iou_thrs=[0.5])["AR@100"] == pytest.approx(1.0)


def test_only_the_n_best_scored_proposals_count_for_ar_at_n():
    # 150 proposals: the only one covering the gt has the lowest score (rank 150)
    gt = [0, 0, 100, 100]
    misses = [([120 + i % 10, 120, 140 + i % 10, 140], 1.0 - i * 1e-3, 0) for i in range(149)]
    out = evaluate([make_sample(1, misses + [(gt, 0.01, 0)], [(gt, 0, 0)], shape=(300, 300))])
    assert out["AR@100"] == pytest.approx(0.0)
    assert out["AR@300"] == pytest.approx(1.0) and out["AR@1000"] == pytest.approx(1.0)


def test_crowd_ground_truth_is_not_counted():
    out = evaluate([make_sample(1, [(MEDIUM, 0.9, 0)], [(MEDIUM, 0, 0), (LARGE, 0, 1)])])
    assert out["AR@100"] == pytest.approx(1.0)


def test_data_samples_from_a_model_and_no_proposals():
    sample = DetDataSample(metainfo=dict(img_id=7, ori_shape=(200, 200)))
    sample.pred_instances = InstanceData(bboxes=torch.tensor([[50.0, 50, 110, 110]]),
                                         scores=torch.tensor([0.4]))  # no labels: an RPN's
    sample.ori_gt_instances = InstanceData(bboxes=torch.tensor([MEDIUM], dtype=torch.float32),
                                           labels=torch.tensor([4]))
    assert evaluate([sample])["AR@1000"] == pytest.approx(1.0)
    empty = make_sample(1, [], [(MEDIUM, 0, 0)])
    assert evaluate([empty]) == {k: 0.0 for k in KEYS}


def test_bad_arguments_and_samples_are_named():
    with pytest.raises(ValueError, match="proposal_nums"):
        METRICS.build(dict(type="ProposalRecallMetric", proposal_nums=(300, 100)))
    with pytest.raises(ValueError, match="iou_thrs"):
        METRICS.build(dict(type="ProposalRecallMetric", iou_thrs=[0.5, 1.5]))
    metric = METRICS.build(dict(type="ProposalRecallMetric"))
    with pytest.raises(KeyError, match="pred_instances"):
        metric.process({}, [dict(img_id=1, ori_shape=(10, 10))])
    with pytest.raises(KeyError, match="scores"):
        metric.process({}, [dict(img_id=1, pred_instances=dict(bboxes=torch.zeros(0, 4)))])
