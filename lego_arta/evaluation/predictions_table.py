"""The W&B predictions table of an evaluation (:func:`predictions_table`) and its image cells, also used by the GRPO
rollouts table: the query image with its predicted and reference boxes as separate box layers.

The boxes are not burned into the pixels: W&B draws each layer (``prediction``, ``reference``) as an overlay that
can be toggled and filtered. Predicted boxes are placed by the frame rule of the scoring contract (docs/scoring.md:
an answer in pixels of the query image is normalised to the grid by its ``image_size``); degenerate boxes cannot be
drawn, so keep the raw answer text beside the image (a reward hack such as ``[77, 77, 7, 77]`` shows only there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datasets import Dataset
from PIL import Image

from lego_arta.parsing import answer_text, parse_boxes, reference_boxes
from lego_arta.scores import to_grid
from lego_arta.tracking import BoxedImage

MAX_SIDE = 448  # images are shrunk to this side for the tables


def boxed_image(
    image: Image.Image, prediction: str, reference: str, image_size: Sequence[float] | None = None
) -> BoxedImage:
    """``image`` (shrunk to :data:`MAX_SIDE`) with the valid predicted boxes (after the frame rule) and the reference
    boxes as two layers.

    >>> cell = boxed_image(Image.new("RGB", (224, 224)), '[{"bbox_2d": [22, 45, 112, 134], "label": "brick"}]',
    ...                    '[{"bbox_2d": [10, 20, 50, 60], "label": "brick"}]', [224, 224])
    >>> [(name, [tuple(round(v, 1) for v in box[:4]) for box in boxes]) for name, boxes in cell.layers.items()]
    [('prediction', [(9.8, 20.1, 50.0, 59.8)]), ('reference', [(10.0, 20.0, 50.0, 60.0)])]
    """
    canvas = image.convert("RGB")
    canvas.thumbnail((MAX_SIDE, MAX_SIDE))
    boxes = parse_boxes(answer_text(prediction))
    grid = to_grid(boxes, image_size)
    predicted = [
        (float(g[0]), float(g[1]), float(g[2]), float(g[3]), b.label)
        for g, b in zip(grid, boxes, strict=True)
        if g[0] < g[2] and g[1] < g[3]
    ]
    refs = [
        (float(b.x1), float(b.y1), float(b.x2), float(b.y2), b.label) for b in reference_boxes(reference) if b.valid
    ]
    return BoxedImage(canvas, {"prediction": predicted, "reference": refs})


def table_image(task: str, image: Image.Image | None, prediction: str, reference: str, image_size: Any) -> Any:
    """The image cell of a row: with box layers for an object sample, else the (shrunk) image itself."""
    if image is None:
        return None
    if task == "object":
        return boxed_image(image, prediction, reference, image_size)
    canvas = image.convert("RGB")
    canvas.thumbnail((MAX_SIDE, MAX_SIDE))
    return canvas


def predictions_table(
    records: Sequence[Mapping[str, Any]], dataset: Dataset, rows: int
) -> tuple[list[str], list[list[Any]]]:
    """Columns and up to ``rows`` rows per task of the W&B predictions table (id, task, image with box layers,
    prediction, reference).

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
        image = images[-1] if images else None
        cell = table_image(task, image, record["prediction"], record["reference"], record.get("image_size"))
        out.append([record["id"], task, cell, record["prediction"], record["reference"]])
    return ["id", "task", "image", "prediction", "reference"], out
