"""NaN/Inf losses and gradients: skip the step, log it, stop after N in a row.

:class:`NonFiniteGuardHook` is added to every training run by
:func:`toolbox.engine.runner.build_runner` (config key
``max_nonfinite_steps``, default 3; 0 turns the guard off):

* a step whose loss (or, under DDP, whose all-reduced gradients) is not
  finite is skipped: no optimizer step, gradients zeroed, and the model's
  floating buffers (BatchNorm statistics) restored to their values before
  the step; a warning names the iteration and the loss values;
* after ``max_nonfinite_steps`` consecutive skipped steps the run stops with
  :class:`~toolbox.errors.NonFiniteLossError` naming the iteration, the
  losses and the last finite checkpoint (``last_checkpoint`` keeps pointing
  to it);
* a checkpoint whose parameters or buffers are not all finite is never
  written (the run stops instead), so ``max_keep_ckpts`` rotation can only
  ever remove finite checkpoints older than the newest finite one.

Mixed precision with a loss scaler (fp16) already skips steps with inf
gradients while it calibrates the scale; there only the loss is checked.
"""
from __future__ import annotations

import logging
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from toolbox.engine.checkpoint import non_finite_tensors
from toolbox.errors import NonFiniteLossError

DEFAULT_MAX_CONSECUTIVE = 3


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t.detach()).all())


def _distributed() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _format_losses(outputs) -> str:
    if not isinstance(outputs, dict):
        return "(no loss values)"
    parts = []
    for key, value in outputs.items():
        try:
            parts.append(f"{key}={float(value):.4g}")
        except (TypeError, ValueError, RuntimeError):
            continue
    return ", ".join(parts) or "(no loss values)"


class NonFiniteGuardHook(Hook):
    """Skip steps with a non-finite loss or gradients; stop after
    ``max_consecutive`` in a row; never save a non-finite checkpoint."""

    priority = "ABOVE_NORMAL"

    def __init__(self, max_consecutive: int = DEFAULT_MAX_CONSECUTIVE):
        self.max_consecutive = int(max_consecutive)
        self.consecutive = 0
        self.skipped = 0
        self._reason: str | None = None
        self._buffers: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------ patching
    def before_train(self, runner) -> None:
        if self.max_consecutive <= 0:
            return
        wrapper = runner.optim_wrapper
        wrappers = list(wrapper.values()) if hasattr(wrapper, "optim_wrappers") else [wrapper]
        for w in wrappers:
            self._patch(w)

    def _patch(self, wrapper) -> None:
        if getattr(wrapper, "_toolbox_nonfinite_guard", False):
            return
        hook, orig_update, orig_step = self, wrapper.update_params, wrapper.step
        check_loss_only = hasattr(wrapper, "loss_scaler")  # fp16 GradScaler skips inf grads

        def update_params(loss, *args, **kwargs):
            if not _finite(loss):
                hook._reason = "loss"
                if not _distributed():  # DDP: every rank must run backward (grads checked)
                    wrapper.zero_grad()
                    wrapper._inner_count += 1
                    return None
            return orig_update(loss, *args, **kwargs)

        def step(*args, **kwargs):
            if not check_loss_only:
                grads = [p.grad for group in wrapper.optimizer.param_groups
                         for p in group["params"] if p.grad is not None]
                if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
                    hook._reason = hook._reason or "gradients"
                    return None
            if hook._reason:  # DDP with a non-finite loss but finite gradients: still skip
                return None
            return orig_step(*args, **kwargs)

        if hasattr(orig_step, "_with_counter"):  # parameter schedulers check for it
            step._with_counter = orig_step._with_counter
        wrapper.update_params, wrapper.step = update_params, step
        wrapper._toolbox_nonfinite_guard = True

    # ------------------------------------------------------------ per step
    def _model(self, runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.max_consecutive <= 0:
            return
        self._reason = None
        self._buffers = {name: b.detach().clone() for name, b in
                         self._model(runner).named_buffers() if b.is_floating_point()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.max_consecutive <= 0:
            return
        if self._reason is None:
            self.consecutive = 0
            return
        with torch.no_grad():
            current = dict(self._model(runner).named_buffers())
            for name, saved in self._buffers.items():
                current[name].copy_(saved)
        self.consecutive += 1
        self.skipped += 1
        it = runner.iter + 1
        losses = _format_losses(outputs)
        print_log(f"non-finite {self._reason} at iteration {it} (epoch {runner.epoch + 1}): "
                  f"{losses}; step skipped ({self.consecutive} in a row, stopping at "
                  f"{self.max_consecutive}; {self.skipped} skipped in this run)",
                  logger="current", level=logging.WARNING)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"training stopped at iteration {it} (epoch {runner.epoch + 1}): "
                f"{self.consecutive} consecutive steps had a non-finite {self._reason} "
                f"({losses}); those steps were skipped, the weights stayed finite\n"
                f"last finite checkpoint: {self._last_checkpoint(runner)}\n"
                "fix: lower the learning rate (optim_wrapper.optimizer.lr), clip gradients "
                "(optim_wrapper.clip_grad=dict(max_norm=10)), check the data "
                "(tools/check_dataset.py CONFIG); the limit is the config key "
                "max_nonfinite_steps")

    def after_train_epoch(self, runner) -> None:
        if self.skipped:
            print_log(f"{self.skipped} non-finite step(s) skipped so far in this run",
                      logger="current", level=logging.WARNING)

    def after_train(self, runner) -> None:
        if self.skipped:
            print_log(f"summary: {self.skipped} non-finite step(s) were skipped",
                      logger="current", level=logging.WARNING)

    # ------------------------------------------------------------ saving
    @staticmethod
    def _last_checkpoint(runner) -> str:
        pointer = osp.join(runner.work_dir, "last_checkpoint")
        if osp.isfile(pointer):
            named = open(pointer).read().strip()
            if named and osp.isfile(named):
                return f"{named} (last_checkpoint points to it; --resume starts there)"
        return "none was saved in this work dir yet"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        count, names = non_finite_tensors(checkpoint.get("state_dict") or {})
        if count:
            raise NonFiniteLossError(
                f"refusing to save a checkpoint at iteration {runner.iter} (epoch "
                f"{runner.epoch}): {count} tensor(s) of the model are not finite "
                f"({', '.join(names)}{', ...' if count > len(names) else ''})\n"
                f"last finite checkpoint: {self._last_checkpoint(runner)}\n"
                "fix: lower the learning rate or clip gradients "
                "(optim_wrapper.clip_grad=dict(max_norm=10))")
