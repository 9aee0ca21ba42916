"""models backbones package."""
