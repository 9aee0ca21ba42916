"""DetDataPreprocessor / SegDataPreprocessor: the one place batches are made.

The new path (uint8 pipeline -> det_collate lists -> preprocessor casts,
normalises, pads) gives the floats of the old one (Normalize -> Pad -> the
old padding collate) exactly.
"""
import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData

from toolbox.datasets.collate import det_collate, seg_collate
from toolbox.datasets.transforms.base import init_geometry
from toolbox.models.data_preprocessors.base import batch_tensors
from toolbox.registry import MODELS, TRANSFORMS
from toolbox.structures import DetDataSample
from toolbox.structures.seg_data_sample import SegDataSample

IMAGENET = dict(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


def det_item(h, w, fill, n_masks=1):
    s = DetDataSample(metainfo=dict(img_shape=(h, w)))
    s.gt_instances = InstanceData(bboxes=torch.zeros(n_masks, 4),
                                  labels=torch.zeros(n_masks, dtype=torch.long),
                                  masks=torch.ones(n_masks, h, w, dtype=torch.bool))
    return dict(inputs=torch.full((3, h, w), float(fill)), data_samples=s)


def build(**kwargs):
    return MODELS.build(dict(type="DetDataPreprocessor", **kwargs))


def test_pads_to_batch_max_rounded_to_divisor():
    batch = [det_item(50, 70, 1), det_item(64, 64, 2), det_item(33, 100, 3, n_masks=0)]
    out = build(pad_size_divisor=32, pad_value=-1)(det_collate(batch))
    x = out["inputs"]
    assert x.shape == (3, 3, 64, 128)  # max h 64, max w 100 -> 128
    assert (x[0, :, :50, :70] == 1).all() and (x[0, :, 50:] == -1).all()
    assert (x[0, :, :, 70:] == -1).all() and (x[2, :, :33, :100] == 3).all()
    samples = out["data_samples"]
    assert isinstance(samples, list) and len(samples) == 3
    assert all(s.batch_input_shape == (64, 128) for s in samples)
    assert samples[0].img_shape == (50, 70) and samples[0].pad_shape == (64, 96)
    m = samples[0].gt_instances.masks
    assert m.shape == (1, 64, 128) and m.sum() == 50 * 70
    assert samples[2].gt_instances.masks.shape == (0, 64, 128)
    assert build()(det_collate([det_item(65, 64, 0)]))["inputs"].shape == (1, 3, 65, 64)
    assert build(pad_size_divisor=32)(det_collate([det_item(64, 64, 0)]))["inputs"].shape \
        == (1, 3, 64, 64)


def test_batch_tensors_equals_pad_then_stack():
    xs = [torch.randn(3, 50, 70), torch.randn(3, 64, 33), torch.randn(3, 7, 9)]
    expected = torch.stack([F.pad(x, (0, 96 - x.shape[2], 0, 64 - x.shape[1]), value=1.5)
                            for x in xs])
    assert torch.equal(batch_tensors(xs, 32, 1.5), expected)
    assert torch.equal(batch_tensors(expected[:, :, :50, :70], 32, 1.5)[:, :, :50, :70],
                       expected[:, :, :50, :70])
    assert batch_tensors(torch.zeros(2, 1, 5, 6, 7), 4).shape == (2, 1, 8, 8, 8)


def _old_path(results_list, divisor):
    """Normalize -> Pad -> PackDetInputs -> the old padding collate."""
    norm = TRANSFORMS.build(dict(type="Normalize"))
    pad = TRANSFORMS.build(dict(type="Pad", size_divisor=divisor))
    pack = TRANSFORMS.build(dict(type="PackDetInputs"))
    packed = [pack(pad(norm(dict(r)))) for r in results_list]
    batch = batch_tensors([p["inputs"] for p in packed], divisor, 0.0)
    return batch


@pytest.mark.parametrize("divisor", [1, 32])
def test_equals_normalize_pad_collate(divisor):
    rng = np.random.default_rng(0)
    results = [init_geometry(dict(img=rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
               for h, w in ((50, 70), (64, 33), (31, 97))]
    old = _old_path(results, divisor)
    pack = TRANSFORMS.build(dict(type="PackDetInputs"))
    packed = [pack(dict(r)) for r in results]
    assert all(p["inputs"].dtype == torch.uint8 for p in packed)
    new = build(pad_size_divisor=divisor, **IMAGENET)(det_collate(packed))["inputs"]
    assert new.dtype == torch.float32 and new.shape == old.shape
    assert torch.equal(new, old)  # bit for bit


def test_follows_the_model_size_divisor_and_device():
    pre = build(pad_size_divisor=32, **IMAGENET)
    pre.follow_size_divisor(lambda: 128)
    assert pre.size_divisor == 128
    out = pre(det_collate([det_item(40, 40, 0)]))
    assert out["inputs"].shape == (1, 3, 128, 128)
    assert "mean" not in pre.state_dict()  # not saved in checkpoints


def test_detector_links_its_preprocessor():
    model = MODELS.build(dict(
        type="SingleStageDetector",
        backbone=dict(type="MobileNetV3", arch="small", out_indices=(1, 2, 3)),
        neck=dict(type="FPN", out_channels=16, num_outs=5, add_extra_convs="on_input"),
        bbox_head=torch.nn.Identity(),  # the head plays no part in batching
        data_preprocessor=dict(type="DetDataPreprocessor", **IMAGENET)))
    assert model.data_preprocessor.size_divisor == model.size_divisor
    clone = copy.deepcopy(model)  # e.g. an EMA copy follows its own trunk
    assert clone.data_preprocessor._model_size_divisor.__self__ is clone
    assert pickle.loads(pickle.dumps(model)).data_preprocessor.size_divisor == model.size_divisor
    items = [det_item(50, 70, 7), det_item(30, 20, 9)]
    for item in items:
        item["inputs"] = item["inputs"].to(torch.uint8)
    data = model.data_preprocessor(det_collate(items), False)
    d = model.size_divisor
    assert data["inputs"].shape[-2] % d == 0 and data["inputs"].shape[-1] % d == 0
    # a direct call pads the same way
    direct = model._batch_inputs([x.float() for x in data["inputs"][:, :, :50, :70]])
    assert direct.shape == data["inputs"].shape


def test_default_does_not_normalise_and_float_inputs_pass():
    model_pre = build()
    x = torch.rand(3, 10, 12) * 255
    out = model_pre(dict(inputs=[x], data_samples=[DetDataSample()]))
    assert torch.equal(out["inputs"][0], x)
    with pytest.raises(ValueError, match="both 'mean' and 'std'"):
        build(mean=(1, 2, 3))
    with pytest.raises(ValueError, match="Tensor\\[C, H, W\\]"):
        build()(dict(inputs=[torch.zeros(3, 4)], data_samples=None))


def test_bgr_to_rgb():
    x = torch.arange(3, dtype=torch.uint8).reshape(3, 1, 1)
    out = build(bgr_to_rgb=True)(dict(inputs=[x], data_samples=None))["inputs"]
    assert out.flatten().tolist() == [2.0, 1.0, 0.0]


def test_seg_preprocessor_pads_images_volumes_and_labels():
    pre = MODELS.build(dict(type="SegDataPreprocessor", pad_size_divisor=16, **IMAGENET))
    items = []
    for h, w in ((20, 30), (33, 16)):
        s = SegDataSample(metainfo=dict(img_shape=(h, w)))
        s.gt_sem_seg = torch.ones(h, w, dtype=torch.long)
        items.append(dict(inputs=torch.full((3, h, w), 200, dtype=torch.uint8), data_samples=s))
    out = pre(seg_collate(items))
    x, samples = out["inputs"], out["data_samples"]
    assert x.shape == (2, 3, 48, 32)
    torch.testing.assert_close(x[0, 0, 0, 0], torch.tensor((200 - 123.675) / 58.395))
    assert (x[0, :, 20:] == 0).all() and samples[0].batch_input_shape == (48, 32)
    seg = samples[0].gt_sem_seg
    assert seg.shape == (48, 32) and (seg[20:] == 255).all() and (seg[:20, :30] == 1).all()
    vol = MODELS.build(dict(type="SegDataPreprocessor", pad_size_divisor=16))
    v = vol(seg_collate([dict(inputs=torch.rand(1, 20, 16, 17), data_samples=None)]))
    assert v["inputs"].shape == (1, 1, 32, 16, 32)


def test_old_collate_module_and_arguments_are_deprecated():
    with pytest.warns(DeprecationWarning, match="toolbox.datasets.collate"):
        from toolbox.datasets._collate import det_collate as old
    assert old is det_collate
    with pytest.warns(DeprecationWarning, match="pad_size_divisor"):
        out = det_collate([det_item(5, 6, 0)], size_divisor=32)
    assert out["inputs"][0].shape == (3, 5, 6)  # listed, not padded
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det_collate([det_item(5, 6, 0)])


def test_channels_last_same_values_nhwc_memory_and_same_detector_loss():
    batch = [det_item(50, 70, 1), det_item(64, 64, 2)]
    plain = build(pad_size_divisor=32, **IMAGENET)(det_collate(copy.deepcopy(batch)))["inputs"]
    nhwc = build(pad_size_divisor=32, channels_last=True, **IMAGENET)(det_collate(batch))["inputs"]
    assert torch.equal(plain, nhwc) and not plain.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    # the quickstart detector (MobileNetV3 + FPN + RetinaHead) fed NHWC gives the
    # NCHW losses and gradients to float rounding
    from mmengine.config import Config

    from toolbox.testing.data import det_batch
    cfg = Config.fromfile("configs/_base_/models/retinanet_mobilenetv3_fpn.py").model
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    inputs, samples = det_batch(batch=2, size=(96, 96), num_classes=6)
    results = []
    for channels_last in (False, True):
        model.zero_grad()
        model.data_preprocessor.channels_last = channels_last
        data = model.data_preprocessor(dict(inputs=list(inputs * 50 + 120),
                                            data_samples=copy.deepcopy(samples)), True)
        assert data["inputs"].is_contiguous(memory_format=torch.channels_last) == channels_last
        loss, _ = model.parse_losses(model(**data, mode="loss"))
        loss.backward()
        results.append((loss.detach(), model.backbone.conv1.weight.grad.clone()
                        if hasattr(model.backbone, "conv1") else
                        next(model.backbone.parameters()).grad.clone()))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert torch.allclose(loss_a, loss_b, rtol=1e-5), (loss_a, loss_b)
    assert ((grad_a - grad_b).norm() / grad_a.norm()) < 1e-4  # summation order only
