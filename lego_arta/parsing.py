"""The one parser of model text: answer extraction, word tokens, boxes, yes/no and task inference.

Rewards (``lego_arta.rewards``) and metrics (``lego_arta.metrics``) both call these functions; nothing else parses
model output. The rules are the scoring contract of ``docs/scoring.md``:

- Answer text: the content of the first ``<answer>...</answer>`` when present, else the whole text with every
  ``<think>...</think>`` removed; stripped. Tags are lower-case; an unclosed tag is plain text.
- Word tokens: ``re.findall(r"[a-z0-9]+", text.lower())``.
- Boxes: the answer text as JSON (or the body of a ```` ```json ```` fence that is the whole answer text), a list of
  objects or one object with ``bbox_2d`` = 4 numbers and ``label``; when no JSON parses, the legacy
  ``<p>label</p>{<x1><y1><x2><y2>}`` format.
- Yes/No: the first whole word ``yes`` or ``no`` (any case); none found = ``"no"``.
- Task: the given task, else inferred from the reference (boxes -> object, yes/no -> state, else grounding).

Every function is linear in the text's length: tags are found with ``str.find`` (the closing tag is searched once,
after the first opening tag), and the only regexes have no nested quantifiers. Bad model output never raises.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

TASKS: tuple[str, ...] = ("grounding", "object", "state")

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
_TAGS = (_THINK_OPEN, _THINK_CLOSE, _ANSWER_OPEN, _ANSWER_CLOSE)
_FENCE_OPEN, _FENCE_CLOSE = "```json", "```"

_WORD_RE = re.compile(r"[a-z0-9]+")
# A whole word "yes" or "no": not preceded or followed by a word-token character (same boundary as word_tokens).
_YES_NO_RE = re.compile(r"(?<![a-z0-9])(yes|no)(?![a-z0-9])")
# One legacy box {<x1><y1><x2><y2>}: signed ints or decimals, optional whitespace; possessive quantifiers only,
# so a failed attempt never backtracks (linear time).
_NUM = r"([-+]?+(?:\d++(?:\.\d*+)?+|\.\d++))"
_LEGACY_BOX_RE = re.compile(r"\{\s*+" + r"\s*+".join([r"<\s*+" + _NUM + r"\s*+>"] * 4) + r"\s*+\}")


class Box(NamedTuple):
    """One parsed box: corners on the 0-100 grid (any finite float) and its label."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = ""

    @property
    def valid(self) -> bool:
        """True unless the box is degenerate (``x1 >= x2`` or ``y1 >= y2``)."""
        return self.x1 < self.x2 and self.y1 < self.y2

    @property
    def coords(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or TRL's conversational ``[{"role": ..., "content": ...}]`` list.

    For a conversational completion the last message's content is used; a content given as a list of parts
    (``[{"type": "text", "text": ...}]``) is joined. Anything else is a programming error (``TypeError``).

    Args:
        completion: one element of TRL's ``completions``.

    >>> completion_text([{"role": "assistant", "content": "Yes"}])
    'Yes'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content", "")
        if isinstance(content, str):
            return content
        if isinstance(content, Sequence):
            return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
        raise TypeError(f"unsupported message content type {type(content).__name__}")
    if isinstance(completion, Sequence) and not completion:
        return ""
    raise TypeError(f"a completion is a string or a list of messages, got {type(completion).__name__}")


def strip_think(text: str) -> str:
    """``text`` with every closed ``<think>...</think>`` block removed (an unclosed ``<think>`` stays as text).

    Args:
        text: model text.

    >>> strip_think("<think>maybe no</think>Yes")
    'Yes'
    """
    pieces = []
    pos = 0
    while True:
        start = text.find(_THINK_OPEN, pos)
        if start < 0:
            break
        end = text.find(_THINK_CLOSE, start + len(_THINK_OPEN))
        if end < 0:  # unclosed: plain text, and no later <think> can be closed either
            break
        pieces.append(text[pos:start])
        pos = end + len(_THINK_CLOSE)
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


def answer_text(text: str) -> str:
    """The answer part of a model text, stripped.

    The content of the first ``<answer>...</answer>`` (searched in the raw text, so an answer block written inside a
    ``<think>`` block counts: the contract's literal rule), else the text with its ``<think>`` blocks removed.

    Args:
        text: raw model text (or a reference).

    >>> answer_text("<think>the box is [1, 2, 3, 4]</think> <answer> Yes </answer>")
    'Yes'
    >>> answer_text("<think>no</think> Yes")
    'Yes'
    """
    start = text.find(_ANSWER_OPEN)
    if start >= 0:
        end = text.find(_ANSWER_CLOSE, start + len(_ANSWER_OPEN))
        if end >= 0:
            return text[start + len(_ANSWER_OPEN) : end].strip()
    return strip_think(text).strip()


def is_think_answer(text: str) -> bool:
    """True when ``text`` is exactly ``<think>...</think>`` then ``<answer>...</answer>``, whitespace around allowed.

    Choice: neither block's body may contain one of the four tags, so the answer block is then the answer text.

    Args:
        text: raw model text.

    >>> is_think_answer(" <think>a</think>\\n<answer>b</answer>\\n")
    True
    >>> is_think_answer("<answer>b</answer>")
    False
    """
    s = text.strip()
    if not (s.startswith(_THINK_OPEN) and s.endswith(_ANSWER_CLOSE)):
        return False
    think_end = s.find(_THINK_CLOSE, len(_THINK_OPEN))
    if think_end < 0:
        return False
    rest = s[think_end + len(_THINK_CLOSE) :].lstrip()
    if not rest.startswith(_ANSWER_OPEN) or len(rest) < len(_ANSWER_OPEN) + len(_ANSWER_CLOSE):
        return False
    think_body = s[len(_THINK_OPEN) : think_end]
    answer_body = rest[len(_ANSWER_OPEN) : -len(_ANSWER_CLOSE)]
    return not any(tag in think_body or tag in answer_body for tag in _TAGS)


def word_tokens(text: str) -> list[str]:
    """Lower-case word tokens, punctuation dropped: ``re.findall(r"[a-z0-9]+", text.lower())``.

    Args:
        text: any text.

    >>> word_tokens("Attach the 1x2 Brick!")
    ['attach', 'the', '1x2', 'brick']
    """
    return _WORD_RE.findall(text.lower())


_NO_JSON = object()
_DECODER = json.JSONDecoder()
# A JSON text (stripped) starts with one of these: object, array, string, number, true/false/null, NaN/Infinity.
_JSON_FIRST = frozenset('[{"-0123456789tfnNI')
_INF = math.inf


def _json_loads(text: str) -> Any:
    # json.loads without its per-call overhead: ``text`` is stripped, so the value must end exactly at its end.
    if not text or text[0] not in _JSON_FIRST:
        return _NO_JSON
    try:
        value, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):  # JSONDecodeError, int digit limit; deeply nested input
        return _NO_JSON
    return value if end == len(text) else _NO_JSON


def _json_box(item: Any) -> Box | None:
    if type(item) is not dict:
        return None
    raw = item.get("bbox_2d")
    if type(raw) is not list or len(raw) != 4:
        return None
    for value in raw:
        if type(value) is not float and type(value) is not int:  # bools and strings are not coordinates
            return None
    try:
        x1, y1, x2, y2 = (float(v) for v in raw)
    except OverflowError:  # an int beyond float range (10**400)
        return None
    if not (-_INF < x1 < _INF and -_INF < y1 < _INF and -_INF < x2 < _INF and -_INF < y2 < _INF):
        return None  # NaN, Infinity, 1e400
    label = item.get("label", "")
    if type(label) is not str:
        try:
            label = str(label)
        except (ValueError, RecursionError):  # a huge int label over the digit limit
            label = ""
    return Box(x1, y1, x2, y2, label)


def parse_json_boxes(answer: str) -> list[Box] | None:
    """Boxes of an answer given as JSON, or ``None`` when no JSON parses.

    JSON is the whole answer text, or the body of a ```` ```json ```` fence that makes up the whole answer text. The
    value is a list of objects or one object; items without a valid ``bbox_2d`` (4 finite JSON numbers, not bools)
    are skipped. A missing label is ``""``, a non-string one becomes ``str(label)``.

    Args:
        answer: the answer text (see ``answer_text``), stripped.

    >>> parse_json_boxes('[{"bbox_2d": [10, 20.5, 30, 40], "label": "red brick"}, {"label": "no box"}]')
    [Box(x1=10.0, y1=20.5, x2=30.0, y2=40.0, label='red brick')]
    >>> parse_json_boxes("<p>brick</p>{<1><2><3><4>}") is None
    True
    """
    data = _json_loads(answer)
    if (
        data is _NO_JSON
        and answer.startswith(_FENCE_OPEN)
        and answer.endswith(_FENCE_CLOSE)
        and len(answer) >= len(_FENCE_OPEN) + len(_FENCE_CLOSE)
    ):
        data = _json_loads(answer[len(_FENCE_OPEN) : -len(_FENCE_CLOSE)].strip())
    if data is _NO_JSON:
        return None
    items = data if isinstance(data, list) else [data]
    boxes = []
    for item in items:
        box = _json_box(item)
        if box is not None:
            boxes.append(box)
    return boxes


def _legacy_boxes_in(answer: str, start: int, end: int, label: str, out: list[Box]) -> None:
    for groups in _LEGACY_BOX_RE.findall(answer, start, end):
        x1, y1, x2, y2 = map(float, groups)
        if x1 < _INF and y1 < _INF and x2 < _INF and y2 < _INF:  # a 400-digit coordinate overflows to inf: skipped
            out.append(Box(x1, y1, x2, y2, label))


def parse_legacy_boxes(answer: str) -> list[Box]:
    """Boxes in the legacy ``<p>label</p>{<x1><y1><x2><y2>}`` format.

    Every ``{<x1><y1><x2><y2>}`` after a ``<p>label</p>`` is one box with that label (several boxes may follow one
    label, with anything between them, e.g. MiniGPT-v2's ``<delim>``). Choice: a box before any label gets the label
    ``""``. Coordinates are signed ints or decimals; whitespace inside the braces is allowed.

    Args:
        answer: the answer text.

    >>> parse_legacy_boxes("<p>beam</p>{<1><2><30><40>}<delim>{<5><6><7><8>}<p>plate</p>{<0><0><9.5><9>}")
    [Box(x1=1.0, y1=2.0, x2=30.0, y2=40.0, label='beam'), Box(x1=5.0, y1=6.0, x2=7.0, y2=8.0, label='beam'), \
Box(x1=0.0, y1=0.0, x2=9.5, y2=9.0, label='plate')]
    """
    boxes: list[Box] = []
    if "{" not in answer:
        return boxes
    label = ""
    pos = 0
    n = len(answer)
    while True:
        open_at = answer.find("<p>", pos)
        if open_at < 0:
            _legacy_boxes_in(answer, pos, n, label, boxes)
            return boxes
        close_at = answer.find("</p>", open_at + 3)
        if close_at < 0:  # unclosed <p>: plain text to the end, boxes keep the current label
            _legacy_boxes_in(answer, pos, n, label, boxes)
            return boxes
        _legacy_boxes_in(answer, pos, open_at, label, boxes)
        label = answer[open_at + 3 : close_at].strip()
        pos = close_at + 4


def parse_boxes(answer: str) -> list[Box]:
    """Boxes of an answer text: JSON first; the legacy format only when no JSON parses.

    Degenerate boxes are kept (their labels count); callers drop them with ``Box.valid`` where the contract says so.

    Args:
        answer: the answer text (see ``answer_text``).

    >>> parse_boxes('```json\\n{"bbox_2d": [1, 2, 3, 4], "label": "axle"}\\n```')
    [Box(x1=1.0, y1=2.0, x2=3.0, y2=4.0, label='axle')]
    >>> parse_boxes("<p>axle</p>{<1><2><3><4>}")
    [Box(x1=1.0, y1=2.0, x2=3.0, y2=4.0, label='axle')]
    """
    boxes = parse_json_boxes(answer)
    return parse_legacy_boxes(answer) if boxes is None else boxes


@functools.lru_cache(maxsize=1024)
def reference_boxes(reference: str) -> tuple[Box, ...]:
    """The boxes of a reference text (its answer text parsed like a prediction), cached: GRPO repeats references.

    Args:
        reference: the reference answer.
    """
    return tuple(parse_boxes(answer_text(reference)))


def parse_yes_no(answer: str) -> str:
    """``"yes"`` or ``"no"``: the first whole word ``yes`` or ``no`` in any case; ``"no"`` when there is none.

    A whole word is bounded like a word token (``[a-z0-9]`` runs after lower-casing): "Yesterday" and "no2" are not
    answers, "yes," and "no_" are.

    Args:
        answer: the answer text.

    >>> parse_yes_no("Yesterday? No, yes.")
    'no'
    >>> parse_yes_no("I cannot tell")
    'no'
    """
    return find_yes_no(answer) or "no"


def find_yes_no(answer: str) -> str | None:
    """``"yes"`` or ``"no"``: the first whole word ``yes`` or ``no`` in any case; None when there is none.

    >>> find_yes_no("It is NO good"), find_yes_no("I cannot tell")
    ('no', None)
    """
    match = _YES_NO_RE.search(answer.lower())
    return match.group(1) if match else None


@functools.lru_cache(maxsize=1024)
def infer_task(reference: str) -> str:
    """The task of a sample from its reference: boxes parse -> object; yes/no -> state; else grounding.

    A reference "is yes/no" when its answer text's word tokens are exactly ``["yes"]`` or ``["no"]`` (so ``"Yes."``
    counts).

    Args:
        reference: the reference answer.

    >>> infer_task('[{"bbox_2d": [1, 2, 3, 4], "label": "axle"}]'), infer_task("No."), infer_task("Attach the axle.")
    ('object', 'state', 'grounding')
    """
    if reference_boxes(reference):
        return "object"
    words = _WORD_RE.finditer(answer_text(reference).lower())
    first, second = next(words, None), next(words, None)
    if first is not None and second is None and first.group() in ("yes", "no"):
        return "state"
    return "grounding"


def resolve_task(task: str | None, reference: str) -> str:
    """The sample's task: ``task`` when given (one of ``TASKS``, else ``ValueError``), else ``infer_task``.

    Args:
        task: the ``task`` column's value, or None.
        reference: the reference answer.

    >>> resolve_task(None, "Yes"), resolve_task("grounding", "Yes")
    ('state', 'grounding')
    """
    if task is None:
        return infer_task(reference)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return task
