"""The per-manual JSON files (``json_data/**/<manual>_new.json``): grounding and object records, what state needs.

Each instruction row with a ``VLM`` block is read into a :class:`_Row`; :meth:`ManualReader._grounding` and
:meth:`ManualReader._object` each turn a row into the records of their task (or drop / skip it, counted). The rules
and the evidence for them are in ``lego_arta.data.reader``'s docstring; the options are ``ReadOptions``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from lego_arta.data.drops import DropLog
from lego_arta.data.images import ImageFinder, index_images, name_key, rel_path
from lego_arta.data.records import GROUNDING_QUERY, Record, detection_answer

if TYPE_CHECKING:
    from lego_arta.data.reader import ReadOptions

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
class _Row:
    """One manual row with a VLM block, as the record builders need it."""

    file: str  # the manual file, relative to root
    rec: str  # "instruction <i> (instruction_id=<id>)"
    manual: str
    iid: Any
    raw_text: Any  # the row's text as written
    text: str | None  # joined; None when it has none
    context: str  # the grounding context (data.grounding_context)
    vlm: Mapping[str, Any]
    raw_image: Any  # VLM.img_path as written
    image: Path | None  # resolved, None when "None" or not found
    step_class: str | None
    step_num: int


@dataclass
class _Previous:
    """What a grounding record's context comes from: the texts of the rows before the current one."""

    instruction: str = ""  # the row just before, of any kind ("" without text)
    step: str = ""  # the last step row with a text


class ManualReader:
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
        """The grounding and object records of one manual file (nothing when the file itself is unusable)."""
        rel = rel_path(path, self.root)
        read = self._manual(path, rel)
        if read is None:
            return []
        manual, instructions = read
        records: list[Record] = []
        previous = _Previous()
        for i, ins in enumerate(instructions):
            self.instructions += 1
            row = self._row(rel, manual, i, ins, previous)
            if row is None:
                continue
            if "grounding" in self.options.tasks:
                records.extend(self._grounding(row))
            if "object" in self.options.tasks:
                records.extend(self._object(row))
        return records

    def _row(self, rel: str, manual: str, i: int, ins: Any, previous: _Previous) -> _Row | None:
        """Row ``i`` of a manual, ``previous`` moved past it; None when it is dropped (no VLM block, not an object)."""
        iid = ins.get("instruction_id", i) if isinstance(ins, dict) else i
        rec = f"instruction {i} (instruction_id={iid})"
        if not isinstance(ins, dict):
            self.drops.drop("instruction", "not a JSON object", rel, record=rec, detail=f"got {ins!r:.80}")
            previous.instruction = ""
            return None
        text = _text(ins.get("text"))
        context = previous.instruction if self.options.grounding_context == "previous_instruction" else previous.step
        previous.instruction = text or ""
        vlm = ins.get("VLM")
        if _is_none(vlm):
            detail = "missing (a crawler-format row: only instruction_id, text, img_url)"
            self.drops.drop("instruction", "no VLM block", rel, record=rec, field="VLM", detail=detail)
            return None
        if not isinstance(vlm, dict):
            detail = f"expected an object, got {vlm!r:.80}"
            self.drops.drop("instruction", "VLM is not an object", rel, record=rec, field="VLM", detail=detail)
            return None
        raw_image = vlm.get("img_path")
        step_class, step_num = _step_of(vlm, raw_image, default=i)
        image = self._image(raw_image, manual)
        if image is not None:
            self.step_nums.setdefault((manual, name_key(image.stem)), step_num)
        if step_class == "step" and text:
            previous.step = text
        return _Row(
            file=rel,
            rec=rec,
            manual=manual,
            iid=iid,
            raw_text=ins.get("text"),
            text=text,
            context=context,
            vlm=vlm,
            raw_image=raw_image,
            image=image,
            step_class=step_class,
            step_num=step_num,
        )

    # -- grounding ------------------------------------------------------------------------------------------------
    def _grounding(self, row: _Row) -> list[Record]:
        """The grounding record of a step row: its text, with the context before it; [] for other rows."""
        if row.step_class != "step":
            return []
        if row.text is None:
            value = row.raw_text
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
        return [
            Record(
                id=rid,
                task="grounding",
                manual_id=row.manual,
                group_id=rid,
                image=str(image),
                query=GROUNDING_QUERY,
                solution=row.text,
                context=row.context,
                step_num=row.step_num,
            )
        ]

    # -- object ---------------------------------------------------------------------------------------------------
    def _object(self, row: _Row) -> list[Record]:
        """The object records of a detection row: one per row, or one per label (``data.object_records``)."""
        vlm, rel, rec = row.vlm, row.file, row.rec
        label = vlm.get("task_label")
        if _is_none(label) or label in NON_DETECTION_LABELS:
            return []
        if label not in (DETECTION, COLLECT):
            detail = f"unknown task_label {label!r} (expected {DETECTION} or {COLLECT})"
            self.drops.drop("object", "unknown task_label", rel, record=rec, field="VLM.task_label", detail=detail)
            return []
        classes = self.options.object_step_classes
        if classes is not None and row.step_class not in classes:
            self.drops.skip("object", f"step_class {row.step_class!r} not in data.object_step_classes")
            return []
        answer = next((vlm[k] for k in ("MiniGPTv2_output", "answer") if not _is_none(vlm.get(k))), None)
        if answer is None:
            if label == COLLECT:
                self.drops.skip("object", f"{COLLECT} row without an answer (MiniGPT-v2 answered {DETECTION} rows)")
            else:
                detail = f"no answer ('None') for a {DETECTION} row"
                self.drops.drop("object", "no answer", rel, record=rec, field="VLM.MiniGPTv2_output", detail=detail)
            return []
        raw_query = vlm.get("query")
        if _is_none(raw_query) or not isinstance(raw_query, str):
            detail = f"no query: {raw_query!r}"
            self.drops.drop("object", "no query", rel, record=rec, field="VLM.query", detail=detail)
            return []
        if not isinstance(answer, str):
            detail = f"answer is not text: {answer!r:.80}"
            self.drops.drop(
                "object", "answer has no box", rel, record=rec, field="VLM.MiniGPTv2_output", detail=detail
            )
            return []
        solution, problem, unboxed = detection_answer(answer)
        if problem is not None:
            detail = f"{problem}: {answer!r:.120}"
            self.drops.drop("object", problem, rel, record=rec, field="VLM.MiniGPTv2_output", detail=detail)
            return []
        callout = self._objects.get((row.manual, _name_key_of(row.raw_image)))
        image = callout or self._needed_image("object", row)
        if image is None:
            return []
        if unboxed:
            self.drops.skip("object", "label without a box in an answer (its other boxes are kept)", len(unboxed))
        query = raw_query.strip()
        rid = f"{row.manual}/object/{row.iid}"
        if self.options.object_records == "row":
            if not self._first("object", image):
                return []
            return [self._object_record(row, rid, image, query, solution)]
        by_label: dict[str, list[Any]] = {}
        for item in json.loads(solution):
            by_label.setdefault(item["label"], []).append(item)
        verb = query.split()[0] if len(by_label) > 1 else ""
        return [
            self._object_record(row, f"{rid}-{j}", image, f"{verb} {name}" if verb else query, json.dumps(items))
            for j, (name, items) in enumerate(by_label.items())
        ]

    @staticmethod
    def _object_record(row: _Row, rid: str, image: Path, query: str, solution: str) -> Record:
        return Record(
            id=rid,
            task="object",
            manual_id=row.manual,
            group_id=rid,
            image=str(image),
            query=query,
            solution=solution,
            step_num=row.step_num,
        )

    # -- helpers --------------------------------------------------------------------------------------------------
    def _manual(self, path: Path, rel: str) -> tuple[str, list[Any]] | None:
        """The file's manual and ``instructions`` list; None (an error noted) when the file or the list is unusable.

        The manual is the file's ``manual_id`` when filled, else its file name; without the ``_new`` suffix.
        """
        data = self._load(path, rel)
        if data is None:
            return None
        if not isinstance(data, dict):
            self.drops.error(rel, f"expected a JSON object with 'instructions', got {type(data).__name__}")
            return None
        instructions = data.get("instructions")
        if not isinstance(instructions, list):
            self.drops.error(rel, "missing or not a list", field="instructions")
            return None
        manual_id = data.get("manual_id")
        manual = manual_id if isinstance(manual_id, str) and manual_id.strip() not in NO_TEXT else path.stem
        return manual.removesuffix(NEW_SUFFIX), instructions

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


def _text(value: Any) -> str | None:
    """The joined text of a row; None when it has none ("No text found", "None") or is not text."""
    if isinstance(value, str):
        return None if value.strip() in NO_TEXT else value.strip()
    if _is_str_list(value):
        return " ".join(v.strip() for v in value if v.strip() not in NO_TEXT) or None
    return None


def _step_of(vlm: Mapping[str, Any], raw_image: Any, default: int) -> tuple[str | None, int]:
    """(step class, step number) of a row: from ``VLM`` when filled, else from the image's file name."""
    given_class, given_num = vlm.get("step_class"), _as_int(vlm.get("step_num"))
    name = PurePosixPath(raw_image).name if isinstance(raw_image, str) and not _is_none(raw_image) else ""
    step_match, eop_match = _STEP_NAME.search(name), _EOP_NAME.search(name)
    named_class = "step" if step_match else "eop" if eop_match else None
    step_class = given_class if isinstance(given_class, str) and not _is_none(given_class) else named_class
    match = step_match or eop_match
    named_num = int(match[1]) if match else default
    return step_class, named_num if given_num is None else given_num


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
