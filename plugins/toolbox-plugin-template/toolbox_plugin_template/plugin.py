"""The entry-point module: one hook implementation per hook point used.

The toolbox calls these hooks lazily, the first time a config looks a
component up; returning the classes is all the registration there is.
"""
from toolbox.plugins import hookimpl


@hookimpl
def toolbox_backbones():
    from toolbox_plugin_template.backbone import TemplateNet
    return [TemplateNet]


@hookimpl
def toolbox_necks():
    from toolbox_plugin_template.neck import TemplateNeck
    return [TemplateNeck]


@hookimpl
def toolbox_losses():
    from toolbox_plugin_template.loss import CharbonnierLoss
    return [CharbonnierLoss]
