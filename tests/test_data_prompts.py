"""Prompts per task in the Qwen/TRL conversational format, and the lazily decoded TRL dataset view."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lego_arta.data import (
    GROUNDING_QUERY,
    OBJECT_DIRECTIVE,
    REASONING_PREFIX,
    STATE_QUERY,
    DemoPool,
    Record,
    build_dataset,
    build_messages,
    split_records,
    task_text,
)
from tests.data_fixtures import make_records, write_image


def rec(task: str, query: str, solution: str, context: str = "", step: int = 0) -> Record:
    uid = f"m/{task}/{step}"
    return Record(
        id=uid,
        task=task,
        manual_id="m",
        group_id=uid,
        image=f"/{task}.png",
        query=query,
        solution=solution,
        context=context,
        step_num=step,
    )


OBJECT = rec("object", "Find a 1x2 white beam", '[{"bbox_2d": [1, 2, 3, 4], "label": "1x2 white beam"}]', step=2)
GROUNDING = rec("grounding", GROUNDING_QUERY, "Add the beam.", "Attach the brick.", step=2)
STATE = rec("state", STATE_QUERY, "Yes")
CFG = {"reasoning": False, "demos": {"enabled": True, "match_box_count": True, "state_pair": "related"}}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        # object: the query, then the JSON directive on the 0-100 grid
        (OBJECT, f"Find a 1x2 white beam. {OBJECT_DIRECTIVE}"),
        # grounding: the previous step's text, then the question
        (GROUNDING, f"Previous instruction: Attach the brick.\n{GROUNDING_QUERY}"),
        # the first step has no previous text
        (
            rec("grounding", "Q?", "A.", step=1),
            "Previous instruction: None (this is the first step).\nQ?",
        ),
        # state: the study's question as is
        (STATE, "Was this step completed correctly? Just tell me Yes or No."),
    ],
)
def test_task_text(record: Record, expected: str) -> None:
    assert task_text(record) == expected


def test_object_directive_asks_for_json_on_the_100_grid() -> None:
    assert '[{"bbox_2d": [x1, y1, x2, y2], "label": "object name"}]' in OBJECT_DIRECTIVE
    assert "[0,100]" in OBJECT_DIRECTIVE


def test_messages_demos_first_then_the_record_with_images_in_order() -> None:
    demo = rec("object", "Find a 2x4 red brick", "[]", step=1)
    messages, images = build_messages(OBJECT, [demo], reasoning=True)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": task_text(demo)}]
    assert messages[1]["content"] == [{"type": "text", "text": "[]"}]
    assert messages[2]["content"][1]["text"] == f"{REASONING_PREFIX}\n{task_text(OBJECT)}"  # final turn only
    assert REASONING_PREFIX not in messages[0]["content"][1]["text"]
    assert images == [demo.image, OBJECT.image]


@pytest.fixture
def with_images(tmp_path: Path) -> tuple[list[Record], list[Record]]:
    records = []
    for i, r in enumerate(make_records(num_manuals=4, steps=2)):
        image = write_image(tmp_path / f"{i}.png", (i % 250, 0, 0))
        records.append(Record(**{**r.to_dict(), "image": str(image)}))
    return split_records(records, test_size=0.25, seed=0, by="record")


def test_build_dataset_columns_lazy_images_and_completion(
    with_images: tuple[list[Record], list[Record]], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = with_images
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    dataset = build_dataset(test, train, CFG, seed=0)
    assert opened == []  # nothing decoded while building
    assert dataset.column_names == ["id", "task", "prompt", "images", "completion", "solution", "demo_answer"]
    assert len(dataset) == len(test)

    pool, ids = DemoPool(train, match_box_count=True, state_pair="related", seed=0), {r.id: r for r in train}
    for row, record in zip(dataset, test, strict=True):
        demos = pool.select(record)
        assert row["id"] == record.id and row["task"] == record.task and row["solution"] == record.solution
        assert row["completion"] == [{"role": "assistant", "content": [{"type": "text", "text": record.solution}]}]
        assert len(row["prompt"]) == 2 * len(demos) + 1 and len(row["images"]) == len(demos) + 1
        assert all(isinstance(image, Image.Image) for image in row["images"])
        assert all(d.id in ids for d in demos)  # demos from the training split
        placeholders = [p for m in row["prompt"] for p in m["content"] if p["type"] == "image"]
        assert len(placeholders) == len(row["images"])
        assert row["prompt"][-1]["content"][1]["text"] == task_text(record)
        # the first demo's answer, written where the demos are chosen (the copy-the-demo reference reads it)
        assert row["demo_answer"] == (demos[0].solution if demos else None)
        assert row["demo_answer"] is None or row["demo_answer"] == row["prompt"][1]["content"][0]["text"]
    assert opened  # indexing decodes


def test_demos_off(with_images: tuple[list[Record], list[Record]]) -> None:
    train, test = with_images
    dataset = build_dataset(test, train, {**CFG, "demos": {**CFG["demos"], "enabled": False}}, seed=0)
    assert all(len(row["prompt"]) == 1 and len(row["images"]) == 1 for row in dataset)
    assert dataset["demo_answer"] == [None] * len(dataset)
