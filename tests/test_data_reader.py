"""The LEGO-ARTA reader on tiny trees in the published layout: records, quirks, drops, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lego_arta.data import STATE_QUERY, DataError, Record, read_dataset, split_records
from lego_arta.data.records import to_json_answer
from tests.data_fixtures import CLUSTER, MANUAL, instruction, tiny_tree, vlm, write_image, write_manual


def by_id(records: list[Record]) -> dict[str, Record]:
    return {r.id: r for r in records}


def test_reads_the_tiny_tree(tmp_path: Path) -> None:
    result = read_dataset(tiny_tree(tmp_path))
    records = by_id(result.records)
    assert sorted(r.task for r in result.records) == ["grounding", "grounding", "object"] + ["state"] * 4

    # grounding: joined text, previous step as context, the image re-rooted from the cluster prefix
    first, second = records[f"{MANUAL}/grounding/1"], records[f"{MANUAL}/grounding/2"]
    assert first.solution == "Attach the 2x4 red brick to the base."
    assert (first.context, second.context) == ("", "Attach the 2x4 red brick to the base.")
    assert first.image == str(tmp_path / "lego" / MANUAL / "images" / "step_1.png")
    assert (first.step_num, second.step_num) == (1, 2)

    # object: legacy answer -> JSON on the 0-100 grid; the call-out image of the same name under object_dataset/
    obj = records[f"{MANUAL}/object/2"]
    assert obj.query == "Collect a 1x2 white beam"
    assert json.loads(obj.solution) == [
        {"bbox_2d": [10, 20, 30, 40], "label": "1x2 white beam"},
        {"bbox_2d": [50, 60, 70, 80], "label": "1x2 white beam"},
    ]
    assert obj.image == str(tmp_path / "object_dataset" / "lego" / MANUAL / "step_2.png")

    # state: the real image and its three fakes share a group; the step number comes from the instruction
    state = [r for r in result.records if r.task == "state"]
    assert {r.group_id for r in state} == {f"{MANUAL}/state/step_1"}
    assert [r.solution for r in state] == ["Yes", "No", "No", "No"]
    assert all(r.query == STATE_QUERY and r.step_num == 1 for r in state)
    assert all(Path(r.image).is_absolute() for r in result.records)

    # what was skipped, and why
    assert result.dropped == {
        "object: ImageContent label": 1,
        "state: fake without its original": 1,
        "grounding: step_class 'fullscreeneop'": 1,
        "grounding: step_class 'eop'": 1,
    }


def test_tasks_filter_and_no_pixels_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tiny_tree(tmp_path)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reader must not open images")

    monkeypatch.setattr("PIL.Image.open", no_open)
    result = read_dataset(root, tasks=["object"])
    assert [r.task for r in result.records] == ["object"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # one label, one box: integer coordinates stay integers
        ("<p>1x2 white beam</p>{<10><20><30><40>}", [{"bbox_2d": [10, 20, 30, 40], "label": "1x2 white beam"}]),
        # several boxes after one label (MiniGPT-v2's <delim>), then a second label
        (
            "<p>a</p>{<1><2><3><4>}<delim>{<5><6><7><8>}<p>b</p> {<0><0><9><9>}",
            [
                {"bbox_2d": [1, 2, 3, 4], "label": "a"},
                {"bbox_2d": [5, 6, 7, 8], "label": "a"},
                {"bbox_2d": [0, 0, 9, 9], "label": "b"},
            ],
        ),
        # spaces inside the braces, a label with spaces around it, a decimal coordinate
        ("<p> 2x4 red brick </p>{ <1> <2> <3.5> <4> }", [{"bbox_2d": [1, 2, 3.5, 4], "label": "2x4 red brick"}]),
        # already JSON: kept (re-serialised)
        ('[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]', [{"bbox_2d": [1, 2, 3, 4], "label": "x"}]),
        # no box at all
        ("<p>label only</p>", None),
    ],
)
def test_reference_answers_become_json(answer: str, expected: list[dict] | None) -> None:
    text, boxes = to_json_answer(answer)
    assert (json.loads(text) if text else None) == expected
    assert len(boxes) == len(expected or [])


def test_missing_image_names_file_record_and_field(tmp_path: Path) -> None:
    write_image(tmp_path / "lego" / MANUAL / "images" / "step_1.png")
    write_manual(
        tmp_path,
        [
            instruction(0, ["Attach the brick."], vlm(f"{CLUSTER}/lego/{MANUAL}/images/step_1.png")),
            instruction(7, ["Add the beam."], vlm(f"{CLUSTER}/lego/{MANUAL}/images/missing.png")),
        ],
    )
    with pytest.raises(DataError) as info:
        read_dataset(tmp_path)
    message = str(info.value)
    assert f"json_data/lego/{MANUAL}.json" in message
    assert "instruction 1 (instruction_id=7)" in message
    assert "field 'VLM.img_path'" in message
    assert "image not found" in message and "missing.png" in message


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "json_data" / "lego" / "broken.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"manual_id": "broken", "instructions": [\n  {"instruction_id": 0,,}\n]}')
    with pytest.raises(DataError, match=r"json_data/lego/broken\.json: invalid JSON at line 2 column \d+"):
        read_dataset(tmp_path)


def test_record_without_vlm_names_file_record_and_field(tmp_path: Path) -> None:
    write_manual(tmp_path, [instruction(3, ["Attach the brick."], None)])
    with pytest.raises(DataError) as info:
        read_dataset(tmp_path)
    assert str(info.value).startswith(f"json_data/lego/{MANUAL}.json: instruction 0 (instruction_id=3): field 'VLM': ")


@pytest.mark.parametrize(
    ("manual", "field"),
    [
        # instructions is not a list
        ({"manual_id": "m", "instructions": {"0": {}}}, "instructions"),
        # text holds something other than strings
        ({"manual_id": "m", "instructions": [instruction(0, [1, 2], vlm("None"))]}, "text"),
        # the VLM block lacks img_path
        (
            {"manual_id": "m", "instructions": [{"instruction_id": 0, "text": ["t"], "VLM": {"query": "q"}}]},
            "VLM.img_path",
        ),
    ],
)
def test_schema_errors_name_the_field(tmp_path: Path, manual: dict, field: str) -> None:
    path = tmp_path / "json_data" / "m.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manual))
    with pytest.raises(DataError, match=rf"json_data/m\.json: .*field '{field}'"):
        read_dataset(tmp_path)


def test_every_problem_is_listed_in_one_error(tmp_path: Path) -> None:
    write_manual(tmp_path, [instruction(0, ["a"], None), instruction(1, ["b"], vlm("lego/x/images/nope.png"))])
    with pytest.raises(DataError, match=r"2 problems") as info:
        read_dataset(tmp_path)
    assert "field 'VLM'" in str(info.value) and "field 'VLM.img_path'" in str(info.value)


def test_not_a_dataset_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a LEGO-ARTA dir"):
        read_dataset(tmp_path)


def write_task_file(root: Path, name: str, rows: list[dict]) -> None:
    path = root / "train_test_example" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))


def test_task_files_with_record_fields_replace_the_task_and_give_the_published_split(tmp_path: Path) -> None:
    root = tiny_tree(tmp_path)
    image = f"{CLUSTER}/object_dataset/lego/{MANUAL}/step_2.png"
    legacy, converted = "<p>x</p>{<1><2><3><4>}", '[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]'
    write_task_file(root, "object_train.json", [{"id": "o1", "image": image, "query": "Find a x", "solution": legacy}])
    write_task_file(
        root, "object_test.json", [{"id": "o2", "image": image, "query": "Find a x", "solution": converted}]
    )
    result = read_dataset(root)
    objects = [r for r in result.records if r.task == "object"]
    assert [r.id for r in objects] == ["o1", "o2"]
    assert objects[0].solution == objects[1].solution == converted
    assert objects[0].manual_id == MANUAL and objects[0].image == str(
        root / "object_dataset/lego" / MANUAL / "step_2.png"
    )
    assert result.published == {"o1": "train", "o2": "test"}
    train, test = split_records(objects, by="published", published=result.published)
    assert ([r.id for r in train], [r.id for r in test]) == (["o1"], ["o2"])


def test_task_files_with_another_layout_fail_clearly(tmp_path: Path) -> None:
    root = tiny_tree(tmp_path)
    write_task_file(root, "state_test.json", [{"conversations": [], "img": "x.png"}])
    with pytest.raises(DataError) as info:
        read_dataset(root)
    message = str(info.value)
    assert "train_test_example/state_test.json: record 0: field 'image': missing" in message
    assert "found ['conversations', 'img']" in message


def test_record_round_trip_and_errors() -> None:
    record = Record(
        "m/object/1", "object", "m", "m/object/1", "/a.png", "Find a x", '[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]'
    )
    assert Record.from_dict(record.to_dict()) == record
    assert [(b.label, b.coords) for b in record.boxes()] == [("x", (1, 2, 3, 4))]
    with pytest.raises(DataError, match=r"train\.jsonl: record 4: field 'solution': missing"):
        Record.from_dict({k: v for k, v in record.to_dict().items() if k != "solution"}, source="train.jsonl", index=4)
    with pytest.raises(DataError, match="field 'task'"):
        Record.from_dict({**record.to_dict(), "task": "detection"})
