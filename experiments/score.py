"""Score a predictions file with the study's metrics: metrics.json in the run dir and a table with 95% bootstrap CIs.

    python experiments/score.py predictions=outputs/default/runs/<time>/predictions.jsonl
    python experiments/score.py predictions=preds.jsonl bootstrap.samples=0 seed=1

Each line of the file is a JSON object with ``prediction`` (raw model text) and ``reference`` (strings), optional
``task`` (grounding | object | state; inferred from the reference when missing), ``id`` and ``demo_answer`` (the
answer of the prompt's first few-shot demo, as evaluation writes it). metrics.json holds ``eval/<metric>``,
``eval/<metric>_lo`` / ``_hi``, format validity and the trivial references ``ref/always_yes/<metric>`` and, for rows
with a demo answer, ``ref/copy_demo/<metric>``. Light: no torch, transformers or datasets is imported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from lego_arta import metrics as M
from lego_arta.cli import hydra_task, launch
from lego_arta.errors import InputError, MissingInputError
from lego_arta.runs import iter_jsonl, write_metrics

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("prediction", "reference")
REFERENCES = {
    "always_yes": "Always-'Yes' reference (state)",
    "copy_demo": "Copy-the-demo reference (grounding, object)",
}


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
        if not isinstance(record.get("demo_answer", ""), str | None):  # optional: absent, a string or null
            raise InputError(f"{path}:{lineno}: field 'demo_answer' is {type(record['demo_answer']).__name__}")
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
    scored = M.score_predictions(records, int(cfg.bootstrap.samples), int(cfg.seed), names=names)
    metrics_file = write_metrics(scored.metrics, cfg.paths.output_dir)
    log.info("scored %d records from %s -> %s", len(records), path, metrics_file)
    print(f"{path} ({len(records)} records)\n\n{M.format_table(scored.values, scored.cis or None)}")
    for name, title in REFERENCES.items():
        prefix = f"ref/{name}/"
        reference = {k.removeprefix(prefix): v for k, v in scored.metrics.items() if k.startswith(prefix)}
        if reference:
            print(f"\n{title}:\n\n{M.format_table(reference)}")
    return scored.metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="score")
@hydra_task
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main, "score")
