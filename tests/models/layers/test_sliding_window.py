"""sliding_window_inference: one window = a direct forward; equal to MONAI's."""
import pytest
import torch
from torch import nn

from toolbox.models.layers.sliding_window import (importance_map, sliding_window_inference,
                                                  window_starts)

pytestmark = pytest.mark.usefixtures("one_thread")


def nets():
    torch.manual_seed(0)
    return {2: nn.Conv2d(2, 3, 3, padding=1).eval(), 3: nn.Conv3d(2, 3, 3, padding=1).eval()}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_one_window_is_a_direct_forward(dims, mode):
    net = nets()[dims]
    x = torch.randn((2, 2) + (8,) * dims)
    with torch.no_grad():
        out = sliding_window_inference(x, (8,) * dims, net, overlap=0.5, mode=mode)
        torch.testing.assert_close(out, net(x), atol=1e-6, rtol=1e-6)


def test_window_grid_by_hand():
    assert window_starts(10, 4, 0.25) == [0, 3, 6]
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert window_starts(11, 4, 0.0) == [0, 4, 7]  # the last window ends at the border
    assert window_starts(4, 4, 0.5) == [0]


def test_identity_predictor_is_reproduced_exactly():
    """Blending copies of the input gives the input back, whatever the weights."""
    x = torch.randn(1, 2, 9, 13, 11)
    out = sliding_window_inference(x, (4, 5, 6), lambda t: t * 1.0, overlap=0.4,
                                   mode="gaussian", sw_batch_size=3)
    torch.testing.assert_close(out, x)
    w = importance_map((4, 6))
    assert w.shape == (4, 6) and w.min() > 0 and w[1:3, 2:4].min() == w.max()


@pytest.mark.parametrize("dims, shape, roi", [(3, (2, 2, 20, 17, 9), (8, 8, 12)),
                                              (2, (2, 2, 37, 29), (16, 16)),
                                              (2, (1, 2, 10, 40), (16, 16))])
@pytest.mark.parametrize("mode, overlap, sw_batch_size",
                         [("gaussian", 0.25, 1), ("gaussian", 0.5, 3), ("constant", 0.25, 2)])
def test_equals_monai(dims, shape, roi, mode, overlap, sw_batch_size):
    import monai.inferers as monai_inferers  # a declared test dependency (the reference)
    net = nets()[dims]
    torch.manual_seed(1)
    x = torch.randn(shape)
    with torch.no_grad():
        ours = sliding_window_inference(x, roi, net, overlap=overlap, mode=mode,
                                        sw_batch_size=sw_batch_size)
        ref = monai_inferers.sliding_window_inference(x, roi, sw_batch_size, net,
                                                      overlap=overlap, mode=mode)
    assert ours.shape == ref.shape == (shape[0], 3) + shape[2:]
    assert (ours - ref).abs().max() <= 1e-5


def test_bad_arguments():
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ValueError, match="'roi_size' must be 2 positive ints"):
        sliding_window_inference(x, (4, 4, 4), lambda t: t)
    with pytest.raises(ValueError, match="'overlap' must be in"):
        sliding_window_inference(x, 4, lambda t: t, overlap=1.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        sliding_window_inference(x, 4, lambda t: t, mode="linear")
    with pytest.raises(ValueError, match="'inputs' must be a Tensor"):
        sliding_window_inference(torch.randn(8, 8), 4, lambda t: t)
    with pytest.raises(ValueError, match="'predictor' must map"):
        sliding_window_inference(x, 4, lambda t: t[..., :2])
