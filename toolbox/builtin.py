"""The built-in components, registered as a plugin like any other.

The plugin manager imports this module by name (``BUILTIN_PLUGINS`` in
:mod:`toolbox.plugins`), so it imports nothing of the plugin machinery but
the ``hookimpl`` marker. Each family hook imports its package and returns
the classes listed in the ``__all__`` of the package's modules and defined
there: adding a component is adding a file (with ``__all__``) to the right
package. ``__all__`` alone says what is a component: functions, constants,
re-exported names and classes left out of ``__all__`` are helpers, whatever
the module's name (a leading underscore no longer matters). ``base.py``
modules are the one exception: they hold the abstract classes a family's
components derive from and are never scanned.
"""
import importlib
import inspect
import pkgutil

from toolbox.hookspecs import hookimpl

#: modules of a family package that are never scanned (abstract base classes)
UNSCANNED_MODULES = ("base",)


def _components(package_name: str) -> dict:
    package = importlib.import_module(package_name)
    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in UNSCANNED_MODULES or info.ispkg:
            continue
        module = importlib.import_module(f"{package_name}.{info.name}")
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if inspect.isclass(value) and value.__module__ == module.__name__:
                found[name] = value
    return found


@hookimpl
def toolbox_backbones():
    return _components("toolbox.models.backbones")


@hookimpl
def toolbox_necks():
    return _components("toolbox.models.necks")


@hookimpl
def toolbox_heads():
    return _components("toolbox.models.heads")


@hookimpl
def toolbox_losses():
    return _components("toolbox.models.losses")


@hookimpl
def toolbox_models():
    return {**_components("toolbox.models.detectors"), **_components("toolbox.models.segmentors"),
            **_components("toolbox.models.data_preprocessors")}


@hookimpl
def toolbox_datasets():
    return _components("toolbox.datasets")


@hookimpl
def toolbox_transforms():
    return _components("toolbox.datasets.transforms")


@hookimpl
def toolbox_metrics():
    return _components("toolbox.evaluation")


@hookimpl
def toolbox_hooks():
    """The toolbox's runner hooks (``default_hooks`` / ``custom_hooks`` names)."""
    from toolbox.engine.checkpoint import SafeCheckpointHook
    from toolbox.engine.hooks import ClassFrequencyHook, MixedPrecisionHook, ProgressBarHook
    from toolbox.engine.nonfinite import NonFiniteGuardHook
    from toolbox.engine.resume import ResumeStateHook
    from toolbox.engine.visualization_hook import DetVisualizationHook
    return [SafeCheckpointHook, ClassFrequencyHook, MixedPrecisionHook, ProgressBarHook,
            NonFiniteGuardHook, ResumeStateHook, DetVisualizationHook]


@hookimpl
def toolbox_functions():
    """The collate functions (``collate_fn=dict(type='toolbox.det_collate')``)."""
    from toolbox.datasets.collate import det_collate, seg_collate
    return {"det_collate": det_collate, "seg_collate": seg_collate}
