"""Read VLM-R1's referring-expression files (om-ai-lab/VLM-R1, ``rec_jsons_processed``: refcoco/refcocop/refcocog
train and val, RefGTA) into records.

Two forms, one record per line or list item:

- ``.json`` (a list): ``image`` (a path under ``data.image_root``, VLM-R1's COCO ``train2014/`` root), ``problem``
  (the instruction holding the expression) and ``solution`` (``[x1, y1, x2, y2]`` in pixels of the original image):
  the three keys ``src/open_r1/grpo_rec.py`` reads; other keys (``normalized_solution``, ``height``, ``width``) are
  not read, as no REC code of VLM-R1 reads them.
- ``.jsonl``: ``image`` and ``conversations`` (the human turn's text, ``<image>`` removed, is the problem; the gpt
  turn holds the box).

``data.splits`` names the file of each side (``train: refcoco_train.json``, ``test: refcoco_val.json``), relative to
``data.root``. Records are ``object`` records with one reference box, as :mod:`lego_arta.data.lmms_rec` makes them:
the box is normalised by the image's size (its header is read) onto the 0-100 grid; the query and the label are the
problem text. ``manual_id`` is the image, ``group_id`` the line.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from lego_arta.data.drops import DropLog
from lego_arta.data.lmms_rec import SCOPE, referring_record
from lego_arta.data.reader import ReadResult
from lego_arta.data.records import DataError, Record

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def read_vlm_r1_rec(
    root: str | Path,
    splits: Mapping[str, str | None],
    image_root: str | Path | None,
    *,
    strict: bool,
    max_drop_fraction: float,
) -> ReadResult:
    """Read the files ``splits`` names (``{"train": file or None, "test": file}``, relative to ``root``).

    Raises:
        DataError: a named file that is missing or not JSON (its line named), any drop when ``strict``, or more than
            ``max_drop_fraction`` of the records dropped.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data.root: {root} is not a directory")
    images = Path(image_root).expanduser().resolve() if image_root else root
    drops = DropLog(strict=strict)
    records: list[Record] = []
    published: dict[str, str] = {}
    sizes: dict[Path, tuple[int, int] | None] = {}
    for side, name in splits.items():
        if name is None:
            continue
        path = root / str(name)
        if not path.is_file():
            found = sorted(p.name for p in root.glob("*.json*"))
            raise DataError(f"{path}: no such file (data.splits.{side}; files here: {found or 'none'})")
        for index, item in enumerate(_items(path)):
            for record in _item_records(item, path, index, Path(str(name)).stem, images, sizes, drops):
                records.append(record)
                published[record.id] = side
    drops.raise_errors(root)
    drops.check_fraction(Counter(r.task for r in records), max_drop_fraction)
    log.info("read %d referring records from %s: %s", len(records), root, dict(Counter(published.values())))
    return ReadResult(records, drops.dropped, root, published, drops.skipped, drops.examples)


def _items(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        items = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}: line {line_no}: not JSON ({err.msg})") from err
        return items
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(items).__name__}")
    return items


def _problem_and_box(item: Mapping[str, Any]) -> tuple[str, Any]:
    if "conversations" in item:
        turns = {str(t.get("from")): str(t.get("value", "")) for t in item["conversations"] if isinstance(t, Mapping)}
        return turns.get("human", "").replace("<image>", "").strip(), turns.get("gpt")
    return str(item.get("problem", "")).strip(), item.get("solution")


def _item_records(
    item: Any,
    path: Path,
    index: int,
    split: str,
    images: Path,
    sizes: dict[Path, tuple[int, int] | None],
    drops: DropLog,
) -> list[Record]:
    rid = f"item {index}"
    if not isinstance(item, Mapping) or "image" not in item:
        drops.drop(SCOPE, "no image field", path, record=rid, field="image")
        return []
    problem, solution = _problem_and_box(item)
    if not problem:
        drops.drop(SCOPE, "no problem text", path, record=rid, field="problem")
        return []
    values = [float(v) for v in _NUMBER.findall(str(solution))] if solution is not None else []
    if isinstance(solution, list | tuple):
        values = [float(v) for v in solution if isinstance(v, int | float)]
    if (
        len(values) != 4
        or not all(math.isfinite(v) for v in values)
        or not (values[0] < values[2] and values[1] < values[3])
    ):
        drops.drop(
            SCOPE,
            "solution is not one box [x1, y1, x2, y2]",
            path,
            record=rid,
            field="solution",
            detail=f"{solution!r}",
        )
        return []
    image = images / str(item["image"])
    if image not in sizes:
        try:
            with Image.open(image) as img:  # the header only
                sizes[image] = img.size
        except OSError:
            sizes[image] = None
    if sizes[image] is None:
        drops.drop(SCOPE, "image missing or unreadable", path, record=rid, field="image", detail=str(image))
        return []
    width, height = sizes[image]  # type: ignore[misc]
    x1, y1, x2, y2 = values
    box = tuple(
        min(max(v, 0.0), 100.0) for v in (100 * x1 / width, 100 * y1 / height, 100 * x2 / width, 100 * y2 / height)
    )
    row_id = str(item.get("id", index))
    return [referring_record(split, row_id, 0, problem, box, str(image), f"{split}/{Path(str(item['image'])).stem}")]
