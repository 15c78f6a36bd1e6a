"""The optional task files ``train_test_example/<task>_{train,test}.json``.

Their layout is not public (no public source shows one), so they are read only when their fields match the record
fields: a JSON list of objects with ``image``, ``query`` and ``solution`` (``id``, ``manual_id``, ``group_id``,
``context``, ``step_num`` derived when absent). Anything else is an error naming the file, record and field, and
saying how to do without them (``data.use_task_files=false``: derive every record from ``json_data/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lego_arta.data.drops import DropLog
from lego_arta.data.images import ImageFinder, manual_of, name_key, rel_path
from lego_arta.data.records import FIELDS, TASKS, DataError, Record, detection_answer, where
from lego_arta.data.state import state_group

TASK_FILES_DIR = "train_test_example"
SPLITS = ("train", "test")
TASK_FILES_HINT = (
    f"The layout of {TASK_FILES_DIR}/<task>_<split>.json is not public; this reader expects a JSON list of objects "
    f"with the record fields {list(FIELDS)}. Set data.use_task_files=false to derive every record from json_data/ "
    "and the image folders instead."
)


def find_task_files(root: Path) -> dict[str, list[tuple[str, Path]]]:
    """task -> [(split, path)] of the task files under ``root``."""
    found: dict[str, list[tuple[str, Path]]] = {}
    for task in TASKS:
        for split in SPLITS:
            path = root / TASK_FILES_DIR / f"{task}_{split}.json"
            if path.is_file():
                found.setdefault(task, []).append((split, path))
    return found


class TaskFileReader:
    """Reads task files into records; problems of the layout are collected and raised with ``TASK_FILES_HINT``."""

    def __init__(self, root: Path, finder: ImageFinder, drops: DropLog, *, group_by: str) -> None:
        self.root = root
        self.group_by = group_by
        self.finder = finder
        self.drops = drops
        self.errors: list[str] = []

    def raise_errors(self) -> None:
        if self.errors:
            listed = "\n".join(self.errors[:20]) + (
                f"\n... and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
            )
            raise DataError(listed + "\n" + TASK_FILES_HINT)

    def read(self, path: Path, task: str) -> list[Record]:
        rel = rel_path(path, self.root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            self.errors.append(f"{rel}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")
            return []
        except UnicodeDecodeError as e:
            self.errors.append(f"{rel}: not UTF-8 text: {e}")
            return []
        if not isinstance(data, list):
            self.errors.append(f"{rel}: expected a JSON list of records, got {type(data).__name__}")
            return []
        records = []
        for i, item in enumerate(data):
            record = self._record(path, rel, task, i, item)
            if record is not None:
                records.append(record)
        return records

    def _record(self, path: Path, rel: str, task: str, i: int, item: Any) -> Record | None:
        if not isinstance(item, dict):
            self.errors.append(where(rel, record=i) + f"expected an object with the record fields, got {item!r:.80}")
            return None
        for name in ("image", "query", "solution"):
            if not isinstance(item.get(name), str):
                problem = "missing" if name not in item else f"expected a string, got {item[name]!r:.80}"
                self.errors.append(where(rel, record=i, field=name) + f"{problem} (found {sorted(item)})")
                return None
        if item.get("task", task) != task:
            self.errors.append(where(rel, record=i, field="task") + f"{item['task']!r} in the {task} file")
            return None
        manual_id = item.get("manual_id")
        image = self.finder.resolve(item["image"], manual_id if isinstance(manual_id, str) else "")
        if image is None:
            detail = f"image not found: {item['image']!r} (looked under {self.root})"
            self.drops.drop(task, "image not found", rel, record=i, field="image", detail=detail)
            return None
        solution = self._solution(rel, task, i, item["solution"].strip())
        if solution is None:
            return None
        manual = item.get("manual_id") or manual_of(image, self.root)
        rid = item.get("id") or f"{manual}/{task}/{path.stem}-{i}"
        group = item.get("group_id") or (
            state_group(manual, name_key(image.stem), self.group_by) if task == "state" else rid
        )
        values = {**item, "id": rid, "task": task, "manual_id": manual, "group_id": group, "image": str(image)}
        values["solution"] = solution
        values["query"] = item["query"].strip()
        values.setdefault("context", "")
        values.setdefault("step_num", 0)
        try:
            return Record.from_dict({k: values[k] for k in FIELDS}, source=rel, index=i)
        except DataError as e:
            self.errors.append(str(e))
            return None

    def _solution(self, rel: str, task: str, i: int, given: str) -> str | None:
        """The record's solution: JSON boxes (object), "Yes" / "No" (state), the text (grounding); None: left out."""
        if task == "object":
            converted, issue, _ = detection_answer(given)
            if issue is not None:
                self.drops.drop(task, issue, rel, record=i, field="solution", detail=f"{issue}: {given!r:.120}")
                return None
            return converted
        if task == "state":
            answer = given.rstrip(".")
            if answer.lower() not in ("yes", "no"):
                self.errors.append(where(rel, record=i, field="solution") + f"expected 'Yes' or 'No', got {given!r}")
                return None
            return answer.capitalize()
        return given
