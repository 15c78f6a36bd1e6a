"""Score a predictions file with the study's metrics: metrics.json in the run dir and a table with 95% bootstrap CIs.

    python experiments/score.py predictions=outputs/default/runs/<time>/predictions.jsonl
    python experiments/score.py predictions=preds.jsonl bootstrap.samples=0 seed=1

Each line of the file is a JSON object with ``prediction`` (raw model text) and ``reference`` (strings), optional
``task`` (grounding | object | state; inferred from the reference when missing), ``id``, ``demo_answer`` (the
answer of the prompt's first few-shot demo) and ``mean_box_answer`` (one box at the training split's mean box), as
evaluation writes them. metrics.json holds ``eval/<metric>``, ``eval/<metric>_lo`` / ``_hi``, format validity, the
trivial references ``ref/always_yes/<metric>`` and, for rows with their answer, ``ref/copy_demo/<metric>`` and
``ref/mean_box/<metric>``, and the model against each reference: ``vs/<reference>/<metric>`` (model - reference,
paired bootstrap ``_lo`` / ``_hi``, ``_beats``). Light: no torch, transformers or datasets is imported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from lego_arta.cli import hydra_task, launch
from lego_arta.errors import InputError, MissingInputError
from lego_arta.markdown_table import markdown_table
from lego_arta.metrics import format_table, prediction_metrics
from lego_arta.runs import iter_jsonl, write_metrics
from lego_arta.sample_metrics import ANSWER_REFERENCES

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("prediction", "reference")
REFERENCES = {
    "always_yes": "Always-'Yes' reference (state)",
    "copy_demo": "Copy-the-demo reference (grounding, object)",
    "mean_box": "Mean-training-box reference (object)",
}
ANSWER_FIELDS = tuple(field for field, _ in ANSWER_REFERENCES.values())  # optional: absent, a string or null


def load_predictions(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every non-empty line; a clear error names the file, line and field.

    Strict: a file given to be scored may not have a cut-short last line (a run's own files may).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"predictions={path}: no such file")
    out = []
    for lineno, record in iter_jsonl(path, strict=True):
        if not isinstance(record, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        for field in REQUIRED_FIELDS:
            if field not in record:
                raise InputError(f"{path}:{lineno}: missing field {field!r}")
            if not isinstance(record[field], str):
                raise InputError(f"{path}:{lineno}: field {field!r} is {type(record[field]).__name__}, not a string")
        for field in ANSWER_FIELDS:
            if not isinstance(record.get(field, ""), str | None):
                raise InputError(f"{path}:{lineno}: field {field!r} is {type(record[field]).__name__}")
        out.append((lineno, record))
    if not out:
        raise InputError(f"{path}: no records")
    return out


def run(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.predictions``; write metrics.json to ``cfg.paths.output_dir``; print and return the metrics."""
    path = Path(cfg.predictions)
    lines = load_predictions(path)
    records = [record for _, record in lines]
    names = [f"{path}:{lineno}" for lineno, _ in lines]
    computed = prediction_metrics(records, int(cfg.bootstrap.samples), int(cfg.seed), names=names)
    metrics_file = write_metrics(computed.metrics, cfg.paths.output_dir)
    log.info("scored %d records from %s -> %s", len(records), path, metrics_file)
    print(f"{path} ({len(records)} records)\n\n{format_table(computed.values, computed.cis or None)}")
    for name, title in REFERENCES.items():
        prefix = f"ref/{name}/"
        reference = {k.removeprefix(prefix): v for k, v in computed.metrics.items() if k.startswith(prefix)}
        if reference:
            print(f"\n{title}:\n\n{format_table(reference)}")
    versus = versus_table(computed.metrics)
    if versus:
        print(f"\nAgainst the trivial references (paired bootstrap over the samples):\n\n{versus}")
    return computed.metrics


def versus_table(metrics: dict[str, float]) -> str:
    """The ``vs/<reference>/<metric>`` keys as a markdown table: difference, 95% CI, beats; "" when there are none."""
    keys = [k for k in metrics if k.startswith("vs/") and not k.endswith(("_lo", "_hi", "_beats"))]
    if not keys:
        return ""
    rows = []
    for key in keys:
        ci, verdict = "", "does not beat (no CI)"
        if f"{key}_lo" in metrics:
            ci = f"[{metrics[f'{key}_lo']:.2f}, {metrics[f'{key}_hi']:.2f}]"
            verdict = "beats" if metrics[f"{key}_beats"] else "does not beat"
        rows.append([key.removeprefix("vs/"), f"{metrics[key]:+.2f}", ci, verdict])
    return markdown_table(["model - reference", "difference", "95% CI", "verdict"], rows, align="lrll")


@hydra.main(version_base="1.3", config_path="../conf", config_name="score")
@hydra_task
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main, "score")
