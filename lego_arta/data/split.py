"""The leakage-safe train/test split and its files.

Seeded, stratified by task; the unit of the split is the group (a real state image and its fakes share one; every
other record is its own group), so a group never crosses the split. ``by="manual"`` holds whole manuals out
(manuals that share a group together); ``by="published"`` keeps the split of the dataset's task files.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lego_arta.data.records import TASKS, DataError, Record

SPLIT_BY = ("record", "manual", "published")
TRAIN_FILE = "train.jsonl"
TEST_FILE = "test.jsonl"
SUMMARY_FILE = "split_summary.json"


def seeded_rng(*key: object) -> random.Random:
    """A ``random.Random`` seeded from ``key`` by SHA-256 (stable across processes, unlike ``hash()``)."""
    digest = hashlib.sha256("\x1f".join(str(k) for k in key).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def split_records(
    records: list[Record],
    *,
    test_size: float,
    seed: int,
    by: str,
    published: Mapping[str, str] | None = None,
) -> tuple[list[Record], list[Record]]:
    """Split ``records`` into (train, test), keeping the input order within each side.

    Args:
        records: the records of every task.
        test_size: share of each task's records that goes to test.
        seed: the split's seed; the same seed gives the same split.
        by: ``record`` (groups drawn per task), ``manual`` (whole manuals held out) or ``published`` (the
            task files' split, given in ``published``: record id -> "train" | "test").
        published: see ``by``.

    >>> recs = [Record(id=f"m/state/{g}{s}", task="state", manual_id="m", group_id=f"m/state/{g}", image="/i.png",
    ...                query="q", solution="No") for g in "abcd"
    ...         for s in ("", "_fake1")]
    >>> train, test = split_records(recs, test_size=0.25, seed=0, by="record")
    >>> len(train), len(test), {r.group_id for r in train} & {r.group_id for r in test}
    (6, 2, set())
    """
    if not 0.0 < test_size < 1.0:
        raise DataError(f"split.test_size: {test_size} is not in (0, 1)")
    if by == "record":
        test_groups: set[str] = set()
        for task in TASKS:
            groups = _sizes(r.group_id for r in records if r.task == task)
            test_groups |= _draw(groups, test_size, seeded_rng("split", seed, task))
        is_test = [r.group_id in test_groups for r in records]
    elif by == "manual":
        units = _manual_units(records)
        sizes = _sizes(units[r.manual_id] for r in records)
        if len(sizes) < 2:
            raise DataError(
                f"split.by=manual needs at least 2 manuals (manuals that share a state group count as one), "
                f"found {len(sizes)}"
            )
        test_units = _draw(sizes, test_size, seeded_rng("split-manual", seed))
        is_test = [units[r.manual_id] in test_units for r in records]
    elif by == "published":
        if not published:
            raise DataError("split.by=published needs the dataset's task files (train_test_example/*.json)")
        missing = [r.id for r in records if r.id not in published]
        if missing:
            raise DataError(
                f"split.by=published: {len(missing)} records are not in the task files, e.g. {missing[:3]}"
            )
        is_test = [published[r.id] == "test" for r in records]
    else:
        raise DataError(f"split.by: {by!r} is not one of {list(SPLIT_BY)}")
    train = [r for r, t in zip(records, is_test, strict=True) if not t]
    test = [r for r, t in zip(records, is_test, strict=True) if t]
    _check_groups(train, test)
    return train, test


def _manual_units(records: list[Record]) -> dict[str, str]:
    """manual -> its unit for ``by="manual"``: manuals joined by a shared group (a state group keyed by file name
    spans the versions of one manual, ``...-readscr`` and ``...-mobile``) are held out together."""
    parent = {r.manual_id: r.manual_id for r in records}

    def find(m: str) -> str:
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    first: dict[str, str] = {}
    for r in records:
        a, b = find(r.manual_id), find(first.setdefault(r.group_id, r.manual_id))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {m: find(m) for m in parent}


def _sizes(keys: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(keys).items()))


def _draw(sizes: dict[str, int], share: float, rng: random.Random) -> set[str]:
    """Keys drawn in random order while their total size gets closer to ``share`` of the whole (at least one key
    and never all of them, when there are two or more)."""
    keys = list(sizes)
    rng.shuffle(keys)
    target = share * sum(sizes.values())
    chosen: set[str] = set()
    total = 0
    for key in keys:
        if abs(total + sizes[key] - target) < abs(total - target):
            chosen.add(key)
            total += sizes[key]
    if len(keys) > 1 and not chosen:  # neither side empty when there are two keys or more
        chosen.add(keys[0])
    if len(keys) > 1 and len(chosen) == len(keys):
        chosen.discard(keys[-1])
    return chosen


def _check_groups(train: list[Record], test: list[Record]) -> None:
    crossing = {r.group_id for r in train} & {r.group_id for r in test}
    if crossing:
        raise DataError(f"{len(crossing)} groups cross the split, e.g. {sorted(crossing)[:3]}")


def split_summary(train: list[Record], test: list[Record], **extra: Any) -> dict[str, Any]:
    """Counts per task and split (and the ``extra`` entries): what ``split_summary.json`` holds and runs log.

    >>> split_summary([], [])["counts"]["train"]
    {'grounding': 0, 'object': 0, 'state': 0, 'total': 0}
    """
    counts: dict[str, dict[str, int]] = {}
    for name, part in (("train", train), ("test", test)):
        per_task = Counter(r.task for r in part)
        counts[name] = {task: per_task.get(task, 0) for task in TASKS} | {"total": len(part)}
    return {"counts": counts, **extra}


def flat_counts(summary: Mapping[str, Any], prefix: str = "data") -> dict[str, int]:
    """``{"data/train/object": 36, ...}``: the summary's counts as flat metric keys (for W&B)."""
    return {
        f"{prefix}/{split}/{task}": n for split, per_task in summary["counts"].items() for task, n in per_task.items()
    }


def save_records(records: Iterable[Record], path: str | Path) -> Path:
    """Write records as JSON lines (the record fields, image paths absolute)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    return path


def load_records(path: str | Path) -> list[Record]:
    """Read the records of a ``train.jsonl`` / ``test.jsonl`` file."""
    records = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {i + 1}: invalid JSON: {e.msg}") from e
            records.append(Record.from_dict(row, source=path, index=i))
    return records
