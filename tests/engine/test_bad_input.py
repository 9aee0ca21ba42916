"""Bad input reported in one short block (exit 2, no traceback without
--debug), NaN steps skipped and stopped, torn checkpoints skipped on resume,
strict loading, config changes on resume (issue 16)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "engine"
CONFIG = HERE / "bad_input_config.py"


def _tool(tool, *args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(HERE), OMP_NUM_THREADS="1", **(env_extra or {}))
    env.pop("TOOLBOX_DEBUG", None)
    if env_extra:
        env.update(env_extra)
    result = subprocess.run([sys.executable, str(ROOT / "tools" / f"{tool}.py"), *map(str, args)],
                            env=env, capture_output=True, text=True, timeout=300)
    result.out = result.stdout + result.stderr
    return result


def _tools_parallel(jobs: dict) -> dict:
    """``{name: (tool, *args)}`` run side by side; ``{name: result}`` with
    ``returncode``, ``stdout``, ``stderr`` and ``out`` (both)."""
    from types import SimpleNamespace
    env = dict(os.environ, PYTHONPATH=str(HERE), OMP_NUM_THREADS="1")
    env.pop("TOOLBOX_DEBUG", None)
    procs = {name: subprocess.Popen([sys.executable, str(ROOT / "tools" / f"{tool}.py"),
                                     *map(str, args)], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, (tool, *args) in jobs.items()}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        results[name] = SimpleNamespace(returncode=proc.returncode, stdout=stdout,
                                        stderr=stderr, out=stdout + stderr)
    return results


def _cli(capsys, *args):
    """``toolbox ARGS`` in-process: (exit status, stderr)."""
    from toolbox.cli import main
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    _LAST_OUT[0] = captured.out
    return exc.value.code, captured.err


_LAST_OUT = [""]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The independent training runs of this module, run side by side:
    ``{name: (result, work dir)}``."""
    root = tmp_path_factory.mktemp("runs")
    nan = ("--cfg-options", "model.type=NaNToyRegressor")
    jobs = dict(
        trained=(),  # a finished toy run (3 epochs, a checkpoint each)
        nan_once=(*nan, "model.nan_iters=[3]"),
        nan_stop=(*nan, "model.nan_from=10"),
        diverge=("--cfg-options", "optim_wrapper.optimizer.lr=1e30", "max_nonfinite_steps=2"),
        scratch=("--resume", "--cfg-options", "train_cfg.max_epochs=1"),
    )
    results = _tools_parallel({name: ("train", CONFIG, "--work-dir", root / name, *args)
                               for name, args in jobs.items()})
    return {name: (results[name], root / name) for name in jobs}


@pytest.fixture(scope="module")
def trained(runs):
    result, work = runs["trained"]
    assert result.returncode == 0, result.out[-3000:]
    return work


@pytest.fixture(autouse=True)
def _toy_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.delenv("TOOLBOX_DEBUG", raising=False)


# ----------------------------------------------------------------- one error block
def test_config_syntax_error_names_the_real_file_and_line(capsys, tmp_path):
    (tmp_path / "base.py").write_text("a = 1\nb = dict(x=1,\nc = 3\n")
    (tmp_path / "child.py").write_text("_base_ = ['base.py']\n")
    code, err = _cli(capsys, "train", tmp_path / "child.py", "--work-dir", tmp_path / "w")
    assert code == 2
    assert f"config file '{tmp_path / 'base.py'}', line 2 does not parse" in err
    assert "(the file is a _base_ of" in err
    assert "<unknown>" not in err and "Traceback" not in err
    from toolbox.cli import main
    from toolbox.errors import ConfigError
    with pytest.raises(ConfigError, match="line 2 does not parse"):  # --debug: the traceback
        main(["train", str(tmp_path / "child.py"), "--debug"])


def test_cfg_options_without_equals_shows_the_accepted_form(capsys, tmp_path):
    code, err = _cli(capsys, "train", CONFIG, "--work-dir", tmp_path,
                     "--cfg-options", "train_cfg.max_epochs")
    assert code == 2
    assert "'train_cfg.max_epochs' has no '='" in err and "KEY=VALUE" in err
    assert "Traceback" not in err
    code, err = _cli(capsys, "test", CONFIG, "x.pth", "--cfg-options", "a..b=1")
    assert code == 2 and "invalid key 'a..b'" in err


def test_missing_config_file_is_one_block(capsys, tmp_path):
    code, err = _cli(capsys, "train", tmp_path / "nope.py")
    assert code == 2 and "nope.py' does not exist" in err


def test_truncated_checkpoint_is_named_by_test_py(trained, tmp_path):
    torn = tmp_path / "torn.pth"
    torn.write_bytes((trained / "epoch_3.pth").read_bytes()[:5000])
    result = _tool("test", CONFIG, torn, "--work-dir", tmp_path / "w")
    assert result.returncode == 2
    assert f"checkpoint '{torn}' (5000 bytes) cannot be read" in result.stderr
    assert "truncated" in result.stderr
    assert "Traceback" not in result.out and "PytorchStreamReader" not in result.out


def test_text_file_named_pth_is_named(capsys, tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello\n")
    code, err = _cli(capsys, "test", CONFIG, text, "--work-dir", tmp_path / "w")
    assert code == 2 and "notes.pth' (6 bytes) cannot be read" in err
    assert "IndexError" not in err and "Traceback" not in err


def test_test_py_refuses_a_shape_mismatch_and_partial_load_is_opt_in(capsys, trained, tmp_path):
    ckpt = trained / "epoch_3.pth"
    code, err = _cli(capsys, "test", CONFIG, ckpt, "--work-dir", tmp_path / "w",
                     "--cfg-options", "model.hidden=16")
    assert code == 2
    assert "does not match the model" in err
    assert "net.0.weight: checkpoint (8, 4) vs model (16, 4)" in err
    assert "load_strict=False" in err and "Traceback" not in err
    from toolbox.cli import main
    assert main(["test", str(CONFIG), str(ckpt), "--work-dir", str(tmp_path / "w2"),
                 "--cfg-options", "model.hidden=16", "load_strict=False"]) == 0


def test_load_from_is_strict_and_accepts_the_dict_form(capsys, trained, tmp_path):
    from mmengine.config import Config

    from toolbox.engine.runner import _load_from_settings
    cfg = Config(dict(load_from=dict(path="x.pth", strict=False)))
    assert _load_from_settings(cfg) is False and cfg.load_from == "x.pth"
    assert _load_from_settings(Config(dict(load_from="x.pth"))) is True
    (tmp_path / "cfg.py").write_text(f"_base_ = [{str(CONFIG)!r}]\n"
                                     f"load_from = {str(trained / 'epoch_3.pth')!r}\n")
    code, err = _cli(capsys, "train", tmp_path / "cfg.py", "--work-dir", tmp_path / "w",
                     "--cfg-options", "model.hidden=16")
    assert code == 2
    assert "does not match the model" in err and "Traceback" not in err


# ----------------------------------------------------------------- data check
def _coco(tmp_path, missing: bool, empty: bool = False) -> Path:
    import cv2
    import numpy as np
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((32, 32, 3), 128, np.uint8))
    images = [dict(id=1, file_name="a.jpg", width=32, height=32)]
    if missing:
        images.append(dict(id=2, file_name="gone.jpg", width=32, height=32))
    if empty:
        images = []
    anns = [dict(id=i + 1, image_id=im["id"], category_id=1, bbox=[2, 2, 10, 10], area=100,
                 iscrowd=0) for i, im in enumerate(images)]
    (tmp_path / "train.json").write_text(json.dumps(dict(
        images=images, annotations=anns, categories=[dict(id=1, name="thing")])))
    cfg = tmp_path / "coco_cfg.py"
    cfg.write_text(
        f"_base_ = [{str(CONFIG)!r}]\n"
        "train_dataloader = dict(dataset=dict(_delete_=True, type='CocoDataset', "
        f"data_root={str(tmp_path)!r}, ann_file='train.json', data_prefix=dict(img='images/'), "
        "pipeline=[dict(type='LoadImage'), dict(type='PackDetInputs')]))\n")
    return cfg


def test_train_checks_the_data_first_and_stops_on_an_error(capsys, tmp_path):
    cfg = _coco(tmp_path, missing=False, empty=True)
    code, err = _cli(capsys, "train", cfg, "--work-dir", tmp_path / "w")
    out = _LAST_OUT[0]
    assert code == 2
    assert "train_dataloader.dataset" in out and "CocoDataset" in out  # the table
    assert "0 images left" in err
    assert "the dataset check found" in err and "--skip-data-check" in err
    assert "Traceback" not in err
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").glob("*.pth"))


def test_skip_data_check_skips_it(tmp_path, monkeypatch):
    import toolbox.datasets.check as check
    from toolbox.engine import launch

    def boom(*a, **k):
        raise AssertionError("the data check ran")
    monkeypatch.setattr(check, "check_config_datasets", boom)
    import toolbox.engine.runner as runner_module
    import toy_components  # noqa: F401 - registers ToyDataset
    assert runner_module._checkable(dict(type="CocoDataset"))
    assert not runner_module._checkable(dict(type="ToyDataset"))  # plain torch datasets
    monkeypatch.setattr(runner_module, "_checkable", lambda ds_cfg: True)  # would check
    parser = launch.add_train_args(__import__("argparse").ArgumentParser())
    args = parser.parse_args([str(CONFIG), "--work-dir", str(tmp_path / "w"), "--skip-data-check",
                              "--cfg-options", "train_cfg.max_epochs=1"])
    launch.train(args)
    assert (tmp_path / "w" / "epoch_1.pth").is_file()


# ----------------------------------------------------------------- NaN / Inf
def test_a_nan_step_is_skipped_and_logged(runs):
    result, tmp_path = runs["nan_once"]
    assert result.returncode == 0, result.out[-3000:]
    assert "non-finite loss at iteration 3 (epoch 1): loss=nan; step skipped" in result.out
    assert "summary: 1 non-finite step(s) were skipped" in result.out
    from toolbox.checkpoint_io import load_checkpoint
    from toolbox.engine.checkpoint import non_finite_tensors
    assert non_finite_tensors(load_checkpoint(tmp_path / "epoch_3.pth")["state_dict"])[0] == 0


def test_consecutive_nan_steps_stop_the_run_keeping_the_last_finite_checkpoint(runs):
    result, tmp_path = runs["nan_stop"]
    assert result.returncode == 2, result.out[-3000:]
    assert "training stopped at iteration 12 (epoch 2): 3 consecutive steps had a " \
           "non-finite loss (loss=nan)" in result.stderr
    assert f"last finite checkpoint: {tmp_path / 'epoch_1.pth'}" in result.stderr
    assert "Traceback" not in result.out
    assert (tmp_path / "last_checkpoint").read_text().strip() == str(tmp_path / "epoch_1.pth")
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["epoch_1.pth"]


def test_a_diverging_learning_rate_never_saves_non_finite_weights(runs):
    result, tmp_path = runs["diverge"]
    assert result.returncode == 2, result.out[-3000:]
    assert "consecutive steps had a non-finite" in result.stderr
    from toolbox.checkpoint_io import load_checkpoint
    from toolbox.engine.checkpoint import non_finite_tensors
    for path in tmp_path.glob("*.pth"):
        assert non_finite_tensors(load_checkpoint(path)["state_dict"])[0] == 0, path


def test_a_non_finite_checkpoint_is_refused(tmp_path):
    from types import SimpleNamespace

    from toolbox.engine.nonfinite import NonFiniteGuardHook
    from toolbox.errors import NonFiniteLossError
    runner = SimpleNamespace(work_dir=str(tmp_path), iter=8, epoch=1)
    hook = NonFiniteGuardHook()
    hook.before_save_checkpoint(runner, dict(state_dict=dict(w=torch.ones(2))))
    with pytest.raises(NonFiniteLossError, match=r"1 tensor\(s\) of the model are not finite \(w\)"):
        hook.before_save_checkpoint(runner, dict(state_dict=dict(w=torch.tensor([float("inf")]))))


# ----------------------------------------------------------------- checkpoints
def test_checkpoint_problem_names_each_kind(trained, tmp_path):
    from toolbox.checkpoint_io import checkpoint_problem
    assert checkpoint_problem(trained / "epoch_3.pth") is None
    (tmp_path / "text.pth").write_text("hello")
    assert "no zip directory" in checkpoint_problem(tmp_path / "text.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "empty" in checkpoint_problem(tmp_path / "empty.pth")
    torch.save(dict(state_dict={}), tmp_path / "weights.pth")
    assert "lacks the key(s) meta, message_hub" in checkpoint_problem(tmp_path / "weights.pth")


def _copy_run(src, dst):
    import shutil
    shutil.copytree(src, dst)
    (dst / "last_checkpoint").write_text(str(dst / "epoch_3.pth"))


@pytest.fixture(scope="module")
def resumed(trained, tmp_path_factory):
    """Two resumed copies of the trained run, side by side: one whose newest
    checkpoint is torn (and a temp file left), one with a changed lr."""
    root = tmp_path_factory.mktemp("resumed")
    torn, changed = root / "torn", root / "changed"
    _copy_run(trained, torn)
    (torn / "epoch_3.pth").write_bytes((trained / "epoch_3.pth").read_bytes()[:6000])
    (torn / ".epoch_3.pth.abc123.tmp").write_bytes(b"half")
    _copy_run(trained, changed)
    results = _tools_parallel(dict(
        torn=("train", CONFIG, "--work-dir", torn, "--resume"),
        changed=("train", CONFIG, "--work-dir", changed, "--resume", "--cfg-options",
                 "train_cfg.max_epochs=4", "optim_wrapper.optimizer.lr=0.01")))
    return dict(torn=(results["torn"], torn), changed=(results["changed"], changed))


def test_resume_skips_a_torn_newest_checkpoint_naming_it(resumed):
    result, work = resumed["torn"]
    assert result.returncode == 0, result.out[-3000:]
    assert f"resume: skipping '{work / 'epoch_3.pth'}': no zip directory" in result.out
    assert f"resume: continuing from {work / 'epoch_2.pth'}" in result.out
    assert "removed 1 temporary file(s)" in result.out and ".epoch_3.pth.abc123.tmp" in result.out
    assert not list(work.glob(".*.tmp"))
    from toolbox.checkpoint_io import checkpoint_problem
    assert checkpoint_problem(work / "epoch_3.pth") is None  # epoch 3 trained again


def test_resume_without_a_checkpoint_says_it_starts_from_scratch(runs):
    result, _ = runs["scratch"]
    assert result.returncode == 0, result.out[-3000:]
    assert "no complete checkpoint" in result.out and "starting from scratch" in result.out


def test_resume_from_a_named_bad_checkpoint_is_an_error(capsys, tmp_path):
    (tmp_path / "bad.pth").write_text("x")
    code, err = _cli(capsys, "train", CONFIG, "--work-dir", tmp_path, "--resume",
                     tmp_path / "bad.pth")
    assert code == 2 and f"cannot resume from '{tmp_path / 'bad.pth'}'" in err


def test_a_changed_learning_rate_on_resume_is_reported_and_applied(resumed):
    result, work = resumed["changed"]
    assert result.returncode == 0, result.out[-3000:]
    assert "optim_wrapper.optimizer.lr: 0.05 -> 0.01" in result.out
    assert "train_cfg.max_epochs: 3 -> 4" in result.out
    from toolbox.checkpoint_io import load_checkpoint
    groups = load_checkpoint(work / "epoch_4.pth")["optimizer"]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(0.001)  # 0.01 after the x0.1 milestone
    refused = _tool("train", CONFIG, "--work-dir", work, "--resume", "--cfg-options",
                    "optim_wrapper.optimizer.lr=0.5", "resume_changes=refuse")
    assert refused.returncode == 2
    assert "the config differs from the run resumed from" in refused.stderr
    assert "optim_wrapper.optimizer.lr: 0.01 -> 0.5" in refused.stderr
