"""Builds the dict data samples the metrics receive (shared by the metric tests)."""
import torch


def make_sample(img_id, dets, gts, shape=(200, 200)):
    """dets: [(box, score, label)], gts: [(box, label, ignore)] -> a dict data sample.

    ``ignore`` is COCO's iscrowd or VOC's difficult."""
    return dict(
        img_id=img_id, ori_shape=shape,
        pred_instances=dict(
            bboxes=torch.tensor([d[0] for d in dets], dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor([d[1] for d in dets], dtype=torch.float32),
            labels=torch.tensor([d[2] for d in dets], dtype=torch.long)),
        ori_gt_instances=dict(
            bboxes=torch.tensor([g[0] for g in gts], dtype=torch.float32).reshape(-1, 4),
            labels=torch.tensor([g[1] for g in gts], dtype=torch.long),
            ignore=torch.tensor([g[2] for g in gts], dtype=torch.bool)))
