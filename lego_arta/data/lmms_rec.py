"""Read a referring-expression set in the lmms-lab layout (``lmms-lab/RefCOCO``, ``RefCOCOplus``, ``RefCOCOg`` on
the Hugging Face Hub, which lmms-eval's ``refcoco*`` tasks read; and the project's synthetic referring set) into
records.

Layout (``data.root``, or the ``data.hub`` snapshot)::

    data/<split>-NNNNN-of-NNNNN.parquet     one row per referred object: question_id, image (an HF Image: a struct of
                                            bytes and path), question (a fixed captioning instruction), answer (the
                                            referring expressions of the object), segmentation, bbox (COCO [x, y, w, h]
                                            in pixels of the stored image), iscrowd, file_name

Splits: RefCOCO val/test/testA/testB, RefCOCO+ val/testA/testB, RefCOCOg val/test; no train split (the synthetic
set has one). ``data.splits`` maps our ``train`` / ``test`` to the layout's split names; ``train: null`` reads no
training records, and a training run on them stops (never train on a split that is evaluated).

Records (lmms-eval's ``utils_rec.py``: one sample per expression): each expression of a row is an ``object`` record
with one reference box, so the study's IoU rewards and metrics score it unchanged. Its query is "Find <expression>."
with the object directive after it; its solution is ``[{"bbox_2d": box, "label": expression}]``, the box being
lmms-eval's ``[x/W, y/H, (x+w)/W, (y+h)/H]`` x 100 on the project's 0-100 grid (one decimal); ``label_rouge`` thus
scores how well the answer's label repeats the expression. ``manual_id`` is the image (``file_name``): a split
``by=manual`` keeps an image's objects on one side; ``group_id`` is the row (one object, its expressions together).
Same-manual few-shot demos would show another object of the same image: the referring configs switch demos off.

The image bytes are written once to ``<paths.cache_dir>/data/images-<digest of the parquet files>/``, since a record
holds an image path. Row-level problems are dropped and counted by reason (``drops``); a missing split or column is
one ``DataError`` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from lego_arta.data.drops import DropLog
from lego_arta.data.reader import ReadResult
from lego_arta.data.records import DataError, Record, boxes_to_json

log = logging.getLogger(__name__)

COLUMNS = ("question_id", "image", "answer", "bbox", "file_name")
SCOPE = "object"  # drops are counted under the task the records become


def referring_record(
    split: str, row_id: str, k: int, expression: str, box: tuple[float, ...], image: str, manual: str
) -> Record:
    """One expression of one referred object as an ``object`` record (see the module docstring)."""
    expression = " ".join(expression.split())
    return Record(
        id=f"{split}/{row_id}/{k}",
        task="object",
        manual_id=manual,
        group_id=f"{split}/{row_id}",
        image=image,
        query=f"Find {expression.rstrip('.')}",
        solution=boxes_to_json([(expression, [round(v, 1) for v in box])]),
    )


def parquet_files(root: Path, split: str) -> list[Path]:
    return sorted((root / "data").glob(f"{split}-*.parquet"))


def read_lmms_rec(
    root: str | Path,
    splits: Mapping[str, str | None],
    *,
    strict: bool,
    max_drop_fraction: float,
    cache_dir: str | Path,
) -> ReadResult:
    """Read the splits ``splits`` names (``{"train": name or None, "test": name}``) under ``root``.

    Raises:
        DataError: no parquet file of a named split (the splits found are listed), a missing column, any drop when
            ``strict``, or more than ``max_drop_fraction`` of the records dropped.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data.root: {root} is not a directory")
    drops = DropLog(strict=strict)
    found = sorted({p.name.split("-", 1)[0] for p in (root / "data").glob("*.parquet")})
    files: dict[str, list[Path]] = {}
    for side, name in splits.items():
        if name is None:
            continue
        files[side] = parquet_files(root, str(name))
        if not files[side]:
            raise DataError(
                f"{root / 'data'}: no {name}-*.parquet for data.splits.{side}={name} (splits found: "
                f"{found or 'none'}; the lmms-lab layout is data/<split>-NNNNN-of-NNNNN.parquet)"
            )
    digest = hashlib.sha256(
        "\n".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for ps in files.values() for p in ps).encode()
    ).hexdigest()[:12]
    images = Path(cache_dir).expanduser().resolve() / "data" / f"images-{digest}"
    images.mkdir(parents=True, exist_ok=True)
    records: list[Record] = []
    published: dict[str, str] = {}
    rows = 0
    for side, paths in files.items():
        for path in paths:
            frame = pd.read_parquet(path)
            if missing := [c for c in COLUMNS if c not in frame.columns]:
                raise DataError(f"{path}: columns {missing} missing (found {list(frame.columns)}; expected {COLUMNS})")
            for index, row in enumerate(frame.itertuples(index=False)):
                rows += 1
                for record in _row_records(row._asdict(), path, index, str(splits[side]), images, drops):
                    records.append(record)
                    published[record.id] = side
    drops.raise_errors(root)
    kept = Counter(r.task for r in records)
    drops.check_fraction(kept, max_drop_fraction)
    log.info(
        "read %d referring records (%d rows) from %s: %s", len(records), rows, root, dict(Counter(published.values()))
    )
    return ReadResult(records, drops.dropped, root, published, drops.skipped, drops.examples)


def _row_records(
    row: Mapping[str, Any], path: Path, index: int, split: str, images: Path, drops: DropLog
) -> list[Record]:
    rid = f"row {index} (question_id={row['question_id']})"
    expressions = row["answer"]
    if isinstance(expressions, str):
        expressions = [expressions]
    expressions = [str(e) for e in (list(expressions) if expressions is not None else []) if str(e).strip()]
    if not expressions:
        drops.drop(SCOPE, "no referring expression", path, record=rid, field="answer")
        return []
    try:
        x, y, w, h = (float(v) for v in row["bbox"])
    except (TypeError, ValueError):
        drops.drop(SCOPE, "bbox is not 4 numbers", path, record=rid, field="bbox", detail=f"{row['bbox']!r}")
        return []
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        drops.drop(SCOPE, "bbox has no area", path, record=rid, field="bbox", detail=f"[{x}, {y}, {w}, {h}]")
        return []
    image = row["image"] or {}
    data = image.get("bytes") if isinstance(image, Mapping) else None
    try:
        if not isinstance(data, bytes):
            raise ValueError("no image bytes")
        with Image.open(io.BytesIO(data)) as img:  # the header only
            width, height = img.size
            suffix = f".{(img.format or 'png').lower()}"
    except Exception:
        drops.drop(SCOPE, "image bytes do not decode", path, record=rid, field="image")
        return []
    if x + w > width + 1 or y + h > height + 1 or x < -1 or y < -1:
        drops.drop(
            SCOPE,
            "bbox outside the image",
            path,
            record=rid,
            field="bbox",
            detail=f"[{x}, {y}, {w}, {h}] on {width}x{height}",
        )
        return []
    name = Path(str(row["file_name"] or row["question_id"])).stem + suffix
    target = images / split / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    box = tuple(
        min(max(v, 0.0), 100.0)
        for v in (100 * x / width, 100 * y / height, 100 * (x + w) / width, 100 * (y + h) / height)
    )
    manual = f"{split}/{Path(str(row['file_name'])).stem}"
    return [
        referring_record(split, str(row["question_id"]), k, expression, box, str(target), manual)
        for k, expression in enumerate(expressions)
    ]
