"""Draw detections, ground truth and segmentation masks on images.

Everything is drawn through an mmengine ``Visualizer`` (matplotlib, Agg
canvas): boxes with :meth:`~mmengine.visualization.Visualizer.draw_bboxes`,
labels with ``draw_texts`` and semantic masks with ``draw_binary_masks``.
Images are RGB ``uint8[H, W, 3]`` in and out.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from mmengine.visualization import Visualizer

__all__ = ["class_name", "draw_instances", "draw_sample", "draw_sem_seg", "get_visualizer",
           "palette", "save_image"]

_INSTANCE_NAME = "toolbox_drawing"


def get_visualizer(visualizer: Visualizer | None = None) -> Visualizer:
    """``visualizer``, or the toolbox's own drawing instance (created once)."""
    if visualizer is not None:
        return visualizer
    return Visualizer.get_instance(_INSTANCE_NAME)


def palette(num_classes: int) -> list[tuple[int, int, int]]:
    """One distinct RGB colour per class (matplotlib's tab20, then hsv)."""
    from matplotlib import colormaps
    cmap = colormaps["tab20"] if num_classes <= 20 else colormaps["hsv"]
    step = 1.0 / max(num_classes, 1) if num_classes > 20 else 1.0 / 20
    return [tuple(int(255 * c) for c in cmap(i * step)[:3]) for i in range(max(num_classes, 1))]


def _as_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be an RGB array [H, W, 3], got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def class_name(classes: Sequence[str] | None, label: int) -> str:
    return str(classes[label]) if classes and 0 <= label < len(classes) else f"class {label}"


def draw_instances(image, instances, classes: Sequence[str] | None = None,
                   score_thr: float = 0.0, visualizer: Visualizer | None = None,
                   line_width: float = 2) -> np.ndarray:
    """``image`` with the boxes of ``instances`` (``bboxes``, ``labels`` and
    optional ``scores``: boxes scoring below ``score_thr`` are skipped), each
    outlined in its class colour and captioned "name score"."""
    vis = get_visualizer(visualizer)
    image = _as_image(image)
    vis.set_image(image)
    boxes = _numpy(instances.bboxes).reshape(-1, 4).astype(np.float64)
    labels = _numpy(instances.labels).reshape(-1).astype(np.int64)
    scores = _numpy(instances.scores).reshape(-1) if "scores" in instances else None
    keep = np.ones(len(boxes), bool) if scores is None else scores >= score_thr
    boxes, labels = boxes[keep], labels[keep]
    scores = scores[keep] if scores is not None else None
    if len(boxes):
        h, w = image.shape[:2]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w - 1)  # the Visualizer's drawable range
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h - 1)
        colors = palette(max(len(classes or ()), int(labels.max()) + 1))
        box_colors = [colors[int(lab)] for lab in labels]
        vis.draw_bboxes(boxes, edge_colors=box_colors, line_widths=line_width, alpha=1.0)
        texts = [class_name(classes, int(lab)) + ("" if scores is None else f" {s:.2f}")
                 for lab, s in zip(labels, scores if scores is not None else labels)]
        font = max(7, min(13, int(min(h, w) / 25)))
        # captions above the box (so small objects stay visible), inside at the top edge
        above = boxes[:, 1] >= 1.6 * font
        vis.draw_texts(texts, boxes[:, :2], font_sizes=font, colors="white",
                       vertical_alignments=["bottom" if a else "top" for a in above],
                       bboxes=[dict(facecolor=tuple(c / 255 for c in col), alpha=0.8, pad=0.7,
                                    edgecolor="none") for col in box_colors])
    return vis.get_image()


def draw_sem_seg(image, sem_seg, classes: Sequence[str] | None = None, alpha: float = 0.5,
                 ignore_index: int = 255, visualizer: Visualizer | None = None) -> np.ndarray:
    """``image`` with each class of the label map ``sem_seg`` ([H, W], the
    image's size) blended in its colour; ``ignore_index`` pixels are left as is."""
    vis = get_visualizer(visualizer)
    image = _as_image(image)
    seg = _numpy(sem_seg).squeeze()
    if seg.shape != image.shape[:2]:
        raise ValueError(f"pred_sem_seg has shape {seg.shape} but the image is "
                         f"{image.shape[:2]}; a label map must match the original image")
    vis.set_image(image)
    present = [int(c) for c in np.unique(seg) if int(c) != ignore_index and c >= 0]
    if present:
        colors = palette(max(len(classes or ()), max(present) + 1))
        masks = np.stack([seg == c for c in present])
        vis.draw_binary_masks(masks, colors=[colors[c] for c in present], alphas=alpha)
    return vis.get_image()


def draw_sample(image, sample, classes: Sequence[str] | None = None, score_thr: float = 0.3,
                show_gt: bool = False, visualizer: Visualizer | None = None) -> np.ndarray:
    """Draw a data sample's predictions: ``pred_sem_seg`` as a mask overlay
    and/or ``pred_instances`` as boxes. With ``show_gt`` the ground truth
    (``ori_gt_instances``, else ``gt_instances``; ``ori_gt_sem_seg``) is drawn
    on a copy placed left of the prediction."""
    image = _as_image(image)
    pred = image
    if "pred_sem_seg" in sample:
        pred = draw_sem_seg(pred, sample.pred_sem_seg, classes, visualizer=visualizer)
    if "pred_instances" in sample:
        pred = draw_instances(pred, sample.pred_instances, classes, score_thr, visualizer)
    if not show_gt:
        return pred
    gt = image
    if "ori_gt_sem_seg" in sample:
        gt = draw_sem_seg(gt, sample.ori_gt_sem_seg, classes, visualizer=visualizer)
    for field in ("ori_gt_instances", "gt_instances"):
        if field in sample:
            gt = draw_instances(gt, sample.get(field), classes, visualizer=visualizer)
            break
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([gt, gap, pred], axis=1)


def save_image(path, image: np.ndarray) -> None:
    """Write an RGB image (PNG/JPEG by the suffix)."""
    import os

    import cv2
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(_as_image(image), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write image {path}")
