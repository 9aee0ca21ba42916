"""Run a trained model on your own images.

    >>> from toolbox.apis import Inferencer
    >>> infer = Inferencer("configs/quickstart/retinanet_mobilenetv3_fpn_synth.py",
    ...                    "work_dirs/retinanet_mobilenetv3_fpn_synth/epoch_10.pth")
    >>> result = infer("photo.jpg")            # or an RGB np.ndarray, or a list
    >>> result.pred_instances.bboxes           # x1 y1 x2 y2, original pixels
    >>> picture = infer.visualize("photo.jpg", result)

The model is built and loaded once; each call runs the config's test
pipeline (``test_dataloader.dataset.pipeline``), the model's ``test_step``
and keeps the detections scoring at least ``score_thr``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from mmengine.config import Config

from toolbox.convert.base import state_dict_mismatch
from toolbox.errors import DataError, ToolboxError
from toolbox.utils.drawing import draw_sample
from toolbox.utils.image_io import read_image  # noqa: F401 - moved there; still importable here


class CheckpointMismatchError(ToolboxError, ValueError):
    """A checkpoint's weights do not fit the model its config builds."""



def _test_pipeline(cfg: Config) -> list:
    loader = cfg.get("test_dataloader") or cfg.get("val_dataloader") or {}
    pipeline = (loader.get("dataset") or {}).get("pipeline") or cfg.get("test_pipeline")
    if not pipeline:
        raise ValueError("Inferencer: the config has no test pipeline "
                         "(test_dataloader.dataset.pipeline or test_pipeline)")
    return [dict(t) for t in pipeline]


def _dataset_classes(cfg: Config) -> tuple | None:
    from toolbox.registry import DATASETS
    loader = cfg.get("test_dataloader") or cfg.get("val_dataloader") or {}
    dataset = loader.get("dataset") or {}
    classes = (dataset.get("metainfo") or {}).get("classes")
    if classes is None and isinstance(dataset.get("type"), str):
        classes = getattr(DATASETS.get(dataset["type"]), "METAINFO", {}).get("classes")
    return tuple(classes) if classes else None


def load_weights(model: torch.nn.Module, checkpoint: str, config_name: str = "the config") -> dict:
    """Load ``checkpoint`` (a toolbox/mmengine checkpoint or a bare state
    dict) into ``model`` strictly; returns its ``meta`` (may be empty).

    Raises :class:`CheckpointMismatchError` naming the file when keys or
    shapes do not match the model ``config_name`` builds.
    """
    from toolbox.checkpoint_io import load_checkpoint
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint file not found: {checkpoint}")
    try:
        ckpt = load_checkpoint(checkpoint, map_location="cpu")
    except ToolboxError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupted or not a torch file
        raise CheckpointMismatchError(f"cannot read checkpoint {checkpoint}: "
                                      f"{type(exc).__name__}: {exc}") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"checkpoint {checkpoint} holds no state dict")
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointMismatchError(
            f"checkpoint {checkpoint} does not match the model built from {config_name}: "
            f"{problem}")
    model.load_state_dict(state, strict=True)
    return ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}


class Inferencer:
    """Build a model from ``config``, load ``checkpoint`` and predict images.

    Args:
        config: a config file path, or an mmengine ``Config``.
        checkpoint: weights to load (None keeps the initialisation, useful
            only for smoke tests).
        device: torch device, e.g. ``'cpu'`` or ``'cuda:0'``.
        score_thr: detections scoring below this are dropped from results.
        cfg_options: config overrides (``dict`` of dotted keys).
        fuse_conv_bn: fold BatchNorm / FrozenBN layers into their convs
            (faster inference, outputs equal to float rounding).

    ``classes`` come from the checkpoint's ``dataset_meta`` when it has one,
    else from the config's test dataset. ``pipeline`` is the config's test
    pipeline and ``array_pipeline`` the same without ``LoadImage`` (for RGB
    arrays; ``toolbox.apis.onnx_export.preprocess`` uses it too).
    """

    def __init__(self, config, checkpoint: str | None = None, device: str = "cpu",
                 score_thr: float = 0.3, cfg_options: dict | None = None,
                 fuse_conv_bn: bool = False):
        from mmengine.registry import init_default_scope

        from toolbox.datasets.transforms.base import Compose
        from toolbox.registry import MODELS
        if not 0 <= float(score_thr) <= 1:
            raise ValueError(f"Inferencer: 'score_thr' must be in [0, 1], got {score_thr}")
        if isinstance(config, (str, Path)):
            if not os.path.isfile(config):
                raise FileNotFoundError(f"config file not found: {config}")
            self.config_name = str(config)
            cfg = Config.fromfile(str(config))
        elif isinstance(config, Config):
            self.config_name, cfg = "the given config", config
        else:
            raise TypeError(f"Inferencer: 'config' must be a path or a Config, got "
                            f"{type(config).__name__}")
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        self.cfg = cfg
        init_default_scope(cfg.get("default_scope", "toolbox"))
        self.model = MODELS.build(cfg.model)
        meta = load_weights(self.model, str(checkpoint), self.config_name) if checkpoint else {}
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        if fuse_conv_bn:
            from toolbox.models.layers.fuse_conv_bn import fuse_conv_bn as fuse
            fuse(self.model)
        self.score_thr = float(score_thr)
        classes = (meta.get("dataset_meta") or {}).get("classes")
        self.classes = tuple(classes) if classes else _dataset_classes(cfg)
        steps = _test_pipeline(cfg)
        self.array_pipeline = Compose([t for t in steps if t.get("type") != "LoadImage"])
        # list the images as the config's test loader does; the model's
        # data_preprocessor (in test_step) normalises and pads them on its device
        collate = dict((cfg.get("test_dataloader") or {}).get("collate_fn") or {})
        self.collate_args = {k: v for k, v in collate.items() if k != "type"}
        self.pipeline = Compose(steps)

    # ------------------------------------------------------------------ run
    def _prepare(self, image, index: int) -> dict:
        from toolbox.datasets.transforms.base import init_geometry
        if isinstance(image, (str, Path)):
            path = str(image)
            if not os.path.isfile(path):
                raise DataError(f"image file not found: {path}")
            return self.pipeline(dict(img_path=path, img_id=index))
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(f"Inferencer: an image array must be RGB [H, W, 3], got shape "
                                 f"{image.shape}")
            results = init_geometry(dict(img=np.ascontiguousarray(image), img_path=None,
                                         img_id=index))
            return self.array_pipeline(results)
        raise TypeError(f"Inferencer: an image must be a file path or an RGB np.ndarray, got "
                        f"{type(image).__name__}")

    @torch.no_grad()
    def __call__(self, images, batch_size: int = 1):
        """Predict one image (path or RGB array) or a list of them; returns a
        ``DetDataSample`` (or a list) with ``pred_instances`` in original
        image coordinates, filtered by ``score_thr``."""
        from toolbox.datasets.collate import det_collate
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        results = []
        for start in range(0, len(items), batch_size):
            batch = [self._prepare(img, start + i)
                     for i, img in enumerate(items[start:start + batch_size])]
            for sample in self.model.test_step(det_collate(batch, **self.collate_args)):
                if "pred_instances" in sample:
                    pred = sample.pred_instances
                    sample.pred_instances = pred[pred.scores >= self.score_thr].cpu()
                results.append(sample)
        return results[0] if single else results

    def visualize(self, image, result, score_thr: float | None = None,
                  out_file: str | None = None) -> np.ndarray:
        """Draw ``result`` (boxes with class names and scores; a coloured mask
        overlay for a ``pred_sem_seg``) on ``image`` (path or RGB array);
        returns the RGB picture and writes it to ``out_file`` if given."""
        from toolbox.utils.drawing import save_image
        if isinstance(image, (str, Path)):
            image = read_image(str(image))
        thr = self.score_thr if score_thr is None else score_thr
        picture = draw_sample(image, result, self.classes, thr)
        if out_file is not None:
            save_image(out_file, picture)
        return picture


def visualize_result(image, result, classes: Sequence[str] | None = None,
                     score_thr: float = 0.3) -> np.ndarray:
    """Draw a ``DetDataSample`` / ``SegDataSample`` without an Inferencer."""
    if isinstance(image, (str, Path)):
        image = read_image(str(image))
    return draw_sample(image, result, classes, score_thr)
