"""The train/test entry points shared by ``tools/*.py`` and the ``toolbox`` CLI."""
from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config

from toolbox.engine.errors_report import CfgOptionsAction, load_config
from toolbox.errors import CheckpointError


def _load_config(path: str, cfg_options) -> Config:
    """The config, or a :class:`ConfigError` naming the file and line."""
    return load_config(path, cfg_options)


def _add_debug_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also TOOLBOX_DEBUG=1)")


def _default_work_dir(config: str) -> str:
    return osp.join("work_dirs", osp.splitext(osp.basename(config))[0])


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="where logs and checkpoints go "
                        "(default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="resume from CHECKPOINT, or from the newest one in the work dir")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config entries, e.g. train_cfg.max_epochs=3")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="job launcher (tools/dist_train.sh uses pytorch)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--skip-data-check", action="store_true",
                        help="do not check the datasets before training "
                             "(the checks of tools/check_dataset.py)")
    _add_debug_arg(parser)
    switches = parser.add_argument_group(
        "training switches (each sets the config key named in brackets)")
    switches.add_argument("--amp", action="store_true",
                          help="mixed precision: fp16 + loss scaling on CUDA, bf16 on CPU [amp=True]")
    switches.add_argument("--amp-fp32", nargs="+", metavar="MODULE",
                          help="with --amp: run these submodules (e.g. backbone neck) in fp32 "
                               "[amp_fp32_modules]")
    switches.add_argument("--ema", nargs="?", const=True, type=float, metavar="MOMENTUM",
                          help="keep an EMA of the weights, validate and save it "
                               "(default momentum 0.0002) [ema.momentum]")
    switches.add_argument("--accumulate", type=int, metavar="K",
                          help="one optimizer step per K batches "
                               "[optim_wrapper.accumulative_counts=K]")
    switches.add_argument("--auto-scale-lr", action="store_true",
                          help="scale the LR by world size x batch x K / base batch size "
                               "[auto_scale_lr.enable=True]")
    switches.add_argument("--base-batch-size", type=int, metavar="B",
                          help="the batch size the config's LR was tuned for "
                               "[auto_scale_lr.base_batch_size=B]")
    switches.add_argument("--save-best", nargs="?", const="auto", metavar="METRIC",
                          help="also keep best_<METRIC>_*.pth, e.g. coco/bbox_mAP "
                               "(default: the first metric) [save_best]")
    switches.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                          help="stop after PATIENCE validations without improvement of "
                               "the save_best metric [early_stopping.patience]")
    switches.add_argument("--sync-bn", action="store_true",
                          help="synchronise BatchNorm statistics across processes under "
                               "DDP [sync_bn=True]")
    return parser


def add_test_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--fuse-conv-bn", action="store_true",
                        help="fold BatchNorm into the preceding convs for faster inference")
    parser.add_argument("--work-dir", help="where logs and results go")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config entries")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--show-dir", metavar="DIR",
                        help="save each test image with its ground truth (left) and "
                             "predictions (right) as PNG into DIR")
    parser.add_argument("--show-score-thr", type=float, default=0.3, metavar="THR",
                        help="smallest score of a drawn prediction (default 0.3)")
    _add_debug_arg(parser)
    return parser


def add_infer_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("config", help="config file (its test pipeline is used)")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("input", help="an image, a folder of images or a glob pattern "
                        "(quote it: 'photos/*.jpg')")
    parser.add_argument("--out", default="infer_out", metavar="DIR",
                        help="where the drawn images and detection JSONs go (default infer_out)")
    parser.add_argument("--score-thr", type=float, default=0.3,
                        help="smallest score of a kept detection (default 0.3)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--single-json", action="store_true",
                        help="write one detections.json for all images instead of one per image")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config entries")
    _add_debug_arg(parser)
    return parser


def train(args: argparse.Namespace):
    """Train (and validate) as the config says; returns the Runner."""
    from toolbox.engine.runner import build_runner
    from toolbox.engine.switches import apply_cli_switches
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = _load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or _default_work_dir(args.config)
    apply_cli_switches(cfg, args)
    runner = build_runner(cfg, launcher=args.launcher, resume=args.resume,
                          data_check=not getattr(args, "skip_data_check", False))
    runner.train()
    return runner


def test(args: argparse.Namespace) -> dict:
    """Evaluate ``args.checkpoint`` on the config's test set; returns metrics.
    With ``args.show_dir``, a :class:`DetVisualizationHook` saves pictures."""
    from toolbox.engine.runner import build_runner
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = _load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or _default_work_dir(args.config)
    if not osp.isfile(args.checkpoint):
        raise CheckpointError(f"checkpoint '{args.checkpoint}' does not exist or is not a "
                              "file\nfix: check the path, or list the work dir's *.pth files")
    from toolbox.engine.checkpoint import assert_readable
    assert_readable(args.checkpoint)  # a torn or foreign file: reported before anything runs
    cfg.load_from = args.checkpoint
    cfg.pop("early_stopping", None)  # a training switch (its hook needs the train loop)
    if getattr(args, "show_dir", None):
        hooks = [h for h in (cfg.get("custom_hooks") or [])
                 if not (isinstance(h, dict) and h.get("type") == "DetVisualizationHook")]
        hooks.append(dict(type="DetVisualizationHook", show_dir=args.show_dir,
                          score_thr=args.show_score_thr))
        cfg.custom_hooks = hooks
    runner = build_runner(cfg, launcher=args.launcher)
    if getattr(args, "fuse_conv_bn", False):
        from mmcv.cnn import fuse_conv_bn
        runner.load_or_resume()  # load the weights first, then fold them (not reloaded)
        runner.model = fuse_conv_bn(runner.model)
    return runner.test()


def infer(args: argparse.Namespace) -> dict:
    """Deprecated: use :func:`toolbox.apis.image_inference.run_inference`
    (the engine does not import the apis); removed in the next release."""
    import warnings
    warnings.warn("toolbox.engine.launch.infer is deprecated; use "
                  "toolbox.apis.image_inference.run_inference", DeprecationWarning, stacklevel=2)
    from toolbox.apis.image_inference import run_inference  # the one allowed engine -> apis
    return run_inference(args)
