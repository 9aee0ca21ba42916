"""The per-image record passed between datasets, models and metrics.

``DetDataSample`` is an ``mmengine.structures.BaseDataElement`` with:

* metainfo: ``img_id``, ``img_path``, ``ori_shape`` (h, w of the file),
  ``img_shape`` (h, w after resizing/cropping), ``pad_shape`` and
  ``batch_input_shape`` (after padding), ``scale_factor`` (w_scale,
  h_scale from original to ``img_shape``), ``crop_offset`` (x, y of the
  crop window in the resized image), ``flip`` and ``flip_direction``.
  Mapping back: ``original = (unflip(box) + crop_offset) / scale_factor``,
  clipped to ``ori_shape`` (:func:`toolbox.structures.boxes_to_original`);
* ``gt_instances``: ``InstanceData`` with ``bboxes`` (float Tensor[N, 4],
  x1 y1 x2 y2 in ``img_shape`` coordinates), ``labels`` (long Tensor[N],
  0-based contiguous class indices) and optionally ``masks`` (bool
  Tensor[N, H, W]);
* ``ignored_instances``: boxes to ignore in training (COCO ``iscrowd``, VOC
  ``difficult``), same fields;
* ``ori_gt_instances``: ``bboxes`` in *original* image coordinates,
  ``labels``, ``ignore`` (bool: crowd / difficult) and ``masks`` when asked
  for; the metrics evaluate against these;
* ``pred_instances``: ``bboxes``, ``scores``, ``labels`` in *original*
  image coordinates: heads predict in ``img_shape`` coordinates and the
  detector's ``predict(..., rescale=True)`` maps the boxes back once with
  :func:`toolbox.structures.boxes_to_original` (``rescale=False`` leaves
  them in ``img_shape`` coordinates).
"""
from mmengine.structures import BaseDataElement, InstanceData


class DetDataSample(BaseDataElement):
    """Ground truth and predictions of one image."""

    @property
    def gt_instances(self) -> InstanceData:
        return self._gt_instances

    @gt_instances.setter
    def gt_instances(self, value: InstanceData):
        self.set_field(value, "_gt_instances", dtype=InstanceData)

    @gt_instances.deleter
    def gt_instances(self):
        del self._gt_instances

    @property
    def ignored_instances(self) -> InstanceData:
        return self._ignored_instances

    @ignored_instances.setter
    def ignored_instances(self, value: InstanceData):
        self.set_field(value, "_ignored_instances", dtype=InstanceData)

    @ignored_instances.deleter
    def ignored_instances(self):
        del self._ignored_instances

    @property
    def pred_instances(self) -> InstanceData:
        return self._pred_instances

    @pred_instances.setter
    def pred_instances(self, value: InstanceData):
        self.set_field(value, "_pred_instances", dtype=InstanceData)

    @pred_instances.deleter
    def pred_instances(self):
        del self._pred_instances
