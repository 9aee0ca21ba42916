"""Training-step time of the detection recipes side by side, and where it goes.

Every model is built from its shipped config and trained on the *same*
batches (the quickstart's train pipeline, batch 8 at 256 px), in one
process, round-robin (batch k goes through every model before batch k + 1),
so load on the machine hits all rows alike. A step is preprocessing,
``model.loss``, the loss sum and ``backward`` (the optimiser step is the same
few element-wise ops for every model and is left out).

The per-part table comes from a second pass under ``torch.profiler``: the
inclusive time of the parts below (Python-level functions wrapped in
``record_function``) and of the autograd backward nodes, in ms per step.
Parts nest (``assign`` is inside ``head loss``), so rows do not add up to the
step; the profiler's own overhead inflates them a little, so compare rows
with each other, not with the plain step time::

    python benchmarks/step_profile.py [--configs retinanet faster_rcnn ...] [--steps 6]
        [--threads 1] [--out benchmarks/results_step_profile_cpu.md] [--note "..."]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from detection_heads import CONFIGS  # noqa: E402  (the same short names)

DEFAULT = ("retinanet", "faster_rcnn", "ga_retinanet", "ga_faster_rcnn")


def _parts():
    """``(label, owner, attribute)`` of every function timed as a part."""
    import toolbox.models.heads.dense as dense
    import toolbox.models.layers.anchor_guidance as guidance
    from toolbox.models.heads.roi_box_head import RoIBoxHead
    from toolbox.models.heads.rpn_head import RPNHead
    from toolbox.models.layers.feature_adaption import FeatureAdaption
    from toolbox.structures import AnchorGenerator, MaxIoUAssigner
    from toolbox.structures.random_sampler import RandomSampler
    return [
        ("anchors: grid_anchors", AnchorGenerator, "grid_anchors"),
        ("anchors: valid_flags", AnchorGenerator, "valid_flags"),
        ("assign (MaxIoUAssigner)", MaxIoUAssigner, "assign"),
        ("sample (RandomSampler)", RandomSampler, "sample"),
        ("GA location targets", guidance, "ga_location_targets"),
        ("GA shape targets", guidance, "ga_shape_targets"),
        ("GA guidance loss", guidance.AnchorGuidance, "loss"),
        ("GA feature adaption fwd", FeatureAdaption, "forward"),
        ("RPN proposals (decode + NMS)", RPNHead, "predict_by_feat"),
        ("NMS: proposal_nms", dense, "proposal_nms"),
        ("RoI sampling (assign + sample)", RoIBoxHead, "_sample_rois"),
        ("RoIAlign fwd (roi_features)", RoIBoxHead, "roi_features"),
    ]


@contextlib.contextmanager
def annotated(parts):
    """Wrap each ``(label, owner, attribute)`` part in
    ``torch.profiler.record_function(label)``; the owner is a class, a Python
    module (functions are patched where their callers look them up) or an
    object (e.g. a model's backbone: its bound method is shadowed)."""
    saved = []
    for label, owner, attr in parts:
        on_instance = not isinstance(owner, (type, types.ModuleType))
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        static = isinstance(original, staticmethod)
        func = original.__func__ if static else original

        def wrapper(*args, __func=func, __label=label, **kwargs):
            with torch.profiler.record_function(__label):
                return __func(*args, **kwargs)
        setattr(owner, attr, staticmethod(wrapper) if static else wrapper)
        saved.append((owner, attr, None if on_instance else original))
    try:
        yield
    finally:
        for owner, attr, original in reversed(saved):
            if original is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)


def build(name: str):
    from mmengine.config import Config
    from toolbox.registry import MODELS
    import toolbox  # noqa: F401  (registers the components)
    cfg = Config.fromfile(str(ROOT / CONFIGS[name]))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.train()


def batches(count: int, batch_size: int):
    """``count`` collated quickstart train batches (the raw loader output)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from toolbox.registry import DATASETS
    cfg = Config.fromfile(str(ROOT / CONFIGS["retinanet"]))
    loader_cfg = dict(cfg.train_dataloader, batch_size=batch_size, num_workers=0,
                      persistent_workers=False,
                      dataset=DATASETS.build(cfg.train_dataloader.dataset))
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            break
    return out


def step(model, batch) -> dict[str, float]:
    """One training step's wall time, split into forward (+ loss) and backward."""
    start = time.perf_counter()
    data = model.data_preprocessor(batch, training=True)
    losses = model.loss(data["inputs"], data["data_samples"])
    total = sum(v for k, v in losses.items() if "loss" in k and v.requires_grad)
    mid = time.perf_counter()
    total.backward()
    model.zero_grad(set_to_none=True)
    end = time.perf_counter()
    return dict(forward=mid - start, backward=end - mid, step=end - start)


def _module_parts(model):
    """Top-level modules timed as parts: backbone, neck and each head's forward."""
    parts = [("backbone", model.backbone, "forward")]
    if getattr(model, "neck", None) is not None:
        parts.append(("neck", model.neck, "forward"))
    for attr in ("bbox_head", "rpn_head", "roi_head"):
        head = getattr(model, attr, None)
        if head is not None:
            parts.append((f"{attr} forward", head, "forward"))
            parts.append((f"{attr} loss (incl. forward)", head,
                          "loss_and_predict" if attr == "rpn_head" else "loss"))
    return parts


def profile(model, data, steps: int) -> dict[str, float]:
    """ms per step of every part and of the big backward nodes."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    parts = _module_parts(model) + _parts()
    with annotated(parts), torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in data[:steps]:
            step_parts(model, batch)
    labels = {label for label, _, _ in parts} | {"backward (all)"}
    out = {}
    for event in prof.key_averages():
        key = event.key
        ms = event.cpu_time_total / 1e3 / steps
        if key in labels:
            out[key] = ms
        elif key.startswith("autograd::engine::evaluate_function: ") and ms > 5.0:
            out["bwd: " + key.split(": ", 1)[1]] = ms
        elif key in ("torchvision::roi_align", "torchvision::deform_conv2d", "torchvision::nms",
                     "torchvision::_roi_align_backward", "torchvision::_deform_conv2d_backward",
                     "aten::grid_sampler_2d", "aten::grid_sampler_2d_backward"):
            out["op: " + key] = ms
    return out


def step_parts(model, batch) -> None:
    data = model.data_preprocessor(batch, training=True)
    losses = model.loss(data["inputs"], data["data_samples"])
    total = sum(v for k, v in losses.items() if "loss" in k and v.requires_grad)
    with torch.profiler.record_function("backward (all)"):
        total.backward()
    model.zero_grad(set_to_none=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT), choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--profile-steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the markdown tables here")
    parser.add_argument("--note", default="", help="machine and load, for the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    data = batches(args.warmup + args.steps, args.batch_size)
    models = {name: build(name) for name in args.configs}
    times = {name: [] for name in models}
    for k, batch in enumerate(data):
        for name, model in models.items():
            result = step(model, batch)
            if k >= args.warmup:
                times[name].append(result)
    base = statistics.median(t["step"] for t in times[args.configs[0]])
    lines = [f"Training step, batch {args.batch_size} x 256 px, {args.threads} thread(s), "
             f"median of {args.steps} steps after {args.warmup} warm-up, same batches, one "
             f"process. {args.note}".strip(), "",
             f"| config | step (s) | forward + loss (s) | backward (s) | x {args.configs[0]} |",
             "|---|---|---|---|---|"]
    for name, rows in times.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("step", "forward", "backward")}
        lines.append(f"| {name} | {med['step']:.3f} | {med['forward']:.3f} | "
                     f"{med['backward']:.3f} | {med['step'] / base:.2f} |")
    parts = {name: profile(model, data[args.warmup:], args.profile_steps)
             for name, model in models.items()}
    keys = sorted({k for p in parts.values() for k in p},
                  key=lambda k: -max(p.get(k, 0.0) for p in parts.values()))
    lines += ["", f"Parts, ms per step under torch.profiler (inclusive; {args.profile_steps} "
              "steps):", "", "| part | " + " | ".join(models) + " |",
              "|---|" + "---|" * len(models)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(
            f"{parts[n][key]:.0f}" if key in parts[n] else "-" for n in models) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
