"""The one-image case the dense-head tests share: a coloured box on a noisy
64 x 64 image, its sample record, and random two-level features."""
import torch
from mmengine.structures import InstanceData

from toolbox.structures import DetDataSample

GT_BOX = [10.0, 12.0, 40.0, 44.0]  # in the 64 x 64 network input (img_shape)
GT_LABEL = 2


def sample(boxes, labels=None, ignored=None, **meta) -> DetDataSample:
    """A sample of a 64 x 64 input with ``boxes`` (labels 0 when not given)
    and optionally ``ignored`` boxes; ``meta`` overrides the metainfo."""
    metainfo = dict(img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1.0, 1.0))
    metainfo.update(meta)
    s = DetDataSample(metainfo=metainfo)
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = (torch.zeros(len(boxes), dtype=torch.long) if labels is None
              else torch.tensor(labels, dtype=torch.long))
    s.gt_instances = InstanceData(bboxes=boxes, labels=labels)
    if ignored is not None:
        s.ignored_instances = InstanceData(bboxes=torch.tensor(ignored).reshape(-1, 4),
                                           labels=torch.zeros(len(ignored), dtype=torch.long))
    return s


def image() -> torch.Tensor:
    """[1, 3, 64, 64]: noise with a brighter, tinted ``GT_BOX``."""
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 64, 64, generator=g) * 0.5
    x1, y1, x2, y2 = (int(v) for v in GT_BOX)
    img[:, :, y1:y2, x1:x2] += torch.tensor([1.0, -0.5, 0.5])[:, None, None]
    return img


def feats(batch=2, channels=(16, 16)) -> list[torch.Tensor]:
    """Random stride-8 and stride-16 maps of a 64 x 64 input."""
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, channels[0], 8, 8, generator=g),
            torch.randn(batch, channels[1], 4, 4, generator=g)]
