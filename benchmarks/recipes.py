"""Every detection recipe on both synthetic sets, side by side, on a CPU.

Each recipe x dataset trains with ``tools/train.py`` for its full schedule in
a subprocess; the row records the wall time, it/s (from the mmengine json log
in the work_dir) and the final metrics (COCO AP / AP50 / APs and VOC mAP; RPN
recipes: proposal AR@100/300/1000). On 'scenes' (the set the recipes were not
tuned on, configs/_base_/datasets/synthetic_scenes.py) a recipe runs
unchanged except the data (the scenes base's dataset arguments) and its
``num_classes`` (every one the model sets outside an RPN):

    python benchmarks/recipes.py [--recipes quickstart detr] [--datasets shapes scenes]
        [--threads 2] [--note "2-core VM, nothing else running"]
    python benchmarks/recipes.py --smoke --recipes quickstart   # 3 iterations, 16 images
    python benchmarks/recipes.py --print-commands               # the commands only
    python benchmarks/recipes.py --readme                       # the table's rows into README.md

Results update ``benchmarks/results_recipes_cpu.md`` (one row per recipe x
dataset; rows of recipes not re-run are kept). ``--smoke`` writes under
``work_dirs/recipes_smoke/`` instead, so short runs never enter the table.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = dict(
    quickstart="configs/quickstart/retinanet_mobilenetv3_fpn_synth.py",
    refinedet="configs/refinedet/refinedet_mobilenetv3_synth.py",
    ssd_style="configs/refinedet/ssd_style_mobilenetv3_synth.py",
    faster_rcnn="configs/faster_rcnn/faster_rcnn_mobilenetv3_fpn_synth.py",
    rpn="configs/faster_rcnn/rpn_mobilenetv3_fpn_synth.py",
    ga_retinanet="configs/guided_anchoring/ga_retinanet_mobilenetv3_fpn_synth.py",
    ga_faster_rcnn="configs/guided_anchoring/ga_faster_rcnn_mobilenetv3_fpn_synth.py",
    ga_rpn="configs/guided_anchoring/ga_rpn_mobilenetv3_fpn_synth.py",
    detr_small="configs/detr/detr_small_synth.py",
)
DATASET_BASES = dict(shapes="configs/_base_/datasets/synthetic_detection.py",
                     scenes="configs/_base_/datasets/synthetic_scenes.py")
LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
SMOKE = ("train_cfg.max_epochs=1", "short_run.max_iters=3", "short_run.num_images=16")
RESULTS = ROOT / "benchmarks" / "results_recipes_cpu.md"
METRICS = (("COCO AP", "coco/bbox_mAP"), ("AP50", "coco/bbox_mAP_50"),
           ("APs", "coco/bbox_mAP_s"), ("VOC mAP", "pascal_voc/mAP"),
           ("AR@100", "proposal/AR@100"), ("AR@300", "proposal/AR@300"),
           ("AR@1000", "proposal/AR@1000"))
COLUMNS = ("recipe", "dataset", "schedule", "wall (min)", "it/s") + tuple(
    name for name, _ in METRICS) + ("note",)


# --------------------------------------------------------------- overrides


def _load(path: str):
    from mmengine.config import Config
    return Config.fromfile(str(ROOT / path))


def dataset_overrides(dataset: str) -> list[str]:
    """``--cfg-options`` turning the shapes data into ``dataset``'s: every
    dataset argument its base sets differently from the shapes base."""
    if dataset == "shapes":
        return []
    shapes, other = _load(DATASET_BASES["shapes"]), _load(DATASET_BASES[dataset])
    out = []
    for loader in LOADERS:
        before, after = shapes[loader]["dataset"], other[loader]["dataset"]
        for key, value in after.items():
            if key != "pipeline" and before.get(key) != value:
                out.append(f"{loader}.dataset.{key}={value}")
    return out


def num_classes_overrides(config: str, num_classes: int) -> list[str]:
    """``model...num_classes=N`` for every ``num_classes`` the recipe's model
    sets, except an RPN's (class-agnostic), found by reading the config."""
    from toolbox.datasets.check import num_classes_settings
    cfg = _load(config)
    keys = [k for k, v in num_classes_settings(cfg.get("model", {}), "model")
            if "rpn" not in k and v != num_classes]
    return [re.sub(r"\[(\d+)\]", r".\1", k) + f"={num_classes}" for k in keys]


def cfg_options(recipe: str, dataset: str, smoke: bool) -> list[str]:
    from toolbox.datasets.synthetic import generator_classes
    options = dataset_overrides(dataset)
    if dataset != "shapes":
        options += num_classes_overrides(RECIPES[recipe], len(generator_classes(dataset)))
    return options + (list(SMOKE) if smoke else [])


def work_dir_of(recipe: str, dataset: str, smoke: bool) -> Path:
    return ROOT / "work_dirs" / ("recipes_smoke" if smoke else "recipes") / f"{recipe}-{dataset}"


def command(recipe: str, dataset: str, smoke: bool) -> list[str]:
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), str(ROOT / RECIPES[recipe]),
           "--work-dir", str(work_dir_of(recipe, dataset, smoke))]
    options = cfg_options(recipe, dataset, smoke)
    return cmd + (["--cfg-options", *options] if options else [])


# --------------------------------------------------------------- one run


def read_log(work_dir: Path) -> tuple[list[dict], list[dict]]:
    """(train records, val records) of the newest mmengine json log."""
    logs = [p for p in glob.glob(str(work_dir / "*" / "vis_data" / "*.json"))
            if not p.endswith("scalars.json")]
    if not logs:
        return [], []
    records = []
    with open(max(logs, key=os.path.getmtime), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    is_val = [any(k.startswith(("coco/", "pascal_voc/", "proposal/")) for k in r)
              for r in records]
    val = [r for r, v in zip(records, is_val) if v]
    train = [r for r, v in zip(records, is_val) if not v and "time" in r]
    return train, val


def run_one(recipe: str, dataset: str, threads: int, smoke: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = command(recipe, dataset, smoke)
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    train, val = read_log(work_dir_of(recipe, dataset, smoke))
    last = val[-1] if val else {}
    times = [r["time"] for r in train[1:] or train]  # the first window holds the start-up
    row = dict(recipe=recipe, dataset=dataset, schedule=_schedule(train),
               wall=f"{wall / 60:.1f}", its=f"{len(times) / sum(times):.2f}" if times else "-")
    row.update({name: _fmt(last.get(key)) for name, key in METRICS})
    if proc.returncode:
        row["status"] = f"failed (exit {proc.returncode})"
    return row


def _schedule(train: list[dict]) -> str:
    if not train:
        return "-"
    last = train[-1]
    return (f"{last['epoch']} ep / {last.get('iter', '?')} it" if "epoch" in last
            else f"{last.get('iter', last.get('step', '?'))} it")


def _fmt(value) -> str:
    return "-" if value is None else f"{float(value):.3f}"


# --------------------------------------------------------------- the table


def read_table(path: Path) -> dict:
    """{(recipe, dataset): row cells} of an existing results table."""
    rows = {}
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(COLUMNS) and cells[0] in RECIPES and cells[1] in DATASET_BASES:
            rows[(cells[0], cells[1])] = cells
    return rows


def write_table(path: Path, rows: dict) -> None:
    order = {name: i for i, name in enumerate(RECIPES)}
    data = {name: i for i, name in enumerate(DATASET_BASES)}
    lines = ["# Recipes on both synthetic sets (CPU)", "",
             "Written by `python benchmarks/recipes.py` (see its docstring). 'shapes' is "
             "the set the recipes were tuned on, 'scenes' the one they were not "
             "(configs/_base_/datasets/synthetic_scenes.py: non-square images, crowded "
             "scenes, distractors, iscrowd clusters); on 'scenes' a recipe runs unchanged "
             "except the data and `num_classes`. '-': the recipe's evaluators do not log "
             "that metric. it/s: training iterations per second from the mmengine log.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for key in sorted(rows, key=lambda k: (order.get(k[0], 99), data.get(k[1], 99))):
        lines.append("| " + " | ".join(rows[key]) + " |")
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    notes = old[old.find("\n## "):] if "\n## " in old else ""  # hand-written readings stay
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + notes, encoding="utf-8")


README = ROOT / "README.md"
README_MARKERS = ("<!-- recipes table: benchmarks/recipes.py --readme -->",
                  "<!-- end recipes table -->")
README_COLUMNS = ("recipe", "dataset", "wall (min)", "it/s", "COCO AP", "AP50", "APs", "VOC mAP",
                  "AR@100", "AR@1000")


def update_readme(rows: dict, path: Path = README) -> None:
    """Rewrite the README's recipe table (between ``README_MARKERS``) from ``rows``."""
    text = path.read_text(encoding="utf-8")
    start, end = (text.find(m) for m in README_MARKERS)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: markers {README_MARKERS} not found")
    order = {name: i for i, name in enumerate(RECIPES)}
    data = {name: i for i, name in enumerate(DATASET_BASES)}
    index = [COLUMNS.index(c) for c in README_COLUMNS]
    lines = ["| " + " | ".join(README_COLUMNS) + " |", "|" + "---|" * len(README_COLUMNS)]
    for key in sorted(rows, key=lambda k: (data.get(k[1], 99), order.get(k[0], 99))):
        lines.append("| " + " | ".join(rows[key][i] for i in index) + " |")
    body = README_MARKERS[0] + "\n" + "\n".join(lines) + "\n"
    path.write_text(text[:start] + body + text[end:], encoding="utf-8")


def row_cells(row: dict, note: str) -> list[str]:
    note = "; ".join(n for n in (row.get("status"), note) if n) or "-"
    return [row["recipe"], row["dataset"], row["schedule"], row["wall"], row["its"]] + [
        row[name] for name, _ in METRICS] + [note.replace("|", "/")]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--datasets", nargs="+", choices=list(DATASET_BASES),
                        default=list(DATASET_BASES))
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the runs")
    parser.add_argument("--note", default="", help="the conditions, written in each new row")
    parser.add_argument("--smoke", action="store_true",
                        help="3 iterations on 16 images each (" + " ".join(SMOKE) + ")")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"the table (default {RESULTS.relative_to(ROOT)}; with --smoke "
                             "work_dirs/recipes_smoke/results.md)")
    parser.add_argument("--readme", action="store_true",
                        help="copy the results table's rows into README.md and exit")
    parser.add_argument("--print-commands", action="store_true",
                        help="print the training commands and exit")
    args = parser.parse_args(argv)
    if args.readme:
        update_readme(read_table(args.out or RESULTS))
        return
    if args.print_commands:
        for recipe in args.recipes:
            for dataset in args.datasets:
                print(" ".join(command(recipe, dataset, args.smoke)))
        return
    out = args.out or (ROOT / "work_dirs" / "recipes_smoke" / "results.md" if args.smoke
                       else RESULTS)
    for recipe in args.recipes:
        for dataset in args.datasets:
            row = run_one(recipe, dataset, args.threads, args.smoke)
            rows = read_table(out)  # re-read: another sweep may have written rows meanwhile
            rows[(recipe, dataset)] = row_cells(row, args.note)
            write_table(out, rows)  # after each run: a long sweep keeps what it did
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
