"""Export a detector's raw outputs to ONNX and run its post-processing on them.

The ONNX graph is ``backbone -> neck -> head`` (``mode='tensor'``): input
``images`` float32 ``[B, 3, H, W]``, normalised as the model's
``data_preprocessor`` (or the pipeline's ``Normalize``) says and zero-padded
bottom/right to a multiple of the model's ``size_divisor`` (32 for the
quickstart; H and W are dynamic). Outputs, one
per pyramid level ``i``: ``cls_score_i`` ``[B, A * C, H_i, W_i]`` (logits) then
``bbox_pred_i`` ``[B, A * 4, H_i, W_i]`` (box deltas against the anchors).

Post-processing (what :func:`postprocess_outputs` runs, with the very code
the PyTorch model uses, ``RetinaHead.predict_by_feat``):

1. per level: sigmoid of the logits (softmax without its background column
   for softmax losses), keep scores > ``test_cfg.score_thr``, the top
   ``test_cfg.nms_pre`` of them;
2. decode their deltas against the level's anchors (``DeltaXYWHBBoxCoder``,
   clipped to the resized image);
3. class-wise NMS at ``test_cfg.iou_thr`` (torchvision ``batched_nms``), keep
   ``test_cfg.max_per_img``;
4. map back to original image pixels with
   :func:`toolbox.structures.boxes_to_original` (the detectors' one rule:
   flip undone, ``crop_offset`` added, divided by ``scale_factor``, clipped).

So a user with onnxruntime only needs :func:`preprocess` -> ``session.run``
-> :func:`postprocess_outputs`; see ``tools/export_onnx.py``.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from toolbox.structures.box_mapping import boxes_to_original


class TensorOutputs(nn.Module):
    """``model(images, mode='tensor')`` flattened to a tuple of tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        outputs = self.model(images, mode="tensor")
        if isinstance(outputs, torch.Tensor):
            return (outputs,)
        return tuple(t for group in outputs
                     for t in (group if isinstance(group, (list, tuple)) else [group]))


def output_names(model: nn.Module, sample: torch.Tensor) -> list[str]:
    """``cls_score_i`` / ``bbox_pred_i`` names when the model returns the
    RetinaHead-style pair of per-level lists, else ``output_i``."""
    with torch.no_grad():
        raw = model(sample, mode="tensor")
    if (isinstance(raw, (list, tuple)) and len(raw) == 2
            and all(isinstance(g, (list, tuple)) for g in raw) and len(raw[0]) == len(raw[1])):
        levels = len(raw[0])
        return [f"cls_score_{i}" for i in range(levels)] + [f"bbox_pred_{i}" for i in range(levels)]
    return [f"output_{i}" for i in range(len(TensorOutputs(model)(sample)))]


def export_onnx(model: nn.Module, path: str, shape: Sequence[int] = (256, 256),
                opset: int = 17, dynamo: bool = False, dynamic: bool = True) -> list[str]:
    """Write ``model``'s raw outputs for a ``[1, 3, *shape]`` input to ``path``.

    ``dynamo=False`` (default) uses the TorchScript exporter: a few seconds,
    exact, and dynamic batch/height/width through ``dynamic_axes``.
    ``dynamo=True`` uses ``torch.export`` + onnxscript (slower; opset >= 18).
    Returns the output names.
    """
    h, w = (int(s) for s in shape)
    divisor = int(getattr(model, "size_divisor", 1) or 1)
    if h <= 0 or w <= 0 or h % divisor or w % divisor:
        raise ValueError(f"export shape must be positive multiples of the model's size "
                         f"divisor {divisor}, got {h}x{w}")
    model = model.eval()
    wrapper = TensorOutputs(model).eval()
    sample = torch.zeros(1, 3, h, w)
    names = output_names(model, sample)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notices
        if dynamo:
            dims = {0: torch.export.Dim("batch", max=1024),
                    2: torch.export.Dim("height", min=divisor, max=8192),
                    3: torch.export.Dim("width", min=divisor, max=8192)} if dynamic else None
            torch.onnx.export(wrapper, (sample,), path, dynamo=True, input_names=["images"],
                              output_names=names, opset_version=max(opset, 18),
                              dynamic_shapes=(dims,) if dims else None)
        else:
            axes = {"images": {0: "batch", 2: "height", 3: "width"}} if dynamic else None
            if axes:
                axes.update({n: {0: "batch", 2: f"{n}_h", 3: f"{n}_w"} for n in names})
            torch.onnx.export(wrapper, (sample,), path, dynamo=False, input_names=["images"],
                              output_names=names, opset_version=opset, dynamic_axes=axes)
    wrapper.eval()  # the TorchScript exporter restores the wrapper's (train) mode
    return names


def preprocess(image: np.ndarray, pipeline, size_divisor: int = 32,
               data_preprocessor: nn.Module | None = None) -> tuple[np.ndarray, dict]:
    """An RGB image through a test pipeline (without ``LoadImage``) and the
    model's ``data_preprocessor`` (which normalises the pipeline's uint8
    image; without one the image is only cast to float):
    ``(images float32[1, 3, H, W] padded to size_divisor, metainfo)``."""
    from toolbox.datasets.transforms.base import init_geometry
    packed = pipeline(init_geometry(dict(img=np.ascontiguousarray(image), img_path=None)))
    inputs = packed["inputs"]
    if data_preprocessor is not None:
        with torch.no_grad():
            inputs = data_preprocessor(dict(inputs=[inputs], data_samples=None))["inputs"][0]
    inputs = inputs.detach().cpu().float()
    pad_h, pad_w = -inputs.shape[1] % size_divisor, -inputs.shape[2] % size_divisor
    inputs = torch.nn.functional.pad(inputs, (0, pad_w, 0, pad_h))
    return inputs[None].numpy(), dict(packed["data_samples"].metainfo)


def postprocess_outputs(outputs: Sequence, head: nn.Module, metas: Sequence[dict],
                        rescale: bool = True):
    """Detections from the ONNX outputs (``cls_score_*`` then ``bbox_pred_*``,
    numpy or torch): one ``InstanceData`` (bboxes, scores, labels) per image,
    in original image coordinates with ``rescale``. ``head`` is the config's
    ``bbox_head`` (its weights are not used, only its anchors, box coder and
    ``test_cfg``)."""
    tensors = [torch.as_tensor(np.asarray(o)) if not isinstance(o, torch.Tensor) else o
               for o in outputs]
    if len(tensors) % 2:
        raise ValueError(f"expected cls_score_* and bbox_pred_* outputs (an even number), "
                         f"got {len(tensors)}")
    levels = len(tensors) // 2
    if len(metas) != tensors[0].shape[0]:
        raise ValueError(f"{len(metas)} metainfo dicts for a batch of {tensors[0].shape[0]}")
    with torch.no_grad():
        results = head.predict_by_feat(tensors[:levels], tensors[levels:], list(metas))
    if rescale:
        for result, meta in zip(results, metas):
            result.bboxes = boxes_to_original(result.bboxes, meta)
    return results
