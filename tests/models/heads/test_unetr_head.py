"""UNETRHead: logits shapes (2D/3D), the loss against gt_sem_seg (padding
ignored), the predict contract, and errors."""
import pytest
import torch

from toolbox.registry import HEADS
from toolbox.structures.seg_data_sample import SegDataSample

pytestmark = pytest.mark.usefixtures("one_thread")


def _feats(dims, batch=2, size=32, hidden=24, image_channels=2):
    grid = (size // 16,) * dims
    return [torch.randn(batch, image_channels, *(size,) * dims)] + [
        torch.randn(batch, hidden, *grid) for _ in range(4)]


def _head(dims, **kw):
    cfg = dict(type="UNETRHead", num_classes=3, in_channels=(2, 24, 24, 24, 24),
               spatial_dims=dims, feature_size=4)
    cfg.update(kw)
    return HEADS.build(cfg)


@pytest.mark.parametrize("dims", [2, 3])
def test_logits_at_input_resolution(dims):
    head = _head(dims)
    logits = head.predict(_feats(dims), None)
    assert logits.shape == (2, 3) + (32,) * dims
    # Widths follow feature_size f: f, 2f, 4f, 8f from full to 1/8 resolution.
    assert head.up0.conv_block.conv2.conv.out_channels == 4
    assert head.skip1.deconv_init.out_channels == 8 and head.skip3.deconv_init.out_channels == 32


@pytest.mark.parametrize("dims", [2, 3])
def test_loss_is_the_configured_loss_of_logits_and_labels(dims):
    torch.manual_seed(0)
    head = _head(dims, loss_decode=dict(type="CrossEntropyLoss", ignore_index=255))
    feats = _feats(dims)
    labels = torch.randint(0, 3, (2,) + (32,) * dims)
    samples = [SegDataSample(gt_sem_seg=labels[i]) for i in range(2)]
    losses = head.loss(feats, samples)
    assert set(losses) == {"loss_seg"}
    expected = torch.nn.functional.cross_entropy(head(feats), labels)
    torch.testing.assert_close(losses["loss_seg"], expected)
    losses["loss_seg"].backward()
    assert head.conv_seg.weight.grad is not None


def test_default_loss_is_dice_ce_and_smaller_labels_are_padded_with_ignore():
    head = _head(2)
    assert type(head.loss_decode).__name__ == "DiceCELoss"
    logits = torch.randn(2, 3, 32, 32, requires_grad=True)
    samples = [SegDataSample(gt_sem_seg=torch.randint(0, 3, (30, 28))),
               SegDataSample(gt_sem_seg=torch.randint(0, 3, (1, 32, 32)))]  # [1, H, W] accepted
    labels = head._stacked_labels(samples, (32, 32), "cpu")
    assert labels.shape == (2, 32, 32)
    assert (labels[0, 30:] == 255).all() and (labels[0, :, 28:] == 255).all()
    assert torch.equal(labels[1], samples[1].gt_sem_seg[0])
    head.loss_decode(logits, labels).backward()
    assert logits.grad[0, :, 30:].abs().max() == 0 and logits.grad[0, :, :, 28:].abs().max() == 0
    assert logits.grad[0, :, :30, :28].abs().max() > 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="in_channels"):
        _head(3, in_channels=(24, 24, 24, 24))
    with pytest.raises(ValueError, match="strides"):
        _head(3, strides=(1, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="num_classes"):
        _head(3, num_classes=0)
    head = _head(2)
    with pytest.raises(ValueError, match="gt_sem_seg"):
        head.loss(_feats(2), [SegDataSample(), SegDataSample()])
    with pytest.raises(ValueError, match="5 inputs"):
        head(_feats(2)[1:])
