"""Deprecated: the head helpers moved.

* ``build_part``, ``build_loss``, ``ground_truth``, ``regression_pair``,
  ``flatten_levels``, ``sample_metas``, ``merge_cfg`` ->
  :mod:`toolbox.models.heads.parts`;
* ``boxes_to_original``, ``flip_boxes``, ``scale_factor_of`` ->
  :mod:`toolbox.structures.box_mapping` (heads no longer rescale: detectors
  map boxes back once);
* ``finish_proposals`` -> gone (RPN heads give proposals with ``labels``).

Importing a name from here still works for one release and warns.
"""
from toolbox.deprecation import moved_names

__getattr__ = moved_names(__name__, {
    **{name: "toolbox.models.heads.parts" for name in (
        "build_part", "build_loss", "ground_truth", "regression_pair", "flatten_levels",
        "sample_metas", "merge_cfg")},
    **{name: "toolbox.structures.box_mapping" for name in (
        "boxes_to_original", "flip_boxes", "scale_factor_of")},
})
