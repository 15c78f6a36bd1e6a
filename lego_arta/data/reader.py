"""Read a LEGO-ARTA dataset dir as published (``PPPPPeter/arta``) into records; synthetic scenes use the same layout.

Layout (``root`` = ``data.root``)::

    json_data/**/<manual>.json                      per-manual JSON: manual_id, instructions[] (text, entities, VLM)
    lego/<manual>/images/<step>.<ext>               step images (what ``VLM.img_path`` points at)
    object_dataset/lego/<manual>/<step>.<ext>       parts call-out images (object detection)
    step_dataset/lego/<manual>/<step>.<ext>         state images: the real one ("Yes") ...
    step_dataset/lego/<manual>/<step>_fake<N>.<ext> ... and its fakes ("No"); one group per real image
    train_test_example/{grounding,object,state}_{train,test}.json   optional task files

How records are derived from the per-manual JSON (the project's reading of the public schema):

- grounding: every instruction with ``VLM.step_class == "step"`` and a text; the image is the step image, the
  solution the joined text, the context the text of the manual's previous instruction that had one.
- object: every instruction whose ``VLM.task_label`` is ``[detection]`` or ``[detection-collect]``; query =
  ``VLM.query``, solution = ``VLM.MiniGPTv2_output`` converted to JSON; the image is the call-out image of the same
  name under ``object_dataset/`` when there is one, else the step image (the image the detector saw).
- state: every real image under ``step_dataset/`` with its ``_fake<N>`` siblings (the step number is taken from the
  instruction whose step image has the same name).
- ``VLM.img_path`` may carry a cluster-specific prefix: it is re-rooted under ``root`` (the longest tail of the path
  that exists under ``root``). Unfilled fields hold the string "None"; ``text`` may be "No text found".
- When ``train_test_example/<task>_{train,test}.json`` exist (and ``use_task_files``), that task's records come from
  them instead: a JSON list of objects with the record fields (``image``, ``query``, ``solution`` required; ``id``,
  ``manual_id``, ``group_id``, ``context``, ``step_num`` derived when absent); anything else is a clear error.

Records that cannot be used (``ImageContent`` labels, no text, ...) are dropped and counted by reason; problems in the
files (broken JSON, a missing field, an image that does not exist) raise one ``DataError`` listing each problem with
its file, record and field. Only the existence of images is checked: no pixel is read here.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lego_arta.data.records import (
    FIELDS,
    GROUNDING_QUERY,
    STATE_QUERY,
    TASKS,
    DataError,
    Record,
    to_json_answer,
    where,
)

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
DETECTION_LABELS = frozenset({"[detection]", "[detection-collect]"})
# task labels that carry no detection (the VLM block of a page that was never queried)
NON_DETECTION_LABELS = frozenset({"None", "[grounding]", "[state]"})
INVALID_LABEL = "imagecontent"
NO_TEXT = frozenset({"No text found", "None", ""})
TASK_FILES_DIR = "train_test_example"
SPLITS = ("train", "test")
TASK_FILES_HINT = f"{TASK_FILES_DIR}/<task>_<split>.json"
_FAKE = re.compile(r"^(?P<original>.+)_fake(?P<n>\d+)$")
_MAX_LISTED_ERRORS = 20


@dataclass
class ReadResult:
    """What ``read_dataset`` found: the records, what it dropped (reason -> count) and the task files' split."""

    records: list[Record]
    dropped: Counter[str]
    root: Path
    # record id -> "train" | "test", for records read from the task files (the published split)
    published: dict[str, str] = field(default_factory=dict)


def read_dataset(root: str | Path, tasks: Iterable[str] = TASKS, *, use_task_files: bool = True) -> ReadResult:
    """Read the dataset under ``root`` into records of ``tasks``; raise ``DataError`` listing every file problem."""
    root = Path(root).expanduser().resolve()
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise DataError(f"data.tasks: {unknown} not in {list(TASKS)}")
    if not root.is_dir():
        raise DataError(f"data.root: {root} is not a directory")
    reader = _Reader(root, tasks)
    task_files = _task_files(root) if use_task_files else {}
    json_files = sorted((root / "json_data").rglob("*.json")) if (root / "json_data").is_dir() else []
    if not json_files and not task_files:
        raise DataError(
            f"{root}: no json_data/**/*.json and no {TASK_FILES_HINT}: not a LEGO-ARTA dir (set data.root to the "
            "folder that holds json_data/, lego/, object_dataset/, step_dataset/)"
        )
    records: list[Record] = []
    for path in json_files:
        records.extend(reader.read_manual(path))
    if "state" in tasks:
        records.extend(reader.read_state_folder())
    published: dict[str, str] = {}
    for task, files in sorted(task_files.items()):
        if task not in tasks:
            continue
        records = [r for r in records if r.task != task]  # the task files replace what the JSON gives
        for split, path in files:
            for record in reader.read_task_file(path, task):
                records.append(record)
                published[record.id] = split
    reader.raise_errors()
    _check_unique(records)
    if reader.dropped:
        log.info("dropped %d records: %s", sum(reader.dropped.values()), dict(reader.dropped))
    log.info("read %d records from %s: %s", len(records), root, dict(Counter(r.task for r in records)))
    return ReadResult(records=records, dropped=reader.dropped, root=root, published=published)


def _task_files(root: Path) -> dict[str, list[tuple[str, Path]]]:
    found: dict[str, list[tuple[str, Path]]] = {}
    for task in TASKS:
        for split in SPLITS:
            path = root / TASK_FILES_DIR / f"{task}_{split}.json"
            if path.is_file():
                found.setdefault(task, []).append((split, path))
    return found


def _check_unique(records: list[Record]) -> None:
    counts = Counter(r.id for r in records)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    if duplicates:
        raise DataError(f"duplicate record ids ({len(duplicates)}), e.g. {duplicates[:5]}")


class _Reader:
    """Reads the files of one dataset dir, collecting errors and drop reasons."""

    def __init__(self, root: Path, tasks: tuple[str, ...]) -> None:
        self.root = root
        self.tasks = tasks
        self.dropped: Counter[str] = Counter()
        self.errors: list[str] = []
        self._prefixes: set[tuple[str, ...]] = set()  # cluster prefixes seen to re-root
        self._objects = _index_images(root / "object_dataset")
        self._states = _index_images(root / "step_dataset") if "state" in tasks else {}
        self._step_nums: dict[tuple[str, str], int] = {}  # (manual, image stem) -> step number

    # -- errors ---------------------------------------------------------------------------------------------------
    def error(self, file: Path, problem: str, *, record: str | int | None = None, field: str | None = None) -> None:
        self.errors.append(where(self._rel(file), record=record, field=field) + problem)

    def raise_errors(self) -> None:
        if not self.errors:
            return
        listed = self.errors[:_MAX_LISTED_ERRORS]
        more = len(self.errors) - len(listed)
        head = f"{len(self.errors)} problems in the dataset at {self.root}:\n" if len(self.errors) > 1 else ""
        tail = f"\n... and {more} more" if more else ""
        raise DataError(head + "\n".join(listed) + tail)

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    # -- images ---------------------------------------------------------------------------------------------------
    def resolve_image(self, raw: str) -> Path | None:
        """The local file for a path from the data: as given, under root, or re-rooted from a foreign prefix."""
        posix = PurePosixPath(raw.replace("\\", "/"))
        if not posix.is_absolute():
            candidate = self.root / posix
            return candidate if candidate.is_file() else None
        direct = Path(raw)
        if direct.is_file():
            return direct
        parts = posix.parts[1:]
        for prefix in self._prefixes:
            if parts[: len(prefix)] == prefix:
                candidate = self.root.joinpath(*parts[len(prefix) :])
                if candidate.is_file():
                    return candidate
        for k in range(len(parts)):
            candidate = self.root.joinpath(*parts[k:])
            if candidate.is_file():
                self._prefixes.add(tuple(parts[:k]))
                return candidate
        return None

    # -- per-manual JSON ------------------------------------------------------------------------------------------
    def read_manual(self, path: Path) -> list[Record]:
        data = self._load_json(path)
        if data is None:
            return []
        if not isinstance(data, dict):
            self.error(path, f"expected a JSON object with 'instructions', got {type(data).__name__}")
            return []
        instructions = data.get("instructions")
        if not isinstance(instructions, list):
            self.error(path, "missing or not a list", field="instructions")
            return []
        manual_id = data.get("manual_id")
        manual = manual_id if isinstance(manual_id, str) and manual_id not in NO_TEXT else path.stem
        records: list[Record] = []
        previous_text = ""
        for i, ins in enumerate(instructions):
            iid = ins.get("instruction_id", i) if isinstance(ins, dict) else i
            rec = f"instruction {i} (instruction_id={iid})"
            if not isinstance(ins, dict):
                self.error(path, f"expected an object, got {type(ins).__name__}", record=rec)
                continue
            vlm = ins.get("VLM")
            if vlm is None:
                self.error(path, "missing (every instruction needs its VLM block)", record=rec, field="VLM")
                continue
            if not isinstance(vlm, dict):
                self.error(path, f"expected an object, got {type(vlm).__name__}", record=rec, field="VLM")
                continue
            if "img_path" not in vlm:
                self.error(path, "missing", record=rec, field="VLM.img_path")
                continue
            image: Path | None = None
            raw_image = vlm["img_path"]
            if not _is_none(raw_image):
                if not isinstance(raw_image, str):
                    self.error(path, f"expected a string, got {raw_image!r}", record=rec, field="VLM.img_path")
                    continue
                image = self.resolve_image(raw_image)
                if image is None:
                    problem = f"image not found: {raw_image!r} (looked under {self.root})"
                    self.error(path, problem, record=rec, field="VLM.img_path")
                    continue
            text = self._text(ins.get("text"), path, rec)
            step_class = vlm.get("step_class")
            step_num = _as_int(vlm.get("step_num"), default=i)
            uid = f"{manual}/{{task}}/{iid}"
            if image is not None:
                self._step_nums[(manual, image.stem)] = step_num
            if "grounding" in self.tasks:
                if step_class != "step":
                    self.dropped[f"grounding: step_class {step_class!r}"] += 1
                elif text is None:
                    self.dropped["grounding: no text ('No text found')"] += 1
                elif image is None:
                    self.dropped["grounding: no image (VLM.img_path 'None')"] += 1
                else:
                    image = self._step_image(manual, image)
                    gid = uid.format(task="grounding")
                    records.append(
                        Record(
                            gid, "grounding", manual, gid, str(image), GROUNDING_QUERY, text, previous_text, step_num
                        )
                    )
            if step_class == "step" and text is not None:
                previous_text = text
            if "object" in self.tasks:
                record = self._object(path, rec, vlm, manual, uid.format(task="object"), image, step_num)
                if record is not None:
                    records.append(record)
        return records

    def _object(
        self, path: Path, rec: str, vlm: Mapping[str, Any], manual: str, uid: str, image: Path | None, step_num: int
    ) -> Record | None:
        label = vlm.get("task_label")
        if _is_none(label) or label in NON_DETECTION_LABELS:
            return None
        if label not in DETECTION_LABELS:
            self.dropped[f"object: unknown task_label {label!r}"] += 1
            return None
        query, answer = vlm.get("query"), vlm.get("MiniGPTv2_output")
        if _is_none(query) or not isinstance(query, str):
            self.dropped["object: no query ('None')"] += 1
            return None
        if _is_none(answer) or not isinstance(answer, str):
            self.dropped["object: no answer (MiniGPTv2_output 'None')"] += 1
            return None
        if image is None:
            self.dropped["object: no image (VLM.img_path 'None')"] += 1
            return None
        solution = self._object_solution(answer)
        if solution is None:
            return None
        image = self._objects.get((manual, image.stem), image)
        return Record(uid, "object", manual, uid, str(image), query.strip(), solution, "", step_num)

    def _object_solution(self, answer: str) -> str | None:
        """The JSON solution of a reference answer (JSON or legacy); None (dropped, counted) when unusable."""
        solution, boxes = to_json_answer(answer)
        if any(box.label.strip().lower() == INVALID_LABEL for box in boxes):
            self.dropped["object: ImageContent label"] += 1
            return None
        if not boxes:
            self.dropped["object: answer has no box"] += 1
            return None
        return solution

    def _step_image(self, manual: str, image: Path) -> Path:
        """The step image of an instruction: ``lego/<manual>/images/<name>`` when the VLM image is elsewhere."""
        candidate = self.root / "lego" / manual / "images" / image.name
        return candidate if candidate.is_file() else image

    def _text(self, value: Any, path: Path, rec: str) -> str | None:
        if _is_none(value) or (isinstance(value, str) and value.strip() in NO_TEXT):
            return None
        if isinstance(value, str):
            return value.strip() or None
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                self.error(path, f"expected a list of strings, got {value!r}", record=rec, field="text")
                return None
            joined = " ".join(v.strip() for v in value if v.strip() not in NO_TEXT)
            return joined or None
        self.error(path, f"expected a list of strings or 'No text found', got {value!r}", record=rec, field="text")
        return None

    def _load_json(self, path: Path) -> Any:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except json.JSONDecodeError as e:
            self.error(path, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")
        except UnicodeDecodeError as e:
            self.error(path, f"not UTF-8 text: {e}")
        return None

    # -- state images ---------------------------------------------------------------------------------------------
    def read_state_folder(self) -> list[Record]:
        originals: dict[tuple[str, str], Path] = {}
        fakes: dict[tuple[str, str], list[tuple[int, Path]]] = {}
        for (manual, stem), path in self._states.items():
            match = _FAKE.match(stem)
            if match:
                fakes.setdefault((manual, match["original"]), []).append((int(match["n"]), path))
            else:
                originals[(manual, stem)] = path
        records: list[Record] = []
        for key in sorted(set(originals) | set(fakes)):
            manual, stem = key
            if key not in originals:
                self.dropped["state: fake without its original"] += len(fakes[key])
                continue
            group = f"{manual}/state/{stem}"
            step_num = self._step_nums.get(key, 0)
            records.append(
                Record(group, "state", manual, group, str(originals[key]), STATE_QUERY, "Yes", "", step_num)
            )
            for n, path in sorted(fakes.get(key, [])):
                rid = f"{group}_fake{n}"
                records.append(Record(rid, "state", manual, group, str(path), STATE_QUERY, "No", "", step_num))
        return records

    # -- task files -----------------------------------------------------------------------------------------------
    def read_task_file(self, path: Path, task: str) -> list[Record]:
        data = self._load_json(path)
        if data is None:
            return []
        if not isinstance(data, list):
            self.error(path, f"expected a JSON list of records with fields {list(FIELDS)}, got {type(data).__name__}")
            return []
        records: list[Record] = []
        for i, item in enumerate(data):
            record = self._task_record(path, task, i, item)
            if record is not None:
                records.append(record)
        return records

    def _task_record(self, path: Path, task: str, i: int, item: Any) -> Record | None:
        if not isinstance(item, dict):
            self.error(path, f"expected an object with the record fields, got {type(item).__name__}", record=i)
            return None
        for name in ("image", "query", "solution"):
            if not isinstance(item.get(name), str):
                problem = "missing" if name not in item else f"expected a string, got {item[name]!r}"
                problem += f" (expected the record fields {list(FIELDS)}; found {sorted(item)})"
                self.error(path, problem, record=i, field=name)
                return None
        if item.get("task", task) != task:
            self.error(path, f"{item['task']!r} in the {task} file", record=i, field="task")
            return None
        image = self.resolve_image(item["image"])
        if image is None:
            self.error(path, f"image not found: {item['image']!r} (looked under {self.root})", record=i, field="image")
            return None
        solution = item["solution"].strip()
        if task == "object":
            converted = self._object_solution(solution)
            if converted is None:
                return None
            solution = converted
        elif task == "state":
            if solution.lower() not in ("yes", "no"):
                self.error(path, f"expected 'Yes' or 'No', got {solution!r}", record=i, field="solution")
                return None
            solution = solution.capitalize()
        manual = item.get("manual_id") or _manual_of(image, self.root)
        rid = item.get("id") or f"{manual}/{task}/{path.stem}-{i}"
        group = item.get("group_id") or (f"{manual}/state/{_original_stem(image.stem)}" if task == "state" else rid)
        values = {**item, "id": rid, "task": task, "manual_id": manual, "group_id": group, "image": str(image)}
        values["solution"] = solution
        values["query"] = item["query"].strip()
        values.setdefault("context", "")
        values.setdefault("step_num", 0)
        try:
            return Record.from_dict({k: values[k] for k in FIELDS}, source=self._rel(path), index=i)
        except DataError as e:
            self.errors.append(str(e))
            return None


def _index_images(folder: Path) -> dict[tuple[str, str], Path]:
    """(manual, file stem) -> path of every image under ``folder`` (the manual is the folder after ``lego/``)."""
    index: dict[tuple[str, str], Path] = {}
    if not folder.is_dir():
        return index
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = Path(dirpath).relative_to(folder).parts
        manual = _manual_from_parts(rel)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                index.setdefault((manual, path.stem), path)
    return index


def _manual_from_parts(parts: tuple[str, ...]) -> str:
    if "lego" in parts and parts.index("lego") + 1 < len(parts):
        return parts[parts.index("lego") + 1]
    return parts[0] if parts else ""


def _manual_of(image: Path, root: Path) -> str:
    """The manual of an image path: the folder after ``lego/`` (``lego/<m>/images/``, ``object_dataset/lego/<m>/``)."""
    try:
        return _manual_from_parts(image.relative_to(root).parts[:-1])
    except ValueError:
        return _manual_from_parts(image.parts[:-1])


def _original_stem(stem: str) -> str:
    match = _FAKE.match(stem)
    return match["original"] if match else stem


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("None", ""))


def _as_int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return default
