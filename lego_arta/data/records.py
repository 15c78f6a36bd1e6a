"""The record every task, method and metric shares, and the error every data problem raises.

A record is one (image, query, solution) sample of one task:

- ``grounding``: a step image; ``context`` holds the previous step's text; the solution is this step's text.
- ``object``: a parts call-out image and a query such as "Find a 1x2 white beam"; the solution is a JSON list
  ``[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}]`` with integer coordinates on the 0-100 grid.
- ``state``: an assembly image; the solution is "Yes" (the real image) or "No" (one of its fakes).

``group_id`` ties records that must stay on the same side of the split (a real state image and its fakes); for the
other tasks it is the record's own id.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lego_arta.errors import UserError
from lego_arta.parsing import TASKS, Box, parse_boxes

# The instances per task the dataset and the study report (35,612 in all): what a full read of the download is
# compared with (experiments/prepare_data.py prints both).
PUBLISHED_COUNTS: dict[str, int] = {"grounding": 5612, "object": 19136, "state": 10864}

# The queries of the tasks whose query is not stored in the dataset (object queries come from the data).
GROUNDING_QUERY = "What is the instruction for the step shown in this image? Answer with the instruction text."
STATE_QUERY = "Was this step completed correctly? Just tell me Yes or No."


class DataError(UserError, ValueError):
    """A problem in the dataset files or the data config, raised before any model is loaded.

    The message names the file, the record and the field when they are known.
    """

    @classmethod
    def at(
        cls,
        file: object,
        problem: str,
        *,
        record: str | int | None = None,
        field: str | None = None,
    ) -> DataError:
        """Build the error for ``problem`` in ``file`` (and ``record`` / ``field`` when given).

        >>> str(DataError.at("json_data/m.json", "missing", record="instruction 2 (instruction_id=7)", field="VLM"))
        "json_data/m.json: instruction 2 (instruction_id=7): field 'VLM': missing"
        """
        return cls(where(file, record=record, field=field) + problem)


def where(file: object, *, record: str | int | None = None, field: str | None = None) -> str:
    """The ``"file: record: field 'x': "`` prefix of a data error message."""
    parts = [str(file)]
    if record is not None:
        parts.append(f"record {record}" if isinstance(record, int) else str(record))
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts) + ": "


@dataclass(frozen=True, kw_only=True)
class Record:
    """One sample of one task; ``image`` is an absolute path (the pixels are opened only when needed).

    Built with keywords only: nine fields, five of them strings, are too easy to swap by position.
    """

    id: str
    task: str
    manual_id: str
    group_id: str
    image: str
    query: str
    solution: str
    context: str = ""
    step_num: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"record {self.id!r}: field 'task': {self.task!r} is not one of {list(TASKS)}")

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain JSON-serialisable dict (the line format of ``train.jsonl`` / ``test.jsonl``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: object = "<dict>", index: int | None = None) -> Record:
        """Build a record from a dict with the record fields; a missing or mistyped field raises ``DataError``.

        >>> r = Record.from_dict({"id": "m/state/1", "task": "state", "manual_id": "m", "group_id": "m/state/1",
        ...                       "image": "/d/a.png", "query": "q", "solution": "Yes"})
        >>> Record.from_dict(r.to_dict()) == r
        True
        """
        rec = index if index is not None else data.get("id")
        for name in REQUIRED_FIELDS:
            if name not in data:
                raise DataError.at(
                    source, f"missing (found fields: {sorted(data)}; expected {list(FIELDS)})", record=rec, field=name
                )
        values: dict[str, Any] = {}
        for name in FIELDS:
            if name not in data:
                continue
            value = data[name]
            if name == "step_num":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise DataError.at(source, f"expected an integer, got {value!r}", record=rec, field=name)
            elif not isinstance(value, str):
                raise DataError.at(source, f"expected a string, got {value!r}", record=rec, field=name)
            values[name] = value
        if values["task"] not in TASKS:
            raise DataError.at(source, f"{values['task']!r} is not one of {list(TASKS)}", record=rec, field="task")
        return cls(**values)

    def boxes(self) -> list[Box]:
        """The boxes of an object record's solution (0-100 grid, ``Box.coords`` / ``Box.label``); [] otherwise."""
        return parse_boxes(self.solution) if self.task == "object" else []


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Record))
REQUIRED_FIELDS: tuple[str, ...] = ("id", "task", "manual_id", "group_id", "image", "query", "solution")


def boxes_to_json(boxes: Sequence[tuple[str, Sequence[float]]]) -> str:
    """The JSON answer of an object record.

    >>> boxes_to_json([("1x2 white beam", (10, 20, 30, 40))])
    '[{"bbox_2d": [10, 20, 30, 40], "label": "1x2 white beam"}]'
    """
    return json.dumps([{"bbox_2d": list(box), "label": label} for label, box in boxes])


def to_json_answer(answer: str) -> tuple[str, list[Box]]:
    """A reference detection answer (JSON or the legacy ``<p>label</p>{<x1><y1><x2><y2>}``) as the JSON answer.

    Returns the JSON text (integral coordinates written as ints, as in the dataset) and the parsed boxes; the text is
    "" when the answer holds no box. Parsing is ``lego_arta.parsing.parse_boxes``, the one box parser.

    >>> to_json_answer("<p>1x2 white beam</p>{<10><20><30><40>}<delim>{<50><20><70><40>}")[0]
    '[{"bbox_2d": [10, 20, 30, 40], "label": "1x2 white beam"}, {"bbox_2d": [50, 20, 70, 40], "label": ...}]'
    """
    boxes = parse_boxes(answer.strip())
    if not boxes:
        return "", []
    return boxes_to_json([(b.label, [_int_if_integral(v) for v in b.coords]) for b in boxes]), boxes


INVALID_LABEL = "imagecontent"  # MiniGPT-v2's label for "the whole image": not a part (the study drops these rows)
_LEGACY_LABEL = re.compile(r"<p>([^<]*)</p>")


def detection_answer(answer: str) -> tuple[str, str | None, list[str]]:
    """A reference detection answer checked as the reader needs it: (JSON solution, problem, labels without a box).

    ``problem`` is None for a usable answer, else why it is not: ``"ImageContent label"`` (any label, as the study's
    notebook drops the whole row) or ``"answer has no box"``. Labels of a legacy answer that no box follows are
    listed (the answer is kept with the boxes it has). MiniGPT-v2 writes a space before the box, joins the boxes of
    one label with ``<delim>`` and may add free text after a box: the parser skips what is not a box.

    >>> detection_answer("<p>1x2 white beam</p> {<10><20><30><40>} on the left<p>axle</p>")
    ('[{"bbox_2d": [10, 20, 30, 40], "label": "1x2 white beam"}]', None, ['axle'])
    >>> detection_answer("<p>ImageContent</p> {<0><0><99><99>}")[1]
    'ImageContent label'
    """
    solution, boxes = to_json_answer(answer)
    labels = {box.label.strip() for box in boxes}
    legacy = [label.strip() for label in _LEGACY_LABEL.findall(answer)]
    if any(label.lower() == INVALID_LABEL for label in labels | set(legacy)):
        return "", "ImageContent label", []
    if not boxes:
        return "", "answer has no box", []
    return solution, None, [label for label in dict.fromkeys(legacy) if label not in labels]


def _int_if_integral(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
