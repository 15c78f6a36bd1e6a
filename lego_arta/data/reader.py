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
no pixel is read here. ``read_dataset`` puts the parts together: ``manuals`` reads the per-manual files (grounding,
object), ``state`` the state groups, ``task_files`` the optional task files.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lego_arta.data.drops import DropLog
from lego_arta.data.images import ImageFinder, dataset_root, index_images
from lego_arta.data.manuals import GROUNDING_CONTEXT, NEW_SUFFIX, OBJECT_RECORDS, ManualReader
from lego_arta.data.records import TASKS, DataError, Record
from lego_arta.data.state import STATE_GROUP_BY, STATE_ORIGINAL, read_state
from lego_arta.data.task_files import TASK_FILES_DIR, TaskFileReader, find_task_files

log = logging.getLogger(__name__)


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
    reader = ManualReader(root, options, finder, drops)
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
