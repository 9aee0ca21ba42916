"""Where the quickstart's wall time goes, stage by stage, in one process.

The README's main job is ``tools/train.py configs/quickstart/...``; this
script builds the same Runner (``toolbox.engine.runner.build_runner``, data
check included) and times each stage of that run on its own:

* start-up: imports, config, dataset generation (into an empty
  ``TOOLBOX_DATA_DIR``, as on a fresh clone), the data check, the Runner;
* the data pipeline per training batch (load, resize, flip, colour jitter,
  pack, collate) in the main process;
* a training step (``model.train_step``: preprocess, forward, loss,
  backward, optimiser), split into its parts;
* a validation batch (``model.val_step``) and the metrics (COCO + VOC) on
  the whole val split;
* a checkpoint save.

From these it projects the full schedule (iterations x step, the data
pipeline on the same cores, one validation, a checkpoint per epoch) and
prints a markdown table::

    python benchmarks/quickstart_profile.py [--config CFG] [--steps 20] [--threads 2]
        [--dataset shapes|scenes] [--note "idle 2-core machine"]

Numbers are per unit (s); the projection is a sum, so it shows which stage
to cut. Measure on an idle machine, or with the load stated in ``--note``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/quickstart/retinanet_mobilenetv3_fpn_synth.py"


class Stopwatch:
    """Named wall-clock totals (``with watch('name'): ...``)."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, name: str):
        watch = self

        class _Span:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.totals[name] = watch.totals.get(name, 0.0) + time.perf_counter() - self.start
                watch.counts[name] = watch.counts.get(name, 0) + 1

        return _Span()

    def mean(self, name: str) -> float:
        return self.totals[name] / max(self.counts.get(name, 1), 1)


def _config(path: str, dataset: str, work_dir: str):
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / path))
    if dataset != "shapes":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from recipes import dataset_overrides, num_classes_overrides
        from mmengine.config import DictAction
        from toolbox.datasets.synthetic import generator_classes
        options = dataset_overrides(dataset) + num_classes_overrides(
            path, len(generator_classes(dataset)))
        parser = argparse.ArgumentParser()
        parser.add_argument("--cfg-options", nargs="+", action=DictAction)
        cfg.merge_from_dict(parser.parse_args(["--cfg-options", *options]).cfg_options)
    cfg.work_dir = work_dir
    return cfg


def _train_steps(runner, loader, steps: int, watch: Stopwatch) -> None:
    """Warm-up step, then ``steps`` timed steps, each split into its parts."""
    import torch
    model, optim = runner.model, runner.optim_wrapper
    model.train()
    batches = iter(loader)
    for i in range(steps + 1):
        tag = "" if i else "warmup "
        with watch(tag + "data: next batch (pipeline + collate)"):
            batch = next(batches)
        with watch(tag + "step: total"):
            with watch(tag + "step: data_preprocessor"):
                data = model.data_preprocessor(batch, True)
            with watch(tag + "step: forward + loss"):
                losses = model(**data, mode="loss")
                loss, _ = model.parse_losses(losses)
            with watch(tag + "step: backward"):
                loss.backward()
            with watch(tag + "step: clip + optimiser"):
                optim.step()
                optim.zero_grad()
        del batch, data, losses, loss
    torch.set_grad_enabled(True)


def _validation(model, loader, evaluator, watch: Stopwatch) -> int:
    """One pass over the val split through the model and the metrics."""
    import torch
    model.eval()
    count = 0
    with torch.no_grad():
        batches = iter(loader)
        while True:
            with watch("val: next batch (pipeline + collate)"):
                batch = next(batches, None)
            if batch is None:
                break
            with watch("val: val_step (preprocess, forward, NMS, rescale)"):
                outputs = model.val_step(batch)
            with watch("val: evaluator.process"):
                evaluator.process(data_samples=outputs, data_batch=batch)
            count += len(outputs)
    with watch("val: metrics (COCO + VOC evaluate)"):
        evaluator.evaluate(len(loader.dataset))
    return count


def profile(args) -> tuple[list[tuple[str, float, str]], dict]:
    watch = Stopwatch()
    data_dir = tempfile.mkdtemp(prefix="toolbox_profile_data_")
    os.environ["TOOLBOX_DATA_DIR"] = data_dir  # a fresh clone generates the data
    work_dir = tempfile.mkdtemp(prefix="toolbox_profile_work_")
    with watch("start: import torch + toolbox"):
        import torch
        torch.set_num_threads(args.threads)
        import toolbox  # noqa: F401
        from toolbox.engine.runner import build_runner
    with watch("start: config"):
        cfg = _config(args.config, args.dataset, work_dir)
    # a main-process loader for the timings (workers would hide the pipeline)
    for name in ("train_dataloader", "val_dataloader"):
        cfg[name].update(num_workers=0, persistent_workers=False)
    with watch("start: dataset generation (train + val)"):
        from toolbox.registry import DATASETS
        DATASETS.build(cfg.train_dataloader.dataset)
        DATASETS.build(cfg.val_dataloader.dataset)
    with watch("start: data check + Runner"):
        runner = build_runner(cfg, data_check=True)
    with watch("start: build model, dataloaders, optimiser"):
        loader = runner.build_dataloader(cfg.train_dataloader)
        runner.optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
        runner.model.init_weights() if hasattr(runner.model, "init_weights") else None
        evaluator = runner.build_evaluator(cfg.val_evaluator)
        val_loader = runner.build_dataloader(cfg.val_dataloader)
        evaluator.dataset_meta = val_loader.dataset.metainfo
    _train_steps(runner, loader, args.steps, watch)
    val_images = _validation(runner.model, val_loader, evaluator, watch)
    with watch("checkpoint: save"):
        # what a checkpoint holds (weights + optimiser state), written like one
        torch.save(dict(state_dict=runner.model.state_dict(),
                        optimizer=runner.optim_wrapper.state_dict()),
                   os.path.join(work_dir, "profile.pth"))

    iters = cfg.train_cfg.max_epochs * len(loader)
    epochs = cfg.train_cfg.max_epochs
    val_batches = watch.counts["val: val_step (preprocess, forward, NMS, rescale)"]
    rows = [
        ("start-up (imports, config, data generation, check, build)",
         sum(v for k, v in watch.totals.items() if k.startswith("start:")), "once"),
        ("data pipeline, training batches", iters * watch.mean("data: next batch (pipeline + collate)"),
         f"{iters} batches x {watch.mean('data: next batch (pipeline + collate)'):.3f} s"),
        ("training steps", iters * watch.mean("step: total"),
         f"{iters} steps x {watch.mean('step: total'):.3f} s"),
        ("validation: pipeline + model", sum(
            watch.totals[k] for k in ("val: next batch (pipeline + collate)",
                                      "val: val_step (preprocess, forward, NMS, rescale)",
                                      "val: evaluator.process")),
         f"{val_images} images, {val_batches} batches"),
        ("validation: COCO + VOC metrics", watch.totals["val: metrics (COCO + VOC evaluate)"], "once"),
        ("checkpoints", epochs * watch.totals["checkpoint: save"], f"{epochs} saves"),
    ]
    return rows, dict(watch=watch, iters=iters)


def render(rows, extra, args) -> str:
    watch: Stopwatch = extra["watch"]
    total = sum(seconds for _, seconds, _ in rows)
    lines = [f"`python benchmarks/quickstart_profile.py --config {args.config} --dataset {args.dataset} "
             f"--steps {args.steps} --threads {args.threads}` ({args.note})", "",
             "| stage | projected s | share | how |", "| --- | --- | --- | --- |"]
    for name, seconds, how in rows:
        lines.append(f"| {name} | {seconds:.1f} | {100 * seconds / total:.0f}% | {how} |")
    lines.append(f"| **total (projected, serial)** | **{total:.1f}** | | |")
    lines += ["", "Per unit (mean s):", "", "| part | mean s | count |", "| --- | --- | --- |"]
    for name in watch.totals:
        if not name.startswith("warmup"):
            lines.append(f"| {name} | {watch.mean(name):.4f} | {watch.counts[name]} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--dataset", default="shapes", choices=("shapes", "scenes"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="load not stated")
    args = parser.parse_args(argv)
    rows, extra = profile(args)
    print(render(rows, extra, args))


if __name__ == "__main__":
    main()
