"""The split is seeded, stratified and leakage-safe; demos come from the training split only."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lego_arta.data import (
    TASKS,
    DataError,
    DataSplit,
    DemoPool,
    Record,
    load_records,
    save_split,
    split_records,
    split_summary,
)
from tests.data_fixtures import make_records


def ids(records: list) -> list[str]:
    return [r.id for r in records]


@pytest.fixture(scope="module")
def records() -> list:
    return make_records(num_manuals=12, steps=6)  # 72 grounding + 72 object + 288 state = 432 records


def test_no_group_crosses_and_per_task_ratios(records: list) -> None:
    train, test = split_records(records, test_size=0.25, seed=0, by="record")
    assert len(train) + len(test) == len(records)
    assert not {r.group_id for r in train} & {r.group_id for r in test}
    total, held = Counter(r.task for r in records), Counter(r.task for r in test)
    for task in TASKS:
        assert abs(held[task] / total[task] - 0.25) <= 0.02, (task, held[task], total[task])


def test_same_seed_same_split_other_seed_other_split(records: list) -> None:
    first = split_records(records, seed=0, test_size=0.25, by="record")
    assert split_records(records, seed=0, test_size=0.25, by="record") == first
    assert set(ids(split_records(list(reversed(records)), test_size=0.25, seed=0, by="record")[1])) == set(
        ids(first[1])
    )  # input order is moot
    assert ids(split_records(records, seed=1, test_size=0.25, by="record")[1]) != ids(first[1])


def test_manual_split_holds_whole_manuals_out(records: list) -> None:
    train, test = split_records(records, test_size=0.25, seed=0, by="manual")
    train_manuals, test_manuals = {r.manual_id for r in train}, {r.manual_id for r in test}
    assert not train_manuals & test_manuals
    assert len(test_manuals) == 3 and len(train_manuals) == 9
    assert ids(split_records(records, seed=1, by="manual", test_size=0.25)[1]) != ids(test)


def test_bad_split_settings() -> None:
    with pytest.raises(DataError, match=r"split\.by"):
        split_records(make_records(2, 2), by="group", test_size=0.25, seed=0)
    with pytest.raises(DataError, match="test_size"):
        split_records(make_records(2, 2), test_size=1.5, seed=0, by="record")
    with pytest.raises(DataError, match="published"):
        split_records(make_records(2, 2), by="published", test_size=0.25, seed=0)


def test_demos_come_from_the_training_split_only(records: list) -> None:
    train, test = split_records(records, seed=0, test_size=0.25, by="record")
    pool = DemoPool(train, match_box_count=True, state_pair="related", seed=0)
    test_ids, train_ids = set(ids(test)), set(ids(train))
    for record in test:
        demos = pool.select(record)
        assert demos and all(d.id in train_ids and d.id not in test_ids for d in demos)


def test_demo_rules(records: list) -> None:
    train, test = split_records(records, seed=0, test_size=0.25, by="record")
    pool = DemoPool(train, match_box_count=True, state_pair="related", seed=0)
    for record in train + test:
        demos = pool.select(record)
        assert all(d.id != record.id and d.group_id != record.group_id for d in demos)  # never itself or its group
        assert all(d.task == record.task for d in demos)
        if record.task == "object":
            same = [c for c in train if c.manual_id == record.manual_id and c.task == "object" and c.id != record.id]
            if any(len(c.boxes()) == len(record.boxes()) for c in same):
                assert [len(d.boxes()) for d in demos] == [len(record.boxes())]
                assert demos[0].manual_id == record.manual_id
        elif record.task == "grounding":
            earlier = [c.step_num for c in train if c.task == "grounding" and c.manual_id == record.manual_id]
            earlier = [k for k in earlier if k < record.step_num]
            if earlier:  # the previous step of the same manual
                assert (demos[0].manual_id, demos[0].step_num) == (record.manual_id, max(earlier))
        else:  # one Yes and one No
            assert sorted(d.solution for d in demos) == ["No", "Yes"]
    # deterministic from (seed, id), and the seed matters somewhere
    again = DemoPool(train, match_box_count=True, state_pair="related", seed=0)
    assert all(ids(pool.select(r)) == ids(again.select(r)) for r in test)
    other = DemoPool(train, match_box_count=True, state_pair="related", seed=1)
    assert any(ids(pool.select(r)) != ids(other.select(r)) for r in test)


def test_match_box_count_off_ignores_the_answer(records: list) -> None:
    train, _ = split_records(records, seed=0, test_size=0.25, by="record")
    record = next(r for r in train if r.task == "object")
    same_manual = {c.id: c for c in train if c.task == "object" and c.manual_id == record.manual_id}
    picks = {
        DemoPool(train, match_box_count=False, state_pair="related", seed=s).select(record)[0].id for s in range(40)
    }
    assert picks <= set(same_manual) - {record.id}
    assert any(len(same_manual[p].boxes()) != len(record.boxes()) for p in picks)  # box counts not matched


def test_demo_fallbacks() -> None:
    one_manual = make_records(num_manuals=1, steps=1)  # a single grounding record: no demo anywhere
    grounding = next(r for r in one_manual if r.task == "grounding")
    assert DemoPool(one_manual, match_box_count=True, state_pair="related", seed=0).select(grounding) == []
    two = make_records(num_manuals=2, steps=1)
    pool = DemoPool(
        [r for r in two if r.manual_id == "lego-00001-test"], match_box_count=True, state_pair="related", seed=0
    )
    record = next(r for r in two if r.task == "state" and r.manual_id == "lego-00000-test")
    assert sorted(d.solution for d in pool.select(record)) == ["No", "Yes"]  # from another manual


def test_saved_split_round_trips(records: list, tmp_path: Path) -> None:
    train, test = split_records(records, seed=0, test_size=0.25, by="record")
    summary = split_summary(train, test, split={"by": "record"})
    paths = save_split(DataSplit(train, test, summary, tmp_path), tmp_path / "out")
    assert load_records(paths["train"]) == train and load_records(paths["test"]) == test
    saved = json.loads(paths["summary"].read_text())
    assert saved["counts"]["test"] == {"grounding": 18, "object": 18, "state": 72, "total": 108}
    assert saved["counts"]["train"]["total"] == 324
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl: record 0: field 'task': missing"):
        load_records(tmp_path / "bad.jsonl")


def test_state_demos_the_studys_related_pair_or_independent(records: list) -> None:
    train, test = split_records(records, seed=0, test_size=0.25, by="record")
    related = DemoPool(train, match_box_count=True, state_pair="related", seed=0)  # state_pair="related", the study's
    independent = DemoPool(train, match_box_count=True, state_pair="independent", seed=0)
    unrelated = 0
    for record in (r for r in test if r.task == "state"):
        yes, no = related.select(record)
        # a real image of the same manual, then one of its own fakes
        assert (yes.solution, no.solution) == ("Yes", "No") and no.group_id == yes.group_id
        assert yes.manual_id == record.manual_id
        pair = independent.select(record)
        assert sorted(d.solution for d in pair) == ["No", "Yes"]
        unrelated += pair[0].group_id != pair[1].group_id
    assert unrelated  # drawn separately, the two mostly come from different groups
    with pytest.raises(DataError, match=r"data\.demos\.state_pair"):
        DemoPool(train, match_box_count=True, state_pair="random", seed=0)


def test_manual_split_keeps_manuals_that_share_a_group_together() -> None:
    # two versions of one manual whose state groups are keyed by file name (one group spans both)
    records = make_records(num_manuals=6, steps=2)
    shared = [r for r in records if r.manual_id in ("lego-00000-test", "lego-00001-test") and r.task == "state"]
    joined = {r.id: r.group_id.replace("lego-00001-test", "lego-00000-test") for r in shared}
    records = [Record(**{**r.to_dict(), "group_id": joined.get(r.id, r.group_id)}) for r in records]
    for seed in range(10):
        train, test = split_records(records, test_size=0.25, seed=seed, by="manual")
        sides = {r.manual_id: r in test for r in train + test}
        assert sides["lego-00000-test"] == sides["lego-00001-test"]
        assert not {r.group_id for r in train} & {r.group_id for r in test}
