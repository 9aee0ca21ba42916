"""Toy parts for the training-switch tests: a model without batch-dependent
layers, a metric, and a hook that records what the run did."""
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from torch import nn

from toolbox.registry import HOOKS, METRICS, MODELS


@MODELS.register_module(force=True)
class ToyLinear(BaseModel):
    """``Linear(4, 8) -> ReLU -> Linear(8, 1)``, mean squared error: no
    BatchNorm, so a batch's gradient is the mean of its samples' gradients."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, inputs, data_samples=None, mode="tensor"):
        out = self.net(inputs).squeeze(1)
        if mode == "loss":
            return dict(loss=(out - data_samples).pow(2).mean())
        if mode == "predict":
            return [dict(pred=o, target=t) for o, t in zip(out, data_samples)]
        return out


@METRICS.register_module(force=True)
class ToyMSE(BaseMetric):
    """``toy/mse`` of the predictions, and ``toy/constant`` (always 1.0, for
    early stopping)."""

    default_prefix = "toy"

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            if isinstance(sample, dict):
                self.results.append(float((sample["pred"] - sample["target"]) ** 2))
            else:  # ToyRegressor's predict output: a tensor
                self.results.append(float(sample) ** 2)

    def compute_metrics(self, results):
        return dict(mse=sum(results) / len(results), constant=1.0)


@HOOKS.register_module(force=True)
class RecordRun(Hook):
    """Keeps the learning rate of every iteration, and the model's parameters
    as validation saw them (``val_params[epoch]``)."""

    priority = "LOWEST"

    def __init__(self):
        self.lrs, self.val_params = [], {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs.append(runner.optim_wrapper.get_lr()["lr"][0])

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.val_params[runner.epoch] = {k: v.detach().clone()
                                         for k, v in model.state_dict().items()}


def params(runner) -> dict:
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_abs_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)



@HOOKS.register_module(force=True)
class DumpRankState(Hook):
    """Saves each rank's full state_dict (parameters and BN buffers) after
    training, and the number of synchronised BatchNorm layers (DDP tests)."""

    def after_train(self, runner):
        import os

        import torch.distributed as dist

        from toolbox.engine.sync_bn import count_batchnorms
        rank = dist.get_rank() if dist.is_initialized() else 0
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        plain, sync = count_batchnorms(model)
        torch.save(dict(state=state, plain_bn=plain, sync_bn=sync, iters=runner.iter),
                   os.path.join(runner.work_dir, f"state_rank{rank}.pt"))
