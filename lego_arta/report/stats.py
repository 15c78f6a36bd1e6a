"""Table 1 statistics over a sweep's runs: mean ± std and 95% CI over seeds, trivial references, the study's table.

Tables are DataFrames with two kinds of columns: plain names (``model``, ``n``, ``F1-Theme``, ...) are the display
cells that :func:`to_markdown` renders; namespaced names hold the numbers for the CSV: ``key/method``,
``key/reward``, ... identify the row, and ``<metric>/mean``, ``<metric>/std`` (sample std over seeds, ddof 1),
``<metric>/lo``, ``<metric>/hi`` (the 95% CI), ``<metric>/n`` (seeds with a value) and ``<metric>/ci`` (``t``:
t-interval over seeds, ``bootstrap``: the single run's bootstrap CI, ``none``: a single run without one) give each
cell.

Over seeds a cell reads ``mean ± std (n=seeds) [t-interval]``. A t-interval whose half-width exceeds the metric's range
(:data:`METRIC_RANGE`) says nothing but that more seeds are needed, and the cell says so instead of printing it:

>>> print(format_cell(61.234, 58.0, 64.468, "t", std=1.3, n=3))
61.23 ± 1.30 (n=3) [58.00, 64.47]
>>> print(format_cell(66.67, -303.93, 437.27, "t", std=41.25, n=2))
66.67 ± 41.25 (n=2), CI too wide: more seeds needed
>>> print(format_cell(61.234, 55.0, 66.9, "bootstrap"))
61.23 [55.00, 66.90]
>>> print(format_cell(float("nan"), float("nan"), float("nan"), ""))
–
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import stats

from lego_arta.markdown_table import MISSING  # the cell of a value not there
from lego_arta.report.collect import FULL, NO_REWARD, OK, STARTS, as_float, group_sort_key
from lego_arta.report.study import STUDY_TABLE1
from lego_arta.sample_metrics import STUDY_METRICS

HEADERS: Final[dict[str, str]] = {
    "f1_theme": "F1-Theme",
    "rouge": "ROUGE",
    "bleu": "BLEU",
    "f1_object": "F1-Object",
    "iou": "IoU",
    "f1_state": "F1-State",
    "fpr": "FPR",
}
# the study's seven metrics (lego_arta.sample_metrics.STUDY_METRICS) with their Table 1 headers
METRICS: Final[tuple[tuple[str, str], ...]] = tuple((key, HEADERS[key]) for key in STUDY_METRICS)
# headers of the other eval/ metrics, shown in a second table when present
EXTRA_HEADERS: Final[dict[str, str]] = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "iou_strict": "IoU-strict",
    "iou50": "IoU≥0.5",
    "semantic": "Semantic (grounding)",
    "format_valid": "format valid",
}
# the out-of-domain columns of Table 1, per eval.extra set (metrics.json `extra/<set>/<metric>`)
OOD_METRICS: Final[tuple[tuple[str, str], ...]] = (("iou", "IoU"), ("iou50", "Acc@0.5"))
# trivial references written by the evaluation (metrics.json `ref/<name>/<metric>`, `vs/<name>/<metric>`) -> name
REFERENCE_NAMES: Final[dict[str, str]] = {
    "always_yes": "always Yes",
    "copy_demo": "copy the demo's answer",
    "mean_box": "mean training box",
}
# their Table 1 row labels
REFERENCES: Final[dict[str, str]] = {key: f"{name} (trivial)" for key, name in REFERENCE_NAMES.items()}
CONFIDENCE: Final = 0.95
# the range of every Table 1 metric: x100 values on [0, 100]; a CI half-width above it is printed as "too wide"
METRIC_RANGE: Final = 100.0
TOO_WIDE: Final = "CI too wide: more seeds needed"


GROUP_COLUMNS: Final = ("method", "reward", "lora_r", "start", "model", "data")


def row_label(
    method: str,
    reward: str,
    lora_r: Any = None,
    start: str = "",
    model: str | None = None,
    data: str | None = None,
) -> str:
    """The Table 1 row label of a group of runs (``model`` and the training ``data`` are prefixed only when given:
    when the sweep holds several).

    >>> row_label("none", "-")
    'base, few-shot'
    >>> row_label("grpo", "v1", 8)
    'GRPO v1 (LoRA r8)'
    >>> row_label("grpo", "v2", 8, start="adapter", model="qwen2_5_vl_7b")
    'qwen2_5_vl_7b: GRPO v2 (LoRA r8, from adapter)'
    >>> row_label("sft", "-", 0)
    'SFT (full fine-tuning)'
    >>> row_label("sft", "-", 0, data="refcoco_synthetic")
    'refcoco_synthetic: SFT (full fine-tuning)'
    """
    if lora_r is None or pd.isna(lora_r):
        lora = "LoRA"
    else:
        lora = "full fine-tuning" if int(lora_r) == FULL else f"LoRA r{int(lora_r)}"
    origin = f", from {STARTS.get(start, start)}" if start else ""
    if method == "none":
        named = {"": "base", "adapter": "base + adapter"}.get(start) or STARTS[start]
        label = f"{named}, few-shot"
    elif method == "sft":
        label = f"SFT ({lora}{origin})"
    else:
        name = "GRPO" if method == "grpo" else method
        variant = "" if reward == NO_REWARD else f" {reward}"
        label = f"{name}{variant} ({lora}{origin})"
    label = f"{model}: {label}" if model else label
    return f"{data}: {label}" if data else label


def table1(runs: pd.DataFrame, metrics: Sequence[tuple[str, str]] = METRICS) -> pd.DataFrame:
    """Table 1 of our runs: one row per method x reward (x LoRA rank, adapter start, model), mean ± 95% CI per metric.

    Each cell aggregates the finite ``eval/<metric>`` values of the group's finished runs, one run per seed: runs of
    one group and one seed are the same run (a sweep over ``reward`` repeats SFT per reward, and SFT ignores it), so
    only the first counts. With two or more seeds: mean ± sample std (ddof 1) with n, and the Student-t 95% interval
    over seeds (``scipy.stats.t``; "CI too wide: more seeds needed" when its half-width exceeds
    :data:`METRIC_RANGE`); with one: its value and the run's own bootstrap CI (``eval/<metric>_lo`` / ``_hi``) when
    present; with none, ``–``. ``n`` counts the group's seeds with a finished run (``runs/finished`` its finished
    runs, repeats included); a group whose runs all failed keeps its row with ``n`` = 0.

    Args:
        runs: the frame of :func:`collect_runs`.
        metrics: (metric key, column header) pairs; the study's seven by default.

    Returns:
        Display columns ``model``, ``n`` and the headers, then ``key/*``, ``runs/finished`` and
        ``<metric>/{mean,lo,hi,n,ci}`` columns.
    """
    if runs.empty:
        return _empty_table(metrics)
    show_model = runs["model"].astype(str).nunique() > 1
    show_data = "data" in runs and runs["data"].astype(str).nunique() > 1
    groups: list[dict[str, Any]] = []
    runs = runs if "data" in runs else runs.assign(data=None)  # frames from before the data column
    for key, group in runs.groupby(list(GROUP_COLUMNS), dropna=False, sort=False):
        info = {c: _hashable(v) for c, v in zip(GROUP_COLUMNS, key, strict=True)}
        finished = group[group["status"] == OK]
        ok = finished.drop_duplicates("seed")
        model = info["model"] if show_model else None
        row: dict[str, Any] = {
            "model": row_label(
                info["method"],
                info["reward"],
                info["lora_r"],
                info["start"],
                model,
                info["data"] if show_data else None,
            ),
            "n": len(ok),
            "runs/finished": len(finished),
        }
        row.update({f"key/{c}": info[c] for c in GROUP_COLUMNS})
        row.update(_cells(ok, "eval/", metrics))
        groups.append(row)
    groups.sort(key=lambda row: group_sort_key({c: row[f"key/{c}"] for c in GROUP_COLUMNS}))
    return _ordered(pd.DataFrame(groups), metrics)


def references_table(runs: pd.DataFrame, metrics: Sequence[tuple[str, str]] = METRICS) -> pd.DataFrame:
    """The trivial references (``ref/always_yes/*``, ``ref/copy_demo/*``, ``ref/mean_box/*``) aggregated like
    :func:`table1`.

    A reference depends on the test split, not on the method: each seed counts once (its first finished run with the
    key), and ``n`` is the number of seeds. Rows without any value are left out.
    """
    rows: list[dict[str, Any]] = []
    ok = runs[runs["status"] == OK] if not runs.empty else runs
    for name, label in REFERENCES.items():
        prefix = f"ref/{name}/"
        if not any(f"{prefix}{key}" in ok.columns for key, _ in metrics):
            continue
        cells = _cells(ok, prefix, metrics, one_per_seed=True)
        n = max(int(cells[f"{key}/n"]) for key, _ in metrics)
        if n:
            rows.append({"model": label, "n": n, "key/reference": name, **cells})
    return _ordered(pd.DataFrame(rows), metrics) if rows else _empty_table(metrics)


def study_table(metrics: Sequence[tuple[str, str]] = METRICS) -> pd.DataFrame:
    """The study's own Table 1 (:data:`lego_arta.report.study.STUDY_TABLE1`), reported values, no CI."""
    rows = []
    for label, values in STUDY_TABLE1.items():
        row: dict[str, Any] = {"model": label}
        for key, header in metrics:
            value = values.get(key, math.nan)
            row[header] = format_cell(value, math.nan, math.nan, "none")
            row.update({f"{key}/mean": value, f"{key}/lo": math.nan, f"{key}/hi": math.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def ood_metrics(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(key, header) of the out-of-domain metrics present in ``runs``: ``extra/<set>/iou`` as "IoU (<set>)" and
    ``extra/<set>/iou50`` as "Acc@0.5 (<set>)" for each ``eval.extra`` set a run was scored on.

    >>> ood_metrics(pd.DataFrame({"extra/refcoco/iou": [1.0], "extra/refcoco/iou50": [1.0], "eval/iou": [1.0]}))
    [('extra/refcoco/iou', 'IoU (refcoco)'), ('extra/refcoco/iou50', 'Acc@0.5 (refcoco)')]
    """
    names = sorted({c.split("/")[1] for c in runs.columns if c.startswith("extra/") and c.endswith("/iou")})
    return [(f"extra/{name}/{key}", f"{header} ({name})") for name in names for key, header in OOD_METRICS]


def extra_metrics(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(key, header) of the ``eval/`` metrics present in ``runs`` beyond Table 1's seven (CI bounds excluded)."""
    table1_keys = {key for key, _ in METRICS}
    keys = []
    for column in runs.columns:
        if not column.startswith("eval/") or column.endswith(("_lo", "_hi")):
            continue
        key = column.removeprefix("eval/")
        if key not in table1_keys and runs[column].notna().any():
            keys.append(key)
    known = [k for k in EXTRA_HEADERS if k in keys]
    return [(k, EXTRA_HEADERS.get(k) or k) for k in known + sorted(set(keys) - set(known))]


def format_cell(mean: float, lo: float, hi: float, ci: str, std: float = math.nan, n: int = 0) -> str:
    """One table cell: ``mean ± std (n=n) [lo, hi]`` over seeds (t-interval; the interval replaced by
    :data:`TOO_WIDE` when its half-width exceeds :data:`METRIC_RANGE`), ``mean [lo, hi]`` (bootstrap), ``mean``, or
    ``–``."""
    if not math.isfinite(mean):
        return MISSING
    if ci == "t" and math.isfinite(lo) and math.isfinite(hi):
        spread = f"{mean:.2f} ± {std:.2f} (n={n})"
        if (hi - lo) / 2 > METRIC_RANGE:
            return f"{spread}, {TOO_WIDE}"
        return f"{spread} [{lo:.2f}, {hi:.2f}]"
    if ci == "bootstrap" and math.isfinite(lo) and math.isfinite(hi):
        return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"
    return f"{mean:.2f}"


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and Student-t ``confidence`` interval over seeds (sample std, ddof 1); bounds NaN for fewer than 2.

    >>> tuple(round(v, 4) for v in mean_ci([1.0, 2.0, 3.0]))
    (2.0, -0.4841, 4.4841)
    """
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def _cells(
    runs: pd.DataFrame, prefix: str, metrics: Sequence[tuple[str, str]], one_per_seed: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, header in metrics:
        column = key if key.startswith("extra/") else f"{prefix}{key}"  # an out-of-domain set's: read as it is
        have = runs[runs[column].notna()] if column in runs.columns else runs.iloc[:0]
        if one_per_seed:
            have = have.drop_duplicates("seed")
        values = have[column].astype(float).tolist() if len(have) else []
        mean, lo, hi = mean_ci(values)
        std = float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan
        ci = "t" if len(values) >= 2 else ""
        if len(values) == 1:
            lo = as_float(have.iloc[0].get(f"{column}_lo", math.nan))
            hi = as_float(have.iloc[0].get(f"{column}_hi", math.nan))
            ci = "bootstrap" if math.isfinite(lo) and math.isfinite(hi) else "none"
        out[header] = format_cell(mean, lo, hi, ci, std=std, n=len(values))
        out.update({f"{key}/mean": mean, f"{key}/std": std, f"{key}/lo": lo, f"{key}/hi": hi})
        out.update({f"{key}/n": len(values), f"{key}/ci": ci})
    return out


def _ordered(table: pd.DataFrame, metrics: Sequence[tuple[str, str]]) -> pd.DataFrame:
    display = ["model", "n", *(header for _, header in metrics)]
    rest = [c for c in table.columns if c not in display]
    return table[display + rest].reset_index(drop=True)


def _empty_table(metrics: Sequence[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(columns=["model", "n", *(header for _, header in metrics)])


def _hashable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
