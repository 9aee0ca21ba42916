"""Entry-point module of toolbox-timm."""
from toolbox.plugins import hookimpl


@hookimpl
def toolbox_backbones():
    from toolbox_timm.backbone import TimmBackbone
    return [TimmBackbone]
