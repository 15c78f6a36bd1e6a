"""The LEGO-ARTA reader on real-shaped downloads: layout, quirks, record semantics, drops, limits and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lego_arta.data import STATE_QUERY, DataError, Record, split_records
from lego_arta.data.records import detection_answer, to_json_answer
from tests.data_fixtures import (
    ANSWER_TWO_BOXES,
    CLUSTER,
    MANUAL,
    PAGE,
    data_options,
    instruction,
    read,
    real_tree,
    vlm,
    write_image,
    write_manual,
)

IMAGES = f"lego/{MANUAL}/images"


def by_id(records: list[Record]) -> dict[str, Record]:
    return {r.id: r for r in records}


def test_reads_the_real_shaped_download(tmp_path: Path) -> None:
    root = real_tree(tmp_path)
    result = read(tmp_path)  # the download folder: its ARTA_LEGO/ is found
    assert result.root == root.resolve()
    records = by_id(result.records)
    assert sorted(r.task for r in result.records) == ["grounding"] * 2 + ["object"] * 2 + ["state"] * 8

    # grounding: joined text; the context is the row just before (an eop "Find" row), the study's default
    step1, step2 = records[f"{MANUAL}/grounding/2"], records[f"{MANUAL}/grounding/4"]
    assert (step1.solution, step1.context) == ("Attach the 2x4 red brick to the base.", "Find a 1x2 white beam")
    assert step2.context == "Find a 2x2 green plate and a 1x1 round"
    # an absolute cluster path with %20 and %23, re-rooted onto the decoded file on disk
    assert step1.image == str(root / IMAGES / "76946 Velociraptor#1_01_step.png")
    # a relative ARTA_LEGO/... path without step class or number: both taken from the file name
    assert step2.image == str(root / IMAGES / f"{PAGE}_02_step.png") and (step1.step_num, step2.step_num) == (1, 2)

    # object: one record per eop row; MiniGPT-v2 answers as JSON; the call-out under object_dataset/ when there
    # is one, else the page image
    find1, find2 = records[f"{MANUAL}/object/1"], records[f"{MANUAL}/object/3"]
    assert json.loads(find1.solution) == [
        {"bbox_2d": [10, 20, 30, 40], "label": "1x2 white beam"},
        {"bbox_2d": [50, 60, 70, 80], "label": "1x2 white beam"},
    ]
    assert find1.image == str(root / "object_dataset/lego" / MANUAL / f"{PAGE}_00_eop.png")
    assert [b["label"] for b in json.loads(find2.solution)] == ["2x2 green plate", "1x1 round"]  # "axle": no box
    assert find2.image == str(root / IMAGES / f"{PAGE}_01_eop.png") and find2.step_num == 1

    # state: groups keyed by the original's file name; step 1's original only in lego/<m>/images/, step 2's in
    # both places (lego/<m>/images/ wins, as in the study)
    state = [r for r in result.records if r.task == "state"]
    assert {r.group_id for r in state} == {"state/76946 Velociraptor#1_01_step", "state/76946 Velociraptor_02_step"}
    yes = {r.group_id: r for r in state if r.solution == "Yes"}
    assert yes["state/76946 Velociraptor_02_step"].image == str(root / IMAGES / f"{PAGE}_02_step.png")
    assert [r.solution for r in state].count("No") == 6
    assert all(r.query == STATE_QUERY for r in state) and {r.step_num for r in state} == {1, 2}

    # nothing dropped; what the rules leave out is counted apart
    assert result.dropped == {}
    assert result.skipped == {
        "json_data: <manual>.json beside its <manual>_new.json (the latter is read)": 1,
        "object: step_class 'fullscreeneop' not in data.object_step_classes": 1,
        "object: [detection-collect] row without an answer (MiniGPT-v2 answered [detection] rows)": 1,
        "object: label without a box in an answer (its other boxes are kept)": 1,
    }
    assert read(root).records == result.records  # ARTA_LEGO/ itself as data.root


def test_no_pixels_read_and_tasks_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_tree(tmp_path)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reader must not open images")

    monkeypatch.setattr("PIL.Image.open", no_open)
    assert {r.task for r in read(tmp_path, tasks=["object"]).records} == {"object"}


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        # grounding context = the previous step's text (the project's earlier reading)
        (
            {"grounding_context": "previous_step"},
            lambda r: [x.context for x in r if x.task == "grounding"] == ["", "Attach the 2x4 red brick to the base."],
        ),
        # one object record per label: the two-label row gives two, each query names its label
        (
            {"object_records": "label"},
            lambda r: (
                sorted(x.query for x in r if x.task == "object")
                == ["Find 1x1 round", "Find 2x2 green plate", "Find a 1x2 white beam"]
            ),
        ),
        # detection rows of any step class: the cover's ImageContent row is then dropped, not skipped
        ({"object_step_classes": None, "max_drop_fraction": 1.0}, lambda r: sum(x.task == "object" for x in r) == 2),
        # the real image next to its fakes wins where it is there
        (
            {"state_original": "step_dataset"},
            lambda r: sum("step_dataset" in x.image for x in r if x.solution == "Yes") == 1,
        ),
        # groups keyed by manual and file name
        (
            {"state_group_by": "manual"},
            lambda r: all(x.group_id.startswith(f"{MANUAL}/state/") for x in r if x.task == "state"),
        ),
    ],
)
def test_semantics_options(tmp_path: Path, overrides: dict[str, Any], check: Any) -> None:
    real_tree(tmp_path)
    assert check(read(tmp_path, **overrides).records)


def test_object_step_classes_null_drops_the_cover(tmp_path: Path) -> None:
    real_tree(tmp_path)
    result = read(tmp_path, object_step_classes=None, max_drop_fraction=1.0)
    assert result.dropped == {"object: ImageContent label": 1}


def test_bad_option_values_name_the_key() -> None:
    with pytest.raises(DataError, match=r"data\.grounding_context: 'previous' is not one of"):
        data_options(grounding_context="previous")
    with pytest.raises(DataError, match=r"data\.max_drop_fraction"):
        data_options(max_drop_fraction=2)


# -- drops: one bad row beside good ones, every reason ------------------------------------------------------------
GOOD_STEP = instruction(
    0, ["Attach the brick."], vlm(f"{CLUSTER}/lego/{MANUAL}/images/good_01_step.png", "None", "None")
)
GOOD_FIND = instruction(1, ["Find a beam"], vlm(f"{CLUSTER}/lego/{MANUAL}/images/good_01_eop.png", step_class="eop"))
ABSENT = f"{CLUSTER}/lego/{MANUAL}/images/absent.png"
PRESENT = f"{CLUSTER}/lego/{MANUAL}/images/good_01_eop.png"


@pytest.mark.parametrize(
    ("row", "reason", "field"),
    [
        ("not a row", "instruction: not a JSON object", None),
        # a crawler-format row: instruction_id, text, img_url
        ({"instruction_id": 7, "text": "Attach it", "img_url": "https://x/a.png"}, "instruction: no VLM block", "VLM"),
        (instruction(7, ["Attach it"], ["not", "a", "block"]), "instruction: VLM is not an object", "VLM"),
        (instruction(7, "No text found", vlm(PRESENT, "None")), "grounding: no text", "text"),
        (instruction(7, [1, 2], vlm(PRESENT, "None")), "grounding: text is not a list of strings", "text"),
        (instruction(7, ["Attach it"], vlm("None", "None")), "grounding: no image", "VLM.img_path"),
        (instruction(7, ["Attach it"], vlm(ABSENT, "None")), "grounding: image not found", "VLM.img_path"),
        (
            instruction(7, ["Find"], vlm(PRESENT, "[refer]", step_class="eop")),
            "object: unknown task_label",
            "VLM.task_label",
        ),
        (
            instruction(7, ["Find"], vlm(PRESENT, output="None", step_class="eop")),
            "object: no answer",
            "VLM.MiniGPTv2_output",
        ),
        (instruction(7, ["Find"], vlm(PRESENT, query="None", step_class="eop")), "object: no query", "VLM.query"),
        (
            instruction(7, ["Find"], vlm(PRESENT, output="I cannot see it.", step_class="eop")),
            "object: answer has no box",
            "VLM.MiniGPTv2_output",
        ),
        (
            instruction(7, ["Find"], vlm(PRESENT, output="<p>ImageContent</p> {<0><0><99><99>}", step_class="eop")),
            "object: ImageContent label",
            "VLM.MiniGPTv2_output",
        ),
        (instruction(7, ["Find"], vlm("None", step_class="eop")), "object: no image", "VLM.img_path"),
        (instruction(7, ["Find"], vlm(ABSENT, step_class="eop")), "object: image not found", "VLM.img_path"),
    ],
)
def test_every_row_drop_is_counted_with_file_record_and_field(
    tmp_path: Path, row: Any, reason: str, field: str | None
) -> None:
    write_image(tmp_path / IMAGES / "good_01_step.png")
    write_image(tmp_path / IMAGES / "good_01_eop.png")
    write_manual(tmp_path, [GOOD_STEP, GOOD_FIND, row])
    result = read(tmp_path, max_drop_fraction=1.0)
    assert result.dropped == {reason: 1}
    assert {r.task for r in result.records} >= {"grounding", "object"}  # the good rows are kept
    example = result.examples[reason]
    assert example.startswith(f"json_data/lego/{MANUAL}_new.json: instruction 2 (instruction_id=")
    assert field is None or f"field '{field}'" in example
    with pytest.raises(DataError) as info:  # strict: the same drop is an error naming file, record and field
        read(tmp_path, strict=True)
    assert f"json_data/lego/{MANUAL}_new.json: instruction 2" in str(info.value) and "data.strict=true" in str(
        info.value
    )


def test_fake_without_original_is_dropped(tmp_path: Path) -> None:
    real_tree(tmp_path)
    write_image(tmp_path / "ARTA_LEGO/step_dataset/lego" / MANUAL / "stray_09_step_fake1.png")
    result = read(tmp_path, max_drop_fraction=1.0)
    assert result.dropped == {"state: fake without its original": 1}
    assert result.examples["state: fake without its original"].startswith(
        f"step_dataset/lego/{MANUAL}/stray_09_step_fake1.png"
    )
    with pytest.raises(DataError, match=r"stray_09_step_fake1\.png.*data\.strict=true"):
        read(tmp_path, strict=True)


def test_drop_fraction_limit_fails_with_top_reasons_and_an_example(tmp_path: Path) -> None:
    real_tree(tmp_path)
    for image in (tmp_path / "ARTA_LEGO" / "lego").rglob("*.png"):  # every page image gone: a wrong download
        image.unlink()
    with pytest.raises(DataError) as info:
        read(tmp_path)
    message = str(info.value)
    assert "data.max_drop_fraction=0.2" in message
    assert "grounding: 2 of 2 records dropped (100%)" in message
    assert f"2 x 'grounding: image not found', e.g. json_data/lego/{MANUAL}_new.json: instruction 2" in message
    assert "field 'VLM.img_path'" in message
    result = read(tmp_path, max_drop_fraction=1.0)  # accepted when the limit allows it
    assert result.dropped["grounding: image not found"] == 2


def test_drop_fraction_of_rows_whose_task_cannot_be_told(tmp_path: Path) -> None:
    write_image(tmp_path / IMAGES / "good_01_step.png")
    write_image(tmp_path / IMAGES / "good_01_eop.png")
    crawler = {"instruction_id": 9, "text": "Attach it", "img_url": "https://x/a.png"}
    write_manual(tmp_path, [GOOD_STEP, GOOD_FIND, crawler, crawler])  # 2 of 4 rows without a VLM block
    with pytest.raises(DataError, match=r"instruction: 2 of 4 records dropped \(50%\)"):
        read(tmp_path)
    assert read(tmp_path, max_drop_fraction=0.5).dropped == {"instruction: no VLM block": 2}


def test_a_drop_under_the_limit_is_logged_with_its_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    real_tree(tmp_path)
    write_image(tmp_path / "ARTA_LEGO/step_dataset/lego" / MANUAL / "stray_09_step_fake1.png")  # 1 of 9 state records
    caplog.set_level("WARNING")
    assert read(tmp_path).dropped == {"state: fake without its original": 1}
    assert f"step_dataset/lego/{MANUAL}/stray_09_step_fake1.png" in caplog.text


# -- file-level problems: errors naming the file ------------------------------------------------------------------
def test_invalid_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "json_data" / "lego" / "broken_new.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"manual_id": "broken", "instructions": [\n  {"instruction_id": 0,,}\n]}')
    with pytest.raises(DataError, match=r"json_data/lego/broken_new\.json: invalid JSON at line 2 column \d+"):
        read(tmp_path)


@pytest.mark.parametrize(
    "manual",
    [
        {"manual_id": "m", "instructions": {"0": {}}},  # instructions is not a list
        {"manual_id": "m"},  # no instructions
        ["a", "list"],  # not an object
    ],
)
def test_manual_file_without_instructions_names_the_file(tmp_path: Path, manual: Any) -> None:
    path = tmp_path / "json_data" / "m_new.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manual))
    with pytest.raises(DataError, match=r"json_data/m_new\.json: "):
        read(tmp_path)


def test_missing_root_and_no_manuals(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.root: .*nowhere is not a directory"):
        read(tmp_path / "nowhere")
    (tmp_path / "ARTA_LEGO" / "lego").mkdir(parents=True)
    with pytest.raises(DataError, match=rf"{tmp_path}: no manual found .* ARTA_LEGO/"):
        read(tmp_path)


# -- task files ---------------------------------------------------------------------------------------------------
def write_task_file(root: Path, name: str, rows: Any) -> None:
    path = root / "train_test_example" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))


def test_task_files_with_record_fields_replace_the_task_and_give_the_published_split(tmp_path: Path) -> None:
    root = real_tree(tmp_path)
    image = f"{CLUSTER}/object_dataset/lego/{MANUAL}/{PAGE}_00_eop.png"
    converted = '[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]'
    write_task_file(
        root,
        "object_train.json",
        [{"id": "o1", "image": image, "query": "Find a x", "solution": "<p>x</p> {<1><2><3><4>}"}],
    )
    write_task_file(
        root, "object_test.json", [{"id": "o2", "image": image, "query": "Find a x", "solution": converted}]
    )
    result = read(tmp_path)
    objects = [r for r in result.records if r.task == "object"]
    assert [r.id for r in objects] == ["o1", "o2"]
    assert objects[0].solution == objects[1].solution == converted
    assert objects[0].manual_id == MANUAL and objects[0].image == str(
        root / "object_dataset/lego" / MANUAL / f"{PAGE}_00_eop.png"
    )
    assert result.published == {"o1": "train", "o2": "test"}
    train, test = split_records(objects, test_size=0.25, seed=0, by="published", published=result.published)
    assert ([r.id for r in train], [r.id for r in test]) == (["o1"], ["o2"])
    assert len([r for r in read(tmp_path, use_task_files=False).records if r.task == "object"]) == 2


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # another layout (a conversation per row): names file, record and field
        (
            [{"conversations": [], "img": "x.png"}],
            "train_test_example/state_test.json: record 0: field 'image': missing",
        ),
        # not a list
        ({"data": []}, "train_test_example/state_test.json: expected a JSON list of records"),
    ],
)
def test_task_files_that_do_not_parse_say_how_to_do_without(tmp_path: Path, rows: Any, expected: str) -> None:
    real_tree(tmp_path)
    write_task_file(tmp_path / "ARTA_LEGO", "state_test.json", rows)
    with pytest.raises(DataError) as info:
        read(tmp_path)
    assert expected in str(info.value) and "data.use_task_files=false" in str(info.value)
    assert read(tmp_path, use_task_files=False).records


def test_task_file_row_with_a_missing_image_is_dropped(tmp_path: Path) -> None:
    real_tree(tmp_path)
    rows = [{"image": "nowhere/x.png", "query": "q", "solution": "Yes"}]
    write_task_file(tmp_path / "ARTA_LEGO", "state_test.json", rows)
    result = read(tmp_path, max_drop_fraction=1.0)
    assert result.dropped == {"state: image not found": 1}
    assert result.examples["state: image not found"].startswith(
        "train_test_example/state_test.json: record 0: field 'image'"
    )


# -- answers ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "expected", "unboxed"),
    [
        # MiniGPT-v2 verbatim: a space before the box, <delim> between the boxes of one label
        (ANSWER_TWO_BOXES, [[10, 20, 30, 40, "1x2 white beam"], [50, 60, 70, 80, "1x2 white beam"]], []),
        # free text after a box; a second label; a label with no box (listed, the rest kept)
        (
            "<p>a</p> {<1><2><3><4>} left of it<p>b</p> {<0><0><9><9>}<p>c</p>",
            [[1, 2, 3, 4, "a"], [0, 0, 9, 9, "b"]],
            ["c"],
        ),
        # spaces inside the braces, a decimal coordinate
        ("<p> 2x4 red brick </p>{ <1> <2> <3.5> <4> }", [[1, 2, 3.5, 4, "2x4 red brick"]], []),
        # already JSON: kept
        ('[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]', [[1, 2, 3, 4, "x"]], []),
    ],
)
def test_detection_answers_become_json(answer: str, expected: list, unboxed: list[str]) -> None:
    text, problem, labels = detection_answer(answer)
    assert problem is None and labels == unboxed
    assert [[*item["bbox_2d"], item["label"]] for item in json.loads(text)] == expected
    assert to_json_answer(answer)[0] == text


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("<p>ImageContent</p> {<0><0><99><99>}", "ImageContent label"),  # MiniGPT-v2's "whole image" label
        ("<p>beam</p> {<1><2><3><4>}<p>ImageContent</p>", "ImageContent label"),  # any label: the row goes
        ("<p>label only</p>", "answer has no box"),
        ("None of the parts are visible.", "answer has no box"),
    ],
)
def test_unusable_detection_answers(answer: str, problem: str) -> None:
    assert detection_answer(answer)[1] == problem


def test_record_round_trip_and_errors() -> None:
    record = Record(
        id="m/object/1",
        task="object",
        manual_id="m",
        group_id="m/object/1",
        image="/a.png",
        query="Find a x",
        solution='[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]',
    )
    # keywords only: nine fields, five of them strings, are too easy to swap by position
    with pytest.raises(TypeError, match="positional"):
        Record("m/object/1", "object", "m", "m/object/1", "/a.png", "Find a x", "[]")  # type: ignore[misc]
    assert Record.from_dict(record.to_dict()) == record
    assert [(b.label, b.coords) for b in record.boxes()] == [("x", (1, 2, 3, 4))]
    with pytest.raises(DataError, match=r"train\.jsonl: record 4: field 'solution': missing"):
        Record.from_dict({k: v for k, v in record.to_dict().items() if k != "solution"}, source="train.jsonl", index=4)
    with pytest.raises(DataError, match="field 'task'"):
        Record.from_dict({**record.to_dict(), "task": "detection"})
