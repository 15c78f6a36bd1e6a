"""Referring-expression data through ``data=``: lmms-lab's RefCOCO parquet and VLM-R1's REC files, built here in
their published layouts (a few rows, drawn images), read by their readers into object records with one box; drops
counted by reason, a missing split named, no training on an evaluation-only set; the synthetic referring set."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from experiments.prepare_data import counts_table
from lego_arta.checks import check_config
from lego_arta.data import DataError, load_data
from lego_arta.data.referring_synthetic import QUESTION
from lego_arta.errors import ConfigError
from lego_arta.parsing import reference_boxes


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def lmms_row(qid: int, bbox: Any, answer: Any, data: bytes | None, name: str = "COCO_train2014_1.jpg") -> dict:
    return {
        "question_id": str(qid),
        "image": {"bytes": data, "path": name},
        "question": QUESTION,
        "answer": answer,
        "segmentation": [[0.0, 0.0, 1.0, 1.0]],
        "bbox": bbox,
        "iscrowd": 0,
        "file_name": name,
    }


def write_lmms(root: Path) -> Path:
    """lmms-lab/RefCOCO's layout: val and testA parquet files; val holds one bad row of each kind."""
    (root / "data").mkdir(parents=True)
    image = png(200, 100)
    val = [
        lmms_row(1, [20.0, 10.0, 40.0, 30.0], ["man on left", "left guy"], image),  # two expressions, one object
        lmms_row(2, [100.0, 50.0, 50.0, 50.0], ["red car"], image, "COCO_train2014_2.jpg"),
        lmms_row(3, [10.0, 10.0, 0.0, 5.0], ["flat"], image),  # no area
        lmms_row(4, [10.0, 10.0, 5.0, 5.0], [], image),  # no expression
        lmms_row(5, [10.0, 10.0, 5.0, 5.0], ["broken"], b"not an image"),
        lmms_row(6, [190.0, 10.0, 50.0, 5.0], ["off the edge"], image),  # outside the 200 px width
    ]
    pd.DataFrame(val).to_parquet(root / "data" / "val-00000-of-00001.parquet", index=False)
    pd.DataFrame([lmms_row(7, [0.0, 0.0, 100.0, 100.0], ["whole left half"], image)]).to_parquet(
        root / "data" / "testA-00000-of-00001.parquet", index=False
    )
    return root


def test_lmms_rec_reads_one_object_record_per_expression_and_counts_drops(make_cfg, tmp_path) -> None:
    root = write_lmms(tmp_path / "RefCOCO")
    split = load_data(make_cfg("data=refcoco", f"data.root={root}", "data.max_drop_fraction=0.9"))
    assert split.train == [] and [r.id for r in split.test] == ["val/1/0", "val/1/1", "val/2/0"]
    first = split.test[0]
    assert first.task == "object" and first.query == "Find man on left" and first.group_id == "val/1"
    (box,) = reference_boxes(first.solution)
    # lmms-eval's [x/W, y/H, (x+w)/W, (y+h)/H] on the 0-100 grid, label = the expression
    assert box.coords == (10.0, 10.0, 30.0, 40.0) and box.label == "man on left"
    assert Path(first.image).is_file() and Image.open(first.image).size == (200, 100)
    assert split.test[1].manual_id == first.manual_id != split.test[2].manual_id  # one image, one manual
    assert dict(split.dropped) == {
        "object: bbox has no area": 1,
        "object: no referring expression": 1,
        "object: image bytes do not decode": 1,
        "object: bbox outside the image": 1,
    }
    table = counts_table(split.summary)
    assert "(train = None, test = val)" in table and "object            0        3        3" in table
    assert "bbox has no area" in table and "val-00000-of-00001.parquet: row 2 (question_id=3)" in table
    other = load_data(make_cfg("data=refcoco", f"data.root={root}", "data.splits.test=testA"))
    assert [r.id for r in other.test] == ["testA/7/0"]


def test_lmms_rec_names_a_missing_split_and_strict_names_each_bad_row(make_cfg, tmp_path) -> None:
    root = write_lmms(tmp_path / "RefCOCO")
    with pytest.raises(
        DataError, match=r"no test-\*\.parquet for data.splits.test=test \(splits found: \['testA', 'val'\]"
    ):
        load_data(make_cfg("data=refcoco", f"data.root={root}", "data.splits.test=test"))
    with pytest.raises(DataError, match=r"row 3 \(question_id=4\): field 'answer'"):
        load_data(make_cfg("data=refcoco", f"data.root={root}", "data.strict=true"))
    with pytest.raises(DataError, match=r"more than data\.max_drop_fraction=0\.2"):  # 4 of 7 records dropped
        load_data(make_cfg("data=refcoco", f"data.root={root}"))


def test_an_evaluation_only_set_is_never_trained_on(make_cfg, tmp_path) -> None:
    root = write_lmms(tmp_path / "RefCOCO")
    cfg = make_cfg("data=refcoco", f"data.root={root}", "method=sft")
    with pytest.raises(ConfigError, match=r"data=refcoco has no training split \(data.splits.train=null"):
        check_config(cfg, tmp_path / "run", trains=True)


def write_vlm_r1(root: Path) -> Path:
    images = root / "coco" / "train2014"
    images.mkdir(parents=True)
    Image.new("RGB", (400, 200)).save(images / "COCO_train2014_000000000009.jpg")
    items = [
        {
            "image": "train2014/COCO_train2014_000000000009.jpg",
            "problem": "the dog",
            "solution": [40, 20, 200, 100],
            "normalized_solution": [100, 100, 500, 500],
            "height": 200,
            "width": 400,
        },
        {"image": "train2014/missing.jpg", "problem": "a cat", "solution": [0, 0, 10, 10]},
        {"image": "train2014/COCO_train2014_000000000009.jpg", "problem": "no box", "solution": "none"},
    ]
    (root / "rec").mkdir()
    (root / "rec" / "refcoco_train.json").write_text(json.dumps(items))
    line = {
        "id": 7,
        "image": "train2014/COCO_train2014_000000000009.jpg",
        "conversations": [
            {"from": "human", "value": "<image>the grey sky"},
            {"from": "gpt", "value": "[0, 0, 400, 100]"},
        ],
    }
    (root / "rec" / "refcoco_val.jsonl").write_text(json.dumps(line) + "\n")
    return root


def test_vlm_r1_rec_reads_json_and_jsonl_in_pixels_of_the_image(make_cfg, tmp_path) -> None:
    root = write_vlm_r1(tmp_path)
    cfg = make_cfg(
        "data=vlm_r1_rec",
        f"data.root={root / 'rec'}",
        f"data.image_root={root / 'coco'}",
        "data.splits.test=refcoco_val.jsonl",
        "data.max_drop_fraction=0.9",
    )
    split = load_data(cfg)
    (train,), (test,) = split.train, split.test
    assert reference_boxes(train.solution)[0].coords == (10.0, 10.0, 50.0, 50.0)  # 400 x 200 px
    assert train.query == "Find the dog" and test.id == "refcoco_val/7/0"
    assert reference_boxes(test.solution)[0].coords == (0.0, 0.0, 100.0, 50.0)
    assert dict(split.dropped) == {
        "object: image missing or unreadable": 1,
        "object: solution is not one box [x1, y1, x2, y2]": 1,
    }
    with pytest.raises(DataError, match=r"refcoco_testB\.json: no such file"):
        load_data(make_cfg("data=vlm_r1_rec", f"data.root={root / 'rec'}", "data.splits.test=refcoco_testB.json"))


def test_the_synthetic_referring_set_keeps_its_splits_apart(make_cfg) -> None:
    split = load_data(make_cfg("data=refcoco_synthetic"))
    assert split.summary["counts"]["train"]["object"] > 3 * split.summary["counts"]["test"]["object"] > 0
    train_images = {r.manual_id.split("/", 1)[1] for r in split.train}
    assert not train_images & {r.manual_id.split("/", 1)[1] for r in split.test}
    for record in split.test[:20]:
        (box,) = reference_boxes(record.solution)
        assert record.query == f"Find {box.label}" and box.label.startswith("the ")
        assert 0 <= box.coords[0] < box.coords[2] <= 100


def test_a_run_is_scored_on_its_eval_extra_sets_after_the_test_split(make_cfg) -> None:
    from lego_arta.pipeline import run_experiment

    cfg = make_cfg(
        "method=none", "eval.limit=2", "eval.max_new_tokens=8", "+data@eval.extra.referring=refcoco_synthetic"
    )
    metrics = run_experiment(cfg, train=False)
    run_dir = Path(cfg.paths.output_dir)
    rows = [json.loads(line) for line in (run_dir / "predictions_extra_referring.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["id"].startswith("val/") and r["task"] == "object" for r in rows)
    assert metrics["extra/referring/num_samples"] == 2.0 and 0.0 <= metrics["extra/referring/iou50"] <= 100.0
    assert "eval/iou" in metrics and not any(k.startswith("extra/referring/ref/") for k in metrics)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["extra/referring/iou"] == metrics["extra/referring/iou"]


def test_a_bad_eval_extra_set_fails_before_any_model_loads(make_cfg, tmp_path, monkeypatch) -> None:
    from lego_arta import pipeline

    monkeypatch.setattr(pipeline, "load_stage", lambda *a: pytest.fail("a model was loaded"))
    cfg = make_cfg("method=none", "+data@eval.extra.refcoco=refcoco", f"eval.extra.refcoco.root={tmp_path}")
    with pytest.raises(DataError, match=r"no val-\*\.parquet for data\.splits\.test=val"):
        pipeline.run_experiment(cfg, train=False)
