"""Kill campaign: ``kill -9``-like exits (``os._exit``) at several points of a
tiny epoch-based run with random augmentation (in the main process and in
DataLoader workers), then ``--resume``: the final weights are bit-identical
to the uninterrupted run's, and an interrupted final validation is run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "engine" / "bad_input_config.py"
KILLED = 17


def _config(tmp_path, workers: int, kill=None, extra: str = "") -> Path:
    path = tmp_path / f"cfg_w{workers}_{kill[0] if kill else 'full'}_{kill[1] if kill else 0}.py"
    hooks = f"custom_hooks = [dict(type='KillAt', where={kill[0]!r}, at={kill[1]})]\n" \
        if kill else ""
    path.write_text(
        f"_base_ = [{str(CONFIG)!r}]\n"
        "model = dict(type='AugToyRegressor')\n"
        f"train_dataloader = dict(dataset=dict(type='AugToyDataset'), num_workers={workers})\n"
        + hooks + extra)
    return path


def _start(config, work_dir, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "engine"), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(ROOT / "tools" / "train.py"), str(config),
                             "--work-dir", str(work_dir), *extra], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _run_all(jobs):
    """Run ``(config, work_dir, *extra)`` jobs concurrently; (status, output) each."""
    procs = [_start(*job) for job in jobs]
    return [(p.wait(timeout=300), p.communicate()[0]) for p in procs]


def _weights(path):
    from toolbox.checkpoint_io import load_checkpoint
    return load_checkpoint(path)["state_dict"]


def _assert_same(a, b):
    a, b = _weights(a), _weights(b)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


ITER = ("train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=24, "
        "val_interval=8)\n"
        "param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, "
        "end=4), dict(type='MultiStepLR', milestones=[16], by_epoch=False)]\n"
        "default_hooks = dict(checkpoint=dict(by_epoch=False, interval=8))\n"
        "log_processor = dict(by_epoch=False)\n")
KEEP1 = "default_hooks = dict(checkpoint=dict(max_keep_ckpts=1))\n"
BASELINES = {"w0": (0, ""), "w2": (2, ""), "iter": (0, ITER)}  # name: (workers, extra config)
FINAL = {"w0": "epoch_3.pth", "w2": "epoch_3.pth", "iter": "iter_24.pth"}
CASES = [  # (baseline, where, at, extra config)
    ("w0", "iter", 13, ""),          # mid-epoch 2 (8 iterations an epoch)
    ("w0", "rename", 2, ""),         # just after epoch_2.pth's rename, before last_checkpoint
    ("w0", "save", 2, KEEP1),        # while writing epoch_2.pth (a .tmp left behind), with
                                     # max_keep_ckpts=1 (epoch_1.pth must still be there)
    ("w2", "val", 3, ""),            # during the final validation, after the last checkpoint
    ("iter", "iter", 13, ""),        # iteration-based, between checkpoints iter_8 and iter_16
]


def _case_config(root, i, kill=True):
    base, where, at, extra = CASES[i]
    workers, base_extra = BASELINES[base]
    return _config(root / f"c{i}", workers, (where, at) if kill else None, base_extra + extra)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Uninterrupted runs, then every kill, then every ``--resume``; each
    stage's processes run side by side."""
    root = tmp_path_factory.mktemp("campaign")
    for i in range(len(CASES)):
        (root / f"c{i}").mkdir()
    for name in BASELINES:
        (root / f"b_{name}").mkdir()
    jobs = [(_config(root / f"b_{name}", w, None, extra), root / f"full_{name}")
            for name, (w, extra) in BASELINES.items()]
    jobs += [(_case_config(root, i), root / f"case{i}") for i in range(len(CASES))]
    first = _run_all(jobs)
    for (status, out) in first[:len(BASELINES)]:
        assert status == 0, out[-3000:]
    state = dict(root=root, killed=first[len(BASELINES):], tmp=[], keep=[], validated=[])
    for i in range(len(CASES)):
        work = root / f"case{i}"
        state["tmp"].append(sorted(p.name for p in work.glob(".*.tmp")))
        state["keep"].append(sorted(p.name for p in work.glob("*.pth")))
        path = work / "last_validation"
        state["validated"].append(path.read_text().strip() if path.is_file() else None)
    state["resumed"] = _run_all([(_case_config(root, i, kill=False), root / f"case{i}",
                                  "--resume") for i in range(len(CASES))])
    return state


def test_the_augmentation_really_differs_between_runs(campaign):
    a, b = (_weights(campaign["root"] / f"full_{w}" / "epoch_3.pth") for w in ("w0", "w2"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("case", range(len(CASES)),
                         ids=[f"{base}-{where}{at}{'-keep1' if extra else ''}"
                              for base, where, at, extra in CASES])
def test_killed_run_resumes_to_identical_weights(campaign, case):
    base, where, at, extra = CASES[case]
    work = campaign["root"] / f"case{case}"
    status, out = campaign["killed"][case]
    assert status == KILLED, out[-3000:]
    if where == "save":
        assert campaign["tmp"][case], "the kill should leave a temp file"
    if extra:  # max_keep_ckpts=1 killed while writing epoch_2: epoch_1 must still be there
        assert campaign["keep"][case] == ["epoch_1.pth"]
    status, out = campaign["resumed"][case]
    assert status == 0, out[-3000:]
    assert "resume: continuing from" in out
    assert not list(work.glob(".*.tmp"))  # stale temp files cleaned
    final = FINAL[base]
    _assert_same(campaign["root"] / f"full_{base}" / final, work / final)
    assert (work / "last_checkpoint").read_text().strip() == str(work / final)
    if where == "val":
        assert campaign["keep"][case][-1] == "epoch_3.pth"
        assert campaign["validated"][case] == "2"  # killed in the validation of epoch 3
        assert "validation after epoch 3 did not complete" in out
        assert (work / "last_validation").read_text().strip() == "3"  # it ran to the end
