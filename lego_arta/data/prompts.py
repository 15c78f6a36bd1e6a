"""Prompts in the Qwen / TRL conversational format, and the dataset view SFT, GRPO and evaluation share.

A prompt is a message list; each user turn holds one image placeholder and the turn's text, and the images are
listed in the same order in a separate ``images`` list::

    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]},       # demo
     {"role": "assistant", "content": [{"type": "text", "text": "<demo answer>"}]},
     {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]}]       # the record
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets

from lego_arta.data.demos import DemoPool
from lego_arta.data.records import Record

# the study converted the detection answers to JSON on the 0-100 grid and asked for JSON output
OBJECT_DIRECTIVE = (
    'Give the position of each one as JSON: [{"bbox_2d": [x1, y1, x2, y2], "label": "object name"}], with X and Y '
    "coordinates normalized to [0,100]: x1 and y1 for the top-left corner, x2 and y2 for the bottom-right corner."
)
# the study's prefix for reasoning models (data.reasoning=true); added to the final user turn only
REASONING_PREFIX = (
    "First output the thinking process in <think> </think> tags and then output the final answer in "
    "<answer> </answer> tags."
)

Message = dict[str, Any]


def task_text(record: Record) -> str:
    """The text of the user turn that asks ``record``'s question (without the reasoning prefix).

    >>> r = Record(id="m/grounding/2", task="grounding", manual_id="m", group_id="m/grounding/2", image="/i.png",
    ...            query="What is the instruction?", solution="Attach the 2x4 red brick.", context="Place the base.")
    >>> print(task_text(r))
    Previous instruction: Place the base.
    What is the instruction?
    """
    query = record.query.strip()
    if record.task == "object":
        return f"{query.rstrip('.')}. {OBJECT_DIRECTIVE}"
    if record.task == "grounding":
        return f"Previous instruction: {record.context.strip() or 'None (this is the first step).'}\n{query}"
    return query


def user_turn(text: str) -> Message:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}


def assistant_turn(text: str) -> Message:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def build_messages(
    record: Record, demos: Sequence[Record] = (), *, reasoning: bool = False
) -> tuple[list[Message], list[str]]:
    """The prompt messages for ``record`` after its ``demos``, and the image paths in placeholder order."""
    messages: list[Message] = []
    images: list[str] = []
    for demo in demos:
        messages += [user_turn(task_text(demo)), assistant_turn(demo.solution)]
        images.append(demo.image)
    text = task_text(record)
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
    }
)


def build_rows(
    records: Sequence[Record], demo_pool: Sequence[Record] | DemoPool, data_cfg: Mapping[str, Any], seed: int
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
    rows = []
    for record in records:
        demos = pool.select(record) if use_demos else []
        prompt, images = build_messages(record, demos, reasoning=reasoning)
        rows.append(
            {
                "id": record.id,
                "task": record.task,
                "prompt": prompt,
                "images": images,
                "completion": [assistant_turn(record.solution)],
                "solution": record.solution,
                "demo_answer": demos[0].solution if demos else None,
            }
        )
    return rows


def build_dataset(
    records: Sequence[Record], demo_pool: Sequence[Record] | DemoPool, data_cfg: Mapping[str, Any], seed: int
) -> datasets.Dataset:
    """The TRL-ready view of ``records``: ``id``, ``task``, ``prompt``, ``images``, ``completion``, ``solution``,
    ``demo_answer`` (the answer of the prompt's first few-shot demo, None without demos: the copy-the-demo reference
    of the metrics reads it, written here where the demos are chosen).

    Args:
        records: the records to turn into samples (a split).
        demo_pool: where demos come from: the training records (or a ``DemoPool`` of them), never the test split.
        data_cfg: the ``data`` config node (``reasoning``, ``demos.enabled``, ``demos.match_box_count``,
            ``demos.state_pair``).
        seed: drives the demo choice (with each record's id).

    ``images`` is a ``List(Image())`` column built from the paths: nothing is decoded when the dataset is built;
    indexing a row opens its images as PIL images. In the message lists an image part reads
    ``{"type": "image", "text": None}`` (Arrow gives every part the same fields).
    """
    rows = build_rows(records, demo_pool, data_cfg, seed)
    columns = {name: [row[name] for row in rows] for name in FEATURES}
    return datasets.Dataset.from_dict(columns, features=FEATURES)
