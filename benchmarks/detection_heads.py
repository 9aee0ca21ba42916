"""Detection heads under one budget: RetinaNet, RefineDet, GA-RetinaNet,
Faster R-CNN, GA-Faster R-CNN, and the RPN / GA-RPN proposal models.

Each config is trained for the same number of iterations (same batch size,
AdamW with linear warm-up and cosine decay to the end of the budget) on the
synthetic train split, then evaluated on the val split. One table: COCO AP,
AP50, APs for detectors, AR@100 (also AR@1000) for proposal models, train
iterations per second (after ``--skip`` warm-up iterations, data loading
included) and inference milliseconds per image (model only, batches of the
val dataloader, no metric).

    python benchmarks/detection_heads.py [--iters 300] [--configs retinanet rpn ...]
        [--batch-size 8] [--val-images 250] [--threads 1] [--out results.md]

``--configs`` takes the short names below or config paths. Missing config
files are reported and skipped, so the script runs while colleagues'
configs are still being written.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "retinanet": "configs/quickstart/retinanet_mobilenetv3_fpn_synth.py",
    "refinedet": "configs/refinedet/refinedet_mobilenetv3_synth.py",
    "ga_retinanet": "configs/guided_anchoring/ga_retinanet_mobilenetv3_fpn_synth.py",
    "faster_rcnn": "configs/faster_rcnn/faster_rcnn_mobilenetv3_fpn_synth.py",
    "ga_faster_rcnn": "configs/guided_anchoring/ga_faster_rcnn_mobilenetv3_fpn_synth.py",
    "rpn": "configs/faster_rcnn/rpn_mobilenetv3_fpn_synth.py",
    "ga_rpn": "configs/guided_anchoring/ga_rpn_mobilenetv3_fpn_synth.py",
}
COLUMNS = ("AP", "AP50", "APs", "AR@100", "AR@1000", "train it/s", "infer ms/img")


class IterTimer(Hook):
    """Wall time of the training iterations after the first ``skip``."""

    priority = "VERY_LOW"

    def __init__(self, skip: int):
        self.skip, self.start, self.count = skip, None, 0

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.skip:
            self.start = time.perf_counter()
        elif runner.iter + 1 > self.skip:
            self.count += 1
            self.elapsed = time.perf_counter() - self.start

    @property
    def its(self) -> float:
        return self.count / self.elapsed if self.count else float("nan")


def budgeted_config(path: Path, args, work_dir: Path) -> Config:
    """The config with an iteration budget, one schedule and small logs."""
    cfg = Config.fromfile(str(path))
    iters = args.iters
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=args.seed)
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters + 1)
    warmup = max(1, min(100, iters // 5))
    cfg.param_scheduler = [
        dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=warmup),
        dict(type="CosineAnnealingLR", by_epoch=False, begin=0, end=iters, T_max=iters,
             eta_min_ratio=0.01)]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=iters, by_epoch=False,
                                        save_last=False)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=max(1, iters // 5))
    cfg.log_processor = dict(type="LogProcessor", window_size=20, by_epoch=False)
    cfg.custom_hooks = [h for h in cfg.get("custom_hooks", []) if h["type"] != "ProgressBarHook"]
    cfg.log_level = "WARNING"
    for loader in ("train_dataloader", "val_dataloader"):
        cfg[loader].num_workers = args.workers
        cfg[loader].persistent_workers = args.workers > 0
        cfg[loader].batch_size = args.batch_size
    if args.val_images:
        cfg.val_dataloader.dataset.num_images = args.val_images
    cfg.val_evaluator = [e for e in (cfg.val_evaluator if isinstance(cfg.val_evaluator, list)
                                     else [cfg.val_evaluator]) if e["type"] != "VOCMetric"]
    cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    return cfg


@torch.no_grad()
def evaluate(runner) -> tuple[dict, float]:
    """Val metrics and inference ms per image (``test_step`` only)."""
    model, evaluator = runner.model, runner.val_evaluator
    loader = runner.val_dataloader
    model.eval()
    seconds, images = 0.0, 0
    for batch in loader:
        start = time.perf_counter()
        outputs = model.val_step(batch)
        seconds += time.perf_counter() - start
        images += len(outputs)
        evaluator.process(data_samples=outputs, data_batch=batch)
    return evaluator.evaluate(len(loader.dataset)), 1000.0 * seconds / max(images, 1)


def run_config(name: str, path: Path, args) -> dict:
    from toolbox.engine.runner import build_runner
    cfg = budgeted_config(path, args, Path(args.work_dir) / name)
    runner = build_runner(cfg)
    timer = IterTimer(max(1, min(args.skip, args.iters - 1)))
    runner.register_hook(timer)
    start = time.time()
    runner.train()
    train_minutes = (time.time() - start) / 60
    metrics, ms = evaluate(runner)
    row = {"config": name, "path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT)
                                        else path),
           "AP": metrics.get("coco/bbox_mAP"), "AP50": metrics.get("coco/bbox_mAP_50"),
           "APs": metrics.get("coco/bbox_mAP_s"), "AR@100": metrics.get("proposal/AR@100"),
           "AR@1000": metrics.get("proposal/AR@1000"), "train it/s": timer.its,
           "infer ms/img": ms, "train minutes": train_minutes,
           "params (M)": sum(p.numel() for p in runner.model.parameters()) / 1e6}
    return row


def format_rows(rows: list[dict]) -> str:
    def cell(value, key):
        if value is None:
            return "-"
        if key in ("AP", "AP50", "APs", "AR@100", "AR@1000"):
            return f"{value:.3f}"
        return f"{value:.2f}" if key != "infer ms/img" else f"{value:.1f}"
    head = ("config",) + COLUMNS + ("params (M)",)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join([row["config"]] + [cell(row[k], k) for k in COLUMNS]
                                       + [f"{row['params (M)']:.2f}"]) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS),
                        help=f"short names ({', '.join(CONFIGS)}) or config paths")
    parser.add_argument("--iters", type=int, default=300, help="training iterations per config")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--val-images", type=int, default=0,
                        help="size of the val split (0: the dataset's default, 250)")
    parser.add_argument("--skip", type=int, default=5,
                        help="warm-up iterations left out of train it/s")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default="work_dirs/detection_heads_benchmark")
    parser.add_argument("--out", help="write the table (markdown) here")
    parser.add_argument("--json", help="write the rows (JSON) here")
    args = parser.parse_args()
    if args.iters < 1:
        parser.error(f"--iters must be >= 1, got {args.iters}")
    torch.set_num_threads(args.threads)

    rows, skipped = [], []
    for name in args.configs:
        path = ROOT / CONFIGS[name] if name in CONFIGS else Path(name).resolve()
        if not path.is_file():
            skipped.append(f"{name} ({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
                           "not found)")
            print(f"skipping {skipped[-1]}", flush=True)
            continue
        short = name if name in CONFIGS else path.stem
        rows.append(run_config(short, path, args))
        print(format_rows(rows[-1:]).splitlines()[-1], flush=True)

    table = format_rows(rows)
    header = (f"Budget: {args.iters} iterations x batch {args.batch_size} per config "
              f"(AdamW, warm-up + cosine to the budget), seed {args.seed}, "
              f"{torch.get_num_threads()} torch thread(s), val split "
              f"{args.val_images or 'default (250)'} images.")
    text = header + "\n\n" + table + ("\n\nSkipped: " + "; ".join(skipped) if skipped else "")
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), rows=rows,
                                                   skipped=skipped), indent=2))


if __name__ == "__main__":
    main()
