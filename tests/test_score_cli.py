"""experiments/score.py: a predictions file in, metrics.json and a table out; bad files give clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.score import run
from lego_arta.metrics import compute_metrics, format_validity
from lego_arta.sample_metrics import sample_metrics

ROOT = Path(__file__).resolve().parents[1]
BOX = '[{"bbox_2d": [0, 0, 10, 10], "label": "red brick"}]'
RECORDS = [
    {"id": "g1", "task": "grounding", "prediction": "attach the red brick", "reference": "Attach the red brick."},
    {"id": "o1", "prediction": "<answer>" + BOX + "</answer>", "reference": BOX},  # task inferred: object
    {"id": "s1", "task": "state", "prediction": "Yes", "reference": "Yes"},
    {"id": "s2", "task": "state", "prediction": "No", "reference": "No"},
    {"id": "s3", "task": "state", "prediction": "Yes", "reference": "No"},
    {"id": "s4", "task": "state", "prediction": "No", "reference": "No"},
]


def table_rows(printed: str) -> list[list[str]]:
    """The cells of every markdown table row in ``printed`` (header rows included, rules left out)."""
    lines = [line for line in printed.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip().removeprefix("|").removesuffix("|").split("|")] for line in lines]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_run_writes_metrics_and_prints_the_table(make_cfg, tmp_path, capsys):
    predictions = write_jsonl(tmp_path / "predictions.jsonl", [*RECORDS[:3], "", *RECORDS[3:]])  # a blank line
    cfg = make_cfg(f"predictions={predictions}", "bootstrap.samples=200", config_name="score")
    out = run(cfg)
    # metrics.json in the run dir holds exactly what run returns
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text()) == pytest.approx(out)
    # values are the library's metrics (compute_metrics), with CIs and the always-Yes reference beside them
    values = {
        k.removeprefix("eval/"): v
        for k, v in out.items()
        if k.count("/") == 1 and k[-3:] not in ("_lo", "_hi") and k != "eval/num_samples" and "format_valid" not in k
    }
    assert values == pytest.approx(compute_metrics(RECORDS))
    # the same keys as an evaluation run: format validity beside the metrics
    assert {k.removeprefix("eval/"): v for k, v in out.items() if k.startswith("eval/format_valid")} == pytest.approx(
        format_validity(sample_metrics(RECORDS))
    )
    assert out["eval/num_samples"] == 6.0
    assert out["eval/f1_state_lo"] <= out["eval/f1_state"] <= out["eval/f1_state_hi"]
    assert out["ref/always_yes/f1_state"] == pytest.approx(40.0)  # 1 Yes : 3 No
    assert out["ref/always_yes/fpr"] == 100.0
    printed = capsys.readouterr().out
    rows = table_rows(printed)
    assert ["metric", "value", "95% CI"] in rows and any(row[:2] == ["iou", "100.00"] for row in rows)
    assert "Always-'Yes' reference" in printed


def test_copy_demo_reference_from_the_demo_answer_column(make_cfg, tmp_path, capsys):
    # predictions.jsonl rows carry demo_answer (evaluation writes it): score.py gives the copy-the-demo reference
    rows = [{**RECORDS[0], "demo_answer": "Attach the blue plate."}, {**RECORDS[1], "demo_answer": None}, *RECORDS[2:]]
    out = run(make_cfg(f"predictions={write_jsonl(tmp_path / 'p.jsonl', rows)}", config_name="score"))
    copied = compute_metrics([{**rows[0], "prediction": rows[0]["demo_answer"]}])
    assert {k.removeprefix("ref/copy_demo/"): v for k, v in out.items() if k.startswith("ref/copy_demo/")} == (
        pytest.approx(copied)
    )
    assert "Copy-the-demo reference" in capsys.readouterr().out


def test_mean_box_reference_and_the_comparisons_from_the_columns(make_cfg, tmp_path, capsys):
    # an object row with mean_box_answer (evaluation writes it): score.py reproduces the mean-box reference and the
    # paired comparisons of the model with every reference, from the file alone
    mean_box = '[{"bbox_2d": [0, 0, 20, 20], "label": "red brick"}]'  # IoU 100 / 400 = 0.25 with BOX
    rows = [{**RECORDS[0], "demo_answer": "Attach the red brick."}, {**RECORDS[1], "mean_box_answer": mean_box}]
    rows += [{**RECORDS[1], "id": f"o{i}", "mean_box_answer": mean_box} for i in range(2, 6)] + RECORDS[2:]
    out = run(make_cfg(f"predictions={write_jsonl(tmp_path / 'p.jsonl', rows)}", config_name="score"))
    assert {k.removeprefix("ref/mean_box/"): v for k, v in out.items() if k.startswith("ref/mean_box/")} == (
        pytest.approx(compute_metrics([{**rows[1], "prediction": mean_box}]))
    )
    # the model's boxes are exact: +75 on each of the 5 object rows, so the interval is [75, 75] and it beats
    assert (out["vs/mean_box/iou"], out["vs/mean_box/iou_beats"]) == (pytest.approx(75.0), 1.0)
    assert out["vs/mean_box/iou_lo"] == pytest.approx(75.0) == out["vs/mean_box/iou_hi"]
    printed = capsys.readouterr().out
    assert "Mean-training-box reference (object)" in printed
    rows = table_rows(printed)
    assert ["mean_box/iou", "+75.00", "[75.00, 75.00]", "beats"] in rows
    # one grounding row: a difference without an interval, which cannot beat
    assert ["copy_demo/f1_theme", "+0.00", "", "does not beat (no CI)"] in rows
    assert "vs/copy_demo/f1_theme_lo" not in out


def test_score_script_imports_no_torch_transformers_or_datasets():
    # score.py is light: importing it (and the metrics) loads none of the heavy libraries
    code = (
        "import sys, experiments.score; "
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_no_bootstrap(make_cfg, tmp_path):
    # bootstrap.samples=0: no _lo/_hi keys
    predictions = write_jsonl(tmp_path / "p.jsonl", RECORDS[2:4])
    out = run(make_cfg(f"predictions={predictions}", "bootstrap.samples=0", config_name="score"))
    assert not any(k.endswith(("_lo", "_hi")) for k in out)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # a line that is not JSON: file and line number
        pytest.param([RECORDS[0], "{not json"], r"p\.jsonl:2: not a JSON line", id="not-json"),
        # a JSON value that is not an object
        pytest.param(["[1, 2]"], r"p\.jsonl:1: expected a JSON object, got list", id="not-object"),
        # a missing field: file, line and field
        pytest.param([{"prediction": "Yes"}], r"p\.jsonl:1: missing field 'reference'", id="missing-field"),
        # a field of the wrong type
        pytest.param(
            [{"prediction": None, "reference": "Yes"}], r"p\.jsonl:1: field 'prediction' is NoneType", id="wrong-type"
        ),
        # an object reference without a box: file, line and field
        pytest.param(
            [RECORDS[0], "", {"task": "object", "prediction": "", "reference": "red brick"}],
            r"p\.jsonl:3: field 'reference': object reference has no box",
            id="invalid-reference",
        ),
        # an unknown task: file, line and field
        pytest.param(
            [{"task": "detection", "prediction": "", "reference": "Yes"}],
            r"p\.jsonl:1: field 'task': unknown task 'detection'",
            id="unknown-task",
        ),
        # a demo answer that is not text
        pytest.param(
            [{"prediction": "Yes", "reference": "Yes", "demo_answer": 3}],
            r"p\.jsonl:1: field 'demo_answer' is int",
            id="demo-answer-type",
        ),
        # a mean-box answer that is not text
        pytest.param(
            [{"prediction": "Yes", "reference": "Yes", "mean_box_answer": [1, 2, 3, 4]}],
            r"p\.jsonl:1: field 'mean_box_answer' is list",
            id="mean-box-answer-type",
        ),
        # an empty file
        pytest.param([""], r"p\.jsonl: no records", id="empty"),
    ],
)
def test_bad_files_are_clear_errors(make_cfg, tmp_path, rows, message):
    predictions = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        run(make_cfg(f"predictions={predictions}", config_name="score"))


def test_missing_file(make_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"predictions=.*nope\.jsonl: no such file"):
        run(make_cfg(f"predictions={tmp_path / 'nope.jsonl'}", config_name="score"))


def test_command_line(tmp_path):
    # the command of the module docstring, end to end (Hydra run dir overridden)
    predictions = write_jsonl(tmp_path / "predictions.jsonl", RECORDS)
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "experiments/score.py", f"predictions={predictions}", f"hydra.run.dir={run_dir}",
         "bootstrap.samples=50"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert any(row[0] == "f1_state" for row in table_rows(result.stdout))
    assert json.loads((run_dir / "metrics.json").read_text())["eval/iou"] == 100.0
