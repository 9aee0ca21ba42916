"""The built-in components, registered as a plugin like any other.

Each hook imports its family package and returns every name listed in the
``__all__`` of the package's modules, so adding a component is adding a file
(with ``__all__``) to the right package. Modules whose name starts with ``_``
or equals ``base`` hold shared code and are skipped.
"""
import importlib
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
            found[name] = getattr(module, name)
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
