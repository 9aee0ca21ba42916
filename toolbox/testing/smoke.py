"""One-call smoke training: "train this config for N steps"."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

__all__ = ["smoke_train"]


def smoke_train(config, steps: int = 2, num_images: int = 4, work_dir: str | None = None,
                cfg_options: dict | None = None, validate: bool = True) -> dict:
    """Train ``config`` (a path, an mmengine ``Config`` or a dict) for
    ``steps`` iterations on ``num_images`` images per dataloader, through
    the same :func:`toolbox.engine.runner.build_runner` as ``tools/train.py``
    (so the whole-config validation runs first), then validate once (unless
    ``validate=False``). ``cfg_options`` are merged first, as
    ``--cfg-options`` would be. Returns ``dict(losses=[...], metrics={...},
    runner=..., work_dir=...)``; raises if a loss is not finite."""
    from mmengine.config import Config

    from toolbox.engine.runner import build_runner
    from toolbox.short_run import apply_short_run
    if isinstance(config, (str, Path)):
        cfg = Config.fromfile(str(config))
    elif isinstance(config, Config):
        cfg = config.copy() if hasattr(config, "copy") else config
    else:
        cfg = Config(dict(config))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    apply_short_run(cfg, max_iters=steps, num_images=num_images, validate=validate)
    cfg.work_dir = str(work_dir or tempfile.mkdtemp(prefix="toolbox_smoke_"))
    runner = build_runner(cfg)
    losses: list[float] = []

    from mmengine.hooks import Hook

    class _Record(Hook):
        priority = "LOWEST"

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if outputs:
                total = sum(float(v.detach()) if hasattr(v, "detach") else float(v)
                            for k, v in outputs.items() if "loss" in k)
                losses.append(total)

    runner.register_hook(_Record())
    runner.train()
    bad = [v for v in losses if not math.isfinite(v)]
    if bad or not losses:
        raise AssertionError(f"smoke_train: losses {losses} over {steps} steps "
                             f"({'non-finite' if bad else 'none recorded'})")
    metrics = {}
    if validate and getattr(runner, "val_loop", None) is not None:
        metrics = dict(runner.message_hub.log_scalars)
        metrics = {k: v.current() for k, v in metrics.items() if k.startswith("val/")}
    return dict(losses=losses, metrics=metrics, runner=runner, work_dir=cfg.work_dir)
