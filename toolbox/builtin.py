"""The built-in components, registered as a plugin like any other.

Each hook imports its family package and returns the classes listed in the
``__all__`` of the package's modules and defined there, so adding a component
is adding a file (with ``__all__``) to the right package. Functions and
re-exported names in ``__all__`` are helpers, not components; modules whose
name starts with ``_`` or equals ``base`` are not scanned.
"""
import importlib
import inspect
import pkgutil

from toolbox.plugins import hookimpl


def _components(package_name: str) -> dict:
    package = importlib.import_module(package_name)
    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "base" or info.ispkg:
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
    return {**_components("toolbox.models.detectors"), **_components("toolbox.models.segmentors")}


@hookimpl
def toolbox_datasets():
    return _components("toolbox.datasets")


@hookimpl
def toolbox_transforms():
    return _components("toolbox.datasets.transforms")


@hookimpl
def toolbox_metrics():
    return _components("toolbox.evaluation")
