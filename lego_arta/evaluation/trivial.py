"""The mean-box reference: a trivial object answer built from the training split when an evaluation runs.

The answer puts one box at the mean training box: the mean of each coordinate over every box of the training split's
object records, rounded to integers. Its label is the part the test query names ("Find a 2x4 red brick" -> "2x4 red
brick"), never the test record's reference label: a trivial answer may read what a model reads, not the answer.
IoU does not depend on the label; F1-Object does.

Evaluation writes it into each object row of ``predictions.jsonl`` as ``mean_box_answer`` (beside ``demo_answer``), so
``experiments/score.py`` scores the same reference from the file alone (``ref/mean_box/*``, ``vs/mean_box/iou``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lego_arta.data.records import Record

_QUERY_LABEL = re.compile(r"(?:find|collect)\s+(?:(?:an?|the)\s+)?(.*?)[\s.]*", re.IGNORECASE | re.DOTALL)


def query_label(query: str) -> str:
    """The part an object query names (``Find a 2x4 red brick``, ``Collect ...``); "" for any other query.

    >>> query_label("Find a 1x2 white beam."), query_label("Collect 2 x axle"), query_label("Where is it?")
    ('1x2 white beam', '2 x axle', '')
    """
    found = _QUERY_LABEL.fullmatch(query.strip())
    return found.group(1) if found else ""


def mean_box(boxes: Iterable[Sequence[float]]) -> tuple[int, int, int, int] | None:
    """The mean of each coordinate over ``boxes`` (x1, y1, x2, y2), rounded to integers (``numpy.rint``: halves to
    even); None without a box.

    >>> mean_box([(10, 20, 30, 40), (20, 30, 41, 60)])
    (15, 25, 36, 50)
    """
    coords = np.array([list(box) for box in boxes], dtype=float).reshape(-1, 4)
    if not len(coords):
        return None
    x1, y1, x2, y2 = (int(v) for v in np.rint(coords.mean(axis=0)))
    return x1, y1, x2, y2


def mean_box_answer(box: Sequence[int], query: str) -> str:
    """The mean-box reference's answer to an object ``query``: one box at ``box``, labelled :func:`query_label`.

    >>> mean_box_answer((15, 25, 36, 50), "Find a red brick")
    '[{"bbox_2d": [15, 25, 36, 50], "label": "red brick"}]'
    """
    return json.dumps([{"bbox_2d": list(box), "label": query_label(query)}])


def mean_box_answers(train: Iterable[Record], test: Iterable[Record]) -> dict[str, str]:
    """The mean-box answer of each object record of ``test``, by id; {} when ``train`` has no object box.

    Args:
        train: the training split (every task; only its object records' boxes count, each box once).
        test: the records evaluated.
    """
    box = mean_box(b.coords for record in train for b in record.boxes())
    if box is None:
        return {}
    return {record.id: mean_box_answer(box, record.query) for record in test if record.task == "object"}
