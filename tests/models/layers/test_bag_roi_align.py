"""bag_roi_align against torchvision's roi_align, level by level."""
import pytest
import torch
from torchvision.ops import roi_align

from toolbox.models.layers.bag_roi_align import bag_roi_align


def _case(seed: int, count: int = 60):
    gen = torch.Generator().manual_seed(seed)
    # two images, three levels (strides 4, 8, 16) of a 64 x 48 padded input
    feats = [torch.randn(2, 5, 64 // s, 48 // s, generator=gen, dtype=torch.float64)
             .requires_grad_() for s in (4, 8, 16)]
    xy = torch.rand(count, 2, generator=gen, dtype=torch.float64) * 80 - 16  # some outside
    wh = torch.rand(count, 2, generator=gen, dtype=torch.float64) * 50
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:3, 2:] = boxes[:3, :2] - 2.0   # inverted boxes
    boxes[3:6, 2:] = boxes[3:6, :2]       # empty boxes
    batch = torch.randint(0, 2, (count, 1), generator=gen).double()
    rois = torch.cat([batch, boxes], 1)
    levels = torch.randint(0, 3, (count,), generator=gen)
    return feats, rois, levels, (1 / 4, 1 / 8, 1 / 16)


def _reference(feats, rois, levels, scales, size, ratio, aligned):
    out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], size, size))
    for level, (feat, scale) in enumerate(zip(feats, scales)):
        index = torch.nonzero(levels == level).flatten()
        out = out.index_copy(0, index, roi_align(feat, rois[index], size, scale, ratio, aligned))
    return out


@pytest.mark.parametrize("ratio", [0, 1, 2])
@pytest.mark.parametrize("aligned", [True, False])
def test_values_and_gradients_match_torchvision(ratio, aligned):
    feats, rois, levels, scales = _case(seed=ratio + 3 * aligned)
    want = _reference(feats, rois, levels, scales, 7, ratio, aligned)
    got = bag_roi_align(feats, rois, levels, 7, scales, ratio, aligned)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, feats, grad), torch.autograd.grad(want, feats, grad)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_channels_last_float32_and_no_rois():
    feats, rois, levels, scales = _case(seed=9)
    feats = [f.detach().float().contiguous(memory_format=torch.channels_last) for f in feats]
    want = _reference(feats, rois.float(), levels, scales, 5, 0, True)
    torch.testing.assert_close(bag_roi_align(feats, rois.float(), levels, 5, scales), want,
                               rtol=1e-5, atol=1e-5)
    empty = bag_roi_align(feats, rois[:0].float(), levels[:0], 7, scales)
    assert empty.shape == (0, 5, 7, 7)
