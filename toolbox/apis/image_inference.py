"""``tools/infer.py`` / ``toolbox infer``: predict images, draw them, write JSON.

For every input image ``<name>.<ext>`` the output folder gets
``<name>.png`` (the image with its detections drawn) and ``<name>.json``::

    {"image": "photos/a.jpg", "height": 480, "width": 640,
     "detections": [{"bbox": [x1, y1, x2, y2], "label": 2, "class": "triangle",
                     "score": 0.91}, ...]}

(boxes in the original image's pixels), or with ``--single-json`` one
``detections.json`` holding the list of these records.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import sys
import time

from toolbox.errors import CheckpointError, ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_GLOB_CHARS = set("*?[")


def collect_images(source: str) -> list[str]:
    """The image paths ``source`` names: one file, the image files of a
    folder (by suffix, sorted) or a glob pattern's matches; a ``DataError``
    naming the path when there is none."""
    if osp.isdir(source):
        found = sorted(osp.join(source, f) for f in os.listdir(source)
                       if f.lower().endswith(IMAGE_SUFFIXES) and osp.isfile(osp.join(source, f)))
        if not found:
            raise DataError(f"folder '{source}' contains no image files "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        return found
    if osp.isfile(source):
        return [source]
    if _GLOB_CHARS & set(source):
        found = sorted(p for p in glob.glob(source, recursive=True) if osp.isfile(p))
        if not found:
            raise DataError(f"no file matches the pattern '{source}'")
        return found
    raise DataError(f"input '{source}' does not exist (expected an image, a folder "
                    "or a glob pattern)")


def detections_record(path: str, sample, classes) -> dict:
    """The JSON record of one image's ``pred_instances``."""
    from toolbox.utils.drawing import class_name
    pred = sample.pred_instances
    h, w = (int(v) for v in sample.metainfo["ori_shape"][:2])
    dets = [dict(bbox=[round(float(v), 2) for v in box], label=int(label),
                 score=round(float(score), 4), **{"class": class_name(classes, int(label))})
            for box, label, score in zip(pred.bboxes.tolist(), pred.labels.tolist(),
                                         pred.scores.tolist())]
    return dict(image=path, height=h, width=w, detections=dets)


def _unique_name(path: str, used: set) -> str:
    stem = osp.splitext(osp.basename(path))[0]
    name, k = stem, 1
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def run_inference(args) -> dict:
    """Predict, draw and write every image of ``args.input`` (see module doc)."""
    from toolbox.apis.inferencer import Inferencer
    from toolbox.utils.drawing import save_image
    from toolbox.utils.image_io import read_image

    for what, path in (("config", args.config), ("checkpoint", args.checkpoint)):
        if not osp.isfile(path):
            error = ConfigError if what == "config" else CheckpointError
            raise error(f"{what} file '{path}' does not exist")
    images = collect_images(args.input)
    inferencer = Inferencer(args.config, args.checkpoint, device=args.device,
                            score_thr=args.score_thr,
                            cfg_options=getattr(args, "cfg_options", None))
    os.makedirs(args.out, exist_ok=True)

    records, failed, used = [], {}, set()
    infer_times, draw_s = [], 0.0
    for path in images:
        try:
            image = read_image(path)
            start = time.perf_counter()
            sample = inferencer(image)
            infer_times.append(time.perf_counter() - start)
        except (DataError, ValueError) as exc:
            failed[path] = str(exc)
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        start = time.perf_counter()
        name = _unique_name(path, used)
        record = detections_record(path, sample, inferencer.classes)
        save_image(osp.join(args.out, f"{name}.png"),
                   inferencer.visualize(image, sample))
        if not args.single_json:
            with open(osp.join(args.out, f"{name}.json"), "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1)
        records.append(record)
        draw_s += time.perf_counter() - start
    if args.single_json:
        with open(osp.join(args.out, "detections.json"), "w", encoding="utf-8") as f:
            json.dump(dict(images=records, failed=failed), f, indent=1)
    if not records:
        raise DataError(f"none of the {len(images)} input image(s) could be read; "
                        f"first problem: {next(iter(failed.values()))}")
    done = len(records)
    timed = infer_times[1:] if len(infer_times) > 1 else infer_times  # first one warms up
    ms = 1000 * sum(timed) / len(timed)
    print(f"{done} image(s) -> {args.out}: {ms:.1f} ms/image inference (pipeline + model + "
          f"post-processing on {args.device}, mean over {len(timed)} image(s)"
          f"{' after a warm-up one' if len(infer_times) > 1 else ''}), "
          f"{1000 * draw_s / done:.1f} ms/image drawing "
          f"and writing; {sum(len(r['detections']) for r in records)} detection(s) with "
          f"score >= {args.score_thr}")
    if failed:
        print(f"{len(failed)} image(s) skipped: {', '.join(failed)}", file=sys.stderr)
    return dict(results={r["image"]: r["detections"] for r in records}, failed=failed,
                ms_per_image=ms)
