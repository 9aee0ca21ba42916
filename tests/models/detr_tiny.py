"""A tiny DETRHead and two hand-made samples, shared by the DETR option tests."""
import torch
from mmengine.structures import InstanceData

from toolbox.registry import HEADS
from toolbox.structures import DetDataSample


def tiny_head(seed=0, **kw):
    """A 16-wide, 1 + 2 layer DETRHead for 3 classes and 4 queries; ``kw`` overrides."""
    torch.manual_seed(seed)
    cfg = dict(type="DETRHead", num_classes=3, in_channels=8, embed_dims=16, num_queries=4,
               transformer=dict(nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                                dim_feedforward=32, dropout=0.0))
    cfg.update(kw)
    return HEADS.build(cfg)


def sample(boxes, labels, img_shape=(32, 32)):
    s = DetDataSample(metainfo=dict(img_shape=img_shape, ori_shape=img_shape,
                                    batch_input_shape=img_shape))
    s.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                  labels=torch.tensor(labels, dtype=torch.long))
    return s


SAMPLES = [sample([[2, 2, 12, 14], [16, 8, 30, 30]], [0, 2]), sample([[4, 20, 20, 28]], [1])]
