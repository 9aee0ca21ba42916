"""tools/dist_train.sh: two CPU processes over gloo end with identical weights."""
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_gloo_training_keeps_ranks_in_sync(tmp_path):
    config = tmp_path / "ddp_config.py"
    config.write_text(f"_base_ = [{str(ROOT / 'tests' / 'engine' / 'toy_config.py')!r}]\n"
                      "train_cfg = dict(by_epoch=True, max_epochs=2)\n"
                      "custom_hooks = [dict(type='DumpRankWeights')]\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "engine"), PYTHON=sys.executable,
               PORT=str(29500 + os.getpid() % 1000), OMP_NUM_THREADS="1")
    run = subprocess.run(["bash", str(ROOT / "tools" / "dist_train.sh"), str(config), "2",
                          "--work-dir", str(tmp_path / "wd")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    load = lambda name: torch.load(tmp_path / "wd" / name, weights_only=True)  # noqa: E731
    rank0, rank1 = load("final_rank0.pt"), load("final_rank1.pt")
    assert rank0.keys() == rank1.keys() and rank0
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    init = load("init_rank0.pt")
    assert any(not torch.equal(init[k], rank0[k]) for k in init)  # it did train
    # both ranks had the same start too (DDP broadcasts rank 0's weights)
    init1 = load("init_rank1.pt")
    assert all(torch.equal(init[k], init1[k]) for k in init)
