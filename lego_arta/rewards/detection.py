"""Object-detection rewards (``iou_v1``, ``iou_v2``, ``label_rouge``) and the box geometry the metrics share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from lego_arta.parsing import Box, answer_text, parse_boxes, reference_boxes
from lego_arta.rewards.base import Sample, TaskReward, samples
from lego_arta.rewards.text import rouge1_f1

# Above this many box pairs (or boxes) the work is done with numpy: same float operations, same results.
_NUMPY_PAIRS = 256
_NUMPY_BOXES = 64

Coords = Sequence[Any]  # (x1, y1, x2, y2, ...): a Box or a plain 4-tuple of floats
BoxList = Sequence[Coords] | np.ndarray


def _as_array(boxes: BoxList) -> np.ndarray:
    if isinstance(boxes, np.ndarray):
        return boxes
    flat = np.fromiter((v for b in boxes for v in b[:4]), dtype=np.float64, count=4 * len(boxes))
    return flat.reshape(len(boxes), 4)


def _scaled_iou(a: Coords, b: Coords) -> float:
    # IoU is scale-invariant: rescale huge coordinates (areas overflowing to inf) into [-1, 1] and recompute.
    scale = max(abs(float(v)) for v in (*a[:4], *b[:4]))
    a = [float(v) / scale for v in a[:4]]
    b = [float(v) / scale for v in b[:4]]
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return min(1.0, inter / union) if inter > 0 and union > 0 else 0.0


def box_iou(a: Coords, b: Coords) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes with continuous areas (no +1); 0 if disjoint.

    Exact for any finite coordinates: when areas overflow float range the boxes are rescaled (IoU is scale-free).

    Args:
        a: first box corners (finite floats; a ``Box`` works).
        b: second box corners.

    >>> box_iou((0, 0, 10, 10), (5, 0, 15, 10))
    0.3333333333333333
    """
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if not (ix > 0 and iy > 0):
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if union > 0 and math.isfinite(union) and math.isfinite(inter):
        return min(1.0, inter / union)
    return _scaled_iou(a, b)


def iou_matrix(preds: BoxList, refs: BoxList) -> np.ndarray:
    """The ``len(preds) x len(refs)`` matrix of ``box_iou`` values (numpy for large ones, identical values).

    Args:
        preds: boxes (``Box``es, 4-tuples or a (k, 4) array).
        refs: boxes, same forms.

    >>> iou_matrix([(0, 0, 10, 10)], [(0, 0, 10, 5), (20, 20, 30, 30)])
    array([[0.5, 0. ]])
    """
    if len(preds) * len(refs) <= _NUMPY_PAIRS:
        rows = [[box_iou(p, r) for r in refs] for p in preds]
        return np.array(rows, dtype=np.float64).reshape(len(preds), len(refs))
    pa, ra = _as_array(preds), _as_array(refs)
    p, r = pa[:, None, :], ra[None, :, :]
    with np.errstate(all="ignore"):
        ix = np.minimum(p[..., 2], r[..., 2]) - np.maximum(p[..., 0], r[..., 0])
        iy = np.minimum(p[..., 3], r[..., 3]) - np.maximum(p[..., 1], r[..., 1])
        overlap = (ix > 0) & (iy > 0)
        inter = ix * iy
        union = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1]) + (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])
        union = union - inter
        out = np.where(overlap, np.minimum(1.0, inter / union), 0.0)
        bad = overlap & ~((union > 0) & np.isfinite(union) & np.isfinite(inter))
    for i, j in zip(*np.nonzero(bad), strict=True):  # overflowing areas: the scalar path rescales
        out[i, j] = _scaled_iou(pa[i], ra[j])
    return out


def match_boxes(preds: BoxList, refs: BoxList) -> tuple[float, int]:
    """Hungarian matching maximising IoU: ``(sum of matched IoUs, number of pairs)``; ``(0.0, 0)`` if a side is empty.

    Every pair counts, IoU 0 included: there are ``min(len(preds), len(refs))`` pairs. Uses scipy's
    ``linear_sum_assignment(maximize=True)``; with one box on a side the optimum is the largest IoU (same value).

    Args:
        preds: predicted boxes (already filtered to valid ones by the caller), ``Box``es, 4-tuples or a (k, 4) array.
        refs: reference boxes, same forms.

    >>> preds, refs = [Box(1, 0, 10, 10), Box(0, 0, 8, 10)], [Box(0, 0, 10, 10), Box(1, 0, 12, 10)]
    >>> match_boxes(preds, refs)  # greedy takes the best pair first: 0.9 + 0.583 = 1.483
    (1.6181818181818182, 2)
    """
    if len(preds) == 0 or len(refs) == 0:
        return 0.0, 0
    if (len(preds) == 1 or len(refs) == 1) and len(preds) * len(refs) <= _NUMPY_PAIRS:
        return max(box_iou(p, r) for p in preds for r in refs), 1
    matrix = iou_matrix(preds, refs)
    if len(preds) == 1 or len(refs) == 1:
        return float(matrix.max()), 1
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return float(matrix[rows, cols].sum()), len(rows)


def valid_boxes(boxes: BoxList, clamp: bool = False) -> BoxList:
    """Coordinates of the non-degenerate boxes (``x1 < x2`` and ``y1 < y2``), after clamping to [0, 100] if ``clamp``.

    Args:
        boxes: parsed boxes (or their coordinates as a (k, 4) array).
        clamp: clamp every coordinate to [0, 100] first (the rewards do; the metrics do not).

    >>> valid_boxes([Box(-5.0, 0.0, 10.0, 10.0), Box(120.0, 0.0, 130.0, 10.0)], clamp=True)
    [(0.0, 0.0, 10.0, 10.0)]
    """
    if len(boxes) > _NUMPY_BOXES:
        arr = _as_array(boxes)
        if clamp:
            arr = np.clip(arr, 0.0, 100.0)
        return arr[(arr[:, 0] < arr[:, 2]) & (arr[:, 1] < arr[:, 3])]
    out = []
    for b in boxes:
        x1, y1, x2, y2 = b[0], b[1], b[2], b[3]
        if clamp:
            x1, y1, x2, y2 = (
                min(max(x1, 0.0), 100.0),
                min(max(y1, 0.0), 100.0),
                min(max(x2, 0.0), 100.0),
                min(max(y2, 0.0), 100.0),
            )
        if x1 < x2 and y1 < y2:
            out.append((x1, y1, x2, y2))
    return out


def coords_inside(boxes: BoxList, low: float = 0.0, high: float = 100.0) -> int:
    """Number of raw coordinates within ``[low, high]`` (v1's range bonus counts them).

    Args:
        boxes: parsed boxes (or a (k, 4) array).
        low: lower bound.
        high: upper bound.

    >>> coords_inside([Box(-5.0, 0.0, 10.0, 120.0)])
    2
    """
    if len(boxes) > _NUMPY_BOXES:
        arr = _as_array(boxes)
        return int(((arr >= low) & (arr <= high)).sum())
    return sum(
        (low <= b[0] <= high) + (low <= b[1] <= high) + (low <= b[2] <= high) + (low <= b[3] <= high) for b in boxes
    )


def object_reference(reference: str, where: str) -> tuple[tuple[Box, ...], BoxList]:
    """All boxes of an object reference (labels) and its valid ones (matching, counts); never clamped.

    Raises ``ValueError`` naming ``where`` when no box parses: an object reference without a box is invalid data.
    Choice: a reference whose boxes are all degenerate is accepted (it has 0 valid boxes, so IoU is 0).

    Args:
        reference: the reference answer.
        where: how the error names the sample (e.g. ``"record 'x7': field 'reference'"``).

    >>> object_reference("<p>pin</p>{<0><0><5><5>}{<1><1><1><9>}", "solution[0]")[1]
    [(0.0, 0.0, 5.0, 5.0)]
    """
    boxes = reference_boxes(reference)
    if not boxes:
        raise ValueError(f"{where}: object reference has no box (JSON bbox_2d or <p>label</p>{{<x1><y1><x2><y2>}})")
    return boxes, valid_boxes(boxes)


class IoUReward:
    """Box reward of the study: Hungarian-matched mean IoU, a count bonus and (v1) a coordinate-range term.

    Per object sample: parse the raw predicted boxes; ``inside`` = number of raw coordinates in ``[0, 100]``; clamp
    every coordinate to ``[0, 100]``; drop degenerate boxes; ``iou`` = mean IoU over Hungarian pairs (0 when no valid
    box); ``count`` = ``count_bonus`` if #valid predicted boxes == #valid reference boxes. Then
    ``reward = iou * (penalty if any raw coordinate is outside [0, 100] else 1) + range_bonus * inside + count``.
    ``iou_v1`` is (0.5, 0.1, 0.1); ``iou_v2`` is (1.0, 0.0, 0.1) = ``iou + count``. The range bonus is literally
    per coordinate, so it grows with the number of boxes (4 coordinates per box). ``None`` for other tasks.

    Args:
        name: the reward's ``__name__`` (TRL logs ``rewards/<name>/mean``).
        penalty: factor on ``iou`` when a raw coordinate is outside ``[0, 100]``.
        range_bonus: added per raw coordinate inside ``[0, 100]``.
        count_bonus: added when the number of valid boxes matches the reference.

    >>> ref = '[{"bbox_2d": [0, 0, 10, 10], "label": "brick"}]'
    >>> iou_v1 = IoUReward("iou_v1", penalty=0.5, range_bonus=0.1, count_bonus=0.1)
    >>> iou_v1(['[{"bbox_2d": [0, 0, 10, 5], "label": "brick"}]', '[{"bbox_2d": [-10, 0, 10, 10]}]', "Yes"],
    ...        solution=[ref, ref, "Yes"])
    [1.0, 0.9, None]
    """

    def __init__(self, name: str, penalty: float = 1.0, range_bonus: float = 0.0, count_bonus: float = 0.1) -> None:
        self.__name__ = name
        self.penalty = float(penalty)
        self.range_bonus = float(range_bonus)
        self.count_bonus = float(count_bonus)

    def __repr__(self) -> str:
        return (
            f"IoUReward({self.__name__!r}, penalty={self.penalty}, range_bonus={self.range_bonus}, "
            f"count_bonus={self.count_bonus})"
        )

    def __call__(
        self,
        completions: Sequence[Any],
        solution: Sequence[str] | None = None,
        task: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        out: list[float | None] = []
        ious: list[float] = []
        for i, s in enumerate(samples(self.__name__, completions, solution, task)):
            if s.task != "object":
                out.append(None)
                continue
            _, refs = object_reference(s.reference or "", f"reward {self.__name__!r}: solution[{i}]")
            reward, iou = self.score_parts(parse_boxes(answer_text(s.text)), refs)
            out.append(reward)
            ious.append(iou)
        log_metric = kwargs.get("log_metric")
        if ious and callable(log_metric):
            # the bare matched IoU, on one scale for every variant: v1 and v2 curves compare directly
            log_metric("iou/matched", sum(ious) / len(ious))
        return out

    def score(self, boxes: Sequence[Box], refs: BoxList) -> float:
        """The reward of raw predicted ``boxes`` against valid reference boxes ``refs``."""
        return self.score_parts(boxes, refs)[0]

    def score_parts(self, boxes: Sequence[Box], refs: BoxList) -> tuple[float, float]:
        """``(reward, matched IoU)`` of raw predicted ``boxes`` against valid reference boxes ``refs``."""
        raw = _as_array(boxes) if len(boxes) > _NUMPY_BOXES else boxes  # convert a flood of boxes once
        inside = coords_inside(raw)
        valid = valid_boxes(raw, clamp=True)
        total, pairs = match_boxes(valid, refs)
        iou = total / pairs if pairs else 0.0
        factor = self.penalty if inside < 4 * len(boxes) else 1.0
        count = self.count_bonus if len(valid) == len(refs) else 0.0
        return iou * factor + self.range_bonus * inside + count, iou


class LabelRougeReward(TaskReward):
    """ROUGE-1 F1 (rouge-score, no stemmer) between predicted and reference labels, each joined by spaces.

    Labels come from every parsed box, degenerate ones included; 0.0 when no predicted box parses; ``None`` for
    non-object samples.

    Args:
        completions: model outputs (strings or conversational message lists).
        solution: reference answers (JSON or legacy boxes).
        task: optional task column; inferred from ``solution`` when absent.

    >>> ref = '<p>red brick</p>{<0><0><10><10>}'
    >>> label_rouge(['[{"bbox_2d": [0, 0, 10, 10], "label": "red plate"}]', "red brick"], solution=[ref, ref])
    [0.5, 0.0]
    """

    __name__ = "label_rouge"
    task = "object"

    def score_sample(self, index: int, sample: Sample) -> float:
        ref_boxes, _ = object_reference(sample.reference or "", f"reward {self.__name__!r}: solution[{index}]")
        boxes = parse_boxes(answer_text(sample.text))
        if not boxes:
            return 0.0
        return rouge1_f1(" ".join(b.label for b in ref_boxes), " ".join(b.label for b in boxes))


iou_v1 = IoUReward("iou_v1", penalty=0.5, range_bonus=0.1, count_bonus=0.1)
iou_v2 = IoUReward("iou_v2", penalty=1.0, range_bonus=0.0, count_bonus=0.1)
label_rouge = LabelRougeReward()
