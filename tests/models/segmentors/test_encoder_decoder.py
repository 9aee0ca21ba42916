"""EncoderDecoder: wiring (2D/3D), the three modes, whole vs slide
prediction, mapping predictions back to the original frame (padding, flip,
resize), and errors."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolbox.registry import MODELS
from toolbox.structures.seg_data_sample import SegDataSample

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_unetr(dims, **kw):
    cfg = dict(type="EncoderDecoder",
               backbone=dict(type="ViT", in_channels=2, img_size=32, spatial_dims=dims,
                             hidden_size=24, num_layers=4, num_heads=4, mlp_dim=48,
                             out_indices=(0, 1, 2, 3)),
               decode_head=dict(type="UNETRHead", num_classes=3, feature_size=4))
    cfg.update(kw)
    return MODELS.build(cfg)


@pytest.mark.parametrize("dims", [2, 3])
def test_parts_are_wired_from_declared_outputs_and_modes_run(dims):
    torch.manual_seed(0)
    model = tiny_unetr(dims)
    assert model.spatial_dims == dims and model.decode_head.spatial_dims == dims
    assert model.decode_head.input_block.conv1.conv.in_channels == 2  # the image level
    assert model.decode_head.skip1.deconv_init.in_channels == 24      # hidden size
    inputs = torch.randn(2, 2, *(32,) * dims)
    samples = [SegDataSample(gt_sem_seg=torch.randint(0, 3, (32,) * dims)) for _ in range(2)]
    losses = model(inputs, samples, mode="loss")
    assert torch.isfinite(losses["loss_seg"])
    losses["loss_seg"].backward()
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        logits = model(inputs, mode="tensor")
        results = model(list(inputs), samples, mode="predict")
    assert logits.shape == (2, 3) + (32,) * dims
    for result, sample_logits in zip(results, logits):
        assert result.pred_sem_seg.shape == (32,) * dims
        assert result.pred_sem_seg.dtype == torch.long
        torch.testing.assert_close(result.seg_logits, sample_logits)
        assert torch.equal(result.pred_sem_seg, sample_logits.argmax(0))


@pytest.mark.parametrize("dims", [2, 3])
def test_slide_equals_whole_when_the_input_is_one_window(dims):
    torch.manual_seed(0)
    model = tiny_unetr(dims).eval()
    inputs = torch.randn(2, 2, *(32,) * dims)
    with torch.no_grad():
        whole = model(inputs, mode="predict")
        model.test_cfg = dict(mode="slide", roi_size=(32,) * dims, overlap=0.25, blend="gaussian")
        slide = model(inputs, mode="predict")
    for a, b in zip(whole, slide):
        torch.testing.assert_close(a.seg_logits, b.seg_logits, atol=1e-5, rtol=1e-5)
        assert torch.equal(a.pred_sem_seg, b.pred_sem_seg)


def test_slide_covers_inputs_larger_than_the_window():
    model = tiny_unetr(3, test_cfg=dict(mode="slide", roi_size=32, overlap=0.5)).eval()
    with torch.no_grad():
        result, = model(torch.randn(1, 2, 48, 40, 32), mode="predict")
    assert result.pred_sem_seg.shape == (48, 40, 32)
    assert result.seg_logits.shape == (3, 48, 40, 32)


class OneHotPassThrough(nn.Module):
    """Backbone and head in one: the input (one channel per class) is the logits."""

    def __init__(self, dims):
        super().__init__()
        self.spatial_dims, self.size_divisor = dims, 16
        self.out_channels, self.out_strides = (3,), (1,)

    def forward(self, x):
        return x if isinstance(x, (list, tuple)) else (x,)

    def predict(self, feats, data_samples):
        return feats[0]


@pytest.mark.parametrize("dims, ori, flip", [
    (2, (12, 10), dict(flip=True, flip_direction="horizontal")),
    (2, (12, 10), dict(flip=True, flip_direction="diagonal")),
    (3, (6, 8, 10), dict(flip=True, flip_axes=(0, 2))),
    (3, (6, 8, 10), dict(flip=False)),
])
def test_prediction_is_mapped_back_to_the_original_frame(dims, ori, flip):
    """A label map is turned into one-hot 'logits', resized 2x (nearest),
    flipped and padded as a pipeline would; the segmentor must give the
    original label map back."""
    torch.manual_seed(0)
    label = torch.randint(0, 3, ori)
    onehot = F.one_hot(label, 3).movedim(-1, 0).float()
    resized = F.interpolate(onehot[None], scale_factor=2, mode="nearest")[0]
    img_shape = tuple(resized.shape[1:])
    axes = {"horizontal": [dims - 1], "diagonal": [dims - 2, dims - 1]}.get(
        flip.get("flip_direction"), list(flip.get("flip_axes", ())))
    if flip["flip"]:
        resized = resized.flip([1 + a for a in axes])
    toy = OneHotPassThrough(dims)
    model = MODELS.build(dict(type="EncoderDecoder", backbone=toy, decode_head=toy)).eval()
    sample = SegDataSample(metainfo=dict(ori_shape=ori, img_shape=img_shape, **flip))
    result, = model([resized], [sample], mode="predict")
    assert result.pred_sem_seg.shape == ori and result.seg_logits.shape == (3,) + ori
    assert result.metainfo["batch_input_shape"] == tuple(-(-s // 16) * 16 for s in img_shape)
    assert torch.equal(result.pred_sem_seg, label)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="roi_size"):
        tiny_unetr(2, test_cfg=dict(mode="slide"))
    with pytest.raises(ValueError, match="test_cfg"):
        tiny_unetr(2, test_cfg=dict(mode="sliding"))
    with pytest.raises(ValueError, match="decode_head"):
        MODELS.build(dict(type="EncoderDecoder", backbone=dict(type="ViT", img_size=32)))
    model = tiny_unetr(3)
    with pytest.raises(TypeError, match="spatial axes"):
        model(torch.randn(1, 2, 32, 32), mode="tensor")
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 2, 32, 32, 32, dtype=torch.uint8), mode="tensor")
    with pytest.raises(ValueError, match="mode"):
        model(torch.randn(1, 2, 32, 32, 32), mode="logits")
    with pytest.raises(ValueError, match="data_samples"):
        model(torch.randn(1, 2, 32, 32, 32), None, mode="loss")
    sample = SegDataSample(metainfo=dict(flip=True, flip_direction="sideways"))
    with pytest.raises(ValueError, match="flip_direction"):
        model.eval()(torch.randn(1, 2, 32, 32, 32), [sample], mode="predict")
