"""The reference Faster R-CNN configs equal torchvision's detectors.

``configs/reference/faster_rcnn_r50_fpn_tv.py`` vs ``fasterrcnn_resnet50_fpn``
and ``faster_rcnn_mobilenetv3_fpn_tv.py`` vs
``fasterrcnn_mobilenet_v3_large_fpn``, each built as torchvision builds it for
its COCO weights (FrozenBN; eps 0 for the R50 weights), with random weights
(seeded, FrozenBN statistics randomised, RPN and predictor weights scaled so
objectness varies and the box head scores above 0.05), converted by
``tools/convert_weights``' code (``convert_checkpoint``) and loaded by
``Inferencer`` through the config's own test pipeline. Images are small
(``min_size`` 160, ``max_size`` 256, set identically on both sides).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData
from torchvision.models import mobilenet_v3_large, resnet50
from torchvision.models.detection import fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (_mobilenet_extractor,
                                                         _resnet_fpn_extractor)
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops import FrozenBatchNorm2d

from toolbox.apis import Inferencer
from toolbox.convert import ConversionError, convert_checkpoint, detect_layout, get_layout
from toolbox.convert.tv_faster_rcnn import convert_resnet50_fpn
from toolbox.registry import MODELS
from toolbox.structures import DetDataSample

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"r50": ROOT / "configs/reference/faster_rcnn_r50_fpn_tv.py",
           "mobilenet": ROOT / "configs/reference/faster_rcnn_mobilenetv3_fpn_tv.py"}
FORMATS = {"r50": "tv-faster-rcnn", "mobilenet": "tv-faster-rcnn-mobilenet"}
MIN_SIZE, MAX_SIZE = 128, 200
# multipliers of (rpn cls_logits, rpn bbox_pred, cls_score, bbox_pred) weights
SCALES = {"r50": (100.0, 10.0, 20.0, 20.0), "mobilenet": (1000.0, 100.0, 150.0, 100.0)}
BOX_ATOL, SCORE_ATOL, LOSS_RTOL = 1e-3, 1e-4, 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


def torchvision_model(kind: str, num_classes: int = 91, **kwargs) -> FasterRCNN:
    """torchvision's detector as its builder makes it for pretrained weights
    (FrozenBN; the R50 COCO weights' eps 0), with seeded random weights."""
    torch.manual_seed(0)
    if kind == "r50":
        body = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
        model = FasterRCNN(body, num_classes=num_classes, min_size=MIN_SIZE, max_size=MAX_SIZE,
                           **kwargs)
        overwrite_eps(model, 0.0)
    else:
        body = _mobilenet_extractor(mobilenet_v3_large(weights=None,
                                                       norm_layer=FrozenBatchNorm2d), True, 3)
        sizes = ((32, 64, 128, 256, 512),) * 3
        model = FasterRCNN(body, num_classes=num_classes,
                           rpn_anchor_generator=AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 3),
                           rpn_score_thresh=0.05, min_size=MIN_SIZE, max_size=MAX_SIZE,
                           **kwargs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d):
                n = m.weight.numel()
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        rpn, predictor = model.rpn.head, model.roi_heads.box_predictor
        for layer, scale in zip((rpn.cls_logits, rpn.bbox_pred, predictor.cls_score,
                                 predictor.bbox_pred), SCALES[kind]):
            layer.weight.mul_(scale)
        predictor.cls_score.bias.normal_(0.0, 1.0, generator=g)
    return model.eval()


def toolbox_config(kind: str) -> Config:
    """The reference config with the test images' smaller resize rule."""
    cfg = Config.fromfile(str(CONFIGS[kind]))
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = (MAX_SIZE, MIN_SIZE)
    return cfg


def converted_checkpoint(reference: torch.nn.Module, kind: str, tmp_path: Path) -> str:
    src, dst = tmp_path / f"tv_{kind}.pth", tmp_path / f"toolbox_{kind}.pth"
    torch.save(reference.state_dict(), src)
    convert_checkpoint(str(src), str(dst), format=FORMATS[kind])
    return str(dst)


def images() -> list[np.ndarray]:
    """Two non-square RGB images (smooth random colours plus noise)."""
    rng = np.random.default_rng(0)
    out = []
    for h, w in ((100, 163), (130, 90)):
        low = rng.uniform(0, 255, (h // 10 + 1, w // 10 + 1, 3))
        smooth = np.kron(low, np.ones((10, 10, 1)))[:h, :w]
        out.append(np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))
    return out


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0


def compare_detections(ours: InstanceData, theirs: dict, what: str) -> dict:
    """Same detections in the same order: labels (ours + 1), boxes, scores."""
    n = len(theirs["scores"])
    assert n > 0, f"{what}: the reference detects nothing; the test would prove nothing"
    assert len(ours) == n, f"{what}: {len(ours)} detections vs torchvision's {n}"
    assert torch.equal(ours.labels + 1, theirs["labels"]), f"{what}: labels or order differ"
    box_diff = (ours.bboxes - theirs["boxes"]).abs().max().item()
    score_diff = (ours.scores - theirs["scores"]).abs().max().item()
    assert box_diff <= BOX_ATOL, f"{what}: boxes differ by {box_diff} px"
    assert score_diff <= SCORE_ATOL, f"{what}: scores differ by {score_diff}"
    return dict(n=n, box=box_diff, score=score_diff)


@pytest.mark.parametrize("kind", ["r50", "mobilenet"])
def test_inference_equals_torchvision(kind, tmp_path):
    reference = torchvision_model(kind)
    infer = Inferencer(toolbox_config(kind), converted_checkpoint(reference, kind, tmp_path),
                       score_thr=0.0)
    pictures = images()
    tensors = [as_tensor(p) for p in pictures]
    # the test pipeline resizes as torchvision's transform does (100 x 163 is
    # a size where a float32 resize factor gives one pixel less)
    sizes = [tuple(infer._prepare(p, 0)["data_samples"].img_shape) for p in pictures]
    assert sizes == [tuple(s) for s in reference.transform(tensors)[0].image_sizes], sizes
    with torch.no_grad():
        theirs = [reference([t])[0] for t in tensors] + reference(tensors)
    ours = [infer(p) for p in pictures] + infer(pictures, batch_size=2)
    names = ["image 1", "image 2", "batch: image 1", "batch: image 2"]
    diffs = [compare_detections(o.pred_instances, t, f"{kind} {name}")
             for o, t, name in zip(ours, theirs, names)]
    print(kind, diffs)  # the max differences, for the record


def training_batch():
    """Two images torchvision's resize keeps at their size (factor exactly 1),
    their targets (torchvision labels 1..90) and ours (labels - 1)."""
    g = torch.Generator().manual_seed(5)
    pictures = [torch.rand(3, 128, 192, generator=g), torch.rand(3, 176, 128, generator=g)]
    boxes = [torch.tensor([[20.0, 30.0, 90.0, 120.0], [100.0, 40.0, 185.0, 125.0],
                           [5.0, 5.0, 40.0, 30.0]]),
             torch.tensor([[10.0, 20.0, 120.0, 170.0], [60.0, 70.0, 100.0, 130.0]])]
    labels = [torch.tensor([1, 18, 62]), torch.tensor([3, 90])]
    targets = [dict(boxes=b, labels=lab) for b, lab in zip(boxes, labels)]
    samples = []
    for p, b, lab in zip(pictures, boxes, labels):
        sample = DetDataSample(metainfo=dict(img_shape=tuple(p.shape[-2:]),
                                             ori_shape=tuple(p.shape[-2:])))
        sample.gt_instances = InstanceData(bboxes=b.clone(), labels=lab - 1)
        samples.append(sample)
    return pictures, targets, samples


@pytest.mark.parametrize("kind", ["r50", "mobilenet"])
def test_training_losses_equal_torchvision(kind):
    """Seeded alike, both samplers draw the same anchors and RoIs (the
    configs' ``always_permute``), so every loss must agree; the RoI head sees
    the same proposals (RPN equality) with the gt boxes appended last."""
    reference = torchvision_model(kind).train()
    reference.transform.torch_choice = lambda sizes: sizes[-1]  # no RNG draw for the size
    model = MODELS.build(toolbox_config(kind).model)
    converted = get_layout(FORMATS[kind]).convert(reference.state_dict())
    model.load_state_dict(converted, strict=True)
    model.train()
    pictures, targets, samples = training_batch()
    inputs = [reference.transform.normalize(p) for p in pictures]  # the same normalised input
    with torch.no_grad():
        torch.manual_seed(7)
        theirs = reference(pictures, targets)
        torch.manual_seed(7)
        ours = model(inputs, samples, mode="loss")
    pairs = dict(loss_objectness="loss_rpn_cls", loss_rpn_box_reg="loss_rpn_bbox",
                 loss_classifier="loss_cls", loss_box_reg="loss_bbox")
    rel = {}
    for tv_name, name in pairs.items():
        assert theirs[tv_name].item() > 0, f"{tv_name} is 0: nothing to compare"
        rel[name] = abs(ours[name].item() - theirs[tv_name].item()) / theirs[tv_name].item()
    print(kind, {k: f"{v:.2e}" for k, v in rel.items()})
    assert max(rel.values()) <= LOSS_RTOL, rel


def test_layouts_are_detected_and_old_key_names_convert_alike():
    """The published checkpoints predate ``Conv2dNormActivation``
    (``rpn.head.conv.weight``, ``backbone.fpn.inner_blocks.0.weight``)."""
    state = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    assert detect_layout(state).name == "tv-faster-rcnn"
    old = {re.sub(r"^(rpn\.head\.conv|backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.0(\.0)?\.",
                  lambda m: m.group(1) + ".", k): v for k, v in state.items()}
    assert "rpn.head.conv.weight" in old and "backbone.fpn.inner_blocks.0.weight" in old
    new, converted = convert_resnet50_fpn(state), convert_resnet50_fpn(old)
    assert list(new) == list(converted) and all(torch.equal(new[k], converted[k]) for k in new)


def test_another_architecture_is_refused_naming_keys():
    retinanet = retinanet_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    with pytest.raises(ConversionError, match=r"tv-faster-rcnn.*head\.classification_head"):
        get_layout("tv-faster-rcnn").convert(retinanet)
    assert not get_layout("tv-faster-rcnn").detect(list(retinanet))
    assert not get_layout("tv-faster-rcnn-mobilenet").detect(list(retinanet))


def test_another_class_count_is_refused_naming_shapes(tmp_path):
    reference = torchvision_model("mobilenet", num_classes=21)
    src = tmp_path / "tv_21.pth"
    torch.save(reference.state_dict(), src)
    with pytest.raises(ConversionError, match=r"tv_21\.pth.*roi_head\.fc_cls\.weight: "
                                              r"checkpoint \(21, 1024\) vs model \(91, 1024\)"):
        convert_checkpoint(str(src), str(tmp_path / "out.pth"))  # layout detected
