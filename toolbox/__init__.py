"""toolbox: a modular, plugin-based detection and segmentation toolbox.

``import toolbox`` is deliberately cheap: nothing heavy (torch, mmengine's
runner, the models) is imported until a registry is first looked up.
"""
__version__ = "0.1.0"

__all__ = ["__version__"]
