"""Box geometry the rewards and the metrics share: IoU, Hungarian matching (scipy), valid boxes, reference boxes.

Boxes are ``(x1, y1, x2, y2, ...)`` on the 0-100 grid: ``lego_arta.parsing.Box``es, plain 4-tuples, or a (k, 4)
numpy array. Large inputs go through numpy with the same float operations, so a flood of boxes in a 1 MB completion
stays fast and gives the same values.

The frame rule (``to_grid``, docs/scoring.md) brings an answer given in pixels of the query image back to the grid
before any of this: thesis section 4.3 normalises every prediction to [0, 100] for the reward, and Qwen2.5-VL answers
grounding questions in pixels of the image its processor resized (https://github.com/QwenLM/Qwen3-VL/issues/676).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from scipy.optimize import linear_sum_assignment

from lego_arta.parsing import Box, reference_boxes

# The frame rule: an answer whose raw coordinates are all <= GRID_OVERSHOOT is on the 0-100 grid (values in
# (100, 105] and negatives are overshoot, clamped by the rewards); one coordinate above it puts the whole answer in
# the pixel frame of the query image.
GRID_MAX: Final = 100.0
GRID_OVERSHOOT: Final = 105.0

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


def many_as_array(boxes: BoxList) -> BoxList:
    """``boxes`` as a (k, 4) array when there are many (the numpy paths then take it as it is), else as given.

    Args:
        boxes: parsed boxes, 4-tuples or a (k, 4) array.

    >>> many_as_array([Box(0, 0, 1, 1)])
    [Box(x1=0, y1=0, x2=1, y2=1, label='')]
    """
    return _as_array(boxes) if len(boxes) > _NUMPY_BOXES else boxes


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


def on_grid(boxes: BoxList) -> bool:
    """True when every raw coordinate is at most :data:`GRID_OVERSHOOT` (105): the answer is read on the 0-100 grid.

    Args:
        boxes: parsed boxes (or a (k, 4) array); no box is on the grid.

    >>> on_grid([Box(-3.0, 0.0, 102.0, 50.0)]), on_grid([Box(10.0, 20.0, 106.0, 50.0)])
    (True, False)
    """
    if len(boxes) > _NUMPY_BOXES:
        return bool((_as_array(boxes) <= GRID_OVERSHOOT).all())
    return all(
        b[0] <= GRID_OVERSHOOT and b[1] <= GRID_OVERSHOOT and b[2] <= GRID_OVERSHOOT and b[3] <= GRID_OVERSHOOT
        for b in boxes
    )


def to_grid(boxes: BoxList, image_size: Sequence[float] | None) -> BoxList:
    """The frame rule: ``boxes`` on the 0-100 grid, normalised from pixels when the answer is in the pixel frame.

    An answer with any raw coordinate above 105 (:func:`on_grid` is false) is in pixels of the query image as the
    model saw it; with ``image_size`` = ``[width, height]`` of that resized image, every coordinate of the answer is
    normalised: ``x * 100 / width``, ``y * 100 / height``. An answer on the grid, or any answer without
    ``image_size``, is returned as it is (nothing clamped: the rewards clamp, the metrics do not).

    Args:
        boxes: the raw predicted boxes of one answer (``Box``es, 4-tuples or a (k, 4) array).
        image_size: ``[width, height]`` of the query image after the processor's resize, or ``None``.

    Raises:
        ValueError: an ``image_size`` that is not two positive finite numbers.

    >>> to_grid([Box(126, 168, 630, 504)], [1260, 840])  # an exact pixel answer on a 1260 x 840 frame
    [(10.0, 20.0, 50.0, 60.0)]
    >>> to_grid([Box(10, 20, 102, 60)], [1260, 840])  # on the grid (102 is overshoot): untouched
    [Box(x1=10, y1=20, x2=102, y2=60, label='')]
    """
    if image_size is None or on_grid(boxes):
        return boxes
    width, height = frame_size(image_size)
    scale = (100.0 / width, 100.0 / height, 100.0 / width, 100.0 / height)
    if isinstance(boxes, np.ndarray) or len(boxes) > _NUMPY_BOXES:
        return _as_array(boxes) * np.array(scale)
    return [(b[0] * scale[0], b[1] * scale[1], b[2] * scale[2], b[3] * scale[3]) for b in boxes]


def frame_size(image_size: Sequence[float]) -> tuple[float, float]:
    """``(width, height)`` of an ``image_size`` value, checked: two positive finite numbers.

    Raises:
        ValueError: anything else (a dataset error, not a model error).

    >>> frame_size([224, 112])
    (224.0, 112.0)
    """
    try:
        width, height = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be [width, height], got {image_size!r}") from None
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise ValueError(f"image_size must be two positive numbers [width, height], got {image_size!r}")
    return width, height


def grid_to_pixels(box: Coords, image_size: Sequence[float]) -> tuple[int, int, int, int]:
    """A grid box in whole pixels of an ``image_size`` = ``[width, height]`` frame (``data.box_frame=native``).

    Args:
        box: ``(x1, y1, x2, y2)`` on the 0-100 grid.
        image_size: ``[width, height]`` of the resized query image.

    >>> grid_to_pixels((10, 20, 50, 60), [1260, 840])
    (126, 168, 630, 504)
    """
    width, height = frame_size(image_size)
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return (round(x1 * width / 100), round(y1 * height / 100), round(x2 * width / 100), round(y2 * height / 100))


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
