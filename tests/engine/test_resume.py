"""A run killed mid-training resumes from its last checkpoint and ends where
an uninterrupted run ends (same weights), on torch >= 2.6 weights_only loads."""
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "engine" / "toy_config.py"


def _train(work_dir, *extra, config=CONFIG):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "engine"))
    return subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), str(config),
                           "--work-dir", str(work_dir), *extra],
                          env=env, capture_output=True, text=True, timeout=300)


def _weights(path):
    from toolbox.checkpoint_io import load_checkpoint
    return load_checkpoint(path)["state_dict"]


def test_killed_run_resumes_to_identical_weights(tmp_path):
    full = _train(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]

    crash_cfg = tmp_path / "crash_config.py"  # _base_ inheritance, as users do
    crash_cfg.write_text(f"_base_ = [{str(CONFIG)!r}]\n"
                         "custom_hooks = [dict(type='CrashAtEpoch', epoch=2)]\n")
    crashed = _train(tmp_path / "crash", config=crash_cfg)
    assert crashed.returncode == 17, crashed.stderr[-3000:]
    assert (tmp_path / "crash" / "epoch_2.pth").is_file()
    assert not (tmp_path / "crash" / "epoch_3.pth").exists()

    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "crash").glob("epoch_*.pth")}
    resumed = _train(tmp_path / "crash", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "crash").glob("epoch_*.pth")}
    assert {k: after[k] for k in before} == before  # epochs 1-2 were not trained again
    assert "epoch_3.pth" in after

    a = _weights(tmp_path / "full" / "epoch_3.pth")
    b = _weights(tmp_path / "crash" / "epoch_3.pth")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_skips_dangling_last_checkpoint_pointer(tmp_path):
    from toolbox.engine.runner import find_resume_checkpoint
    for name in ("epoch_1.pth", "epoch_2.pth"):  # complete checkpoints (verified on resume)
        torch.save(dict(meta={}, state_dict={}, message_hub={}), tmp_path / name)
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_3.pth"))  # half-written run
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / "epoch_2.pth")
    assert find_resume_checkpoint(tmp_path / "missing") is None
