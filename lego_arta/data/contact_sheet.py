"""A contact sheet: a few samples per task as the model sees them (image, drawn boxes, query, answer) in one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lego_arta.data.prompts import task_text
from lego_arta.data.records import TASKS, Record
from lego_arta.data.split import seeded_rng

CELL = 256  # px of the image in a cell
PAD = 12
TEXT_LINES = 11
BOX_COLOR = (230, 0, 160)
HEADER = (40, 40, 40)


def pick_samples(records: Sequence[Record], per_task: int = 4, seed: int = 0) -> dict[str, list[Record]]:
    """``per_task`` records of each task, from different manuals when possible; for state, one whole group."""
    picked: dict[str, list[Record]] = {}
    for task in TASKS:
        pool = [r for r in records if r.task == task]
        if not pool:
            continue
        rng = seeded_rng("contact-sheet", seed, task)
        if task == "state":
            group = rng.choice(sorted({r.group_id for r in pool}))
            members = [r for r in pool if r.group_id == group]
            picked[task] = sorted(members, key=lambda r: (r.solution != "Yes", r.id))[:per_task]
            continue
        rng.shuffle(pool)
        chosen: list[Record] = []
        for record in pool:  # one per manual first, then fill up
            if record.manual_id not in {c.manual_id for c in chosen}:
                chosen.append(record)
        chosen += [r for r in pool if r not in chosen]
        picked[task] = chosen[:per_task]
    return picked


def contact_sheet(records: Sequence[Record], path: str | Path, per_task: int = 4, seed: int = 0) -> Path:
    """Draw ``per_task`` samples of each task (one row per task) into a PNG at ``path``."""
    samples = pick_samples(records, per_task, seed)
    font = ImageFont.load_default(size=13)
    title_font = ImageFont.load_default(size=16)
    line_h = 16
    cell_h = CELL + 6 + TEXT_LINES * line_h
    row_h = 26 + cell_h + PAD
    cols = max((len(v) for v in samples.values()), default=1)
    width = PAD + cols * (CELL + PAD)
    sheet = Image.new("RGB", (width, PAD + max(1, len(samples)) * row_h), "white")
    draw = ImageDraw.Draw(sheet)
    y = PAD
    for task, chosen in samples.items():
        draw.text((PAD, y), f"{task}  ({len(chosen)} samples)", fill=HEADER, font=title_font)
        y += 26
        for i, record in enumerate(chosen):
            x = PAD + i * (CELL + PAD)
            sheet.paste(_thumbnail(record), (x, y))
            draw.rectangle((x - 1, y - 1, x + CELL, y + CELL), outline=(180, 180, 180))
            answer = False
            for j, line in enumerate(_caption(record, font)):
                answer = answer or line.startswith("A: ")  # the answer (and its wrapped lines) in green
                draw.text(
                    (x, y + CELL + 6 + j * line_h), line, fill=(0, 110, 0) if answer else (20, 20, 20), font=font
                )
        y += cell_h + PAD
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _caption(record: Record, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> list[str]:
    """The caption lines of a cell: id, previous step (grounding), query and answer, each within a line budget."""
    query = record.query
    short_id = record.id.removeprefix(f"{record.manual_id}/")
    sections = [(record.manual_id, 1), (f"id: {short_id}", 1)]
    if record.task == "grounding":
        sections.append((f"prev: {record.context or 'None'}", 2))
        query = task_text(record).splitlines()[-1]
    sections += [(f"Q: {query}", 3), (f"A: {record.solution}", TEXT_LINES - 7)]
    lines: list[str] = []
    for text, budget in sections:
        wrapped = _wrap(text, font, CELL)
        lines += wrapped if len(wrapped) <= budget else [*wrapped[: budget - 1], wrapped[budget - 1] + " ..."]
    return lines[:TEXT_LINES]


def _thumbnail(record: Record) -> Image.Image:
    """The record's image scaled into a CELL x CELL square (pixel-sharp when enlarged), boxes drawn on it."""
    with Image.open(record.image) as source:
        source.draft("RGB", (CELL, CELL))  # JPEG: decode at a reduced size (real images are > 3600 px)
        image = source.convert("RGB")
    scale = CELL / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)
    cell = Image.new("RGB", (CELL, CELL), (245, 245, 245))
    cell.paste(image, (0, 0))
    draw = ImageDraw.Draw(cell)
    for box in record.boxes():
        x1, y1, x2, y2 = box.coords
        pixels = (x1 * size[0] / 100, y1 * size[1] / 100, x2 * size[0] / 100, y2 * size[1] / 100)
        draw.rectangle(pixels, outline=BOX_COLOR, width=2)
    return cell


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` px; a word longer than a line (an id) is broken anywhere."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = "  " + word
        while font.getlength(line) > width:
            cut = max(3, max(i for i in range(len(line) + 1) if font.getlength(line[:i]) <= width))
            lines.append(line[:cut])
            line = "  " + line[cut:]
    lines.append(line)
    return lines
