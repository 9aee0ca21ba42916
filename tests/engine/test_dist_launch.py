"""tools/dist_train.sh hands the multi-node flags to torchrun and every other
argument to tools/train.py (PYTHON=echo shows the command it would run)."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _command(*args, **env):
    run = subprocess.run(["bash", str(ROOT / "tools" / "dist_train.sh"), *args],
                         env=dict(os.environ, PYTHON="echo", **env), capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_multi_node_flags_go_to_torchrun():
    cmd = _command("cfg.py", "8", "--nnodes", "2", "--node-rank", "1", "--master-addr",
                   "10.0.0.1", "--master-port", "29600", "--amp", "--work-dir", "wd")
    assert cmd[:2] == ["-m", "torch.distributed.run"]
    assert {"--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1", "--master_port=29600",
            "--nproc_per_node=8"} <= set(cmd)
    train = cmd.index(str(ROOT / "tools" / "train.py"))
    assert cmd[train + 1:] == ["cfg.py", "--launcher", "pytorch", "--amp", "--work-dir", "wd"]


def test_defaults_and_environment():
    cmd = _command("cfg.py", "2")
    assert {"--nnodes=1", "--node_rank=0", "--master_addr=127.0.0.1",
            "--master_port=29500"} <= set(cmd)
    assert cmd[-3:] == ["cfg.py", "--launcher", "pytorch"]
    cmd = _command("cfg.py", "2", NNODES="3", NODE_RANK="2", MASTER_ADDR="host")
    assert {"--nnodes=3", "--node_rank=2", "--master_addr=host"} <= set(cmd)


def test_usage_without_arguments():
    run = subprocess.run(["bash", str(ROOT / "tools" / "dist_train.sh")], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 2 and "usage" in run.stderr
