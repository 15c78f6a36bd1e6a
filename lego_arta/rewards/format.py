"""The ``format`` reward: ``<think>...</think>`` then ``<answer>...</answer>``, with JSON boxes for object samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lego_arta.parsing import answer_text, is_think_answer, parse_json_boxes
from lego_arta.rewards.base import samples


class FormatReward:
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

    def __call__(
        self,
        completions: Sequence[Any],
        solution: Sequence[str] | None = None,
        task: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        out: list[float | None] = []
        for s in samples(self.__name__, completions, solution, task, needs_solution=False):
            ok = is_think_answer(s.text) and (s.task != "object" or bool(parse_json_boxes(answer_text(s.text))))
            out.append(1.0 if ok else 0.0)
        return out


format = FormatReward()  # the registry name; shadows the builtin only inside this module
