"""Data preprocessors: batch, move, normalise and pad images on the model's device."""
