"""timm's models as toolbox backbones."""
__version__ = "0.1.0"
