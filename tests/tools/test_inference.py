"""Inference on your own images: the Inferencer API, tools/infer.py (and
``toolbox infer``) with their bad-input errors, and the drawing of results."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from toolbox.apis import CheckpointMismatchError, Inferencer
from toolbox.utils.drawing import draw_sample, palette
from toolbox.datasets.synthetic_generation import CLASSES
from toolbox.structures import DetDataSample
from toolbox.structures.seg_data_sample import SegDataSample

pytestmark = pytest.mark.usefixtures("one_thread")


def _val_images(config):
    return sorted((config.parent / "data" / "val" / "JPEGImages").glob("*.jpg"))


def _rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def inferencer(trained):
    config, checkpoint, _ = trained
    return Inferencer(str(config), str(checkpoint), score_thr=0.0)


def test_boxes_come_back_in_original_coordinates(trained, inferencer):
    """A 2x pixel-repeated copy of an image reaches the network unchanged
    (the pipeline resizes it back to 64 px, bilinear sampling between equal
    pixels), so its boxes must be exactly twice those of the original."""
    image = _rgb(_val_images(trained[0])[0])
    small = inferencer(image)
    large = inferencer(np.repeat(np.repeat(image, 2, axis=0), 2, axis=1))
    assert len(small.pred_instances) > 0
    assert small.metainfo["ori_shape"] == (64, 64)
    assert large.metainfo["ori_shape"] == (128, 128)
    torch.testing.assert_close(large.pred_instances.bboxes, 2 * small.pred_instances.bboxes,
                               atol=1e-3, rtol=1e-5)
    assert torch.equal(large.pred_instances.labels, small.pred_instances.labels)
    # a path runs the config's LoadImage and gives the same result as the array
    from_path = inferencer(str(_val_images(trained[0])[0]))
    torch.testing.assert_close(from_path.pred_instances.bboxes, small.pred_instances.bboxes)
    # score_thr filters
    strict = Inferencer(str(trained[0]), str(trained[1]), score_thr=0.3)(image)
    assert (strict.pred_instances.scores >= 0.3).all()
    assert len(strict.pred_instances) == int((small.pred_instances.scores >= 0.3).sum())


def test_infer_tool_draws_boxes_writes_json_and_skips_a_bad_image(trained, tool, tmp_path,
                                                                   capsys):
    config, checkpoint, _ = trained
    folder = tmp_path / "images"
    folder.mkdir()
    for path in _val_images(config)[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "notes.txt").write_text("not an image, not picked up")
    out = tmp_path / "out"
    summary = tool("infer").main([str(config), str(checkpoint), str(folder), "--out", str(out),
                                  "--score-thr", "0.2"])
    captured = capsys.readouterr()
    assert "ms/image" in captured.out
    assert str(folder / "broken.jpg") in captured.err and "cannot decode" in captured.err
    assert set(summary["failed"]) == {str(folder / "broken.jpg")}
    assert len(summary["results"]) == 2
    for path in _val_images(config)[:2]:
        record = json.loads((out / f"{path.stem}.json").read_text())
        original = _rgb(folder / path.name)
        h, w = original.shape[:2]
        assert (record["height"], record["width"]) == (h, w)
        assert record["detections"], "a low score_thr should keep some boxes"
        drawn = _rgb(out / f"{path.stem}.png")
        assert drawn.shape == original.shape
        changed = np.abs(drawn.astype(int) - original.astype(int)).sum(-1) > 30
        for det in record["detections"]:
            x1, y1, x2, y2 = det["bbox"]
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
            assert det["score"] >= 0.2
            assert det["class"] in CLASSES
            # the box outline: most pixels on its border rows/columns changed
            xa, ya = int(min(x1, w - 1)), int(min(y1, h - 1))
            xb, yb = int(min(x2, w - 1)), int(min(y2, h - 1))
            border = np.concatenate([changed[ya, xa:xb + 1], changed[yb, xa:xb + 1],
                                     changed[ya:yb + 1, xa], changed[ya:yb + 1, xb]])
            assert border.mean() > 0.5, det


def test_single_json_and_glob(trained, tool, tmp_path):
    config, checkpoint, _ = trained
    pattern = str(config.parent / "data" / "val" / "JPEGImages" / "val_00000[01].jpg")
    tool("infer").main([str(config), str(checkpoint), pattern, "--out", str(tmp_path),
                        "--single-json", "--score-thr", "0.0"])
    data = json.loads((tmp_path / "detections.json").read_text())
    assert [r["image"].rsplit("/", 1)[-1] for r in data["images"]] == ["val_000000.jpg",
                                                                       "val_000001.jpg"]
    assert data["failed"] == {}
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["val_000000.png", "val_000001.png"]


def _refused(run, capsys) -> str:
    """Run a tool that must refuse its input: exit status 2 and one error
    block (no traceback) on stderr, returned."""
    with pytest.raises(SystemExit) as err:
        run()
    stderr = capsys.readouterr().err
    assert err.value.code == 2 and "Traceback" not in stderr
    return stderr


def test_bad_inputs_name_the_path(trained, tool, tmp_path, capsys):
    from toolbox.cli import main as cli_main
    config, checkpoint, _ = trained
    infer = tool("infer").main
    base = [str(config), str(checkpoint)]
    cases = {
        "missing image": (tmp_path / "nope.jpg", "does not exist"),
        "empty folder": (tmp_path / "empty", "contains no image files"),
        "non-image file": (tmp_path / "table.csv", "cannot decode"),
        "glob without match": (tmp_path / "*.png", "no file matches"),
    }
    (tmp_path / "empty").mkdir()
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    for what, (path, message) in cases.items():
        stderr = _refused(lambda: infer([*base, str(path), "--out", str(tmp_path / "o")]),
                          capsys)
        assert str(path) in stderr and message in stderr, what
    # a checkpoint of another model (3 classes instead of 6): refused, path named
    stderr = _refused(lambda: cli_main(["infer", *base, str(_val_images(config)[0]), "--out",
                                        str(tmp_path / "o"), "--cfg-options",
                                        "model.bbox_head.num_classes=3"]), capsys)
    assert str(checkpoint) in stderr and "shape mismatches" in stderr
    with pytest.raises(CheckpointMismatchError, match="retina_cls"):
        Inferencer(str(config), str(checkpoint),
                   cfg_options={"model.bbox_head.num_classes": 3})
    stderr = _refused(lambda: infer([str(config), str(tmp_path / "missing.pth"),
                                     str(_val_images(config)[0])]), capsys)
    assert "missing.pth" in stderr and "error (checkpoint)" in stderr


def test_visualize_detections_and_a_hand_made_segmentation(inferencer):
    image = np.full((40, 60, 3), 128, np.uint8)
    det = DetDataSample(metainfo=dict(ori_shape=(40, 60)))
    det.pred_instances = InstanceData(bboxes=torch.tensor([[10.0, 5.0, 30.0, 25.0]]),
                                      scores=torch.tensor([0.9]), labels=torch.tensor([1]))
    drawn = draw_sample(image, det, ("a", "b"), score_thr=0.5)
    assert drawn.shape == image.shape
    assert (drawn[15, 10] != 128).any() and (drawn[15, 30] != 128).any()  # left/right edges
    assert (drawn[35, 50] == 128).all()  # far from the box: untouched
    assert (draw_sample(image, det, ("a", "b"), score_thr=0.95) == image).all()  # filtered

    seg = SegDataSample(metainfo=dict(ori_shape=(40, 60)))
    label_map = torch.zeros(40, 60, dtype=torch.long)
    label_map[:, 30:] = 2
    label_map[:10, :] = 255  # ignored: left as is
    seg.pred_sem_seg = label_map
    overlay = inferencer.visualize(image, seg)
    colours = palette(len(CLASSES))
    assert (overlay[:10] == 128).all()
    for rows, cols, label in ((slice(10, 40), slice(0, 30), 0), (slice(10, 40), slice(30, 60), 2)):
        region = overlay[rows, cols].reshape(-1, 3).astype(float)
        expected = 0.5 * 128 + 0.5 * np.array(colours[label])  # alpha 0.5 blend
        assert np.abs(region.mean(0) - expected).max() < 3, (label, region.mean(0), expected)
    with pytest.raises(ValueError, match="pred_sem_seg"):
        seg.pred_sem_seg = torch.zeros(20, 20, dtype=torch.long)
        inferencer.visualize(image, seg)


def test_fused_inferencer_gives_the_same_detections(trained, inferencer):
    """``Inferencer(fuse_conv_bn=True)`` folds the norms and keeps the detections."""
    image = _rgb(_val_images(trained[0])[0])
    plain = inferencer(image).pred_instances
    fused_inferencer = Inferencer(str(trained[0]), str(trained[1]), score_thr=0.0,
                                  fuse_conv_bn=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused_inferencer.model.modules())
    fused = fused_inferencer(image).pred_instances
    assert len(fused) == len(plain) > 0
    top = min(20, len(plain))  # the best detections; the tail may reorder within rounding
    torch.testing.assert_close(fused.scores[:top], plain.scores[:top], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(fused.bboxes[:top], plain.bboxes[:top], rtol=1e-3, atol=1e-2)
