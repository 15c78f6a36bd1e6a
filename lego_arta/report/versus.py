"""Trained runs against the trivial answers and against the run they started from, each with a plain verdict.

- **Trivial answers:** every trained run's ``vs/<reference>/<metric>`` keys (metrics.json, written by the
  evaluation, :func:`lego_arta.metrics.against_references`): model minus reference on the same test samples, with the
  95% paired bootstrap CI over test samples.
- **The run it started from:** every trained run other than SFT (GRPO) against its SFT run: the run whose ``adapter/``
  its ``method.adapter`` names (in a copy of the sweep: the one run dir of that folder name), else the SFT run of its
  seed and model. Their ``predictions.jsonl`` are paired by
  sample id (:func:`lego_arta.metrics.compare_predictions`) and resampled as the run's ``eval.bootstrap`` says.

One line per run (a seed of a Table 1 row), task and reference. A run *beats* a reference when the CI's lower bound
is above 0; a row beats it only when every seed does, and its verdict says how many did.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml

from lego_arta.metrics import compare_predictions
from lego_arta.parsing import TASKS
from lego_arta.report.collect import OK
from lego_arta.report.stats import HEADERS, REFERENCE_NAMES, row_label
from lego_arta.runs import CONFIG_FILE, PREDICTIONS_FILE, extra_predictions_file, read_jsonl, saved_value
from lego_arta.sample_metrics import HEADLINE, REFERENCE_TASKS

log = logging.getLogger(__name__)

# the comparisons with the trivial answers that metrics.json holds: (reference, task, metric)
TRIVIAL: Final[tuple[tuple[str, str, str], ...]] = tuple(
    (ref, task, HEADLINE[task]) for task in TASKS for ref, tasks in REFERENCE_TASKS.items() if task in tasks
)
BEATS, NOT_BEATS, NO_CI = "beats", "does not beat", "does not beat (no CI)"
COLUMNS: Final = ("row", "seed", "task", "metric", "model", "reference", "reference value", "difference", "verdict")
NUMBERS: Final = ("diff", "lo", "hi")


def trivial_lines(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per finished trained run (a seed of a Table 1 row), task and trivial reference it was compared with.

    Display columns :data:`COLUMNS` (``difference`` = ``+d [lo, hi]``), then ``diff``, ``lo``, ``hi``, ``beats``
    and ``key/row`` (the Table 1 row, for :func:`row_verdicts`).
    """
    lines = []
    for run, row in _trained(runs):
        for ref, task, metric in TRIVIAL:
            key = f"vs/{ref}/{metric}"
            if key not in run or not math.isfinite(_num(run, key)):
                continue
            lo, hi = _num(run, f"{key}_lo"), _num(run, f"{key}_hi")
            lines.append(
                _line(row, run["seed"], task, metric, _num(run, f"eval/{metric}"), REFERENCE_NAMES[ref],
                      _num(run, f"ref/{ref}/{metric}"), _num(run, key), lo, hi)
            )  # fmt: skip
    return pd.DataFrame(lines, columns=[*COLUMNS, *NUMBERS, "beats", "key/row"])


def baseline_lines(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per finished trained run other than SFT, task and metric, against the SFT run it started from.

    Same columns as :func:`trivial_lines`; the reference is the SFT run's Table 1 row. Runs without their SFT run in
    ``runs``, or without ``predictions.jsonl`` on either side, get no line (logged).
    """
    lines = []
    ok = runs[runs["status"] == OK] if not runs.empty else runs
    for run, row in _trained(runs):
        if run["method"] == "sft":
            continue
        cfg = _config(run["run_dir"])
        base = _baseline(run, cfg, ok)
        if base is None:
            log.info("%s: no SFT run to compare with in this sweep", run["run_dir"])
            continue
        files = [Path(d) / PREDICTIONS_FILE for d in (run["run_dir"], base["run_dir"])]
        if not all(f.is_file() for f in files):
            log.warning("%s: no %s to pair with %s", run["run_dir"], PREDICTIONS_FILE, base["run_dir"])
            continue
        n, seed = saved_value(cfg, "eval", "bootstrap", "samples"), saved_value(cfg, "eval", "bootstrap", "seed")
        paired = compare_predictions(
            list(read_jsonl(files[0])),
            list(read_jsonl(files[1])),
            n=int(n) if n is not None else 0,
            seed=int(seed) if seed is not None else 0,
        )
        reference = _row(base, runs)
        for task, metric in HEADLINE.items():
            if metric in paired:
                p = paired[metric]
                lines.append(
                    _line(row, run["seed"], task, metric, p.model, reference, p.reference, p.diff, p.low, p.high)
                )
    return pd.DataFrame(lines, columns=[*COLUMNS, *NUMBERS, "beats", "key/row"])


def start_lines(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per finished trained run and ``eval.extra`` set, against the run of the model it started from, on
    that set: how much general grounding training kept.

    The start is the run whose adapter or fine-tuned model the run loaded (GRPO from SFT: the SFT run; a chained
    stage: the pre-stage), else the untrained model's run (``method=none``) of the same model. Their
    ``predictions_extra_<set>.jsonl`` are paired by sample id as :func:`baseline_lines` pairs the test split's. Same
    columns as :func:`trivial_lines`, ``task`` being the set's name.
    """
    lines = []
    ok = runs[runs["status"] == OK] if not runs.empty else runs
    for run, row in _trained(runs):
        cfg = _config(run["run_dir"])
        start = _start(run, cfg, ok)
        for name in sorted(saved_value(cfg, "eval", "extra") or {}):
            files = [
                Path(d) / extra_predictions_file(name)
                for d in (run["run_dir"], *([start["run_dir"]] if start is not None else []))
            ]
            if start is None or not all(f.is_file() for f in files):
                log.info("%s: no start run scored on %s in this sweep", run["run_dir"], name)
                continue
            n, seed = saved_value(cfg, "eval", "bootstrap", "samples"), saved_value(cfg, "eval", "bootstrap", "seed")
            paired = compare_predictions(
                list(read_jsonl(files[0])), list(read_jsonl(files[1])), n=int(n or 0), seed=int(seed or 0)
            )
            for metric, p in paired.items():
                lines.append(
                    _line(
                        row, run["seed"], name, metric, p.model, _row(start, runs), p.reference, p.diff, p.low, p.high
                    )
                )
    return pd.DataFrame(lines, columns=[*COLUMNS, *NUMBERS, "beats", "key/row"])


def row_verdicts(lines: pd.DataFrame) -> list[str]:
    """One plain verdict per Table 1 row, task and reference: "beats" only when every seed's CI is above 0.

    >>> lines = pd.DataFrame({"key/row": ["SFT"] * 2, "task": ["object"] * 2, "metric": ["iou"] * 2,
    ...                       "reference": ["mean training box"] * 2, "beats": [True, False]})
    >>> row_verdicts(lines)
    ['SFT, object IoU against mean training box: does not beat (beats in 1 of 2 seeds)']
    """
    out = []
    for (row, task, metric, reference), group in lines.groupby(["key/row", "task", "metric", "reference"], sort=False):
        wins, seeds = int(group["beats"].sum()), len(group)
        verdict = BEATS if wins == seeds else NOT_BEATS
        count = f"{wins} of {seeds} seed{'s' if seeds > 1 else ''}"
        detail = f"in {count}" if verdict == BEATS else f"beats in {count}"
        out.append(f"{row}, {task} {HEADERS.get(metric, metric)} against {reference}: {verdict} ({detail})")
    return out


def _line(
    row: str,
    seed: Any,
    task: str,
    metric: str,
    model: float,
    reference: str,
    reference_value: float,
    diff: float,
    lo: float,
    hi: float,
) -> dict[str, Any]:
    has_ci = math.isfinite(lo) and math.isfinite(hi)
    beats = has_ci and lo > 0
    verdict = BEATS if beats else NOT_BEATS if has_ci else NO_CI
    ci = f" [{lo:.2f}, {hi:.2f}]" if has_ci else ""
    return {
        "row": row,
        "seed": seed,
        "task": task,
        "metric": HEADERS.get(metric, metric),
        "model": model,
        "reference": reference,
        "reference value": reference_value,
        "difference": f"{diff:+.2f}{ci}",
        "verdict": verdict,
        "diff": diff,
        "lo": lo,
        "hi": hi,
        "beats": beats,
        "key/row": row,
    }


def _trained(runs: pd.DataFrame) -> list[tuple[pd.Series, str]]:
    # the finished runs of the trained rows (method other than none), one per row and seed, with their row label
    if runs.empty:
        return []
    ok = runs[(runs["status"] == OK) & (runs["method"] != "none")]
    ok = ok.drop_duplicates(["method", "reward", "lora_r", "start", "model", "data", "seed"])
    return [(run, _row(run, runs)) for _, run in ok.iterrows()]


def _row(run: pd.Series, runs: pd.DataFrame) -> str:
    model = run["model"] if runs["model"].astype(str).nunique() > 1 else None
    data = run["data"] if runs["data"].astype(str).nunique() > 1 else None
    return row_label(run["method"], run["reward"], run["lora_r"], str(run["start"]), model, data)


def _baseline(run: pd.Series, cfg: Mapping[str, Any], ok: pd.DataFrame) -> pd.Series | None:
    # the run whose adapter/ (or fine-tuned model/) this run started from (by path; in a copy of the sweep, by its
    # folder's name when one run has it), else the SFT run of the same seed and model
    weights = {"adapter": saved_value(cfg, "method", "adapter"), "model": saved_value(cfg, "model", "path")}.get(
        run["start"]
    )
    if weights:
        start = Path(str(weights)).resolve().parent
        found = ok[[Path(d).resolve() == start for d in ok["run_dir"]]]
        if found.empty:
            named = ok[[Path(d).name == start.name for d in ok["run_dir"]]]
            found = named if len(named) == 1 else found
    else:
        found = ok[(ok["method"] == "sft") & (ok["seed"] == run["seed"]) & (ok["model"] == run["model"])]
    return found.iloc[0] if len(found) else None


def _start(run: pd.Series, cfg: Mapping[str, Any], ok: pd.DataFrame) -> pd.Series | None:
    # the run whose weights this run loaded, else the untrained model's run of the same model
    weights = {"adapter": saved_value(cfg, "method", "adapter"), "model": saved_value(cfg, "model", "path")}.get(
        run["start"]
    )
    if weights:
        return _baseline(run, cfg, ok)
    found = ok[(ok["method"] == "none") & (ok["model"] == run["model"])]
    same_seed = found[found["seed"] == run["seed"]]
    found = same_seed if len(same_seed) else found
    return found.iloc[0] if len(found) else None


def _config(run_dir: str) -> Any:
    try:
        return yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _num(run: pd.Series, key: str) -> float:
    value = run.get(key, math.nan)
    return float(value) if value is not None and not pd.isna(value) else math.nan
