"""The reference detectors side by side with the toolbox's, in one process.

For each reference (torchvision RetinaNet v1/v2, Faster R-CNN R50-FPN and
MobileNetV3-Large-FPN, HF transformers' DETR-R50): the reference is built
with random weights (nothing is downloaded), its state dict converted by
``toolbox.convert`` into the model of ``configs/reference/*.py``, and both
are timed on the same images:

* ``eval``: one image through the whole inference path, pre-processing
  included (the toolbox: ``Inferencer`` = test pipeline + model +
  post-processing; the reference: its transform + model + post-processing);
* ``train``: one SGD step (forward, loss, backward, update) on a batch of 2
  images with the same boxes.

Outputs are compared before timing (the tests in tests/reference/ check
them closely). Images are resized with the references' rule at a reduced
``--min-size`` / ``--max-size`` (default 480 / 800: COCO's 800 / 1333 makes a
CPU row take minutes). One torch thread by default: ratios, not seconds,
are the result.

    python benchmarks/reference_detectors.py [--repeats 3] [--only retinanet faster_rcnn ...]
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[1]


def _test_module(name: str):
    """A module of tests/reference/: its builders make each reference as its
    published checkpoint's architecture (FrozenBN, eps) with seeded random
    weights spread so that there are realistic numbers of detections."""
    import importlib
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "reference"))
    return importlib.import_module(name)


def _retinanet(version: str, min_size: int, max_size: int):
    module = _test_module("test_retinanet_tv")
    module.MIN_SIZE, module.MAX_SIZE = min_size, max_size
    return module._reference(version)


def _faster_rcnn(kind: str, min_size: int, max_size: int):
    module = _test_module("test_faster_rcnn_tv")
    module.MIN_SIZE, module.MAX_SIZE = min_size, max_size
    return module.torchvision_model(kind)


def _hf_detr(min_size: int, max_size: int):
    from transformers import DetrConfig, DetrForObjectDetection
    return DetrForObjectDetection(DetrConfig(
        use_timm_backbone=True, backbone="resnet50", use_pretrained_backbone=False,
        num_labels=91, auxiliary_loss=True))  # aux losses in training, as the toolbox's


CASES = {
    "retinanet": ("retinanet_r50_fpn_tv.py", lambda a, b: _retinanet("v1", a, b)),
    "retinanet_v2": ("retinanet_r50_fpn_v2_tv.py", lambda a, b: _retinanet("v2", a, b)),
    "faster_rcnn": ("faster_rcnn_r50_fpn_tv.py", lambda a, b: _faster_rcnn("r50", a, b)),
    "faster_rcnn_mobilenet": ("faster_rcnn_mobilenetv3_fpn_tv.py",
                              lambda a, b: _faster_rcnn("mobilenet", a, b)),
    "detr": ("detr_r50_official.py", _hf_detr),
}


def _images(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
            rng.integers(0, 256, (427, 640, 3), dtype=np.uint8)]


def _targets(images):
    boxes = [np.array([[40, 50, 200, 260], [300, 120, 420, 300]], np.float32),
             np.array([[10, 20, 90, 70], [250, 200, 600, 400], [500, 10, 630, 120]], np.float32)]
    labels = [np.array([1, 18]), np.array([3, 1, 62])]
    return boxes[:len(images)], labels[:len(images)]


def _toolbox_config(config: str, min_size: int, max_size: int) -> Config:
    cfg = Config.fromfile(str(ROOT / "configs" / "reference" / config))
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = (max_size, min_size)
    cfg.test_pipeline = cfg.test_dataloader.dataset.pipeline
    return cfg


def _race(fns, repeats: int) -> list[float]:
    """Best wall time of each function, run interleaved (a b c a b c ...) so
    that a load change on the machine hits all of them alike."""
    for fn in fns:
        fn()  # warm-up (allocations, caches)
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _train_batch(cfg, images, device="cpu"):
    """The toolbox's training input: the test pipeline (no augmentation, so
    both see the same pixels) with the boxes, collated."""
    from toolbox.datasets.collate import det_collate
    from toolbox.datasets.transforms.base import Compose, init_geometry
    steps = [dict(s) for s in cfg.test_dataloader.dataset.pipeline if s["type"] != "LoadImage"]
    pipeline = Compose(steps)
    boxes, labels = _targets(images)
    items = []
    label_ids = list(cfg.test_dataloader.dataset.get("label_cat_ids") or range(91))
    for img, b, lab in zip(images, boxes, labels):
        results = init_geometry(dict(img=img, img_path=None, img_id=0, gt_bboxes=b.copy(),
                                     gt_labels=np.array([label_ids.index(int(x)) for x in lab]),
                                     gt_ignore_flags=np.zeros(len(b), bool)))
        items.append(pipeline(results))
    collate = {k: v for k, v in (cfg.test_dataloader.get("collate_fn") or {}).items() if k != "type"}
    return det_collate(items, **collate)


def run_case(name: str, repeats: int, min_size: int, max_size: int) -> dict:
    from mmengine.optim import OptimWrapper

    from toolbox.apis import Inferencer
    from toolbox.convert import convert_state_dict
    config, build_reference = CASES[name]
    torch.manual_seed(0)
    reference = build_reference(min_size, max_size).eval()
    cfg = _toolbox_config(config, min_size, max_size)
    converted, layout, _ = convert_state_dict(reference.state_dict(), config=cfg)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "converted.pth"
        torch.save(dict(state_dict=converted, meta={}), ckpt)
        inferencer = Inferencer(cfg, str(ckpt), score_thr=0.0)
        fused = Inferencer(cfg, str(ckpt), score_thr=0.0, fuse_conv_bn=True)
    images = _images()
    tensors = [torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images]
    row = dict(name=name, layout=layout.name, size=f"{min_size}/{max_size}")

    if name == "detr":  # the HF model takes normalised pixels and a mask
        from transformers import DetrImageProcessor
        processor = DetrImageProcessor(size=dict(shortest_edge=min_size, longest_edge=max_size))

        def ref_eval():
            inputs = processor(images=[images[0]], return_tensors="pt")
            with torch.no_grad():
                out = reference(**inputs)
            processor.post_process_object_detection(out, threshold=0.0,
                                                    target_sizes=[images[0].shape[:2]])
    else:
        def ref_eval():
            with torch.no_grad():
                reference([tensors[0]])
    row["eval_reference_s"], row["eval_toolbox_s"], row["eval_fused_s"] = _race(
        [ref_eval, lambda: inferencer(images[0]), lambda: fused(images[0])], repeats)

    model = inferencer.model.train()
    reference.train()
    boxes, labels = _targets(images)
    data = _train_batch(cfg, images)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-5))
    ref_opt = torch.optim.SGD(reference.parameters(), lr=1e-5)
    if name == "detr":
        def ref_step():
            inputs = processor(images=images, return_tensors="pt")
            targets = [dict(class_labels=torch.as_tensor(lab),
                            boxes=_cxcywh(torch.as_tensor(b), im.shape[:2]))
                       for b, lab, im in zip(boxes, labels, images)]
            loss = reference(**inputs, labels=targets).loss
            ref_opt.zero_grad()
            loss.backward()
            ref_opt.step()
    else:
        targets = [dict(boxes=torch.as_tensor(b), labels=torch.as_tensor(lab))
                   for b, lab in zip(boxes, labels)]

        def ref_step():
            loss = sum(reference(tensors, copy.deepcopy(targets)).values())
            ref_opt.zero_grad()
            loss.backward()
            ref_opt.step()
    row["train_reference_s"], row["train_toolbox_s"] = _race(
        [ref_step, lambda: model.train_step(copy.deepcopy(data), wrapper)], repeats)
    row["eval_ratio"] = row["eval_toolbox_s"] / row["eval_reference_s"]
    row["eval_fused_ratio"] = row["eval_fused_s"] / row["eval_reference_s"]
    row["train_ratio"] = row["train_toolbox_s"] / row["train_reference_s"]
    return row


def _cxcywh(boxes: torch.Tensor, hw) -> torch.Tensor:
    h, w = hw
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / w, (boxes[:, 1] + boxes[:, 3]) / 2 / h
    return torch.stack([cx, cy, (boxes[:, 2] - boxes[:, 0]) / w,
                        (boxes[:, 3] - boxes[:, 1]) / h], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-size", type=int, default=480)
    parser.add_argument("--max-size", type=int, default=800)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_reference_detectors_cpu.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.only:
        row = run_case(name, args.repeats, args.min_size, args.max_size)
        print(json.dumps(row))
        rows.append(row)
    lines = [f"# Reference detectors vs the toolbox (CPU, {args.threads} thread(s), best of "
             f"{args.repeats} interleaved, images 480x640 and 427x640 resized to {args.min_size}/"
             f"{args.max_size})", "",
             "Same weights (the reference's random init, converted), same images. eval: one "
             "image, pre- and post-processing included; fused: the same with BatchNorm / "
             "FrozenBN folded into the convs (`Inferencer(fuse_conv_bn=True)`); train: one "
             "SGD step on 2 images. ratio = toolbox / reference (< 1: the toolbox is "
             "faster).", "",
             "| detector | layout | eval ref s | eval toolbox s | eval ratio | fused ratio | "
             "train ref s | train toolbox s | train ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['layout']} | {r['eval_reference_s']:.3f} | "
                     f"{r['eval_toolbox_s']:.3f} | {r['eval_ratio']:.2f} | "
                     f"{r['eval_fused_ratio']:.2f} | "
                     f"{r['train_reference_s']:.3f} | {r['train_toolbox_s']:.3f} | "
                     f"{r['train_ratio']:.2f} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
