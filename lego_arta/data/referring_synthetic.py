"""The embedded referring-expression set: synthetic scenes of LEGO-like parts, each row one part named by an
expression (colour, shape, position), written in the lmms-lab RefCOCO layout and read by its reader
(:mod:`lego_arta.data.lmms_rec`).

A scene holds ``min_parts``..``max_parts`` parts drawn from above (:mod:`lego_arta.data.drawing`) on a plain
background, apart from each other. A row names one of them by what tells it from the others, all expressions of
one row naming the same part: "the red brick" when no other part is a red brick, "the red part" / "the brick" when
its colour / shape alone is unique, "the leftmost red brick" (or rightmost, topmost, bottommost) when two or more
share colour and shape. Two rows per image (two parts), so an image's rows share its ``file_name``.

Splits ``train``, ``val`` and ``test`` come from disjoint seeds (one image never appears in two splits); lmms-lab's
own RefCOCO has no train split, this one has, so a pre-stage can train on it and be scored on its ``val``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, ImageDraw

from lego_arta.cache import build_dir
from lego_arta.data.drawing import BACKGROUND, COLORS, SHAPES, Part, apart, draw_part, part_size, unit
from lego_arta.data.records import DataError
from lego_arta.data.synthetic import settings_values

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")
# lmms-lab's fixed captioning instruction (its `question` column; the expression is in `answer`)
QUESTION = "Please carefully observe the area circled in the image and come up with a caption for the area."
ROWS_PER_IMAGE = 2


@dataclass(frozen=True)
class ReferringSettings:
    """The generator's knobs: the ``data.synthetic_referring`` node (values in ``conf/data/refcoco_synthetic.yaml``).

    ``images``: images per split (``train``, ``val``, ``test``).
    """

    seed: int
    images: Mapping[str, int]
    image_size: int
    min_parts: int
    max_parts: int
    colors: tuple[str, ...]
    shapes: tuple[str, ...]

    def __post_init__(self) -> None:
        problems = []
        if sorted(self.images) != sorted(SPLITS) or any(int(n) < 0 for n in self.images.values()):
            problems.append(f"images must give a count >= 0 for each of {list(SPLITS)}")
        if self.image_size < 64:
            problems.append(f"image_size {self.image_size} < 64: parts would not be visible")
        if not 2 <= self.min_parts <= self.max_parts <= 6:
            problems.append("need 2 <= min_parts <= max_parts <= 6 (two rows per image name two parts)")
        if bad := [c for c in self.colors if c not in COLORS]:
            problems.append(f"colors {bad} not in {sorted(COLORS)}")
        if bad := [s for s in self.shapes if s not in SHAPES]:
            problems.append(f"shapes {bad} not in {sorted(SHAPES)}")
        if problems:
            raise DataError("data.synthetic_referring: " + "; ".join(problems))

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> ReferringSettings:
        values = settings_values(cls, node, "data.synthetic_referring")
        values["images"] = {str(k): int(v) for k, v in dict(node["images"]).items()}
        return cls(**values)

    def digest(self) -> str:
        payload = json.dumps({"version": GENERATOR_VERSION, **dataclasses.asdict(self)}, sort_keys=True, default=dict)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def ensure_referring_synthetic(settings: ReferringSettings, cache_dir: str | Path) -> Path:
    """The set's dir for ``settings`` under ``<cache_dir>/data/`` (lmms-lab layout), generated on first use."""
    final = Path(cache_dir).expanduser().resolve() / "data" / f"referring-{settings.digest()}"
    if not final.is_dir():
        build_dir(final, lambda tmp: generate_referring(settings, tmp), Path.is_dir)
        log.info("generated the synthetic referring set at %s", final)
    return final


@dataclass(frozen=True)
class _Placed:
    part: Part
    box: tuple[int, int, int, int]  # pixels, exclusive ends

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def expressions(target: _Placed, scene: Sequence[_Placed]) -> list[str]:
    """The expressions that name ``target`` (an element of ``scene``) and no other part of it, most specific first;
    [] when none does (a part between look-alikes on both axes).

    >>> a, b = Part("brick", 1, 2, "red"), Part("plate", 2, 2, "blue")
    >>> left, right = _Placed(a, (0, 0, 9, 9)), _Placed(b, (20, 0, 29, 9))
    >>> expressions(left, [left, right])
    ['the red brick', 'the red part', 'the brick']
    >>> twin = _Placed(a, (20, 0, 29, 9))
    >>> expressions(left, [left, twin]), expressions(twin, [left, twin])
    (['the leftmost red brick'], ['the rightmost red brick'])
    """
    others = [p for p in scene if p is not target]  # by identity: two parts may look and lie alike
    part, found = target.part, []
    same = [p for p in others if (p.part.color, p.part.shape) == (part.color, part.shape)]
    if not same:
        found.append(f"the {part.color} {part.shape}")
        if all(p.part.color != part.color for p in others):
            found.append(f"the {part.color} part")
        if all(p.part.shape != part.shape for p in others):
            found.append(f"the {part.shape}")
        return found
    x, y = target.centre
    for word, key in (("leftmost", 0), ("rightmost", 0), ("topmost", 1), ("bottommost", 1)):
        mine, theirs = (x, y)[key], [p.centre[key] for p in same]
        if (word in ("leftmost", "topmost") and all(mine < t for t in theirs)) or (
            word in ("rightmost", "bottommost") and all(mine > t for t in theirs)
        ):
            return [f"the {word} {part.color} {part.shape}"]
    return []  # in the middle of its look-alikes on both axes: not nameable, not asked


def _scene(settings: ReferringSettings, rng: random.Random) -> tuple[Image.Image, list[_Placed]]:
    size, u = settings.image_size, unit(settings.image_size)
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    placed: list[_Placed] = []
    for _ in range(rng.randint(settings.min_parts, settings.max_parts)):
        shape = rng.choice(settings.shapes)
        width, length = rng.choice(SHAPES[shape].sizes)
        part = Part(shape, width, length, rng.choice(settings.colors))
        vertical = rng.random() < 0.5
        w, h = part_size(part, vertical, u)
        for _ in range(50):  # a free spot, apart from the parts already there
            x, y = rng.randint(2, size - w - 2), rng.randint(2, size - h - 2)
            box = (x, y, x + w, y + h)
            if all(apart(box, p.box, 3) for p in placed):
                placed.append(_Placed(part, draw_part(draw, part, x, y, vertical, u)))
                break
    return image, placed


def _rows(settings: ReferringSettings, split: str, index: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{settings.seed}/{split}/{index}")
    for _ in range(20):  # a scene with at least ROWS_PER_IMAGE nameable parts
        image, placed = _scene(settings, rng)
        nameable = [(p, e) for p in placed if (e := expressions(p, placed))]
        if len(nameable) >= ROWS_PER_IMAGE:
            break
    else:
        raise RuntimeError(f"no scene with {ROWS_PER_IMAGE} nameable parts for {split} image {index}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    file_name = f"{split}_{index:05d}.png"
    rows = []
    for k, (target, names) in enumerate(rng.sample(nameable, ROWS_PER_IMAGE)):
        x1, y1, x2, y2 = target.box
        rows.append(
            {
                "question_id": f"{split}_{index:05d}_{k}",
                "image": {"bytes": buffer.getvalue(), "path": file_name},
                "question": QUESTION,
                "answer": names,
                "segmentation": [
                    [float(x1), float(y1), float(x2), float(y1), float(x2), float(y2), float(x1), float(y2)]
                ],
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],  # COCO [x, y, w, h]
                "iscrowd": 0,
                "file_name": file_name,
            }
        )
    return rows


def generate_referring(settings: ReferringSettings, out_dir: str | Path) -> None:
    """Write ``data/<split>-00000-of-00001.parquet`` for each split into ``out_dir`` (the Hub dataset's layout)."""
    data = Path(out_dir) / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        rows = [row for index in range(int(settings.images[split])) for row in _rows(settings, split, index)]
        pd.DataFrame(rows).to_parquet(data / f"{split}-00000-of-00001.parquet", index=False)
    (Path(out_dir) / "settings.json").write_text(
        json.dumps({"generator_version": GENERATOR_VERSION, **dataclasses.asdict(settings)}, indent=2, default=dict)
    )
