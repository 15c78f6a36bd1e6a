"""Read the LEGO-ARTA download as it is (``PPPPPeter/arta``) into records; synthetic scenes use the same layout.

Layout (``data.root`` = the download folder or its ``ARTA_LEGO/`` folder, called ``root`` here)::

    json_data/**/<manual>_new.json                  per-manual JSON: manual_id, instructions[] (text, entities, VLM)
    lego/<manual>/images/<file>                     page images (what ``VLM.img_path`` points at)
    object_dataset/lego/<manual>/**/<file>          parts call-out images (object detection)
    step_dataset/lego/<manual>/**/<file>_fake<N>    wrong-state images ("No"); the real image ("Yes") is
                                                    lego/<manual>/images/<file> and/or step_dataset/.../<file>
    train_test_example/{grounding,object,state}_{train,test}.json   optional task files (see ``task_files``)

What the public sources show, and how it is read (sources: LEGO-MRTA = the dataset's construction code,
Jiahuan-Pei/AutonomousDialogAgent4AugmentedReality; LEGO-R1 = the study's notebooks, BPerju/LEGO-R1):

- Manual files are ``<manual>_new.json`` (LEGO-MRTA ``LEGO_vlm/inference.py`` reads and rewrites
  ``..._new.json``), pretty-printed (``json.dumps(..., indent=4)`` in ``LEGO_vlm/dataset_pre.py``). Every
  ``json_data/**/*.json`` is read, except ``<m>.json`` when ``<m>_new.json`` sits beside it (skipped, counted).
- Unfilled fields are the string ``"None"``; ``text`` is a list of strings or ``"No text found"``, and ``entities``
  is absent with no text (``dataset_pre.py``, ``make_new_json``). Crawler-format rows
  (``LEGO_manual_crawler/lego_audio_instruction_crawler.py``: ``instruction_id``, ``text`` as one string,
  ``img_url``) have no ``VLM`` block: dropped as ``instruction: no VLM block``.
- ``VLM.img_path`` is re-rooted onto ``root`` and may be URL-encoded (see ``images``).
- ``VLM.step_class`` / ``VLM.step_num`` are not written by ``dataset_pre.py``; when absent (or "None") they come
  from the image's file name, ``..._<N>_step.<ext>`` -> step N, ``..._<N>...eop...`` -> eop N, as the study's
  notebook does (``_merge``, ``_step_re`` / ``_eop_re``).
- Detection rows: ``task_label`` ``[detection]`` (query "Find ...") or ``[detection-collect]`` (query
  "Collect ...") from the row's verb (``dataset_pre.py``). MiniGPT-v2 answered ``[detection]`` rows only
  (``inference.py`` filters on ``task_label == '[detection]'`` and stores ``VLM.answer``): a collect row whose
  answer stayed "None" is skipped (counted), a ``[detection]`` row without one is dropped. The answer is read from
  ``VLM.MiniGPTv2_output``, else ``VLM.answer``.

The study's record semantics (LEGO-R1 ``Iteration_2/Qwen2.5-VL-DATA_WRANGLING.ipynb``; defaults = the study's,
each alternative a config option):

- grounding: every ``step`` row with a text; solution = its joined text. Context (``data.grounding_context``):
  ``previous_instruction`` (default) = the text of the row just before, of any kind, often an eop "Find ..." row
  (the notebook's ``_add_prev_instruction``: ``instruction_id - 1``; Iteration 1 took the eop row before the step);
  a row without text gives "" (the notebook would pass "No text found" on). ``previous_step`` = the text of the
  previous ``step`` row.
- object: detection rows whose step class is in ``data.object_step_classes`` (default ``[eop]``: the notebook's
  ``_filter_table`` keeps ``step_class == "eop"`` only; null = any); others are skipped (counted). One record per
  row (``data.object_records: row``, the notebook's rows, one per image) or one per label (``label``: the
  row's boxes grouped by label, query "<verb> <label>"). The answer becomes JSON; rows with an ``ImageContent``
  label are dropped (the notebook drops them). The image is the call-out of the same name under
  ``object_dataset/``, else the page image.
- state: see ``state``. Records of a task sharing an image keep the first (the notebook's ``_merge`` dedup).

Record-level problems are dropped and counted by reason (``drops``); file-level problems (unreadable JSON, no
manual found, a missing root) raise one ``DataError`` naming each file. Only the existence of images is checked:
no pixel is read here.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lego_arta.data.drops import DropLog
from lego_arta.data.images import ImageFinder, dataset_root, index_images, name_key, rel_path
from lego_arta.data.records import GROUNDING_QUERY, TASKS, DataError, Record, detection_answer
from lego_arta.data.state import STATE_GROUP_BY, STATE_ORIGINAL, read_state
from lego_arta.data.task_files import TASK_FILES_DIR, TaskFileReader, find_task_files

log = logging.getLogger(__name__)

DETECTION = "[detection]"
COLLECT = "[detection-collect]"
# task labels of rows that were never a detection (the VLM block of a page that was not queried)
NON_DETECTION_LABELS = frozenset({"None", "[grounding]", "[state]"})
NO_TEXT = frozenset({"No text found", "None", ""})
GROUNDING_CONTEXT = ("previous_instruction", "previous_step")
OBJECT_RECORDS = ("row", "label")
NEW_SUFFIX = "_new"
# the study's file-name rules for rows without a step class (LEGO-R1 notebook, _step_re / _eop_re)
_STEP_NAME = re.compile(r"[_-](\d{1,4})_step", re.IGNORECASE)
_EOP_NAME = re.compile(r"[_-](\d{1,4}).*?eop", re.IGNORECASE)


@dataclass(frozen=True)
class ReadOptions:
    """How to read the dataset: the ``data`` config keys the reader uses (their defaults live in YAML only)."""

    tasks: tuple[str, ...]
    use_task_files: bool
    strict: bool
    max_drop_fraction: float
    grounding_context: str
    object_records: str
    object_step_classes: tuple[str, ...] | None
    state_original: str
    state_group_by: str

    def __post_init__(self) -> None:
        problems = []
        if unknown := [t for t in self.tasks if t not in TASKS]:
            problems.append(f"data.tasks: {unknown} not in {list(TASKS)}")
        for name, allowed in (
            ("grounding_context", GROUNDING_CONTEXT),
            ("object_records", OBJECT_RECORDS),
            ("state_original", STATE_ORIGINAL),
            ("state_group_by", STATE_GROUP_BY),
        ):
            if getattr(self, name) not in allowed:
                problems.append(f"data.{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        if not 0.0 <= self.max_drop_fraction <= 1.0:
            problems.append(f"data.max_drop_fraction: {self.max_drop_fraction} is not in [0, 1]")
        if problems:
            raise DataError("; ".join(problems))

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> ReadOptions:
        """The options from the ``data`` config node (a plain mapping); a missing key is a ``DataError``."""
        try:
            classes = data["object_step_classes"]
            return cls(
                tasks=tuple(data["tasks"]),
                use_task_files=bool(data["use_task_files"]),
                strict=bool(data["strict"]),
                max_drop_fraction=float(data["max_drop_fraction"]),
                grounding_context=str(data["grounding_context"]),
                object_records=str(data["object_records"]),
                object_step_classes=None if classes is None else tuple(classes),
                state_original=str(data["state_original"]),
                state_group_by=str(data["state_group_by"]),
            )
        except KeyError as e:
            raise DataError(f"data.{e.args[0]}: missing from the data config (see conf/data/lego_arta.yaml)") from e


@dataclass
class ReadResult:
    """What ``read_dataset`` found: records, drops and skips (reason -> count), the task files' split."""

    records: list[Record]
    dropped: Counter[str]
    root: Path
    # record id -> "train" | "test", for records read from the task files (the published split)
    published: dict[str, str] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # drop reason -> one example (file: record: field)


def read_dataset(root: str | Path, options: ReadOptions) -> ReadResult:
    """Read the dataset under ``root`` (the download folder or its ``ARTA_LEGO/``) into records.

    Raises:
        DataError: a file-level problem (each file named), any drop when ``options.strict``, or a task losing more
            than ``options.max_drop_fraction`` of its records (the top reasons with an example each).
    """
    given = Path(root).expanduser().resolve()
    if not given.is_dir():
        raise DataError(f"data.root: {given} is not a directory")
    root = dataset_root(given)
    drops = DropLog(strict=options.strict)
    finder = ImageFinder(root)
    task_files = find_task_files(root) if options.use_task_files else {}
    json_files = _manual_files(root, drops)
    if not json_files and not task_files:
        raise DataError(
            f"{given}: no manual found (no json_data/**/*.json, no {TASK_FILES_DIR}/): not a LEGO-ARTA download. Set "
            "data.root to the download folder or to its ARTA_LEGO/ folder (the one that holds json_data/, lego/, "
            "object_dataset/, step_dataset/)"
        )
    reader = _ManualReader(root, options, finder, drops)
    records: list[Record] = []
    for path in json_files:
        records.extend(reader.read(path))
    if "state" in options.tasks:
        records.extend(
            read_state(
                index_images(root / "step_dataset"),
                reader.page_images,
                reader.step_nums,
                original_from=options.state_original,
                group_by=options.state_group_by,
                drops=drops,
                root=root,
            )
        )
    published: dict[str, str] = {}
    task_reader = TaskFileReader(root, finder, drops, group_by=options.state_group_by)
    for task, files in sorted(task_files.items()):
        if task not in options.tasks:
            continue
        records = [r for r in records if r.task != task]  # the task files replace what the JSON gives
        for split, path in files:
            for record in task_reader.read(path, task):
                records.append(record)
                published[record.id] = split
    task_reader.raise_errors()
    drops.raise_errors(root)
    _check_unique(records)
    row_drops = sum(n for reason, n in drops.dropped.items() if reason.startswith("instruction: "))
    kept = Counter(r.task for r in records) + Counter({"instruction": reader.instructions - row_drops})
    drops.check_fraction(kept, options.max_drop_fraction)
    if drops.dropped:
        log.info("dropped %d records: %s", sum(drops.dropped.values()), dict(drops.dropped))
    if drops.skipped:
        log.info("skipped by rule: %s", dict(drops.skipped))
    log.info("read %d records from %s: %s", len(records), root, dict(Counter(r.task for r in records)))
    return ReadResult(records, drops.dropped, root, published, drops.skipped, drops.examples)


def _manual_files(root: Path, drops: DropLog) -> list[Path]:
    """``json_data/**/*.json``, less ``<m>.json`` where ``<m>_new.json`` sits beside it (counted as skipped)."""
    folder = root / "json_data"
    files = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    names = {(p.parent, p.stem) for p in files}
    kept = []
    for path in files:
        if (path.parent, path.stem + NEW_SUFFIX) in names:
            drops.skip("json_data", f"<manual>.json beside its <manual>{NEW_SUFFIX}.json (the latter is read)")
        else:
            kept.append(path)
    return kept


def _check_unique(records: list[Record]) -> None:
    counts = Counter(r.id for r in records)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    if duplicates:
        raise DataError(
            f"duplicate record ids ({len(duplicates)}), e.g. {duplicates[:5]}: two manual files with the same "
            "manual_id, or task files that repeat an id"
        )


@dataclass(frozen=True)
class _Row:
    """One manual row with VLM block, as the record builders need it."""

    file: str  # the manual file, relative to root
    rec: str  # "instruction <i> (instruction_id=<id>)"
    manual: str
    iid: Any
    raw_image: Any  # VLM.img_path as written
    image: Path | None  # resolved, None when "None" or not found
    step_class: str | None
    step_num: int


class _ManualReader:
    """Reads the per-manual JSON files into grounding and object records; indexes what the state reader needs."""

    def __init__(self, root: Path, options: ReadOptions, finder: ImageFinder, drops: DropLog) -> None:
        self.root = root
        self.options = options
        self.finder = finder
        self.drops = drops
        self.instructions = 0  # manual rows read (the denominator of the ``instruction`` drop fraction)
        self.page_images = index_images(root / "lego") if "state" in options.tasks else {}
        self.step_nums: dict[tuple[str, str], int] = {}  # (manual, image name key) -> step number
        self._objects = index_images(root / "object_dataset") if "object" in options.tasks else {}
        self._seen: set[tuple[str, str]] = set()  # (task, image): the first record of an image is kept

    def read(self, path: Path) -> list[Record]:
        rel = rel_path(path, self.root)
        data = self._load(path, rel)
        if data is None:
            return []
        if not isinstance(data, dict):
            self.drops.error(rel, f"expected a JSON object with 'instructions', got {type(data).__name__}")
            return []
        instructions = data.get("instructions")
        if not isinstance(instructions, list):
            self.drops.error(rel, "missing or not a list", field="instructions")
            return []
        manual_id = data.get("manual_id")
        manual = manual_id if isinstance(manual_id, str) and manual_id.strip() not in NO_TEXT else path.stem
        manual = manual.removesuffix(NEW_SUFFIX)
        records: list[Record] = []
        previous_text, previous_step_text = "", ""
        for i, ins in enumerate(instructions):
            self.instructions += 1
            iid = ins.get("instruction_id", i) if isinstance(ins, dict) else i
            rec = f"instruction {i} (instruction_id={iid})"
            if not isinstance(ins, dict):
                self.drops.drop("instruction", "not a JSON object", rel, record=rec, detail=f"got {ins!r:.80}")
                previous_text = ""
                continue
            text = self._text(ins.get("text"))
            context = previous_text if self.options.grounding_context == "previous_instruction" else previous_step_text
            previous_text = text or ""
            vlm = ins.get("VLM")
            if _is_none(vlm):
                detail = "missing (a crawler-format row: only instruction_id, text, img_url)"
                self.drops.drop("instruction", "no VLM block", rel, record=rec, field="VLM", detail=detail)
                continue
            if not isinstance(vlm, dict):
                detail = f"expected an object, got {vlm!r:.80}"
                self.drops.drop("instruction", "VLM is not an object", rel, record=rec, field="VLM", detail=detail)
                continue
            raw_image = vlm.get("img_path")
            step_class, step_num = _step_of(vlm, raw_image, default=i)
            row = _Row(rel, rec, manual, iid, raw_image, self._image(raw_image, manual), step_class, step_num)
            if row.image is not None:
                self.step_nums.setdefault((manual, name_key(row.image.stem)), step_num)
            if step_class == "step" and text:
                previous_step_text = text
            if step_class == "step" and "grounding" in self.options.tasks:
                records.extend(self._grounding(row, ins.get("text"), text, context))
            label = vlm.get("task_label")
            if "object" in self.options.tasks and not _is_none(label) and label not in NON_DETECTION_LABELS:
                records.extend(self._object(row, vlm))
        return records

    # -- grounding ------------------------------------------------------------------------------------------------
    def _grounding(self, row: _Row, value: Any, text: str | None, context: str) -> list[Record]:
        if text is None:
            textual = _is_none(value) or isinstance(value, str) or _is_str_list(value)
            reason = "no text" if textual else "text is not a list of strings"
            self.drops.drop(
                "grounding", reason, row.file, record=row.rec, field="text", detail=f"{reason}: {value!r:.80}"
            )
            return []
        image = self._needed_image("grounding", row)
        if image is None or not self._first("grounding", image):
            return []
        rid = f"{row.manual}/grounding/{row.iid}"
        return [Record(rid, "grounding", row.manual, rid, str(image), GROUNDING_QUERY, text, context, row.step_num)]

    # -- object ---------------------------------------------------------------------------------------------------
    def _object(self, row: _Row, vlm: Mapping[str, Any]) -> list[Record]:
        rel, rec, manual, step_class = row.file, row.rec, row.manual, row.step_class
        label = vlm.get("task_label")
        if label not in (DETECTION, COLLECT):
            self.drops.drop(
                "object",
                "unknown task_label",
                rel,
                record=rec,
                field="VLM.task_label",
                detail=f"unknown task_label {label!r} (expected {DETECTION} or {COLLECT})",
            )
            return []
        classes = self.options.object_step_classes
        if classes is not None and step_class not in classes:
            self.drops.skip("object", f"step_class {step_class!r} not in data.object_step_classes")
            return []
        answer = next((vlm[k] for k in ("MiniGPTv2_output", "answer") if not _is_none(vlm.get(k))), None)
        if answer is None:
            if label == COLLECT:
                self.drops.skip("object", f"{COLLECT} row without an answer (MiniGPT-v2 answered {DETECTION} rows)")
            else:
                self.drops.drop(
                    "object",
                    "no answer",
                    rel,
                    record=rec,
                    field="VLM.MiniGPTv2_output",
                    detail=f"no answer ('None') for a {DETECTION} row",
                )
            return []
        query = vlm.get("query")
        if _is_none(query) or not isinstance(query, str):
            self.drops.drop("object", "no query", rel, record=rec, field="VLM.query", detail=f"no query: {query!r}")
            return []
        if not isinstance(answer, str):
            self.drops.drop(
                "object",
                "answer has no box",
                rel,
                record=rec,
                field="VLM.MiniGPTv2_output",
                detail=f"answer is not text: {answer!r:.80}",
            )
            return []
        solution, problem, unboxed = detection_answer(answer)
        if problem is not None:
            self.drops.drop(
                "object", problem, rel, record=rec, field="VLM.MiniGPTv2_output", detail=f"{problem}: {answer!r:.120}"
            )
            return []
        callout = self._objects.get((manual, _name_key_of(row.raw_image)))
        image = callout or self._needed_image("object", row)
        if image is None:
            return []
        if unboxed:
            self.drops.skip("object", "label without a box in an answer (its other boxes are kept)", len(unboxed))
        query = query.strip()
        rid = f"{manual}/object/{row.iid}"
        if self.options.object_records == "row":
            if not self._first("object", image):
                return []
            return [Record(rid, "object", manual, rid, str(image), query, solution, "", row.step_num)]
        by_label: dict[str, list[Any]] = {}
        for item in json.loads(solution):
            by_label.setdefault(item["label"], []).append(item)
        verb = query.split()[0] if len(by_label) > 1 else ""
        return [
            Record(
                f"{rid}-{j}",
                "object",
                manual,
                f"{rid}-{j}",
                str(image),
                f"{verb} {name}" if verb else query,
                json.dumps(items),
                "",
                row.step_num,
            )
            for j, (name, items) in enumerate(by_label.items())
        ]

    # -- helpers --------------------------------------------------------------------------------------------------
    def _image(self, raw: Any, manual: str) -> Path | None:
        if _is_none(raw) or not isinstance(raw, str):
            return None
        return self.finder.resolve(raw, manual)

    def _needed_image(self, task: str, row: _Row) -> Path | None:
        """The image of a record of ``task``; None (dropped, counted) when there is none or it is not found."""
        raw = row.raw_image
        if _is_none(raw) or not isinstance(raw, str):
            self.drops.drop(
                task, "no image", row.file, record=row.rec, field="VLM.img_path", detail=f"no image: {raw!r}"
            )
        elif row.image is None:
            detail = f"image not found: {raw!r} (looked under {self.root})"
            self.drops.drop(task, "image not found", row.file, record=row.rec, field="VLM.img_path", detail=detail)
        return row.image

    def _first(self, task: str, image: Path) -> bool:
        """True for the first record of ``task`` on ``image``; later ones are skipped (counted)."""
        if (task, str(image)) in self._seen:
            self.drops.skip(task, "image already used by an earlier row (the first is kept)")
            return False
        self._seen.add((task, str(image)))
        return True

    def _text(self, value: Any) -> str | None:
        """The joined text of a row; None when it has none ("No text found", "None") or is not text."""
        if isinstance(value, str):
            return None if value.strip() in NO_TEXT else value.strip()
        if _is_str_list(value):
            return " ".join(v.strip() for v in value if v.strip() not in NO_TEXT) or None
        return None

    def _load(self, path: Path, rel: str) -> Any:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except json.JSONDecodeError as e:
            self.drops.error(rel, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")
        except UnicodeDecodeError as e:
            self.drops.error(rel, f"not UTF-8 text: {e}")
        except OSError as e:
            self.drops.error(rel, f"cannot be read: {e}")
        return None


def _step_of(vlm: Mapping[str, Any], raw_image: Any, default: int) -> tuple[str | None, int]:
    """(step class, step number) of a row: from ``VLM`` when filled, else from the image's file name."""
    step_class = vlm.get("step_class")
    step_num = _as_int(vlm.get("step_num"))
    name = PurePosixPath(raw_image).name if isinstance(raw_image, str) and not _is_none(raw_image) else ""
    step_match, eop_match = _STEP_NAME.search(name), _EOP_NAME.search(name)
    if _is_none(step_class) or not isinstance(step_class, str):
        step_class = "step" if step_match else "eop" if eop_match else None
    if step_num is None:
        match = step_match or eop_match
        step_num = int(match[1]) if match else default
    return step_class, step_num


def _name_key_of(raw_image: Any) -> str:
    """The ``name_key`` of the file an ``img_path`` names ("" for none): how object_dataset/ images are matched."""
    if _is_none(raw_image) or not isinstance(raw_image, str):
        return ""
    return name_key(PurePosixPath(raw_image.replace("\\", "/")).stem)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("None", ""))


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None
