"""SpineNet's searched block specification and its published scaling rules.

Source: Du et al., "SpineNet: Learning Scale-Permuted Backbone for Recognition
and Localization" (CVPR 2020), Fig. 4(d), and the architecture table of the
authors' TPU implementation (``tensorflow/tpu``,
``models/official/detection/modeling/architecture/spinenet.py``), which the
paper links as its code. Written here in this project's own format.

Block indices count the two stem blocks first: index 0 and 1 are the L2
bottleneck blocks fed (in a chain) by the 7x7 conv + max-pool stem; index
``k >= 2`` is the ``k``-th entry below, and its ``parents`` index blocks that
come before it.
"""
from __future__ import annotations

from typing import NamedTuple

# BlockSpec and Scaling are records of the SpineNet tables, not components
__all__ = ["LEVEL_FILTERS", "SCALING", "SPINENET_BLOCKS", "STEM_CHANNELS"]


class BlockSpec(NamedTuple):
    level: int             # feature level L: the map has stride 2**L
    block: str             # 'bottleneck' (x4 expansion) or 'residual' (basic)
    parents: tuple         # two indices of earlier blocks; () for stem blocks
    is_output: bool        # feeds the P{level} output


#: SpineNet-49: 2 stem blocks + 15 scale-permuted blocks (outputs L3-L7).
SPINENET_BLOCKS: tuple[BlockSpec, ...] = (
    BlockSpec(2, "bottleneck", (), False),        # 0: stem block 1
    BlockSpec(2, "bottleneck", (), False),        # 1: stem block 2
    BlockSpec(2, "bottleneck", (0, 1), False),    # 2
    BlockSpec(4, "residual", (0, 1), False),      # 3
    BlockSpec(3, "bottleneck", (2, 3), False),    # 4
    BlockSpec(4, "bottleneck", (2, 4), False),    # 5
    BlockSpec(6, "residual", (3, 5), False),      # 6
    BlockSpec(4, "bottleneck", (3, 5), False),    # 7
    BlockSpec(5, "residual", (6, 7), False),      # 8
    BlockSpec(7, "residual", (6, 8), False),      # 9
    BlockSpec(5, "bottleneck", (8, 9), False),    # 10
    BlockSpec(5, "bottleneck", (8, 10), False),   # 11
    BlockSpec(4, "bottleneck", (5, 10), True),    # 12 -> P4
    BlockSpec(3, "bottleneck", (4, 10), True),    # 13 -> P3
    BlockSpec(5, "bottleneck", (7, 12), True),    # 14 -> P5
    BlockSpec(7, "bottleneck", (5, 14), True),    # 15 -> P7
    BlockSpec(6, "bottleneck", (12, 14), True),   # 16 -> P6
)

#: Base width ("filters") of a block at each level before the filter scale;
#: a bottleneck block outputs 4x this, a residual block 1x.
LEVEL_FILTERS: dict[int, int] = {2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}

#: Width of the 7x7 stem convolution (not scaled, as in the reference).
STEM_CHANNELS = 64


class Scaling(NamedTuple):
    endpoints_num_filters: int   # channels of P3-P7
    filter_size_scale: float     # multiplies every block width
    resample_alpha: float        # narrow factor of the cross-scale connections
    block_repeats: int           # blocks per node of the graph


#: The published family: the paper's scaling rules (same values in the TPU code).
SCALING: dict[str, Scaling] = {
    "49S": Scaling(128, 0.65, 0.5, 1),
    "49": Scaling(256, 1.0, 0.5, 1),
    "96": Scaling(256, 1.0, 0.5, 2),
    "143": Scaling(256, 1.0, 1.0, 3),
    "190": Scaling(512, 1.3, 1.0, 4),
}
