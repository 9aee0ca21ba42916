"""The train/test entry points shared by ``tools/*.py`` and the ``toolbox`` CLI."""
from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction


def _load_config(path: str, cfg_options) -> Config:
    if not osp.isfile(path):
        raise SystemExit(f"error: config file '{path}' does not exist")
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _default_work_dir(config: str) -> str:
    return osp.join("work_dirs", osp.splitext(osp.basename(config))[0])


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="where logs and checkpoints go "
                        "(default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="resume from CHECKPOINT, or from the newest one in the work dir")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config entries, e.g. train_cfg.max_epochs=3")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="job launcher (tools/dist_train.sh uses pytorch)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def add_test_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--fuse-conv-bn", action="store_true",
                        help="fold BatchNorm into the preceding convs for faster inference")
    parser.add_argument("--work-dir", help="where logs and results go")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config entries")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def train(args: argparse.Namespace):
    """Train (and validate) as the config says; returns the Runner."""
    from toolbox.engine.runner import build_runner
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = _load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or _default_work_dir(args.config)
    runner = build_runner(cfg, launcher=args.launcher, resume=args.resume)
    runner.train()
    return runner


def test(args: argparse.Namespace) -> dict:
    """Evaluate ``args.checkpoint`` on the config's test set; returns metrics."""
    from toolbox.engine.runner import build_runner
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = _load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or _default_work_dir(args.config)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f"error: checkpoint '{args.checkpoint}' does not exist")
    cfg.load_from = args.checkpoint
    runner = build_runner(cfg, launcher=args.launcher)
    if getattr(args, "fuse_conv_bn", False):
        from mmcv.cnn import fuse_conv_bn
        runner.load_or_resume()  # load the weights first, then fold them (not reloaded)
        runner.model = fuse_conv_bn(runner.model)
    return runner.test()
