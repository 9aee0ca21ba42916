"""Save prediction-vs-ground-truth pictures during ``tools/test.py --show-dir``."""
from __future__ import annotations

import os
import os.path as osp

from mmengine.hooks import Hook
from mmengine.logging import print_log

__all__ = ["DetVisualizationHook"]


class DetVisualizationHook(Hook):
    """Draw each test (and optionally val) image with its ground truth on the
    left and its predictions on the right, through the runner's Visualizer.

    Args:
        show_dir: folder the PNG pictures are written to (created).
        score_thr: predictions below this score are not drawn.
        interval: draw every ``interval``-th batch.
        max_images: stop after this many pictures (None: all).
        draw_val: also draw during validation (into ``show_dir/val_<epoch>``).
        add_to_backends: also hand each picture to the Visualizer's backends
            (``add_image``: TensorBoard, local ``vis_image/``).
    """

    priority = "NORMAL"

    def __init__(self, show_dir: str, score_thr: float = 0.3, interval: int = 1,
                 max_images: int | None = None, draw_val: bool = False,
                 add_to_backends: bool = False):
        if not show_dir or not isinstance(show_dir, str):
            raise ValueError(f"DetVisualizationHook: 'show_dir' must be a folder path, "
                             f"got {show_dir!r}")
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"DetVisualizationHook: 'interval' must be a positive int, "
                             f"got {interval!r}")
        self.show_dir = show_dir
        self.score_thr = float(score_thr)
        self.interval = interval
        self.max_images = max_images
        self.draw_val = draw_val
        self.add_to_backends = add_to_backends
        self._count = 0

    def before_test(self, runner) -> None:
        self._count = 0

    def before_val(self, runner) -> None:
        self._count = 0

    def after_test(self, runner) -> None:
        print_log(f"DetVisualizationHook: {self._count} picture(s) written to "
                  f"{self.show_dir}", logger="current")

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._draw(runner, batch_idx, outputs, self.show_dir, "test")

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.draw_val:
            folder = osp.join(self.show_dir, f"val_{runner.epoch}")
            self._draw(runner, batch_idx, outputs, folder, "val")

    def _draw(self, runner, batch_idx, outputs, folder: str, mode: str) -> None:
        from toolbox.utils.drawing import draw_sample, save_image
        from toolbox.utils.image_io import read_image
        if not outputs or batch_idx % self.interval:
            return
        classes = (getattr(runner.visualizer, "dataset_meta", None) or {}).get("classes")
        os.makedirs(folder, exist_ok=True)
        for sample in outputs:
            if self.max_images is not None and self._count >= self.max_images:
                return
            path = sample.metainfo.get("img_path")
            if not path:
                continue
            picture = draw_sample(read_image(path), sample, classes, self.score_thr,
                                  show_gt=True, visualizer=runner.visualizer)
            name = osp.splitext(osp.basename(path))[0]
            save_image(osp.join(folder, f"{name}.png"), picture)
            if self.add_to_backends:
                runner.visualizer.add_image(f"{mode}_{name}", picture, step=runner.iter)
            self._count += 1
