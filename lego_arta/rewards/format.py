"""The ``format`` reward: ``<think>...</think>`` then ``<answer>...</answer>``, with JSON boxes for object samples."""

from __future__ import annotations

from lego_arta.parsing import answer_text, is_think_answer, parse_json_boxes
from lego_arta.rewards.base import Sample, TaskReward


class FormatReward(TaskReward):
    """1.0 if the completion is exactly ``<think>...</think>`` then ``<answer>...</answer>`` (whitespace before,
    between and after allowed) and, for object samples, the answer holds at least one box as JSON; else 0.0.

    Applies to every task (never ``None``). Choices: neither block may contain one of the four tags (so nesting or a
    second block fails); a JSON box may be degenerate (it is still a box); without ``solution`` and ``task`` only the
    tags are checked.

    Args:
        completions: model outputs (strings or conversational message lists).
        solution: reference answers, used to infer the task when ``task`` is absent.
        task: optional task column.

    >>> box = '[{"bbox_2d": [1, 2, 3, 4], "label": "axle"}]'
    >>> format([f"<think>hm</think> <answer>{box}</answer>", "<think>hm</think><answer>axle</answer>", "Yes"],
    ...        solution=[box, box, "Yes"])
    [1.0, 0.0, 0.0]
    """

    __name__ = "format"
    needs_solution = False

    def reward_sample(self, index: int, sample: Sample) -> float:
        text = sample.text
        ok = is_think_answer(text) and (sample.task != "object" or bool(parse_json_boxes(answer_text(text))))
        return 1.0 if ok else 0.0


format = FormatReward()  # the registry name; shadows the builtin only inside this module
