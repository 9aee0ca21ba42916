"""Backbone -> (neck) -> decode head: semantic segmentation of images and volumes.

The segmentor wires its parts from configs like the detectors do (the
contract of :mod:`toolbox.models.builder`): the neck is built with
``input_shape`` = the backbone's ``output_shape()``, the decode head with
``input_shape`` = the neck's (or the backbone's) and ``spatial_dims``, unless
the config sets ``in_channels`` itself. 2D and 3D work alike: the number of
spatial axes is the backbone's ``spatial_dims`` (2 when it declares none).

Prediction (``mode='predict'``) runs ``test_cfg``:

* ``dict(mode='whole')``: the padded batch through the network at once;
* ``dict(mode='slide', roi_size=..., overlap=0.25, blend='gaussian',
  sw_batch_size=1)``: overlapping windows blended by
  :func:`toolbox.models.layers.sliding_window.sliding_window_inference`;

then, per sample, the logits are cropped to ``img_shape`` (the batch
padding removed), un-flipped (``flip`` / ``flip_direction`` or
``flip_axes``), resized (linearly) to ``ori_shape``, and stored as
``seg_logits`` ``[K, *ori_shape]`` with ``pred_sem_seg`` (their argmax).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from toolbox.models.data_preprocessors.base import batch_tensors
from toolbox.models.builder import (build_component, build_preprocessor, build_trunk,
                                    follow_size_divisor, head_fill, output_shape_of,
                                    trunk_size_divisor)
from toolbox.models.layers.sliding_window import sliding_window_inference
from toolbox.registry import HEADS
from toolbox.structures.seg_data_sample import SegDataSample

__all__ = ["EncoderDecoder"]

MODES = ("loss", "predict", "tensor")
TEST_MODES = ("whole", "slide")
FLIP_DIRECTIONS = ("horizontal", "vertical", "diagonal")


def _check_test_cfg(test_cfg) -> dict:
    cfg = dict(mode="whole") if test_cfg is None else dict(test_cfg)
    mode = cfg.get("mode", "whole")
    if mode not in TEST_MODES:
        raise ValueError(f"EncoderDecoder: test_cfg['mode'] must be one of {TEST_MODES}, "
                         f"got {mode!r}")
    allowed = {"whole": {"mode"},
               "slide": {"mode", "roi_size", "overlap", "blend", "sw_batch_size", "sigma_scale"}}
    unknown = set(cfg) - allowed[mode]
    if unknown:
        raise ValueError(f"EncoderDecoder: unknown test_cfg key(s) {sorted(unknown)} for mode "
                         f"{mode!r}; accepted: {sorted(allowed[mode])}")
    if mode == "slide" and "roi_size" not in cfg:
        raise ValueError("EncoderDecoder: test_cfg mode 'slide' needs 'roi_size' (the window "
                         "size, e.g. the training patch size)")
    return cfg


class EncoderDecoder(BaseModel):
    """A semantic segmentor: ``decode_head(neck(backbone(inputs)))``.

    Args:
        backbone: a ``BACKBONES`` config (or module) declaring its
            ``output_shape()`` (and ``spatial_dims`` for volumes).
        decode_head: a ``HEADS`` config with ``loss(feats, data_samples)``
            and ``predict(feats, data_samples) -> logits [B, K, *S]``.
        neck: optional ``NECKS`` config, or a list applied in order.
        test_cfg: ``dict(mode='whole')`` (default) or ``dict(mode='slide',
            roi_size=..., overlap=0.25, blend='gaussian', sw_batch_size=1)``.
        data_preprocessor: a ``SegDataPreprocessor`` config (moves, casts,
            normalises and pads the batch ``seg_collate`` lists); the default
            one does not normalise. It pads to at least ``size_divisor``.
        init_cfg: mmengine initialisation config.

    ``forward(inputs, data_samples=None, mode='tensor')``: inputs are
    ``Tensor[B, C, *S]`` or a list of ``Tensor[C, *S]``; ``'loss'`` returns
    the head's loss dict, ``'predict'`` the ``SegDataSample`` objects with
    ``pred_sem_seg`` and ``seg_logits`` in the original frame, ``'tensor'``
    the logits of the padded batch.
    """

    def __init__(self, backbone, decode_head=None, neck=None, test_cfg: dict | None = None,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=build_preprocessor(data_preprocessor,
                                                              "SegDataPreprocessor"),
                         init_cfg=init_cfg)
        follow_size_divisor(self)
        if decode_head is None:
            raise ValueError("EncoderDecoder: 'decode_head' is required (a HEADS config)")
        self.test_cfg = _check_test_cfg(test_cfg)
        source, name = build_trunk(self, backbone, neck)
        self.spatial_dims = int(getattr(self.backbone, "spatial_dims", 2))
        specs = None if isinstance(decode_head, nn.Module) else output_shape_of(source)
        self.decode_head = build_component(
            decode_head, HEADS, "decode_head", "EncoderDecoder", specs, name,
            legacy_fill=lambda specs: head_fill(specs, one_width=False),
            extra={"spatial_dims": self.spatial_dims})

    def _preprocessor_size_divisor(self) -> int:
        return self.size_divisor if getattr(self, "backbone", None) is not None else 1

    @property
    def size_divisor(self) -> int:
        return trunk_size_divisor(self)

    # ---------------------------------------------------------------- inputs
    def _batch_inputs(self, inputs, pad_to_divisor: bool = True) -> Tensor:
        """A float ``[B, C, *S]`` batch, padded at the end of every spatial
        axis to the batch's largest size (and to ``size_divisor``) by the data
        preprocessors' rule (``train_step`` / ``test_step`` give the
        preprocessor's batch, already padded)."""
        dims = self.spatial_dims
        if isinstance(inputs, (list, tuple)):
            if not inputs or not all(isinstance(t, Tensor) and t.dim() == dims + 1 for t in inputs):
                raise TypeError(f"EncoderDecoder: 'inputs' must be a Tensor[B, C, *S] or a "
                                f"non-empty list of Tensor[C, *S] with {dims} spatial axes")
        elif not isinstance(inputs, Tensor) or inputs.dim() != dims + 2:
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise TypeError(f"EncoderDecoder: 'inputs' must be a Tensor[B, C, *S] with {dims} "
                            f"spatial axes (backbone spatial_dims={dims}), got {shape}")
        first = inputs if isinstance(inputs, Tensor) else inputs[0]
        if not torch.is_floating_point(first):
            raise TypeError(f"EncoderDecoder: 'inputs' must be normalised float tensors, got "
                            f"{first.dtype}; normalise them in the data pipeline")
        return batch_tensors(inputs, self.size_divisor if pad_to_divisor else 1)

    def _complete_metainfo(self, batch: Tensor, data_samples, raw_inputs) -> list:
        """Give each sample ``batch_input_shape`` and, when absent,
        ``img_shape`` / ``ori_shape`` = its unpadded input size."""
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(batch.shape[0])]
        if len(data_samples) != batch.shape[0]:
            raise ValueError(f"EncoderDecoder: {len(data_samples)} data samples for "
                             f"{batch.shape[0]} inputs")
        for index, sample in enumerate(data_samples):
            raw = raw_inputs[index] if isinstance(raw_inputs, (list, tuple)) else raw_inputs
            meta = {"batch_input_shape": tuple(batch.shape[2:])}
            meta.setdefault("img_shape", sample.metainfo.get(
                "img_shape", tuple(raw.shape[-self.spatial_dims:])))
            meta.setdefault("ori_shape", sample.metainfo.get("ori_shape", meta["img_shape"]))
            sample.set_metainfo(meta)
        return data_samples

    def extract_feat(self, inputs: Tensor) -> tuple[Tensor, ...]:
        feats = self.backbone(inputs)
        if self.neck is not None:
            feats = self.neck(feats)
        return tuple(feats)

    # ---------------------------------------------------------------- modes
    def loss(self, inputs, data_samples) -> dict[str, Tensor]:
        if data_samples is None:
            raise ValueError("EncoderDecoder: mode='loss' needs data_samples with gt_sem_seg")
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        return self.decode_head.loss(self.extract_feat(batch), data_samples)

    def _window_logits(self, windows: Tensor) -> Tensor:
        return self.decode_head.predict(self.extract_feat(windows), None)

    def inference(self, inputs, data_samples=None) -> Tensor:
        """Logits ``[B, K, *S]`` of the batch (padded size) by ``test_cfg``."""
        cfg = self.test_cfg
        if cfg["mode"] == "slide":
            batch = self._batch_inputs(inputs, pad_to_divisor=False)
            return sliding_window_inference(
                batch, cfg["roi_size"], self._window_logits, overlap=cfg.get("overlap", 0.25),
                mode=cfg.get("blend", "gaussian"), sw_batch_size=cfg.get("sw_batch_size", 1),
                sigma_scale=cfg.get("sigma_scale", 0.125))
        batch = self._batch_inputs(inputs)
        return self.decode_head.predict(self.extract_feat(batch), data_samples)

    def _to_original(self, logits: Tensor, meta: dict) -> Tensor:
        """``[K, *padded]`` -> ``[K, *ori_shape]``: crop, un-flip, resize."""
        dims = self.spatial_dims
        img_shape = tuple(int(s) for s in meta["img_shape"])[-dims:]
        logits = logits[(slice(None),) + tuple(slice(0, s) for s in img_shape)]
        axes = self._flip_axes(meta)
        if axes:
            logits = logits.flip([1 + a for a in axes])
        ori_shape = tuple(int(s) for s in meta["ori_shape"])[-dims:]
        if tuple(logits.shape[1:]) != ori_shape:
            mode = "bilinear" if dims == 2 else "trilinear"
            logits = F.interpolate(logits[None], size=ori_shape, mode=mode,
                                   align_corners=False)[0]
        return logits

    def _flip_axes(self, meta: dict) -> list[int]:
        """Spatial axes (0-based) flipped by the pipeline, from ``flip_axes``
        (3D transforms) or ``flip_direction`` (horizontal: the last axis,
        vertical: the one before, diagonal: both)."""
        if not meta.get("flip", False):
            return []
        if meta.get("flip_axes") is not None:
            axes = [int(a) for a in meta["flip_axes"]]
            if any(not 0 <= a < self.spatial_dims for a in axes):
                raise ValueError(f"EncoderDecoder: metainfo 'flip_axes' must be spatial axes in "
                                 f"[0, {self.spatial_dims}), got {meta['flip_axes']!r}")
            return axes
        direction = meta.get("flip_direction", "horizontal")
        if direction not in FLIP_DIRECTIONS:
            raise ValueError(f"EncoderDecoder: metainfo 'flip_direction' must be one of "
                             f"{FLIP_DIRECTIONS}, got {direction!r}")
        last = self.spatial_dims - 1
        return {"horizontal": [last], "vertical": [last - 1],
                "diagonal": [last - 1, last]}[direction]

    def predict(self, inputs, data_samples=None) -> list[SegDataSample]:
        logits = self.inference(inputs, data_samples)
        data_samples = self._complete_metainfo(logits, data_samples, inputs)
        for sample, sample_logits in zip(data_samples, logits):
            seg_logits = self._to_original(sample_logits, sample.metainfo)
            sample.seg_logits = seg_logits
            sample.pred_sem_seg = seg_logits.argmax(0)
        return list(data_samples)

    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.decode_head(self.extract_feat(self._batch_inputs(inputs)))
        raise ValueError(f"EncoderDecoder: 'mode' must be one of {MODES}, got {mode!r}")

    # ------------------------------------------------------ reference weights
    def convert_reference_state_dict(self, state_dict: Mapping[str, Tensor]
                                     ) -> "OrderedDict[str, Tensor]":
        """A whole reference model's state dict (e.g. MONAI's ``UNETR``)
        mapped through the backbone's and the head's own conversions."""
        out: OrderedDict[str, Tensor] = OrderedDict()
        for prefix, part in (("backbone", self.backbone), ("decode_head", self.decode_head)):
            convert = getattr(part, "convert_reference_state_dict", None)
            if convert is None:
                raise TypeError(f"EncoderDecoder: the {prefix} ({type(part).__name__}) has no "
                                f"convert_reference_state_dict()")
            out.update((f"{prefix}.{k}", v) for k, v in convert(state_dict).items())
        return out

    def load_reference(self, state_dict: Mapping[str, Tensor], strict: bool = True):
        """Load a reference model's state dict through
        :meth:`convert_reference_state_dict`."""
        return self.load_state_dict(self.convert_reference_state_dict(state_dict), strict=strict)
