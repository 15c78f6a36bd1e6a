"""A predictions table for W&B: the image with predicted (red) and ground-truth (green) boxes drawn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datasets import Dataset
from PIL import Image, ImageDraw

from lego_arta.parsing import answer_text, parse_boxes

PRED_COLOUR = (220, 30, 30)
TRUTH_COLOUR = (30, 170, 60)


def draw_boxes(image: Image.Image, prediction: str, reference: str, max_side: int = 448) -> Image.Image:
    """A copy of ``image`` (shrunk to ``max_side``) with ground-truth boxes in green and predicted boxes in red."""
    canvas = image.convert("RGB")
    canvas.thumbnail((max_side, max_side))
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    width = max(1, round(min(w, h) / 100))
    for text, colour in ((reference, TRUTH_COLOUR), (prediction, PRED_COLOUR)):
        for box in parse_boxes(answer_text(text)):
            if box.valid:
                xy = (box.x1 * w / 100, box.y1 * h / 100, box.x2 * w / 100, box.y2 * h / 100)
                draw.rectangle(xy, outline=colour, width=width)
    return canvas


def predictions_table(
    records: Sequence[Mapping[str, Any]], dataset: Dataset, rows: int
) -> tuple[list[str], list[list[Any]]]:
    """Columns and up to ``rows`` rows per task (id, task, image with boxes, prediction, reference).

    The image is the query image (the last of the prompt's images); it is opened only for the rows shown.
    """
    index = {row_id: i for i, row_id in enumerate(dataset["id"])}
    per_task: dict[str, int] = {}
    out = []
    for record in records:
        task = record["task"]
        if per_task.get(task, 0) >= rows or record["id"] not in index:
            continue
        per_task[task] = per_task.get(task, 0) + 1
        images = dataset[index[record["id"]]]["images"]
        image = draw_boxes(images[-1], record["prediction"], record["reference"]) if images else None
        out.append([record["id"], task, image, record["prediction"], record["reference"]])
    return ["id", "task", "image", "prediction", "reference"], out
