"""High-level entry points: run a trained model on images and draw results."""
from toolbox.apis.inferencer import CheckpointMismatchError, Inferencer, visualize_result

__all__ = ["Inferencer", "CheckpointMismatchError", "visualize_result"]
