"""The per-image (or per-volume) record of semantic segmentation.

``SegDataSample`` is an ``mmengine.structures.BaseDataElement`` with:

* metainfo: ``img_path``, ``seg_map_path``, ``ori_shape`` (spatial size of
  the file: (h, w) for images, (d, h, w) for volumes), ``img_shape`` (the
  spatial size after resizing/cropping, before padding), ``pad_shape``,
  ``batch_input_shape`` (after batch padding), ``scale_factor`` (one factor
  per spatial axis, last axis first as for boxes: (w_scale, h_scale) or
  (w_scale, h_scale, d_scale)), ``flip`` and ``flip_direction``;
* ``gt_sem_seg``: ``LongTensor[*img_shape]`` (padded with ``ignore_index``
  where the batch is padded), class indices in ``[0, num_classes)`` and
  ``ignore_index`` (255 by default) for pixels that do not count;
* ``ori_gt_sem_seg``: the label map of the file, never transformed, for the
  metrics (``LongTensor[*ori_shape]``);
* ``pred_sem_seg``: ``LongTensor[*ori_shape]``, the predicted class of every
  pixel/voxel in the original image's frame (the segmentor undoes padding,
  resizing and flipping);
* ``seg_logits`` (optional): ``Tensor[C, *ori_shape]``.

Spatial shapes are tuples of 2 (images) or 3 (volumes) ints; a volume's
input tensor is ``[C, D, H, W]`` and an image's ``[C, H, W]``.
"""
from __future__ import annotations

from mmengine.structures import BaseDataElement
from torch import Tensor

IGNORE_INDEX = 255


class SegDataSample(BaseDataElement):
    """Ground truth and prediction of one image or volume (see module docstring)."""

    @property
    def gt_sem_seg(self) -> Tensor:
        return self._gt_sem_seg

    @gt_sem_seg.setter
    def gt_sem_seg(self, value: Tensor):
        self.set_field(value, "_gt_sem_seg", dtype=Tensor)

    @gt_sem_seg.deleter
    def gt_sem_seg(self):
        del self._gt_sem_seg

    @property
    def ori_gt_sem_seg(self) -> Tensor:
        return self._ori_gt_sem_seg

    @ori_gt_sem_seg.setter
    def ori_gt_sem_seg(self, value: Tensor):
        self.set_field(value, "_ori_gt_sem_seg", dtype=Tensor)

    @ori_gt_sem_seg.deleter
    def ori_gt_sem_seg(self):
        del self._ori_gt_sem_seg

    @property
    def pred_sem_seg(self) -> Tensor:
        return self._pred_sem_seg

    @pred_sem_seg.setter
    def pred_sem_seg(self, value: Tensor):
        self.set_field(value, "_pred_sem_seg", dtype=Tensor)

    @pred_sem_seg.deleter
    def pred_sem_seg(self):
        del self._pred_sem_seg

    @property
    def seg_logits(self) -> Tensor:
        return self._seg_logits

    @seg_logits.setter
    def seg_logits(self, value: Tensor):
        self.set_field(value, "_seg_logits", dtype=Tensor)

    @seg_logits.deleter
    def seg_logits(self):
        del self._seg_logits
