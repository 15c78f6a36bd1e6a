"""W&B table cells: the query image with the predicted and reference boxes as box layers, after the frame rule."""

from __future__ import annotations

import json

import wandb
from PIL import Image

from lego_arta.evaluation.predictions_table import boxed_image, table_image
from lego_arta.methods.callbacks import rollout_rows
from lego_arta.tracking import BoxedImage, WandbTracker

REF = json.dumps([{"bbox_2d": [10, 20, 50, 60], "label": "brick"}])


def test_object_cells_carry_two_box_layers_placed_by_the_frame_rule():
    image = Image.new("RGB", (1260, 840))
    # an exact pixel answer on a 1260 x 840 frame lands on the reference; the degenerate hack cannot be drawn
    pixel = json.dumps([{"bbox_2d": [126, 168, 630, 504], "label": "brick"}, {"bbox_2d": [77, 77, 7, 77]}])
    cell = boxed_image(image, pixel, REF, [1260, 840])
    assert [b[:4] for b in cell.layers["prediction"]] == [(10.0, 20.0, 50.0, 60.0)]
    assert cell.layers["reference"] == [(10.0, 20.0, 50.0, 60.0, "brick")]
    assert max(cell.image.size) == 448  # shrunk for the table, the boxes stay relative
    # W&B's boxes= argument: fractions of the image, clamped to it, one class per layer
    boxes = BoxedImage(image, {"prediction": [(-5.0, 20.0, 150.0, 60.0, "x")], "reference": []}).wandb_boxes()
    assert boxes["prediction"]["box_data"][0]["position"] == {"minX": 0.0, "minY": 0.2, "maxX": 1.0, "maxY": 0.6}
    assert boxes["prediction"]["class_labels"] == {0: "prediction"} and boxes["reference"]["class_labels"] == {
        1: "reference"
    }
    # the tracker turns the cell into a wandb.Image with both layers (not burned into the pixels)
    tracker = WandbTracker.__new__(WandbTracker)
    tracker._wandb = wandb
    logged = tracker._cell(cell)
    assert isinstance(logged, wandb.Image) and set(logged._boxes) == {"prediction", "reference"}
    # other tasks get the plain (shrunk) image
    assert isinstance(table_image("state", image, "Yes", "No", None), Image.Image)


def test_rollout_rows_from_trls_buffer():
    # the buffer TRL fills for one generation batch, with the columns SignalGRPOTrainer adds under "extra"
    image = Image.new("RGB", (224, 224))
    buffer = {
        "prompt": ["p", "p"],
        "completion": [json.dumps([{"bbox_2d": [22, 45, 112, 134], "label": "brick"}]), "[77, 77, 7, 77]"],
        "rewards": {"iou_v2": [1.1, 0.0], "label_rouge": [1.0, 0.0]},
        "advantages": [0.7, -0.7],
        "images": [[image], [image]],
        "extra": {
            "id": ["a", "a"],
            "task": ["object", "object"],
            "solution": [REF, REF],
            "image_size": [[224, 224]] * 2,
        },
    }
    columns, rows, records = rollout_rows(buffer, step=7)
    assert columns == ["step", "id", "task", "image", "completion", "iou_v2", "label_rouge", "advantage"]
    assert [row[0] for row in rows] == [7, 7] and isinstance(rows[0][3], BoxedImage)
    assert records[0]["advantage"] == 0.7 and records[1]["iou_v2"] == 0.0
    assert len(records[0]["boxes"]["prediction"]) == 1 and records[1]["boxes"]["prediction"] == []
    assert records[1]["completion"] == "[77, 77, 7, 77]"  # the raw answer stays beside the image
