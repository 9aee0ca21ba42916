"""UNETR: speed against MONAI with the same weights, and Dice on the synthetic volumes.

``speed``: the paper's UNETR (ViT-B/16, feature_size 16, 14 classes) from
``configs/unetr/unetr_btcv_96.py`` and MONAI's ``UNETR`` loaded with the same
weights (through the toolbox's key mapping), batch 1 on the CPU; forward +
backward of a Dice+CE-free objective (sum of logits) timed alternately
(ours, MONAI, ours, ...) so machine load hits both alike; reports the
median times, their ratio and the max abs output difference.

``dice``: trains ``configs/unetr/unetr_3d_synth.py`` for ``--epochs`` (12
iterations each: 24 volumes, batch 2, 32^3 patches) and evaluates the
validation volumes by sliding window; reports the metrics.

    python benchmarks/unetr.py speed [--img-size 96] [--repeats 3] [--threads 1]
    python benchmarks/unetr.py dice [--epochs N]  (default: the config's 48)

MONAI (with einops, which its attention needs) comes with the test extra.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[1]


def monai_unetr(img_size: int):
    from monai.networks.nets import UNETR
    return UNETR(in_channels=1, out_channels=14, img_size=img_size, feature_size=16,
                 hidden_size=768, mlp_dim=3072, num_heads=12, proj_type="conv",
                 norm_name="instance", res_block=True)


def speed(img_size: int, repeats: int, threads: int) -> dict:
    from toolbox.registry import MODELS
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ref = monai_unetr(img_size)
    cfg = Config.fromfile(str(ROOT / "configs/unetr/unetr_btcv_96.py"))
    cfg.model.backbone.img_size = img_size
    ours = MODELS.build(cfg.model)
    ours.load_reference(ref.state_dict())
    ref.train(), ours.train()  # dropout is 0: train mode only keeps autograd buffers
    x = torch.randn(1, 1, img_size, img_size, img_size)
    with torch.no_grad():
        diff = (ours(x, mode="tensor") - ref(x)).abs().max().item()

    def step(run) -> float:
        start = time.perf_counter()
        run(x).sum().backward()
        return time.perf_counter() - start

    runs = {"toolbox": lambda t: ours(t, mode="tensor"), "monai": ref}
    for run in runs.values():  # warm-up
        step(run)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(step(run))
    med = {name: statistics.median(t) for name, t in times.items()}
    return dict(img_size=img_size, threads=threads, repeats=repeats,
                toolbox_s=round(med["toolbox"], 3), monai_s=round(med["monai"], 3),
                ratio_toolbox_over_monai=round(med["toolbox"] / med["monai"], 3),
                all_times=times, max_abs_diff=diff,
                params_toolbox=sum(p.numel() for p in ours.parameters()),
                params_monai=sum(p.numel() for p in ref.parameters()))


def dice(epochs: int | None, work_dir: str) -> dict:
    from toolbox.engine.runner import build_runner
    cfg = Config.fromfile(str(ROOT / "configs/unetr/unetr_3d_synth.py"))
    epochs = epochs or cfg.train_cfg.max_epochs
    cfg.work_dir = work_dir
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs + 1  # evaluate once, below
    cfg.param_scheduler[1].update(end=epochs, T_max=epochs)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=epochs)
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h["type"] != "ProgressBarHook"]
    for loader in ("train_dataloader", "val_dataloader"):
        cfg[loader].update(num_workers=0, persistent_workers=False)
    cfg.log_level = "WARNING"
    start = time.time()
    runner = build_runner(cfg)
    runner.train()
    trained = time.time()
    metrics = runner.val_loop.run()
    return dict(epochs=epochs, iterations=epochs * len(runner.train_dataloader),
                train_minutes=round((trained - start) / 60, 2),
                val_minutes=round((time.time() - trained) / 60, 2),
                metrics={k: round(float(v), 4) for k, v in metrics.items()})


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--img-size", type=int, default=96)
    sp.add_argument("--repeats", type=int, default=3)
    sp.add_argument("--threads", type=int, default=1)
    dp = sub.add_parser("dice")
    dp.add_argument("--epochs", type=int, default=None,
                    help="training epochs of 12 iterations (default: the config's)")
    dp.add_argument("--work-dir", default="work_dirs/unetr_benchmark")
    args = parser.parse_args()
    if args.what == "speed":
        row = speed(args.img_size, args.repeats, args.threads)
    else:
        torch.set_num_threads(1)
        row = dice(args.epochs, args.work_dir)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
