"""Mixed precision: mmengine's ``AmpOptimWrapper`` on CUDA and on CPU, and the
parts of a model that stay in fp32 under autocast.

``amp=True`` in a config (or ``tools/train.py --amp``) makes the runner use
:class:`MixedPrecisionOptimWrapper`: fp16 with dynamic loss scaling on CUDA
(mmengine's ``AmpOptimWrapper`` unchanged), bf16 on a CPU (bf16 has fp32's
exponent range, so no loss scaling; mmengine's wrapper refuses CPUs).

What autocast does on a CPU (torch 2.x, bf16): convolutions, linear layers
and matrix products run in bf16 and return bf16; element-wise ops
(``sigmoid``, ``exp``, ``log``, products) run in their inputs' dtype, so a
focal loss written with them, a box decoder's ``exp(dw)``, an IoU matrix for
matching or a Dice ratio would all run in bf16 (8 bits of mantissa: 0.4 %
relative error) if they were given the head's raw outputs; only the
library's loss functions (``binary_cross_entropy_with_logits``,
``cross_entropy``, ``l1_loss``, ``smooth_l1_loss``, ...) are on autocast's
fp32 list. numpy cannot hold bf16 at all (the Hungarian matcher goes through
scipy). So, explicitly:

* every **head**'s ``forward`` returns fp32 tensors (its convolutions and
  transformer layers still run in bf16/fp16); what the head does with them
  next (target assignment and matching, box decoding, the losses, NMS in
  ``predict``) is then in fp32, since element-wise ops keep their inputs'
  dtype;
* every **loss** module gets its floating inputs cast to fp32 (for losses
  called on anything else than head outputs).

Both are forward hooks installed by :func:`keep_fp32`; they do nothing when
autocast is off, so a model trained with ``--amp`` evaluates exactly as one
trained without (validation runs in fp32).
"""
from __future__ import annotations

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from toolbox.registry import HEADS, LOSSES, OPTIM_WRAPPERS

AMP_WRAPPERS = ("AmpOptimWrapper", "MixedPrecisionOptimWrapper")


def _autocast_on() -> bool:
    return torch.is_autocast_enabled("cpu") or (
        torch.cuda.is_available() and torch.is_autocast_enabled("cuda"))


def to_fp32(value):
    """``value`` with every low-precision floating tensor in it cast to fp32
    (tensors, and tuples / lists / dicts of them, nested)."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(to_fp32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_fp32(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, to_fp32(v)) for k, v in value.items())
    return value


def _fp32_outputs(module, args, output):
    return to_fp32(output) if _autocast_on() else None


def _fp32_inputs(module, args, kwargs):
    if not _autocast_on():
        return None
    return to_fp32(args), to_fp32(kwargs)


def _classes(registry) -> tuple[type, ...]:
    found = []
    for name in registry.names():
        component = registry.get(name)
        if isinstance(component, type) and issubclass(component, nn.Module):
            found.append(component)
    return tuple(found)


def keep_fp32(model: nn.Module) -> int:
    """Install the fp32 hooks described in the module docstring on every head
    (a module registered in ``HEADS``, or one setting ``fp32_outputs = True``)
    and every loss (registered in ``LOSSES``, or ``fp32_inputs = True``) of
    ``model``; returns how many modules got one. Safe to call twice."""
    heads, losses = _classes(HEADS), _classes(LOSSES)
    count = 0
    for module in model.modules():
        if getattr(module, "_toolbox_fp32", False):
            continue
        hooked = False
        if getattr(module, "fp32_outputs", False) or (heads and isinstance(module, heads)):
            module.register_forward_hook(_fp32_outputs)
            hooked = True
        if getattr(module, "fp32_inputs", False) or (losses and isinstance(module, losses)):
            module.register_forward_pre_hook(_fp32_inputs, with_kwargs=True)
            hooked = True
        if hooked:
            module._toolbox_fp32 = True
            count += 1
    return count


_FP32_CLASSES: dict[type, type] = {}


def _fp32_class(cls: type) -> type:
    """A subclass of ``cls`` whose ``forward`` runs with autocast off and its
    floating inputs in fp32 (made once per class; a class swap, not a wrapper,
    so state-dict keys stay and ``deepcopy`` (EMA) keeps the behaviour)."""
    if cls not in _FP32_CLASSES:
        def forward(self, *args, **kwargs):
            if not _autocast_on():
                return cls.forward(self, *args, **kwargs)
            with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
                return cls.forward(self, *to_fp32(args), **to_fp32(kwargs))
        _FP32_CLASSES[cls] = type(cls.__name__, (cls,), {
            "forward": forward, "__module__": cls.__module__,
            "__doc__": f"{cls.__name__} run in fp32 under autocast (amp_fp32_modules)."})
    return _FP32_CLASSES[cls]


def run_in_fp32(model: nn.Module, names) -> list[str]:
    """Run the submodules of ``model`` named in ``names`` (e.g. ``'backbone'``)
    in fp32 under autocast (config key ``amp_fp32_modules``); returns them."""
    done = []
    for name in names or ():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            children = ", ".join(n for n, _ in model.named_children())
            raise ValueError(f"config key 'amp_fp32_modules': the model has no submodule "
                             f"'{name}'; its parts are: {children}") from None
        if type(module) not in _FP32_CLASSES.values():
            module.__class__ = _fp32_class(type(module))
        done.append(name)
    return done


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` on CUDA (fp16 and dynamic loss scaling by
    default, or ``dtype='bfloat16'``); on a CPU, bf16 autocast with no loss
    scaling (a disabled ``GradScaler``: ``backward``/``step`` are plain).

    Args are ``AmpOptimWrapper``'s: ``loss_scale`` ('dynamic', a float or a
    ``GradScaler`` dict; CUDA only), ``dtype`` (None: fp16 on CUDA, bf16 on
    CPU), and ``OptimWrapper``'s (``optimizer``, ``accumulative_counts``,
    ``clip_grad``).
    """

    def __init__(self, loss_scale="dynamic", dtype=None, use_fsdp: bool = False, **kwargs):
        if torch.cuda.is_available():
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        if dtype not in (None, "bfloat16", torch.bfloat16):
            raise ValueError(f"config key 'optim_wrapper.dtype' is {dtype!r}, but mixed "
                             "precision on a CPU supports only 'bfloat16' (or None)")
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.cast_dtype = torch.bfloat16


def configure_amp(cfg) -> bool:
    """Apply the ``amp`` config key to ``cfg.optim_wrapper``; returns whether
    the run uses mixed precision (``amp`` set, or an AMP wrapper named).

    ``amp`` is ``True``, ``False``/None, or a dtype name: ``'float16'``
    (CUDA) or ``'bfloat16'``.
    """
    amp = cfg.get("amp", None)
    wrapper = cfg.get("optim_wrapper")
    if amp in (None, False):
        return isinstance(wrapper, dict) and wrapper.get("type") in AMP_WRAPPERS
    if amp is not True and amp not in ("float16", "bfloat16"):
        raise ValueError(f"config key 'amp' is {amp!r}; expected True, False, 'float16' "
                         "or 'bfloat16'")
    if not isinstance(wrapper, dict):
        raise ValueError("config key 'amp' needs an 'optim_wrapper' dict in the config")
    kind = wrapper.get("type", "OptimWrapper")
    if kind not in ("OptimWrapper",) + AMP_WRAPPERS:
        raise ValueError(f"config key 'amp' works with optim_wrapper.type 'OptimWrapper' "
                         f"(or an AMP wrapper), got {kind!r}")
    wrapper["type"] = "MixedPrecisionOptimWrapper"
    if amp == "float16" and not torch.cuda.is_available():
        raise ValueError("config key 'amp' is 'float16', but there is no CUDA device; "
                         "expected True or 'bfloat16' (the CPU's autocast dtype)")
    if isinstance(amp, str):
        wrapper["dtype"] = amp
    return True
