"""DETR: the paper's parameter count, padding invariance, and the small
variant overfitting a few images through the real data pipeline."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch import nn
from torchvision.ops import box_iou

from toolbox.datasets.transforms.base import init_geometry
from toolbox.models.backbones.base import Backbone
from toolbox.models.heads.detr_head import DETRHead
from toolbox.registry import MODELS, TRANSFORMS
from toolbox.structures import DetDataSample

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "detr"


def test_detr_r50_parameter_count_matches_the_paper():
    """The paper's DETR-R50 has 41M parameters; the official code reports
    41,302,368 trainable ones with a 92-way classifier (91 COCO ids + no
    object), FrozenBN and the stem + layer1 frozen."""
    cfg = Config.fromfile(str(CONFIGS / "detr_r50_synth.py"))
    cfg.model.bbox_head.num_classes = 91
    model = MODELS.build(cfg.model)
    model.train()  # applies frozen_stages
    head = model.bbox_head
    assert isinstance(head, DETRHead) and head.class_embed.out_features == 92
    assert head.num_queries == 100 and head.embed_dims == 256
    assert len(head.transformer.encoder.layers) == 6 and len(head.transformer.decoder.layers) == 6
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 41_302_368
    assert round(trainable / 1e6) == 41


class PatchBackbone(Backbone):
    """Non-overlapping 16x16 patches: a feature cell sees only its own pixels,
    so a padded batch changes nothing inside the image but the head's work."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(3, 12, 16, stride=16), nn.ReLU(), nn.Conv2d(12, 12, 1))
        self.declare_outputs((12,), (16,), size_divisor=16)

    def forward(self, x):
        return (self.proj(x),)


def small_detr(backbone, **head):
    cfg = dict(type="DETRHead", num_classes=3, embed_dims=32, num_queries=6,
               transformer=dict(nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                                dim_feedforward=64))
    cfg.update(head)
    return MODELS.build(dict(type="DETR", backbone=backbone, bbox_head=cfg))


def test_padding_invariance(monkeypatch):
    torch.manual_seed(0)
    model = small_detr(PatchBackbone()).eval()
    image = torch.randn(3, 48, 64)
    other = torch.randn(3, 80, 96)

    def run(images):
        samples = [DetDataSample(metainfo=dict(img_shape=tuple(i.shape[-2:]),
                                               ori_shape=tuple(i.shape[-2:]))) for i in images]
        with torch.no_grad():
            return model(list(images), samples, mode="predict")[0].pred_instances

    alone, batched = run([image]), run([image, other])
    assert torch.allclose(alone.scores, batched.scores, atol=1e-5)
    assert torch.allclose(alone.bboxes, batched.bboxes, atol=1e-5)
    assert torch.equal(alone.labels, batched.labels)
    # the check has teeth: without the padding mask the padded image changes
    monkeypatch.setattr(DETRHead, "padding_mask",
                        staticmethod(lambda feat, metas: torch.zeros(
                            feat.shape[0], *feat.shape[2:], dtype=torch.bool)))
    unmasked = run([image, other])
    assert not torch.allclose(alone.bboxes, unmasked.bboxes, atol=1e-3)


def test_modes_and_registry_errors():
    torch.manual_seed(0)
    model = small_detr(PatchBackbone())
    cls, boxes = model(torch.randn(2, 3, 32, 48), mode="tensor")
    assert cls.shape == (2, 2, 6, 4) and boxes.shape == (2, 2, 6, 4)
    with pytest.raises(ValueError, match="mode"):
        model(torch.randn(1, 3, 32, 32), mode="boxes")
    with pytest.raises(ValueError, match="bbox_head"):
        MODELS.build(dict(type="DETR", backbone=PatchBackbone()))


def make_example(rng, ori_hw, box, label):
    """An RGB image with one filled rectangle (x1 y1 x2 y2) of a class colour."""
    h, w = ori_hw
    img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
    colour = [(230, 40, 40), (40, 230, 40), (40, 40, 230)][label]
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = colour
    results = dict(img=img, ori_shape=(h, w), img_id=0,
                   gt_bboxes=np.array([box], np.float32), gt_labels=np.array([label]),
                   ori_gt_bboxes=np.array([box], np.float32), ori_gt_labels=np.array([label]))
    return init_geometry(results)


def test_small_variant_overfits_and_recovers_original_boxes():
    """Original 96 x 128 images, resized keeping the ratio to 48 x 64 and
    flipped; after overfitting, the top detection in original coordinates
    lands on the original box with its class."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pipeline = [TRANSFORMS.build(t) for t in (
        dict(type="Resize", scale=(64, 64), keep_ratio=True),
        dict(type="RandomFlip", prob=1.0), dict(type="Normalize"),
        dict(type="Pad", size_divisor=32), dict(type="PackDetInputs"))]
    examples = [make_example(rng, (96, 128), (8, 16, 56, 72), 0),
                make_example(rng, (96, 128), (70, 30, 122, 90), 2)]
    packed = []
    for results in examples:
        for step in pipeline:
            results = step(results)
        packed.append(results)
    inputs = [p["inputs"] for p in packed]
    samples = [p["data_samples"] for p in packed]
    assert samples[0].metainfo["flip"] and samples[0].metainfo["img_shape"] == (48, 64)

    cfg = Config.fromfile(str(CONFIGS / "detr_small_synth.py"))
    cfg.model.bbox_head.update(num_classes=3, embed_dims=64, num_queries=4)  # a tinier head
    cfg.model.bbox_head.transformer.update(num_encoder_layers=1, dim_feedforward=128)
    model = MODELS.build(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    history = []
    model.train()
    for _ in range(150):
        losses = model(inputs, samples, mode="loss")
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history.append(total.item())
    assert np.mean(history[-10:]) < 0.3 * np.mean(history[:10])

    # precise BN: the from-scratch backbone's running statistics lag its
    # weights after 150 steps; re-estimate them on the training batch
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model(inputs, samples, mode="loss")
    model.eval()
    with torch.no_grad():
        results = model(inputs, samples, mode="predict")
    for result, example in zip(results, examples):
        pred = result.pred_instances
        truth = torch.as_tensor(example["ori_gt_bboxes"])
        assert box_iou(pred.bboxes[:1], truth).item() > 0.7, (pred.bboxes[:1], truth)
        assert pred.labels[0].item() == int(example["ori_gt_labels"][0])


def test_pad_size_divisor_pads_to_the_batch_only():
    backbone = dict(type="ResNet", depth=18, out_indices=(3,))
    seen = []
    cfg = dict(type="DETRHead", num_classes=2, embed_dims=16, num_queries=3,
               transformer=dict(nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                dim_feedforward=16))
    model = MODELS.build(dict(type="DETR", backbone=backbone, bbox_head=cfg, pad_size_divisor=1))
    assert model.size_divisor == 1
    model.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    model([torch.randn(3, 50, 70), torch.randn(3, 45, 66)], mode="tensor")
    assert seen[-1][-2:] == (50, 70)
    default = MODELS.build(dict(type="DETR", backbone=backbone, bbox_head=cfg))
    assert default.size_divisor == 32
    with pytest.raises(ValueError, match="pad_size_divisor"):
        MODELS.build(dict(type="DETR", backbone=backbone, bbox_head=cfg, pad_size_divisor=0))
