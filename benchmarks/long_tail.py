"""Long-tail losses under one budget: focal / sigmoid CE / EQL / EQLv2 and
softmax CE / Balanced Softmax, trained on the long-tailed synthetic split
(exponential profile, imbalance 100) and evaluated on the balanced val split.

Reports COCO mAP, AP50 and the AP of the rarest third of the classes (by
training instance count), per seed and averaged.

    python benchmarks/long_tail.py [--epochs 3] [--seeds 0] [--only eql eqlv2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("focal", "sigmoid_ce", "eql", "eqlv2", "softmax_ce", "balanced_softmax")


def run_variant(name: str, epochs: int, seed: int, work_root: Path) -> dict:
    from toolbox.engine.runner import build_runner
    cfg = Config.fromfile(str(ROOT / "configs" / "longtail" /
                              f"retinanet_mobilenetv3_fpn_lt_{name}.py"))
    cfg.work_dir = str(work_root / f"{name}_seed{seed}")
    cfg.randomness = dict(seed=seed)
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs + 1  # evaluate once, below
    cfg.param_scheduler[1].update(end=epochs, T_max=epochs)
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h["type"] != "ProgressBarHook"]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=epochs)
    cfg.log_level = "WARNING"
    start = time.time()
    runner = build_runner(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    freqs = runner.train_dataloader.dataset.class_frequencies()["instance_counts"]
    classes = runner.train_dataloader.dataset.metainfo["classes"]
    order = sorted(range(len(classes)), key=lambda k: freqs[k])
    rare = [classes[k] for k in order[: max(1, len(classes) // 3)]]
    rare_ap = statistics.mean(metrics[f"coco/bbox_AP_{c}"] for c in rare)
    return dict(variant=name, seed=seed, mAP=metrics["coco/bbox_mAP"],
                AP50=metrics["coco/bbox_mAP_50"], rare_AP=rare_ap, rare_classes=rare,
                train_counts=freqs, minutes=(time.time() - start) / 60)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", choices=VARIANTS)
    parser.add_argument("--work-dir", default="work_dirs/long_tail_benchmark")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rows = []
    for name in args.only or VARIANTS:
        for seed in args.seeds:
            row = run_variant(name, args.epochs, seed, Path(args.work_dir))
            rows.append(row)
            print(f"{name:18} seed {seed}: mAP {row['mAP']:.3f}  AP50 {row['AP50']:.3f}  "
                  f"rare-third AP {row['rare_AP']:.3f} ({', '.join(row['rare_classes'])})  "
                  f"{row['minutes']:.1f} min", flush=True)
    print(f"\n| loss | mAP | AP50 | AP rarest third | seeds |\n|---|---|---|---|---|")
    for name in args.only or VARIANTS:
        mine = [r for r in rows if r["variant"] == name]
        avg = {k: statistics.mean(r[k] for r in mine) for k in ("mAP", "AP50", "rare_AP")}
        print(f"| {name} | {avg['mAP']:.3f} | {avg['AP50']:.3f} | {avg['rare_AP']:.3f} | "
              f"{len(mine)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
