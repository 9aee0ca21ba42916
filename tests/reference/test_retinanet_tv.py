"""configs/reference/retinanet_r50_fpn{,_v2}_tv.py are torchvision's RetinaNet v1 / v2.

The reference is built as torchvision builds it for its COCO weights (v1: FrozenBN ResNet-50
with ``eps=0``, ``trainable_backbone_layers=3``; v2: ``retinanet_resnet50_fpn_v2``), with random
weights (nothing downloads): BatchNorm statistics and the classifier are perturbed so that
scores spread over (0.05, 1) and 300 detections per image survive. Its state dict goes through
``convert_checkpoint`` (layout detected, checked against the reference config) and the toolbox
side runs only through its normal path: ``Inferencer`` for detections, the config's pipeline +
``det_collate`` + ``data_preprocessor`` + ``mode='loss'`` for the losses. Images are small
(``min_size=160, max_size=256`` on both sides) to keep each test within seconds.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torchvision.models import resnet50
from torchvision.models.detection import fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn_v2
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.retinanet import LastLevelP6P7, RetinaNet
from torchvision.ops import FrozenBatchNorm2d

from toolbox.apis import Inferencer
from toolbox.apis.inferencer import CheckpointMismatchError
from toolbox.convert import ConversionError, convert_checkpoint, detect_layout
from toolbox.convert.tv_retinanet import convert_v1, convert_v2

pytestmark = pytest.mark.usefixtures("one_thread")

MIN_SIZE, MAX_SIZE = 160, 256
ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"v1": str(ROOT / "configs/reference/retinanet_r50_fpn_tv.py"),
           "v2": str(ROOT / "configs/reference/retinanet_r50_fpn_v2_tv.py")}
BOX_TOL, SCORE_TOL, LOSS_RTOL = 1e-3, 1e-4, 1e-5
TIE = 1e-6  # scores this close are float32 ties


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (150, 230, 3), dtype=np.uint8),
            rng.integers(0, 256, (200, 170, 3), dtype=np.uint8)]


def _targets() -> list[dict]:
    """Boxes (original pixels) and labels (COCO category ids) for the two images."""
    return [dict(boxes=np.array([[10, 20, 120, 140], [100, 5, 225, 90], [60, 60, 90, 80]],
                                np.float32), labels=np.array([1, 18, 3])),
            dict(boxes=np.array([[30, 40, 160, 190], [5, 5, 60, 50]], np.float32),
                 labels=np.array([62, 1]))]


def _tv_input(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255


def _reference(version: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if version == "v1":  # what retinanet_resnet50_fpn(weights=COCO_V1) builds, minus the download
        body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4],
                                         extra_blocks=LastLevelP6P7(256, 256))
        model = RetinaNet(backbone, 91, min_size=MIN_SIZE, max_size=MAX_SIZE)
        overwrite_eps(model, 0.0)
    else:
        model = retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None,
                                          min_size=MIN_SIZE, max_size=MAX_SIZE)
    _spread(model)
    return model.eval()


@torch.no_grad()
def _spread(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics; logits with std ~2 around -4 (random init gives
    p = 0.01 everywhere); box deltas with std ~0.3."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
            n = m.weight.shape[0]
            m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    was_training = model.training
    model.eval()
    feats = list(model.backbone(torch.rand(1, 3, MIN_SIZE, MAX_SIZE, generator=g)).values())
    cls, reg = model.head.classification_head, model.head.regression_head
    logits = cls.cls_logits(cls.conv(feats[0])) - cls.cls_logits.bias[:, None, None]
    cls.cls_logits.weight.mul_(2.0 / logits.std())
    cls.cls_logits.bias.copy_(torch.randn(cls.cls_logits.bias.shape, generator=g) - 4.0)
    reg.bbox_reg.weight.mul_(0.3 / reg.bbox_reg(reg.conv(feats[0])).std())
    model.train(was_training)


def _config(version: str) -> Config:
    cfg = Config.fromfile(CONFIGS[version])
    for pipeline in (cfg.test_pipeline, cfg.test_dataloader.dataset.pipeline):
        for step in pipeline:
            if step["type"] == "Resize":
                step["scale"] = (MAX_SIZE, MIN_SIZE)
    return cfg


@pytest.fixture(scope="module", params=["v1", "v2"])
def pair(request, tmp_path_factory):
    """(version, torchvision model, toolbox config, converted checkpoint path)."""
    version = request.param
    ref = _reference(version)
    folder = tmp_path_factory.mktemp(f"retinanet_{version}")
    src, dst = folder / "tv.pth", folder / "toolbox.pth"
    torch.save(ref.state_dict(), src)
    cfg = _config(version)
    meta = convert_checkpoint(str(src), str(dst), config=cfg)
    assert meta["format"] == {"v1": "tv-retinanet", "v2": "tv-retinanet-v2"}[version]
    return version, ref, cfg, str(dst)


def _assert_same_detections(ref_out: dict, sample) -> None:
    """Same number, labels, boxes and scores in the same ranking. Detections whose reference
    scores are float32 ties (within ``TIE``: a few ulps, where rounding differences of the
    two implementations may swap them) are compared as a set within their tie group."""
    pred = sample.pred_instances
    n = len(ref_out["scores"])
    assert len(pred) == n > 50
    assert torch.all(pred.scores[:-1] >= pred.scores[1:])
    assert (pred.scores - ref_out["scores"]).abs().max() <= SCORE_TOL
    start = 0
    while start < n:
        end = start + 1
        while end < n and ref_out["scores"][end - 1] - ref_out["scores"][end] <= TIE:
            end += 1
        unmatched = list(range(start, end))
        for k in range(start, end):
            match = [r for r in unmatched if pred.labels[k] == ref_out["labels"][r]
                     and (pred.bboxes[k] - ref_out["boxes"][r]).abs().max() <= BOX_TOL
                     and abs(pred.scores[k] - ref_out["scores"][r]) <= SCORE_TOL]
            assert match, (f"detection {k} (label {int(pred.labels[k])}, score "
                           f"{float(pred.scores[k]):.7f}) is not the reference's at ranks "
                           f"{start}..{end - 1}")
            unmatched.remove(match[0])
        start = end


@pytest.mark.parametrize("which", ["first", "second", "batch"])
def test_detections_equal_torchvision(pair, which):
    _, ref, cfg, ckpt = pair
    images = _images()
    images = {"first": images[:1], "second": images[1:], "batch": images}[which]
    with torch.no_grad():
        expected = ref([_tv_input(a) for a in images])
    inferencer = Inferencer(cfg, ckpt, score_thr=0.0)
    got = inferencer(images, batch_size=len(images))
    for ref_out, sample in zip(expected, got):
        _assert_same_detections(ref_out, sample)


def _toolbox_batch(cfg: Config, model) -> dict:
    """The two images and targets through the config's pipeline (without LoadImage: arrays),
    ``det_collate`` and the model's ``data_preprocessor``, as a training step sees them."""
    from toolbox.datasets.collate import det_collate
    from toolbox.datasets.transforms.base import Compose, init_geometry
    pipeline = Compose([dict(s) for s in cfg.test_dataloader.dataset.pipeline
                        if s["type"] != "LoadImage"])
    items = []
    for index, (image, target) in enumerate(zip(_images(), _targets())):
        results = init_geometry(dict(img=image, img_id=index, img_path=None,
                                     gt_bboxes=target["boxes"].copy(),
                                     gt_labels=target["labels"].copy()))
        items.append(pipeline(results))
    return model.data_preprocessor(det_collate(items), True)


def test_losses_equal_torchvision(pair):
    from toolbox.apis.inferencer import load_weights
    from toolbox.registry import MODELS
    _, ref, cfg, ckpt = pair
    ref = copy.deepcopy(ref).train()
    targets = [dict(boxes=torch.from_numpy(t["boxes"]), labels=torch.from_numpy(t["labels"]))
               for t in _targets()]
    expected = ref([_tv_input(a) for a in _images()], targets)

    init_default_scope("toolbox")
    model = MODELS.build(cfg.model)
    load_weights(model, ckpt)
    model.train()
    losses = model(**_toolbox_batch(cfg, model), mode="loss")
    for ours, theirs in (("loss_cls", "classification"), ("loss_bbox", "bbox_regression")):
        assert losses[ours].item() == pytest.approx(expected[theirs].item(), rel=LOSS_RTOL)
    assert expected["classification"].item() > 0 and expected["bbox_regression"].item() > 0


def test_layouts_are_detected_and_other_models_refused():
    v1 = RetinaNet(_resnet_fpn_extractor(resnet50(weights=None), 5, returned_layers=[2, 3, 4],
                                         extra_blocks=LastLevelP6P7(256, 256)), 91).state_dict()
    v2 = retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict()
    assert detect_layout(v1).name == "tv-retinanet"
    assert detect_layout(v2).name == "tv-retinanet-v2"
    with pytest.raises(ConversionError, match=r"tv-retinanet-v2.*bbox_head\.cls_convs\.0\.gn"):
        convert_v2(v1)
    with pytest.raises(ConversionError, match=r"not a tv-retinanet state dict.*conv\.0\.1\.weight"):
        convert_v1(v2)
    faster = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    with pytest.raises(ConversionError, match=r"not a tv-retinanet state dict.*'rpn\.head\."):
        convert_v1(faster)


def test_v1_layout_of_the_2020_coco_file_converts_too():
    """torchvision's COCO v1 file predates its "version 2" modules: bare FPN convs and head
    towers saved as Sequential(conv, relu, ...). Both spellings give the same tensors."""
    ref = RetinaNet(_resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3,
                                          returned_layers=[2, 3, 4],
                                          extra_blocks=LastLevelP6P7(256, 256)), 91)
    new = ref.state_dict()
    old = {}
    for key, value in new.items():
        key = key.replace(".0.weight", ".weight").replace(".0.bias", ".bias") \
            if ".fpn.inner_blocks." in key or ".fpn.layer_blocks." in key else key
        for tower in ("classification_head", "regression_head"):
            for i in range(4):
                key = key.replace(f"head.{tower}.conv.{i}.0.", f"head.{tower}.conv.{2 * i}.")
        old[key] = value
    assert old.keys() != new.keys()
    converted_new, converted_old = convert_v1(new), convert_v1(old)
    assert converted_new.keys() == converted_old.keys()
    assert all(converted_new[k] is converted_old[k] for k in converted_new)


def test_other_class_count_is_refused_naming_the_file(tmp_path):
    ref = RetinaNet(_resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3,
                                          returned_layers=[2, 3, 4],
                                          extra_blocks=LastLevelP6P7(256, 256)), 21)
    path = tmp_path / "voc.pth"
    torch.save({"state_dict": convert_v1(ref.state_dict()), "meta": {}}, path)
    with pytest.raises(CheckpointMismatchError, match=r"voc\.pth.*bbox_head\.retina_cls\.weight"):
        Inferencer(CONFIGS["v1"], str(path))
