"""How long tools/check_dataset.py takes on a COCO-sized annotation file.

Generates a COCO JSON with ``--images`` images x ``--boxes-per-image`` boxes
(default 20,000 x 5 = 100,000 boxes, a few of them broken) and tiny JPEGs for
the header check, then times the check with and without the file checks.

    python benchmarks/check_dataset.py [--images 20000] [--boxes-per-image 5]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
from mmengine.config import Config


def make(root: Path, images: int, per_image: int) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    tiny = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    entries, anns = [], []
    for i in range(images):
        (root / "images" / f"{i:06d}.jpg").write_bytes(tiny)
        entries.append(dict(id=i, file_name=f"{i:06d}.jpg", height=48, width=64))
        for _ in range(per_image):
            x, y = rng.uniform(0, 50, 2)
            anns.append(dict(id=len(anns), image_id=i, category_id=int(rng.integers(1, 81)),
                             bbox=[x, y, float(rng.uniform(1, 20)), float(rng.uniform(1, 20))],
                             area=1.0, iscrowd=0))
    anns[7]["bbox"][0] = float("nan")
    anns[11]["bbox"][2] = -1.0
    cats = [dict(id=k, name=f"c{k}") for k in range(1, 81)]
    (root / "annotations" / "train.json").write_text(
        json.dumps(dict(images=entries, annotations=anns, categories=cats)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--boxes-per-image", type=int, default=5)
    args = parser.parse_args()
    from toolbox.datasets.check import check_config_datasets, format_checks
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make(root, args.images, args.boxes_per_image)
        cfg = Config(dict(default_scope="toolbox", model=dict(bbox_head=dict(num_classes=80)),
                          train_dataloader=dict(dataset=dict(
                              type="CocoDataset", data_root=str(root),
                              ann_file="annotations/train.json",
                              data_prefix=dict(img="images/"), pipeline=[]))))
        check_config_datasets(cfg, check_files=False)  # imports, plugin discovery
        for files in (False, True):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reports = check_config_datasets(cfg, check_files=files)
            took = time.perf_counter() - start
            print(f"{args.images} images, {args.images * args.boxes_per_image} boxes, "
                  f"files checked: {files}: {took:.2f} s")
        print(format_checks(reports))


if __name__ == "__main__":
    main()
