"""Procedurally drawn LEGO-like scenes, written in the real download's on-disk layout and JSON schema.

Every manual is a small build on a tan base plate, one part per step, seen from above (top face with studs, a darker
front strip whose height tells bricks from plates). Everything goes under ``<out>/ARTA_LEGO/``, as in the download.
Page images are named like the real ones, ``<set>%20<theme>_<NN>_step.png`` / ``..._<NN>_eop.png`` (URL-encoded
space, the study's ``_<N>_step`` / ``_<N>_eop`` pattern). Per step k the generator writes two manual rows:

- an ``eop`` row "Find a 2x4 red brick" (``[detection]``; a quarter "Collect a ..." rows, ``[detection-collect]``
  with an answer; the row before step k, numbered k-1):
  ``lego/<m>/images/<set>%20<theme>_<k-1>_eop.png`` and ``object_dataset/lego/<m>/`` (same name) hold a call-out
  image with 1..max_boxes copies of the step's part and a few distractors; the answer (``VLM.MiniGPTv2_output``,
  MiniGPT-v2's format: ``<p>label</p> {<x1><y1><x2><y2>}<delim>{...}``) holds the exact boxes on the 0-100 grid;
- a ``step`` row with the instruction text ("Attach the 2x4 red brick in the top left corner of the base.", from
  a small template grammar that says where the part went): ``lego/<m>/images/<set>%20<theme>_<k>_step.png`` shows
  a parts call-out panel (top left) and the assembly after the step. It is the real state image ("Yes"); its
  fakes ``..._step_fake<N>.png`` ("No": the part removed, recoloured, or lying off the base) sit in
  ``step_dataset/lego/<m>/``, next to a copy of the real image in even manuals only (odd manuals keep it only in
  ``lego/<m>/images/``, the other place the evidence shows).

Each manual also has a cover page (``fullscreeneop``, an ``ImageContent`` detection: skipped by the reader's
``data.object_step_classes``), a ``[detection-collect]`` row whose answer stayed "None" (skipped), and an end
page (``eop``, "No text found", fields "None", no ``entities``). ``VLM.img_path`` carries an absolute cluster
prefix (even manuals) or a relative ``ARTA_LEGO/`` one (odd manuals); the manual file is
``json_data/lego/<m>_new.json``, indented. These are the quirks of the published files (see
``lego_arta/data/reader.py``). No part label occurs twice in one build, so every state fake is visibly wrong
against the call-out (v4). Everything is deterministic from the settings.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from lego_arta.cache import build_dir
from lego_arta.data.drawing import (
    BACKGROUND,
    BASE,
    COLORS,
    PANEL,
    PANEL_LINE,
    RGB,
    SHAPES,
    Part,
    apart,
    draw_part,
    part_size,
    to_grid,
    unit,
)
from lego_arta.data.records import DataError
from lego_arta.data.split import seeded_rng

log = logging.getLogger(__name__)

# bump when the drawing or the layout changes: cached datasets of an older version are not reused
GENERATOR_VERSION = 4
CLUSTER_PREFIX = "/cluster/work/arta/data/ARTA_LEGO"  # a foreign prefix in img_path, re-rooted by the reader
RELATIVE_PREFIX = "ARTA_LEGO"  # the other prefix seen in img_path
DOWNLOAD_FOLDER = "ARTA_LEGO"

VERBS = ("Attach", "Place", "Add", "Put")
PLACES = {  # (row third, column third) of the part's centre on the base -> where the text says it goes
    (0, 0): "in the top left corner of",
    (0, 1): "along the top edge of",
    (0, 2): "in the top right corner of",
    (1, 0): "on the left side of",
    (1, 1): "in the middle of",
    (1, 2): "on the right side of",
    (2, 0): "in the bottom left corner of",
    (2, 1): "along the bottom edge of",
    (2, 2): "in the bottom right corner of",
}
THEMES = ("house", "racer", "tower", "bridge", "robot", "boat", "garden", "rocket", "train", "castle")


class Fake(enum.Enum):
    """How a state fake differs from the real step image: the step's part removed, recoloured or moved off the base."""

    REMOVE = "remove"
    RECOLOUR = "recolour"
    MOVE = "move"


FAKE_KINDS = tuple(Fake)
INVALID_ANSWER = "<p>ImageContent</p> {<0><0><100><100>}"  # the cover page's detection: not a part


@dataclass(frozen=True)
class SyntheticSettings:
    """The generator's knobs: the ``data.synthetic`` node, whose values live in ``conf/data/synthetic.yaml`` only.

    The cache dir name is a hash of them.
    """

    seed: int
    num_manuals: int
    steps_per_manual: int
    image_size: int
    colors: tuple[str, ...]
    shapes: tuple[str, ...]
    max_boxes: int  # copies of the queried part in an object image: 1..max_boxes
    max_distractors: int  # other parts in an object image: 0..max_distractors
    fakes_per_group: int  # state fakes per real image (1..3: removed, recoloured, moved off the base)

    def __post_init__(self) -> None:
        problems = []
        if self.num_manuals < 1 or self.steps_per_manual < 1:
            problems.append("num_manuals and steps_per_manual must be >= 1")
        if self.image_size < 64:
            problems.append(f"image_size {self.image_size} < 64: parts would not be visible")
        if bad := [c for c in self.colors if c not in COLORS]:
            problems.append(f"colors {bad} not in {sorted(COLORS)}")
        if len(self.colors) < 2:
            problems.append("colors needs at least 2 entries (recoloured fakes)")
        if bad := [s for s in self.shapes if s not in SHAPES]:
            problems.append(f"shapes {bad} not in {sorted(SHAPES)}")
        if not self.shapes:
            problems.append("shapes is empty")
        if not 1 <= self.max_boxes <= 6 or not 0 <= self.max_distractors <= 4:
            problems.append("max_boxes must be in 1..6 and max_distractors in 0..4")
        if not 1 <= self.fakes_per_group <= len(FAKE_KINDS):
            problems.append(f"fakes_per_group must be in 1..{len(FAKE_KINDS)}")
        if problems:
            raise DataError("data.synthetic: " + "; ".join(problems))

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> SyntheticSettings:
        """Settings from the ``data.synthetic`` config node (a plain mapping); unknown or missing keys are an error."""
        return cls(**settings_values(cls, node, "data.synthetic"))

    def digest(self) -> str:
        """A short hash of the settings and the generator version (the cache key)."""
        payload = json.dumps({"version": GENERATOR_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def settings_values(cls: type, node: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The fields of the settings dataclass ``cls`` from its config node ``key`` (a plain mapping), sequences as
    tuples (hashable, and the cache digest's JSON).

    Raises:
        DataError: a key the dataclass does not know, or a field the node lacks.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(node) - names):
        raise DataError(f"{key}: unknown keys {unknown} (known: {sorted(names)})")
    if missing := sorted(names - set(node)):
        raise DataError(f"{key}: missing keys {missing}")
    return {k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in node.items()}


def ensure_synthetic(settings: SyntheticSettings, cache_dir: str | Path) -> Path:
    """The dataset dir for ``settings`` under ``<cache_dir>/data/``, generated on first use and reused after.

    Generation goes through :func:`lego_arta.cache.build_dir`: an interrupted generation never leaves a half dataset
    that a later run would reuse, and runs that start together share the first complete one.
    """
    final = Path(cache_dir).expanduser().resolve() / "data" / f"synthetic-{settings.digest()}"
    if final.is_dir():
        log.info("reusing synthetic data at %s", final)
        return final
    build_dir(final, lambda tmp: generate(settings, tmp), Path.is_dir)
    log.info("generated synthetic data at %s", final)
    return final


def generate(settings: SyntheticSettings, out_dir: str | Path) -> None:
    """Write the whole synthetic dataset for ``settings`` into ``out_dir/ARTA_LEGO/`` (the download's layout)."""
    out = Path(out_dir)
    (out / DOWNLOAD_FOLDER / "json_data" / "lego").mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(
        json.dumps({"generator_version": GENERATOR_VERSION, **dataclasses.asdict(settings)}, indent=2) + "\n"
    )
    for index in range(settings.num_manuals):
        _Manual(settings, index).write(out / DOWNLOAD_FOLDER)


def legacy_answer(label: str, boxes: list[tuple[int, int, int, int]]) -> str:
    """MiniGPT-v2's answer format: ``<p>label</p> {<x1><y1><x2><y2>}<delim>{...}`` (a space before the box)."""
    return f"<p>{label}</p> " + "<delim>".join("{" + "".join(f"<{v}>" for v in box) + "}" for box in boxes)


@dataclass(frozen=True)
class _Placed:
    part: Part
    col: int
    row: int
    vertical: bool

    def cells(self) -> set[tuple[int, int]]:
        cols, rows = self.part.grid(self.vertical)
        return {(self.col + i, self.row + j) for i in range(cols) for j in range(rows)}


class _Manual:
    """One synthetic manual: its build (one part per step) and the images and JSON that describe it."""

    def __init__(self, settings: SyntheticSettings, index: int) -> None:
        self.settings = settings
        self.rng = seeded_rng("manual", settings.seed, index)
        self.size = settings.image_size
        self.u = unit(self.size)
        color, theme = self.rng.choice(list(settings.colors)), self.rng.choice(THEMES)
        self.id = f"lego-{90001 + index}-{color}-{theme}-synthetic"
        self.page = f"{90001 + index}%20{theme}"  # page image names: <set>%20<theme>_<NN>_step.png, as published
        self.prefix = f"{CLUSTER_PREFIX if index % 2 == 0 else RELATIVE_PREFIX}/lego/{self.id}/images"
        self.state_copy = index % 2 == 0  # even manuals: the real state image also sits next to its fakes
        # layout: call-out panel top left, base plate below, free background top right (where moved parts lie)
        sizes = [part_size(Part(n, *wl, "red"), False, self.u) for n in settings.shapes for wl in SHAPES[n].sizes]
        self.panel = (3, 3, 3 + max(w for w, _ in sizes) + 8, 3 + max(h for _, h in sizes) + 8)
        base_top = self.panel[3] + 6
        self.base_rows = max(3, (self.size - 4 - base_top - 2) // self.u)
        self.base_cols = min(12, (self.size - 8) // self.u)
        self.base_xy = ((self.size - self.base_cols * self.u) // 2, self.size - 4 - 2 - self.base_rows * self.u)
        self.free = (self.panel[2] + 4, 3, self.size - 3, self.base_xy[1] - 3)

    def random_part(self, rng: random.Random, *, exclude: Collection[str] = ()) -> Part:
        """A random part whose label is not in ``exclude``."""
        while True:
            shape = rng.choice(list(self.settings.shapes))
            width, length = rng.choice(SHAPES[shape].sizes)
            part = Part(shape, width, length, rng.choice(list(self.settings.colors)))
            if part.label not in exclude:
                return part

    # -- the build ------------------------------------------------------------------------------------------------
    def plan(self) -> list[_Placed]:
        placed: list[_Placed] = []
        used: set[tuple[int, int]] = set()
        for _ in range(self.settings.steps_per_manual):
            for _attempt in range(20):
                # no label twice in a build: a state fake (the step's part removed, recoloured or moved off the base)
                # is then visibly wrong, as no earlier part on the base can stand in for the missing one
                part = self.random_part(self.rng, exclude={p.part.label for p in placed})
                options = [
                    _Placed(part, c, r, v)
                    for v in ((False, True) if part.width != part.length else (False,))
                    for c in range(self.base_cols)
                    for r in range(self.base_rows)
                ]
                options = [
                    p
                    for p in options
                    if not (p.cells() & used)
                    and all(0 <= c < self.base_cols and 0 <= r < self.base_rows for c, r in p.cells())
                ]
                if options:
                    choice = self.rng.choice(options)
                    placed.append(choice)
                    used |= choice.cells()
                    break
        return placed

    def instruction_text(self, placed: _Placed, rng: random.Random) -> str:
        cols, rows = placed.part.grid(placed.vertical)
        cx, cy = placed.col + cols / 2, placed.row + rows / 2
        third = (min(2, int(3 * cy / self.base_rows)), min(2, int(3 * cx / self.base_cols)))
        return f"{rng.choice(VERBS)} the {placed.part.label} {PLACES[third]} the base."

    # -- images ---------------------------------------------------------------------------------------------------
    def assembly(
        self,
        parts: list[_Placed],
        *,
        callout: Part | None,
        last_colour: RGB | None = None,
        last_moved_to: tuple[int, int] | None = None,
    ) -> Image.Image:
        """The build with ``parts``; the last part drawn in ``last_colour``, or lying flat at ``last_moved_to``."""
        image = Image.new("RGB", (self.size, self.size), BACKGROUND)
        draw = ImageDraw.Draw(image)
        u, (bx, by) = self.u, self.base_xy
        base = Part("plate", self.base_rows, self.base_cols, "red")
        draw_part(draw, base, bx, by, False, u, color=BASE)
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if last and last_moved_to is not None:  # lying flat off the base
                draw_part(draw, p.part, *last_moved_to, False, u)
            else:
                color = last_colour if last else None
                draw_part(draw, p.part, bx + p.col * u, by + p.row * u, p.vertical, u, color=color)
        if callout is not None:
            x1, y1, x2, y2 = self.panel
            draw.rectangle((x1, y1, x2, y2), fill=PANEL, outline=PANEL_LINE, width=1)
            w, h = part_size(callout, False, u)
            draw_part(draw, callout, x1 + (x2 - x1 - w) // 2 + 1, y1 + (y2 - y1 - h) // 2 + 1, False, u)
        return image

    def callout_image(self, target: Part, rng: random.Random) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
        """An object image: 1..max_boxes copies of ``target`` and distractors; the copies' pixel boxes."""
        image = Image.new("RGB", (self.size, self.size), BACKGROUND)
        draw = ImageDraw.Draw(image)
        copies = rng.randint(1, self.settings.max_boxes)
        parts = [target] * copies + [
            self.random_part(rng, exclude={target.label}) for _ in range(rng.randint(0, self.settings.max_distractors))
        ]
        taken: list[tuple[int, int, int, int]] = []
        boxes: list[tuple[int, int, int, int]] = []
        for n, part in enumerate(parts):
            for _attempt in range(200):
                vertical = part.width != part.length and rng.random() < 0.35
                w, h = part_size(part, vertical, self.u)
                if w > self.size - 6 or h > self.size - 6:
                    continue
                x, y = rng.randint(3, self.size - 3 - w), rng.randint(3, self.size - 3 - h)
                box = (x, y, x + w, y + h)
                if all(apart(box, other, 3) for other in taken):
                    taken.append(box)
                    draw_part(draw, part, x, y, vertical, self.u)
                    if n < copies:
                        boxes.append(box)
                    break
        return image, boxes

    def moved_xy(self, placed: _Placed, rng: random.Random) -> tuple[int, int]:
        w, h = part_size(placed.part, False, self.u)
        x1, y1, x2, y2 = self.free
        return rng.randint(x1, max(x1, x2 - w)), rng.randint(y1, max(y1, y2 - h))

    # -- files ----------------------------------------------------------------------------------------------------
    def write(self, out: Path) -> None:
        steps = self.plan()
        step_dir = out / "lego" / self.id / "images"
        object_dir = out / "object_dataset" / "lego" / self.id
        state_dir = out / "step_dataset" / "lego" / self.id
        for folder in (step_dir, object_dir, state_dir):
            folder.mkdir(parents=True, exist_ok=True)
        _save(self.assembly(steps, callout=None), step_dir / "cover.png")
        cover = self._vlm("cover.png", "[detection]", "Find a ImageContent", INVALID_ANSWER, "fullscreeneop", "None")
        instructions = [_instruction(0, "No text found", None, cover)]
        for k, placed in enumerate(steps, start=1):
            rng = seeded_rng("step", self.settings.seed, self.id, k)
            text = self.instruction_text(placed, rng)
            image = self.assembly(steps[:k], callout=placed.part)
            step_name = f"{self.page}_{k:02d}_step"
            _save(image, step_dir / f"{step_name}.png")
            if self.state_copy:
                _save(image, state_dir / f"{step_name}.png")
            for n, kind in enumerate(rng.sample(FAKE_KINDS, self.settings.fakes_per_group), start=1):
                _save(self.fake(steps[:k], kind, rng), state_dir / f"{step_name}_fake{n}.png")
            callout, boxes = self.callout_image(placed.part, rng)
            eop_name = f"{self.page}_{k - 1:02d}_eop.png"
            _save(callout, step_dir / eop_name)
            _save(callout, object_dir / eop_name)
            answer = legacy_answer(placed.part.label, [to_grid(b, self.size) for b in boxes])
            collects = rng.random() < 0.25  # a quarter are "Collect" rows that carry an answer
            verb, label = ("Collect", "[detection-collect]") if collects else ("Find", "[detection]")
            find = f"{verb} a {placed.part.label}"
            entities = [[{"this_line": f"a {placed.part.label}"}, {"verb": verb}]]
            vlm = self._vlm(eop_name, label, find, answer, "eop", k - 1)
            instructions.append(_instruction(len(instructions), [find], entities, vlm))
            entities = [[{"verb": text.split()[0]}, {"this_line": text}]]
            vlm = self._vlm(f"{step_name}.png", "None", "None", "None", "step", k)
            instructions.append(_instruction(len(instructions), [text], entities, vlm))
        collect = "Collect the parts for the next build"
        vlm = {**self._vlm("", "[detection-collect]", collect, "None", "eop", "None"), "img_path": "None"}
        entities = [[{"this_line": collect}, {"verb": "Collect"}]]
        instructions.append(_instruction(len(instructions), [collect], entities, vlm))
        end = dict.fromkeys(("img_path", "task_label", "query", "MiniGPTv2_output", "step_num"), "None")
        instructions.append(_instruction(len(instructions), "No text found", None, {**end, "step_class": "eop"}))
        manual = {"manual_id": self.id, "manual_type": "lego", "instructions": instructions}
        path = out / "json_data" / "lego" / f"{self.id}_new.json"
        path.write_text(json.dumps(manual, indent=4) + "\n", encoding="utf-8")

    def fake(self, parts: list[_Placed], kind: Fake, rng: random.Random) -> Image.Image:
        last = parts[-1]
        if kind is Fake.REMOVE:
            return self.assembly(parts[:-1], callout=last.part)
        if kind is Fake.RECOLOUR:
            other = rng.choice([c for c in self.settings.colors if c != last.part.color])
            return self.assembly(parts, callout=last.part, last_colour=COLORS[other])
        return self.assembly(parts, callout=last.part, last_moved_to=self.moved_xy(last, rng))

    def _vlm(self, name: str, label: str, query: str, answer: str, step_class: str, step: int | str) -> dict[str, Any]:
        return {
            "img_path": f"{self.prefix}/{name}",
            "task_label": label,
            "query": query,
            "MiniGPTv2_output": answer,
            "step_class": step_class,
            "step_num": step,
        }


def _instruction(iid: int, text: str | list[str], entities: list[Any] | None, vlm: dict[str, Any]) -> dict[str, Any]:
    """A manual row; ``entities`` is absent when the row has no text (as ``dataset_pre.py`` writes it)."""
    row: dict[str, Any] = {"instruction_id": iid, "text": text}
    if entities is not None:
        row["entities"] = entities
    return {**row, "VLM": vlm}


def _save(image: Image.Image, path: Path) -> None:
    image.save(path, format="PNG", compress_level=1)
