"""tools/test.py --show-dir, CocoMetric's PR curves, tools/plot_logs.py on a
real run's logs, the TensorBoard backend and tools/browse_dataset.py."""
import cv2
import numpy as np
import pytest
import torch

from toolbox.evaluation.coco_metric import CocoMetric

pytestmark = pytest.mark.usefixtures("one_thread")


def _png(path):
    image = cv2.imread(str(path))
    assert image is not None and image.size > 0, path
    return image


def test_show_dir_writes_gt_and_prediction_pictures(trained, tool, tmp_path):
    config, checkpoint, _ = trained
    show, curves = tmp_path / "show", tmp_path / "pr"
    tool("test").main([str(config), str(checkpoint), "--work-dir", str(tmp_path / "wd"),
                       "--show-dir", str(show), "--show-score-thr", "0.1",
                       "--cfg-options", f"test_evaluator.0.save_pr_curves={curves}"])
    images = sorted((config.parent / "data" / "val" / "JPEGImages").glob("*.jpg"))
    pictures = sorted(show.glob("*.png"))
    assert [p.stem for p in pictures] == [p.stem for p in images]
    for picture, image in zip(pictures, images):
        drawn, original = _png(picture), cv2.imread(str(image))
        h, w = original.shape[:2]
        assert drawn.shape == (h, 2 * w + 4, 3)  # ground truth | gap | predictions
        assert np.abs(drawn[:, :w].astype(int) - original).max() > 50  # GT boxes drawn
    assert (curves / "pr_curves.png").is_file()


def _sample(dets, gts):
    return dict(
        img_id=1, ori_shape=(200, 200),
        pred_instances=dict(bboxes=torch.tensor([d[0] for d in dets], dtype=torch.float32),
                            scores=torch.tensor([d[1] for d in dets]),
                            labels=torch.tensor([d[2] for d in dets])),
        ori_gt_instances=dict(bboxes=torch.tensor([g[0] for g in gts], dtype=torch.float32),
                              labels=torch.tensor([g[1] for g in gts]),
                              ignore=torch.zeros(len(gts), dtype=torch.bool)))


def test_pr_curves_hand_worked(tmp_path):
    """Class 'a': 2 ground truths; detections TP (0.9), FP (0.8), then a box
    with IoU 400/480 = 0.83 with the second GT (0.7): a TP at IoU 0.50..0.80
    (7 thresholds), a FP at 0.85..0.95 (3). At IoU 0.5 the interpolated
    precision is 1 up to recall 0.5 and 2/3 after; averaged over the 10
    thresholds it is 1 then (7 * 2/3) / 10. Class 'b' has no ground truth."""
    metric = CocoMetric(save_pr_curves=str(tmp_path), classwise=False)
    metric.dataset_meta = dict(classes=("a", "b"))
    gts = [([0, 0, 10, 10], 0), ([50, 50, 70, 70], 0)]
    dets = [([0, 0, 10, 10], 0.9, 0), ([100, 100, 120, 120], 0.8, 0),
            ([50, 50, 70, 74], 0.7, 0)]
    metric.process(None, [_sample(dets, gts)])
    result = metric.compute_metrics(metric.results)
    recall = metric.last_pr_curves["recall"]
    low = recall <= 0.5
    curves = metric.last_pr_curves["a"]
    np.testing.assert_allclose(curves["single"][low], 1.0)
    np.testing.assert_allclose(curves["single"][~low], 2 / 3)
    np.testing.assert_allclose(curves["mean"][low], 1.0)
    np.testing.assert_allclose(curves["mean"][~low], 7 * (2 / 3) / 10)
    assert abs(result["bbox_mAP_50"] - curves["single"].mean()) < 1e-9
    assert abs(result["bbox_mAP"] - curves["mean"].mean()) < 1e-9
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["pr_a.png", "pr_curves.png"]
    _png(tmp_path / "pr_a.png")
    with pytest.raises(TypeError, match="save_pr_curves"):
        CocoMetric(save_pr_curves=3)


def test_plot_logs_from_a_real_run(trained, tool, tmp_path):
    work_dir = trained[2]
    plot_logs = tool("plot_logs")
    out = tmp_path / "curves.png"
    assert plot_logs.main([str(work_dir), "--out", str(out)]) == str(out)
    assert _png(out).shape[1] > 100
    train, val = plot_logs.read_scalars(plot_logs.find_scalars(str(work_dir)))
    assert len(train["loss"][0]) == 4  # 2 epochs x 2 iterations, logged every iteration
    assert val["coco/bbox_mAP"][0] == [1, 2]  # validated after each epoch
    custom = tmp_path / "lr.png"
    plot_logs.main([str(work_dir), "--keys", "lr", "coco/AR@100", "--out", str(custom)])
    _png(custom)
    with pytest.raises(SystemExit, match="'los'.*available"):
        plot_logs.main([str(work_dir), "--keys", "los", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="no .*scalars.json"):
        plot_logs.main([str(tmp_path)])


def test_tensorboard_backend_logged_the_run(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = list(trained[2].glob("*/vis_data/events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert "loss" in tags and "coco/bbox_mAP" in tags
    assert len(accumulator.Scalars("loss")) == 4


def test_browse_dataset_draws_augmented_samples(trained, tool, tmp_path):
    written = tool("browse_dataset").main([str(trained[0]), "--out", str(tmp_path),
                                           "--num", "3"])
    assert len(written) == 3
    for path in written:
        assert _png(path).shape == (64, 64, 3)
    with pytest.raises(SystemExit, match="--num"):
        tool("browse_dataset").main([str(trained[0]), "--num", "0"])
