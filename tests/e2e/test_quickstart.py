"""The quickstart path end to end, shrunk: tools/train.py trains and validates
with COCO and VOC metrics, then tools/test.py on the saved checkpoint prints
the very same metrics."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "quickstart" / "retinanet_mobilenetv3_fpn_synth.py"
METRIC = re.compile(r"((?:coco|pascal_voc)/[\w@]+): (-?[\d.]+)")


def _run(script, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / script), *map(str, args)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run.stdout + run.stderr


def _metrics(log, tag):
    lines = [line for line in log.splitlines() if f"Epoch({tag})" in line and "coco/" in line]
    assert lines, f"no {tag} metrics line in the log"
    return dict(METRIC.findall(lines[-1]))


def test_train_then_test_reports_identical_metrics(tmp_path):
    data = tmp_path / "data"
    shrink = [
        "--cfg-options", "train_cfg.max_epochs=8", "train_cfg.val_interval=8",
        "train_dataloader.batch_size=4", "train_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False", "val_dataloader.num_workers=0",
        "val_dataloader.persistent_workers=False",
        f"train_dataloader.dataset.data_root={data}", "train_dataloader.dataset.num_images=32",
        f"val_dataloader.dataset.data_root={data}", "val_dataloader.dataset.num_images=6",
        "test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False",
        f"test_dataloader.dataset.data_root={data}", "test_dataloader.dataset.num_images=6",
        # the whole schedule shrinks: warm-up and the cosine decay over the 8 epochs
        "param_scheduler.0.end=2", "param_scheduler.1.end=8", "param_scheduler.1.T_max=8"]
    train_log = _run("train.py", CONFIG, "--work-dir", tmp_path / "wd", *shrink)
    val = _metrics(train_log, "val")
    for key in ("coco/bbox_mAP", "coco/bbox_mAP_50", "coco/bbox_mAP_75", "coco/bbox_mAP_s",
                "coco/AR@100", "pascal_voc/mAP"):
        assert key in val, key
    assert "circle" in train_log and "hexagon" in train_log  # per-class tables printed
    scores = {k: float(v) for k, v in val.items()}
    assert all(math.isfinite(v) for v in scores.values()), scores
    # Non-trivial numbers, so that the comparisons below can tell paths apart
    # (1 epoch of 8 images gave all zeros). 64 steps are far from the
    # quickstart's AP (0.57), but they find objects: AR@100 0.072 / 0.094 / 0.094
    # with seeds 0 / 1 / 2 when the cosine decays over the 8 epochs; left at the
    # config's 10 epochs the run ended at a high rate and AR@100 fell to 0.011.
    assert scores["coco/AR@100"] > 0.02 and max(scores.values()) > 0.05, scores
    checkpoint = tmp_path / "wd" / "epoch_8.pth"
    assert checkpoint.is_file()
    test_log = _run("test.py", CONFIG, checkpoint, "--work-dir", tmp_path / "wd_test", *shrink)
    assert _metrics(test_log, "test") == val
    # the folded-BN inference path gives the same numbers (up to float rounding)
    fused_log = _run("test.py", CONFIG, checkpoint, "--fuse-conv-bn",
                     "--work-dir", tmp_path / "wd_fused", *shrink)
    fused = _metrics(fused_log, "test")
    assert fused.keys() == val.keys()
    assert all(abs(float(fused[k]) - float(val[k])) <= 0.02 for k in val)
