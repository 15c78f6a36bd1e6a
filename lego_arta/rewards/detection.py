"""Object-detection rewards: the IoU reward (``iou_v1``, ``iou_v2``: its variants) and ``label_rouge``."""

from __future__ import annotations

from collections.abc import Mapping

from lego_arta.parsing import answer_text, parse_boxes
from lego_arta.rewards.base import Sample, TaskReward
from lego_arta.scores import (
    coords_inside,
    many_as_array,
    match_boxes,
    object_reference,
    on_grid,
    rouge1_f1,
    to_grid,
    valid_boxes,
)


class IoUReward(TaskReward):
    """Box reward of the study: Hungarian-matched mean IoU, a count bonus and (v1) a coordinate-range term.

    Per object sample (docs/scoring.md): parse the raw predicted boxes; ``inside`` = number of raw coordinates in
    ``[0, 100]``; apply the frame rule (:func:`lego_arta.scores.to_grid`: an answer with a coordinate above 105 is in
    pixels of the query image and is normalised by the sample's ``image_size``); clamp every coordinate to
    ``[0, 100]``; drop degenerate boxes; ``iou`` = mean IoU over Hungarian pairs (0 when no valid box); ``count`` =
    ``count_bonus`` if #valid predicted boxes == #valid reference boxes. Then
    ``reward = iou * (penalty if any raw coordinate is outside [0, 100] else 1) + range_bonus * inside + count``:
    the penalty and the bonus read the raw answer (thesis section 4.3: "the reward is scaled based on whether the
    model's raw output was normalized before post-processing"). The study's variants are the nodes ``v1``
    (0.5, 0.1, 0.1) and ``v2`` (1.0, 0.0, 0.1: ``iou + count``) of ``lego_arta/rewards/iou.yaml``; the range bonus
    is literally per coordinate, so it grows with the number of boxes (4 coordinates per box). ``None`` for other
    tasks.

    Side metrics, through TRL's ``log_metric`` (batch means, one scale for every variant): ``iou/matched`` (the bare
    matched IoU), ``frame/grid_share`` (answers with a box whose raw coordinates are all <= 105, read on the grid)
    and ``frame/in_range_share`` (answers with a box whose raw coordinates are all inside [0, 100]: v1's penalty
    spares them).

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
    >>> # pixels of a 1120 px frame: the exact box (IoU 1), x 0.5 penalty + 2 coordinates in range + count
    >>> iou_v1(['[{"bbox_2d": [0, 0, 112, 112]}]'], solution=[ref], image_size=[[1120, 1120]])
    [0.7999999999999999]
    """

    task = "object"

    def __init__(self, name: str, *, penalty: float, range_bonus: float, count_bonus: float) -> None:
        self.__name__ = name
        self.penalty = float(penalty)
        self.range_bonus = float(range_bonus)
        self.count_bonus = float(count_bonus)

    def __repr__(self) -> str:
        return (
            f"IoUReward({self.__name__!r}, penalty={self.penalty}, range_bonus={self.range_bonus}, "
            f"count_bonus={self.count_bonus})"
        )

    def reward_and_side_metrics(self, index: int, sample: Sample) -> tuple[float, Mapping[str, float]]:
        _, refs = object_reference(sample.reference or "", f"reward {self.__name__!r}: solution[{index}]")
        boxes = parse_boxes(answer_text(sample.text))
        raw = many_as_array(boxes)  # a flood of boxes is converted once
        inside = coords_inside(raw)
        in_range = inside == 4 * len(boxes)
        valid = valid_boxes(to_grid(raw, sample.image_size), clamp=True)
        total, pairs = match_boxes(valid, refs)
        iou = total / pairs if pairs else 0.0
        factor = 1.0 if in_range else self.penalty
        count = self.count_bonus if len(valid) == len(refs) else 0.0
        metrics = {"iou/matched": iou}
        if len(boxes):
            metrics |= {"frame/grid_share": float(on_grid(raw)), "frame/in_range_share": float(in_range)}
        return iou * factor + self.range_bonus * inside + count, metrics


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

    def reward_sample(self, index: int, sample: Sample) -> float:
        ref_boxes, _ = object_reference(sample.reference or "", f"reward {self.__name__!r}: solution[{index}]")
        boxes = parse_boxes(answer_text(sample.text))
        if not boxes:
            return 0.0
        return rouge1_f1(" ".join(b.label for b in ref_boxes), " ".join(b.label for b in boxes))


label_rouge = LabelRougeReward()
