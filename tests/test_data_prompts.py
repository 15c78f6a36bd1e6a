"""Prompts per task in the Qwen/TRL conversational format, and the lazily decoded TRL dataset view."""

from __future__ import annotations

import json
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
from lego_arta.models import family
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
CFG = {
    "reasoning": False,
    "box_frame": "grid",
    "directive_frame": "grid",
    "demos": {"enabled": True, "match_box_count": True, "state_pair": "related"},
}


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
    assert dataset.column_names == [
        "id",
        "task",
        "prompt",
        "images",
        "completion",
        "solution",
        "demo_answer",
        "image_size",
    ]
    assert dataset["image_size"] == [None] * len(test)  # no frame_of given
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


def test_box_frame_native_teaches_and_asks_in_qwen_resized_pixels(
    with_images: tuple[list[Record], list[Record]], tmp_path: Path
) -> None:
    train, test = with_images
    for record in train + test:  # 40 x 30 (width x height) images
        Image.new("RGB", (40, 30)).save(record.image)
    # resized up to at least 224 x 224 pixels: scale sqrt(50176 / 1200) = 6.466, each side rounded up to a multiple
    # of 28: width ceil(258.6 / 28) x 28 = 280, height ceil(194.0 / 28) x 28 = 196
    frame_of = family({"family": "qwen2_5_vl", "min_pixels": 224 * 224, "max_pixels": 512 * 512}).image_frame()
    assert frame_of(test[0].image) == (280, 196)  # (width, height), though smart_resize returns (height, width)
    grid = build_dataset(test, train, CFG, seed=0, frame_of=frame_of)
    pixels = build_dataset(test, train, {**CFG, "box_frame": "native", "directive_frame": "native"}, 0, frame_of)
    # pixel answers under the study's directive: what Qwen2.5-VL gives when asked for the grid
    habit = build_dataset(test, train, {**CFG, "box_frame": "native"}, seed=0, frame_of=frame_of)
    assert grid["image_size"] == pixels["image_size"] == [[280, 196]] * len(test)
    assert grid["solution"] == pixels["solution"]  # the scoring references stay on the grid
    objects = [i for i, r in enumerate(test) if r.task == "object"]
    assert objects
    for i in objects:
        record, row = test[i], pixels[i]
        assert row["prompt"][-1]["content"][1]["text"] == task_text(record, "native", frame_of)
        taught = json.loads(row["completion"][0]["content"][0]["text"])
        for box, ref in zip(taught, record.boxes(), strict=True):
            # x * 280 / 100 and y * 196 / 100, rounded to whole pixels
            expected = [round(ref.x1 * 2.8), round(ref.y1 * 1.96), round(ref.x2 * 2.8), round(ref.y2 * 1.96)]
            assert box == {"bbox_2d": expected, "label": ref.label}
        assert grid[i]["completion"][0]["content"][0]["text"] == record.solution
        if row["demo_answer"] is not None:  # the demo's answer is shown in pixels too
            assert row["demo_answer"] == row["prompt"][1]["content"][0]["text"] != grid[i]["demo_answer"]
        assert habit[i]["completion"] == row["completion"] and habit[i]["demo_answer"] == row["demo_answer"]
        assert habit[i]["prompt"][-1]["content"][1]["text"] == task_text(record, "grid")
    with pytest.raises(ValueError, match=r"data\.box_frame=native"):
        build_dataset(test, train, {**CFG, "box_frame": "native"}, seed=0)
    with pytest.raises(ValueError, match=r"data\.box_frame=inches"):
        build_dataset(test, train, {**CFG, "box_frame": "inches"}, seed=0)
    with pytest.raises(ValueError, match=r"data\.directive_frame=inches"):
        build_dataset(test, train, {**CFG, "directive_frame": "inches"}, seed=0)


def test_native_directive_is_the_family_s_frame(tmp_path: Path) -> None:
    qwen = family({"family": "qwen2_5_vl", "min_pixels": 3136, "max_pixels": 12544}).image_frame()
    internvl = family({"family": "internvl", "max_tiles": 4, "tile_size": 56, "tokens_per_tile": 4}).image_frame()
    assert "[0,100]" not in task_text(OBJECT, "native", qwen) and "pixel coordinates" in task_text(
        OBJECT, "native", qwen
    )
    assert "[0,1000]" in task_text(OBJECT, "native", internvl) and "pixel" not in task_text(OBJECT, "native", internvl)
    assert "[0,100]" in task_text(OBJECT, "grid", internvl)


def test_internvl_answers_natively_on_0_1000(with_images: tuple[list[Record], list[Record]], tmp_path: Path) -> None:
    train, test = with_images
    for record in train + test:
        Image.new("RGB", (40, 30)).save(record.image)
    frame_of = family({"family": "internvl", "max_tiles": 4, "tile_size": 56, "tokens_per_tile": 4}).image_frame()
    native = build_dataset(test, train, {**CFG, "box_frame": "native"}, seed=0, frame_of=frame_of)
    assert native["image_size"] == [[1000, 1000]] * len(test)  # whatever the image's size
    for i in (i for i, r in enumerate(test) if r.task == "object"):
        taught = json.loads(native[i]["completion"][0]["content"][0]["text"])
        assert [b["bbox_2d"] for b in taught] == [
            [10 * ref.x1, 10 * ref.y1, 10 * ref.x2, 10 * ref.y2] for ref in test[i].boxes()
        ]
