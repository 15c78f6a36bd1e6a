"""The scores the rewards and the metrics share, below both: box geometry and text scores.

``lego_arta.rewards`` and ``lego_arta.metrics`` import these from here; neither imports the other.

- ``boxes``: ``box_iou``, ``iou_matrix``, Hungarian ``match_boxes`` (scipy), ``valid_boxes``, ``coords_inside``,
  ``object_reference``.
"""

from lego_arta.scores.boxes import (
    BoxList,
    box_iou,
    coords_inside,
    iou_matrix,
    many_as_array,
    match_boxes,
    object_reference,
    valid_boxes,
)

__all__ = [
    "BoxList",
    "box_iou",
    "coords_inside",
    "iou_matrix",
    "many_as_array",
    "match_boxes",
    "object_reference",
    "valid_boxes",
]
