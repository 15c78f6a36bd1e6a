"""The primitives the rewards and the metrics share, below both: box geometry and text scores.

``lego_arta.rewards`` and ``lego_arta.metrics`` import these from here; neither imports the other. What belongs to
one side only lives there: the per-sample metric values in :mod:`lego_arta.sample_metrics`, the rewards in
:mod:`lego_arta.rewards`.

- ``boxes``: the frame rule (``to_grid``, ``on_grid``, ``grid_to_pixels``), ``box_iou``, ``iou_matrix``, Hungarian
  ``match_boxes`` (scipy), ``valid_boxes``, ``coords_inside``, ``object_reference``.
- ``text``: ``token_f1``, ``bleu4`` (NLTK) and its ``clipped_matches``, ``rouge_n``, ``rouge_l``, ``rouge_f1``,
  ``rouge1_f1`` (rouge-score), ``lcs_length``, the ROUGE tokenizers.
"""

from lego_arta.scores.boxes import (
    GRID_MAX,
    GRID_OVERSHOOT,
    BoxList,
    box_iou,
    coords_inside,
    frame_size,
    grid_to_pixels,
    iou_matrix,
    many_as_array,
    match_boxes,
    object_reference,
    on_grid,
    to_grid,
    valid_boxes,
)
from lego_arta.scores.text import (
    ROUGE_STEMS,
    ROUGE_TOKENS,
    RougeTokenizer,
    bleu4,
    clipped_matches,
    lcs_length,
    rouge1_f1,
    rouge_f1,
    rouge_l,
    rouge_n,
    token_f1,
)

__all__ = [
    "GRID_MAX",
    "GRID_OVERSHOOT",
    "ROUGE_STEMS",
    "ROUGE_TOKENS",
    "BoxList",
    "RougeTokenizer",
    "bleu4",
    "box_iou",
    "clipped_matches",
    "coords_inside",
    "frame_size",
    "grid_to_pixels",
    "iou_matrix",
    "lcs_length",
    "many_as_array",
    "match_boxes",
    "object_reference",
    "on_grid",
    "rouge1_f1",
    "rouge_f1",
    "rouge_l",
    "rouge_n",
    "to_grid",
    "token_f1",
    "valid_boxes",
]
