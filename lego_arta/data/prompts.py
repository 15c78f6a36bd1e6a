"""Prompts in the Qwen / TRL conversational format, and the dataset view SFT, GRPO and evaluation share.

A prompt is a message list; each user turn holds one image placeholder and the turn's text, and the images are
listed in the same order in a separate ``images`` list::

    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]},       # demo
     {"role": "assistant", "content": [{"type": "text", "text": "<demo answer>"}]},
     {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]}]       # the record
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import datasets

from lego_arta.data.demos import DemoPool
from lego_arta.data.records import Record, boxes_to_json
from lego_arta.scores import grid_to_pixels

# The frame of the object answers a model is shown and taught (``data.box_frame``: few-shot demo answers, SFT
# targets) and the frame its directive asks for (``data.directive_frame``, by default the same). grid: the study's
# directive and references, 0-100 (its detection directive, converted to JSON); native: the frame the model family
# was pretrained to answer in (Qwen2.5-VL: whole pixels of the query image as the processor resized it; InternVL:
# 0-1000), given by the ``frame_of`` the model family makes. Records always keep the grid; the scoring references
# (``solution``) stay on the grid too, and the frame rule (docs/scoring.md) reads a native answer back. Pixel answers
# under the grid directive are what Qwen2.5-VL gives when asked for the grid.
_DIRECTIVE = (
    'Give the position of each one as JSON: [{"bbox_2d": [x1, y1, x2, y2], "label": "object name"}], {frame}: x1 and '
    "y1 for the top-left corner, x2 and y2 for the bottom-right corner."
)
GRID_WORDS = "with X and Y coordinates normalized to [0,100]"
BOX_FRAMES: tuple[str, ...] = ("grid", "native")
OBJECT_DIRECTIVE = _DIRECTIVE.replace("{frame}", GRID_WORDS)


class FrameOf(Protocol):
    """image path -> ``(width, height)`` of the frame the model's native box answers are in, for that image (the
    ``image_size`` column); ``words``: that frame as the object directive says it."""

    words: str

    def __call__(self, path: str, /) -> tuple[int, int]: ...


def object_directive(frame: str, frame_of: FrameOf | None = None) -> str:
    """The object directive asking for boxes in ``frame`` (``grid``, or ``native``: ``frame_of.words``).

    >>> object_directive("grid") == OBJECT_DIRECTIVE
    True
    """
    if frame == "grid":
        return OBJECT_DIRECTIVE
    if frame_of is None:
        raise ValueError(f"data.directive_frame={frame}: the model's frame is needed (frame_of)")
    return _DIRECTIVE.replace("{frame}", frame_of.words)


# the study's prefix for reasoning models (data.reasoning=true); added to the final user turn only
REASONING_PREFIX = (
    "First output the thinking process in <think> </think> tags and then output the final answer in "
    "<answer> </answer> tags."
)

Message = dict[str, Any]


def task_text(record: Record, box_frame: str = "grid", frame_of: FrameOf | None = None) -> str:
    """The text of the user turn that asks ``record``'s question (without the reasoning prefix); object questions end
    with the directive of ``box_frame`` (:func:`object_directive`).

    >>> r = Record(id="m/grounding/2", task="grounding", manual_id="m", group_id="m/grounding/2", image="/i.png",
    ...            query="What is the instruction?", solution="Attach the 2x4 red brick.", context="Place the base.")
    >>> print(task_text(r))
    Previous instruction: Place the base.
    What is the instruction?
    """
    query = record.query.strip()
    if record.task == "object":
        return f"{query.rstrip('.')}. {object_directive(box_frame, frame_of)}"
    if record.task == "grounding":
        return f"Previous instruction: {record.context.strip() or 'None (this is the first step).'}\n{query}"
    return query


def user_turn(text: str) -> Message:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}


def assistant_turn(text: str) -> Message:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def framed_answer(record: Record, box_frame: str, frame_of: FrameOf | None) -> str:
    """``record``'s answer as the model is taught it: the solution itself, or (object records, ``box_frame=native``)
    its boxes in whole units of the model's frame for the record's image (``frame_of``: the resized image's pixels
    for Qwen2.5-VL, 0-1000 for InternVL).

    >>> r = Record(id="m/object/1", task="object", manual_id="m", group_id="m/object/1", image="/i.png",
    ...            query="Find a red brick", solution='[{"bbox_2d": [10, 20, 50, 60], "label": "red brick"}]')
    >>> framed_answer(r, "native", lambda path: (224, 224))
    '[{"bbox_2d": [22, 45, 112, 134], "label": "red brick"}]'
    """
    if record.task != "object" or box_frame == "grid":
        return record.solution
    if frame_of is None:
        raise ValueError(f"data.box_frame={box_frame}: the image frame of each sample is needed (frame_of)")
    size = frame_of(record.image)
    return boxes_to_json([(b.label, grid_to_pixels(b, size)) for b in record.boxes()])


def build_messages(
    record: Record,
    demos: Sequence[Record] = (),
    *,
    reasoning: bool = False,
    box_frame: str = "grid",
    directive_frame: str | None = None,
    frame_of: FrameOf | None = None,
) -> tuple[list[Message], list[str]]:
    """The prompt messages for ``record`` after its ``demos``, and the image paths in placeholder order; demo answers
    in ``box_frame``, object directives asking for ``directive_frame`` (default: ``box_frame``)."""
    directive = directive_frame or box_frame
    messages: list[Message] = []
    images: list[str] = []
    for demo in demos:
        messages += [
            user_turn(task_text(demo, directive, frame_of)),
            assistant_turn(framed_answer(demo, box_frame, frame_of)),
        ]
        images.append(demo.image)
    text = task_text(record, directive, frame_of)
    messages.append(user_turn(f"{REASONING_PREFIX}\n{text}" if reasoning else text))
    images.append(record.image)
    return messages, images


_TEXT_PART = {"type": datasets.Value("string"), "text": datasets.Value("string")}
_MESSAGES = datasets.List({"role": datasets.Value("string"), "content": datasets.List(_TEXT_PART)})
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "prompt": _MESSAGES,
        "images": datasets.List(datasets.Image()),
        "completion": _MESSAGES,
        "solution": datasets.Value("string"),
        "demo_answer": datasets.Value("string"),
        "image_size": datasets.List(datasets.Value("int32")),
    }
)


def build_rows(
    records: Sequence[Record],
    demo_pool: Sequence[Record] | DemoPool,
    data_cfg: Mapping[str, Any],
    seed: int,
    frame_of: FrameOf | None = None,
) -> list[dict[str, Any]]:
    """The dataset rows as plain dicts (``images`` as paths); see ``build_dataset``."""
    demos_cfg = data_cfg["demos"]
    use_demos = bool(demos_cfg["enabled"])
    pool = (
        demo_pool
        if isinstance(demo_pool, DemoPool)
        else DemoPool(
            demo_pool,
            match_box_count=bool(demos_cfg["match_box_count"]),
            state_pair=str(demos_cfg["state_pair"]),
            seed=seed,
        )
    )
    reasoning = bool(data_cfg["reasoning"])
    box_frame, directive_frame = str(data_cfg["box_frame"]), str(data_cfg["directive_frame"])
    for key, value in (("box_frame", box_frame), ("directive_frame", directive_frame)):
        if value not in BOX_FRAMES:
            raise ValueError(f"data.{key}={value}: expected one of {', '.join(BOX_FRAMES)}")
    rows = []
    for record in records:
        demos = pool.select(record) if use_demos else []
        prompt, images = build_messages(
            record, demos, reasoning=reasoning, box_frame=box_frame, directive_frame=directive_frame, frame_of=frame_of
        )
        rows.append(
            {
                "id": record.id,
                "task": record.task,
                "prompt": prompt,
                "images": images,
                "completion": [assistant_turn(framed_answer(record, box_frame, frame_of))],
                "solution": record.solution,
                "demo_answer": framed_answer(demos[0], box_frame, frame_of) if demos else None,
                "image_size": list(frame_of(record.image)) if frame_of is not None else None,
            }
        )
    return rows


def build_dataset(
    records: Sequence[Record],
    demo_pool: Sequence[Record] | DemoPool,
    data_cfg: Mapping[str, Any],
    seed: int,
    frame_of: FrameOf | None = None,
) -> datasets.Dataset:
    """The TRL-ready view of ``records``: ``id``, ``task``, ``prompt``, ``images``, ``completion``, ``solution``,
    ``demo_answer`` (the answer of the prompt's first few-shot demo, None without demos: the copy-the-demo reference
    of the metrics reads it, written here where the demos are chosen) and ``image_size`` (``[width, height]`` of the
    frame of the model's native answers for the query image, from ``frame_of``; None without it): the frame rule of
    the rewards and metrics reads a native answer with it.

    Args:
        records: the records to turn into samples (a split).
        demo_pool: where demos come from: the training records (or a ``DemoPool`` of them), never the test split.
        data_cfg: the ``data`` config node (``reasoning``, ``box_frame``, ``directive_frame``, ``demos.enabled``,
            ``demos.match_box_count``, ``demos.state_pair``).
        seed: drives the demo choice (with each record's id).
        frame_of: image path -> ``(width, height)`` of the model's native frame, with its ``words``
            (``lego_arta.models.family(cfg.model).image_frame()``); needed by ``data.box_frame=native``.

    ``images`` is a ``List(Image())`` column built from the paths: nothing is decoded when the dataset is built;
    indexing a row opens its images as PIL images. In the message lists an image part reads
    ``{"type": "image", "text": None}`` (Arrow gives every part the same fields).
    """
    rows = build_rows(records, demo_pool, data_cfg, seed, frame_of)
    columns = {name: [row[name] for row in rows] for name in FEATURES}
    return datasets.Dataset.from_dict(columns, features=FEATURES)
