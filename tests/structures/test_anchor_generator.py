import math

import pytest
import torch

from toolbox.structures import AnchorGenerator

S2 = math.sqrt(2.0)


def hand_anchors(stride, centre_offset, size=2):
    """Anchors of a size x size map, one scale, ratios (0.5, 1, 2), listed by hand."""
    half_wh = [(stride * S2 / 2, stride / S2 / 2),   # ratio h/w = 0.5: wide
               (stride / 2, stride / 2),              # ratio 1
               (stride / S2 / 2, stride * S2 / 2)]    # ratio 2: tall
    rows = []
    for y in range(size):
        for x in range(size):
            cx, cy = (x + centre_offset) * stride, (y + centre_offset) * stride
            for hw, hh in half_wh:
                rows.append([cx - hw, cy - hh, cx + hw, cy + hh])
    return torch.tensor(rows)


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_tiny_case_matches_hand_computed_anchors(offset):
    gen = AnchorGenerator(strides=[8], ratios=(0.5, 1.0, 2.0), scales=(1.0,), center_offset=offset)
    assert gen.num_base_anchors == 3
    (anchors,) = gen.grid_anchors([(2, 2)])
    assert anchors.shape == (12, 4)
    torch.testing.assert_close(anchors, hand_anchors(8, offset), atol=1e-5, rtol=0)
    # offset 0: the first cell's square anchor is centred on the origin
    if offset == 0.0:
        torch.testing.assert_close(anchors[1], torch.tensor([-4.0, -4.0, 4.0, 4.0]))
    else:
        torch.testing.assert_close(anchors[1], torch.tensor([0.0, 0.0, 8.0, 8.0]))


def test_anchor_order_is_y_x_anchor_and_levels_follow_strides():
    gen = AnchorGenerator(strides=[8, 16], ratios=(1.0,), octave_base_scale=4, scales_per_octave=3)
    assert gen.num_base_anchors == 3
    lvl0, lvl1 = gen.grid_anchors([(3, 5), (2, 3)])
    assert lvl0.shape == (3 * 5 * 3, 4) and lvl1.shape == (2 * 3 * 3, 4)
    # scales 4 * 2**(k/3): square sizes 32, 40.3, 50.8 at stride 8
    sizes = (lvl0[:3, 2] - lvl0[:3, 0]).tolist()
    assert sizes == pytest.approx([32.0, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)], rel=1e-5)
    assert (lvl1[:3, 2] - lvl1[:3, 0]).tolist() == pytest.approx([64.0, 64 * 2 ** (1 / 3),
                                                                  64 * 2 ** (2 / 3)], rel=1e-5)
    centres = ((lvl0[:, :2] + lvl0[:, 2:]) / 2).reshape(3, 5, 3, 2)
    # index (y, x, a): the x centre varies along axis 1, the y centre along axis 0
    assert torch.allclose(centres[1, 4, 2], torch.tensor([32.0, 8.0]))
    assert torch.allclose(centres[2, 0, 0], torch.tensor([0.0, 16.0]))


def test_valid_flags_mark_padding_cells_invalid():
    gen = AnchorGenerator(strides=[8], ratios=(0.5, 1.0), scales=(1.0,))
    (flags,) = gen.valid_flags([(4, 4)], img_shape=(20, 30))
    cells = flags.reshape(4, 4, 2)
    # ceil(20 / 8) = 3 valid rows, ceil(30 / 8) = 4 valid columns
    assert cells[:3].all() and not cells[3].any()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="not both"):
        AnchorGenerator(strides=[8], scales=(1.0,), octave_base_scale=4, scales_per_octave=3)
    with pytest.raises(ValueError, match="scales"):
        AnchorGenerator(strides=[8])
    with pytest.raises(ValueError, match="ratios"):
        AnchorGenerator(strides=[8], scales=(1.0,), ratios=(0.0,))
    gen = AnchorGenerator(strides=[8, 16], scales=(1.0,))
    with pytest.raises(ValueError, match="2 levels"):
        gen.grid_anchors([(2, 2)])


def test_matches_torchvision_anchor_generator():
    """torchvision's generator (offset 0, ratio-major, (y, x, anchor) order)
    rounds base anchors to integers, hence the 0.5 pixel tolerance."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors

    ratios = (0.5, 1.0, 2.0)
    ours = AnchorGenerator(strides=[8, 16], ratios=ratios, octave_base_scale=4, scales_per_octave=3)
    sizes = tuple(tuple(stride * s for s in ours.scales) for stride in ours.strides)
    reference = TorchvisionAnchors(sizes=sizes, aspect_ratios=(ratios, ratios))
    grids = [[5, 6], [3, 3]]
    expected = reference.grid_anchors(grids, [[torch.tensor(8), torch.tensor(8)],
                                              [torch.tensor(16), torch.tensor(16)]])
    for got, want in zip(ours.grid_anchors(grids), expected):
        torch.testing.assert_close(got, want.float(), atol=0.5, rtol=0)


def test_torchvision_layout_equals_torchvision_anchor_generator():
    """``sizes`` + ``round_base_anchors`` + ``stride_from_input`` reproduce
    torchvision's anchors exactly, also where the padded input (here 224 x
    352) is not a multiple of the coarse levels' nominal strides."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchors
    from torchvision.models.detection.image_list import ImageList

    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512))
    ratios = (0.5, 1.0, 2.0)
    reference = TVAnchors(sizes, (ratios,) * len(sizes))
    ours = AnchorGenerator(strides=(8, 16, 32, 64, 128), ratios=ratios, sizes=sizes,
                           round_base_anchors=True, stride_from_input=True)
    input_size = (224, 352)
    featmap_sizes = [(28, 44), (14, 22), (7, 11), (4, 6), (2, 3)]
    images = ImageList(torch.zeros(1, 3, *input_size), [input_size])
    feats = [torch.zeros(1, 1, h, w) for h, w in featmap_sizes]
    expected = reference(images, feats)[0]
    got = torch.cat(ours.grid_anchors(featmap_sizes, input_size=input_size))
    assert got.shape == expected.shape
    assert torch.equal(got, expected)
    # the nominal strides would place the coarse levels elsewhere (224 // 4 = 56, not 64)
    nominal = AnchorGenerator(strides=(8, 16, 32, 64, 128), ratios=ratios, sizes=sizes,
                              round_base_anchors=True)
    assert not torch.equal(torch.cat(nominal.grid_anchors(featmap_sizes)), expected)


def test_stride_from_input_needs_the_input_size():
    gen = AnchorGenerator(strides=(8,), scales=(4.0,), stride_from_input=True)
    with pytest.raises(ValueError, match="input_size"):
        gen.grid_anchors([(4, 4)])


def test_sizes_exclude_scales():
    with pytest.raises(ValueError, match="not both"):
        AnchorGenerator(strides=(8,), scales=(4.0,), sizes=((32,),))


def test_grid_anchors_are_cached_per_feature_map_size():
    gen = AnchorGenerator(strides=(8, 16), scales=(4.0,), ratios=(0.5, 1.0))
    first = gen.grid_anchors([(4, 5), (2, 3)])
    again = gen.grid_anchors([(4, 5), (2, 3)])
    assert all(a is b for a, b in zip(first, again))  # no recomputation
    other = gen.grid_anchors([(3, 3), (2, 2)])
    assert [t.shape[0] for t in other] == [3 * 3 * 2, 2 * 2 * 2]
    fresh = [gen.single_level_grid_anchors(i, s) for i, s in enumerate([(4, 5), (2, 3)])]
    for cached, expected in zip(gen.grid_anchors([(4, 5), (2, 3)]), fresh):
        torch.testing.assert_close(cached, expected)
    for k in range(AnchorGenerator.CACHE_SIZE + 2):  # bounded: old sizes fall out
        gen.grid_anchors([(k + 1, 1), (1, 1)])
    assert len(gen._anchor_cache) == AnchorGenerator.CACHE_SIZE
