"""tools/train.py on configs/unetr/unetr_3d_synth.py, shrunk to two 32^3
training volumes (one iteration) and one validation volume: it trains,
predicts the volume by sliding window, logs the segmentation metrics
(Dice, IoU, HD95, per-class table) and saves a checkpoint."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "unetr" / "unetr_3d_synth.py"
METRIC = re.compile(r"(seg/\w+): (-?[\d.]+|nan)")


def test_train_unetr_3d_synth(tmp_path):
    data = tmp_path / "data"
    shrink = [
        "--cfg-options", "train_cfg.max_epochs=1", "train_cfg.val_interval=1",
        "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
        "val_dataloader.num_workers=0", "val_dataloader.persistent_workers=False",
        f"train_dataloader.dataset.data_root={data}", "train_dataloader.dataset.num_volumes=2",
        "train_dataloader.dataset.size=32",
        f"val_dataloader.dataset.data_root={data}", "val_dataloader.dataset.num_volumes=1",
        "val_dataloader.dataset.size=32", "param_scheduler.0.end=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), str(CONFIG),
                          "--work-dir", str(tmp_path / "wd"), *shrink],
                         capture_output=True, text=True, timeout=600, env=env)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    lines = [line for line in log.splitlines() if "Epoch(val)" in line and "seg/" in line]
    assert lines, log[-4000:]
    metrics = dict(METRIC.findall(lines[-1]))
    for key in ("seg/mIoU", "seg/mDice", "seg/aAcc", "seg/mHD95", "seg/Dice_liver"):
        assert key in metrics, key
    assert 0.0 <= float(metrics["seg/aAcc"]) <= 1.0
    assert "spleen" in log and "kidney" in log  # the per-class table
    assert (tmp_path / "wd" / "epoch_1.pth").is_file()
