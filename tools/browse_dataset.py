"""Write pipeline outputs with their boxes drawn, to check augmentations by eye.

    python tools/browse_dataset.py CONFIG [--out DIR] [--num N] [--split train]

Builds ``<split>_dataloader.dataset`` from the config, runs its pipeline
(random augmentations included) on the first N images, and writes each
augmented image with its ``gt_instances`` boxes and class names (in the
augmented image's coordinates) to ``DIR/<index>_<image name>.png``.
``Normalize`` is left out so the pictures show real colours; every other
transform runs as configured.
"""
import argparse
import os
import os.path as osp
import random

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--out", default="browse_out", help="output folder (default browse_out)")
    parser.add_argument("--num", type=int, default=10, help="images to write (default 10)")
    parser.add_argument("--split", default="train", choices=["train", "val", "test"])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random augmentations")
    return parser.parse_args(argv)


def main(argv=None) -> list[str]:
    import torch
    from toolbox.engine.errors_report import load_config
    from mmengine.registry import init_default_scope

    from toolbox.utils.drawing import draw_instances, save_image
    from toolbox.registry import DATASETS
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise SystemExit(f"error: config file '{args.config}' does not exist")
    if args.num < 1:
        raise SystemExit(f"error: --num must be at least 1, got {args.num}")
    cfg = load_config(args.config)  # a syntax error names file and line
    init_default_scope(cfg.get("default_scope", "toolbox"))
    loader = cfg.get(f"{args.split}_dataloader")
    if not loader or "dataset" not in loader:
        raise SystemExit(f"error: the config has no {args.split}_dataloader.dataset")
    dataset_cfg = dict(loader["dataset"])
    dataset_cfg["pipeline"] = [t for t in dataset_cfg.get("pipeline", [])
                               if t.get("type") != "Normalize"]
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    dataset = DATASETS.build(dataset_cfg)
    classes = dataset.metainfo.get("classes") if hasattr(dataset, "metainfo") else None
    os.makedirs(args.out, exist_ok=True)
    written = []
    for index in range(min(args.num, len(dataset))):
        item = dataset[index]
        sample = item["data_samples"]
        h, w = sample.metainfo.get("img_shape", item["inputs"].shape[-2:])[:2]
        image = item["inputs"][:, :h, :w].permute(1, 2, 0).numpy()
        picture = draw_instances(image, sample.gt_instances, classes)
        stem = osp.splitext(osp.basename(sample.metainfo.get("img_path") or f"{index}"))[0]
        path = osp.join(args.out, f"{index:04d}_{stem}.png")
        save_image(path, picture)
        written.append(path)
    print(f"wrote {len(written)} augmented '{args.split}' image(s) with their boxes to {args.out}")
    return written


if __name__ == "__main__":
    from toolbox.engine.errors_report import run_main
    run_main(main)
