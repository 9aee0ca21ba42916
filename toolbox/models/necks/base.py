"""What every neck shares: declared outputs like a backbone's."""
from mmengine.model import BaseModule


class Neck(BaseModule):
    """Base class: tuple of maps in, tuple of maps out."""

    out_channels: tuple[int, ...] = ()
    out_strides: tuple[int, ...] = ()
