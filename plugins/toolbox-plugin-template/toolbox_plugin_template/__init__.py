"""A minimal toolbox plugin: copy this package to start your own."""
__version__ = "0.1.0"
