"""SegMetric: hand-worked IoU / Dice / accuracy with absent classes and the
ignore index; HD95 against MONAI's compute_hausdorff_distance."""
import math
import warnings

import numpy as np
import pytest
import torch

from toolbox.registry import METRICS
from toolbox.structures import SegDataSample


def sample(pred, gt, key="ori_gt_sem_seg", path="img.png"):
    s = SegDataSample(metainfo=dict(img_path=path))
    s.pred_sem_seg = torch.as_tensor(pred)
    setattr(s, key, torch.as_tensor(gt))
    return s.to_dict()


def evaluate(samples, **kw):
    metric = METRICS.build(dict(type="SegMetric", **kw))
    metric.dataset_meta = dict(classes=("a", "b", "c", "d"))
    metric.process(None, samples)
    return metric.evaluate(len(samples))


# image 1: the pixel (1, 1) is ignored; class 'd' appears nowhere
GT1, PRED1 = [[0, 0, 1], [1, 255, 2]], [[0, 1, 1], [1, 2, 0]]
GT2, PRED2 = [[2, 2]], [[2, 0]]


def test_hand_worked_single_image():
    m = evaluate([sample(PRED1, GT1)])
    # class a: I=1 P=2 G=2; b: I=2 P=3 G=2; c: I=0 P=0 (its pixel is ignored) G=1
    assert m["seg/IoU_a"] == pytest.approx(1 / 3) and m["seg/Dice_a"] == pytest.approx(0.5)
    assert m["seg/IoU_b"] == pytest.approx(2 / 3) and m["seg/Dice_b"] == pytest.approx(0.8)
    assert m["seg/IoU_c"] == 0 and m["seg/Dice_c"] == 0
    assert math.isnan(m["seg/IoU_d"]) and math.isnan(m["seg/Dice_d"])
    assert m["seg/mIoU"] == pytest.approx(1 / 3)  # 'd' left out of the mean
    assert m["seg/mDice"] == pytest.approx(1.3 / 3)
    assert m["seg/aAcc"] == pytest.approx(3 / 5)


def test_pixels_are_summed_over_images_before_the_ratio():
    m = evaluate([sample(PRED1, GT1), sample(PRED2, GT2, key="gt_sem_seg")])
    # a: I=1 P=3 G=2; b unchanged; c: I=1 P=1 G=3
    assert m["seg/IoU_a"] == pytest.approx(1 / 4) and m["seg/Dice_a"] == pytest.approx(0.4)
    assert m["seg/IoU_c"] == pytest.approx(1 / 3) and m["seg/Dice_c"] == pytest.approx(0.5)
    assert m["seg/mIoU"] == pytest.approx((1 / 4 + 2 / 3 + 1 / 3) / 3)
    assert m["seg/aAcc"] == pytest.approx(4 / 7)
    no_bg = evaluate([sample(PRED1, GT1), sample(PRED2, GT2)], include_background=False,
                     classwise=False)
    assert no_bg["seg/mIoU"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert "seg/IoU_a" not in no_bg


def test_ori_gt_is_preferred_and_errors_name_the_sample():
    s = sample(PRED2, GT2)
    s["gt_sem_seg"] = torch.zeros(3, 3, dtype=torch.long)  # padded/resized: not used
    assert evaluate([s])["seg/IoU_c"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"pred_sem_seg of case7\.png has shape \(1, 2\)"):
        evaluate([sample(PRED2, [[1, 1, 1]], path="case7.png")])
    with pytest.raises(ValueError, match=r"case8\.png has label 9 outside \[0, 4\)"):
        evaluate([sample(PRED2, [[9, 1]], path="case8.png")])
    with pytest.raises(KeyError, match="pred_sem_seg"):
        evaluate([SegDataSample(metainfo=dict(img_path="x")).to_dict()])


def test_hd95_by_hand():
    gt = np.zeros((1, 8, 8), int)
    pred = np.zeros((1, 8, 8), int)
    gt[0, 1, 1] = 1
    pred[0, 4, 5] = 1  # 3 rows and 4 columns away: distance 5 both ways
    m = evaluate([sample(pred, gt)], hd95=True, include_background=False)
    assert m["seg/HD95_b"] == pytest.approx(5.0)
    assert m["seg/mHD95"] == pytest.approx(5.0)  # c and d: absent, NaN, left out
    assert math.isnan(m["seg/HD95_c"]) and m["seg/HD95_missed"] == 0
    pred[0, 4, 5] = 0  # b missed entirely: not averaged, counted
    m = evaluate([sample(pred, gt)], hd95=True, include_background=False)
    assert math.isnan(m["seg/HD95_b"]) and m["seg/HD95_missed"] == 1


def test_hd95_equals_monai():
    import monai.metrics as metrics_mod  # a declared test dependency (the reference)
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:16, :18, :14]
    gt = np.zeros((16, 18, 14), int)
    gt[(z - 8) ** 2 / 25 + (y - 9) ** 2 / 36 + (x - 7) ** 2 / 16 < 1] = 1
    gt[(z - 4) ** 2 + (y - 4) ** 2 + (x - 3) ** 2 < 5] = 2
    pred = np.zeros_like(gt)
    pred[(z - 9) ** 2 / 20 + (y - 8) ** 2 / 49 + (x - 7) ** 2 / 12 < 1] = 1
    pred[(z - 4) ** 2 + (y - 5) ** 2 + (x - 3) ** 2 < 6] = 2
    pred[rng.random(gt.shape) < 0.003] = 2  # outliers
    ours = evaluate([sample(pred, gt)], hd95=True)

    def one_hot(a):  # [1, 4, D, H, W]
        return torch.nn.functional.one_hot(torch.as_tensor(a), 4).permute(3, 0, 1, 2)[None]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = metrics_mod.compute_hausdorff_distance(one_hot(pred).float(), one_hot(gt).float(),
                                                     include_background=True, percentile=95)
    for c, name in enumerate("abc"):
        assert ours[f"seg/HD95_{name}"] == pytest.approx(ref[0, c].item(), abs=1e-4)
    spaced = evaluate([sample(pred, gt)], hd95=True, spacing=(2.0, 1.0, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = metrics_mod.compute_hausdorff_distance(one_hot(pred).float(), one_hot(gt).float(),
                                                     include_background=True, percentile=95,
                                                     spacing=[2.0, 1.0, 0.5])
    assert spaced["seg/HD95_b"] == pytest.approx(ref[0, 1].item(), abs=1e-4)
    assert spaced["seg/HD95_b"] != pytest.approx(ours["seg/HD95_b"])
