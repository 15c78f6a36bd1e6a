"""Reports over a sweep of runs: Table 1 (mean ± 95% CI over seeds) beside the study's, and the reward curves.

Reads only the run dir contract of :mod:`lego_arta.runs` (``config.yaml``, ``metrics.json``, ``history.jsonl``), so it
works on any copy of the run dirs, without W&B. A run dir whose ``metrics.json`` is missing or unreadable is a failed
job: it is listed as such, never a crash.

Tables are DataFrames with two kinds of columns: plain names (``model``, ``n``, ``F1-Theme``, ...) are the display
cells that :func:`to_markdown` renders; namespaced names hold the numbers for the CSV: ``key/method``,
``key/reward``, ... identify the row, and ``<metric>/mean``, ``<metric>/lo``, ``<metric>/hi`` (the 95% CI),
``<metric>/n`` (seeds with a value) and ``<metric>/ci`` (``t``: t-interval over seeds, ``bootstrap``: the single run's
bootstrap CI, ``none``: a single run without one) give each cell.

>>> print(format_cell(61.234, 58.0, 64.468, "t"))
61.23 ± 3.23
>>> print(format_cell(61.234, 55.0, 66.9, "bootstrap"))
61.23 [55.00, 66.90]
>>> print(format_cell(float("nan"), float("nan"), float("nan"), ""))
–
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure  # used without pyplot: no global state, no display, Agg canvas for files
from matplotlib.lines import Line2D
from scipy import stats

from lego_arta.evaluation.study import STUDY_LABEL, STUDY_TABLE1
from lego_arta.runs import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, read_jsonl

log = logging.getLogger(__name__)

# the study's Table 1: metric key (metrics.json `eval/<key>`) -> column header
METRICS: Final[tuple[tuple[str, str], ...]] = (
    ("f1_theme", "F1-Theme"),
    ("rouge", "ROUGE"),
    ("bleu", "BLEU"),
    ("f1_object", "F1-Object"),
    ("iou", "IoU"),
    ("f1_state", "F1-State"),
    ("fpr", "FPR"),
)
# headers of the other eval/ metrics, shown in a second table when present
EXTRA_HEADERS: Final[dict[str, str]] = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "iou_strict": "IoU-strict",
    "iou50": "IoU≥0.5",
    "format_valid": "format valid",
}
# trivial references written by the evaluation: metrics.json `ref/<name>/<metric>` -> row label
REFERENCES: Final[dict[str, str]] = {
    "always_yes": "always Yes (trivial)",
    "copy_demo": "copy the demo's answer (trivial)",
}
METHOD_ORDER: Final = ("none", "sft", "grpo")
REWARD_METHODS: Final = frozenset({"grpo"})  # methods whose reward variant matters; others show NO_REWARD
NO_REWARD: Final = "-"
MISSING: Final = "–"
CONFIDENCE: Final = 0.95
OK: Final = "ok"
FAILED: Final = "failed"

RUN_COLUMNS: Final = (
    "method",
    "reward",
    "seed",
    "model",
    "lora_r",
    "from_adapter",
    "experiment_name",
    "status",
    "error",
    "has_history",
    "run_dir",
)

# reward-curve panels: history key -> panel; the total `reward` first, then the components in this order
PANEL_TITLES: Final[dict[str, str]] = {
    "total": "Total reward (weighted sum)",
    "format": "Format (<think> + <answer> structure)",
    "iou": "IoU (object detection)",
    "iou_matched": "Matched IoU, no bonus (one scale for every variant)",
    "label_rouge": "Label ROUGE-1 (object detection)",
    "state": "State Yes/No (state detection)",
    "grounding": "BLEU-4 + ROUGE-1 (grounding)",
}
MATCHED_IOU: Final[str] = "iou/matched"
BANDS: Final[dict[str, str]] = {"minmax": "min–max over seeds", "std": "±1 std over seeds"}


# ----------------------------------------------------------------------------------------------------------- runs
def collect_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run dir found (recursively) under ``sweep_dir``, failed jobs included.

    A run dir is a folder with a ``config.yaml`` (or, for a job that died before writing it, Hydra's
    ``.hydra/config.yaml``) whose config names a ``method.name``; W&B's own ``config.yaml`` files are skipped.

    Args:
        sweep_dir: a Hydra multirun dir, a single run dir, or any folder holding run dirs.

    Returns:
        Columns ``RUN_COLUMNS`` (``status`` is ``ok`` or ``failed``, ``error`` says why; ``reward`` is ``-`` for
        methods without a reward) followed by every key of the runs' ``metrics.json`` (sorted), NaN where missing.
        Rows are ordered by method (none, sft, grpo, others), reward, seed and run dir.

    Raises:
        FileNotFoundError: ``sweep_dir`` is not a directory.
    """
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep_dir {str(root)!r} does not exist or is not a directory")
    rows = [row for run_dir in _find_run_dirs(root) if (row := _read_run(run_dir)) is not None]
    metric_keys = sorted({k for row in rows for k in row if k not in RUN_COLUMNS})
    runs = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *metric_keys])
    runs["seed"] = pd.Series([row["seed"] for row in rows], dtype=object)  # ints stay ints next to a missing seed
    for key in metric_keys:
        runs[key] = pd.to_numeric(runs[key], errors="coerce").astype(float)
    if runs.empty:
        return runs
    order = runs.apply(lambda r: (*_group_sort_key(r), _seed_sort_key(r["seed"]), r["run_dir"]), axis=1)
    return runs.iloc[sorted(range(len(runs)), key=lambda i: order.iloc[i])].reset_index(drop=True)


def _find_run_dirs(root: Path) -> list[Path]:
    found: set[Path] = set()
    for path in root.rglob(CONFIG_FILE):
        run_dir = path.parent.parent if path.parent.name == ".hydra" else path.parent
        if "wandb" in path.relative_to(root).parts:  # W&B writes its own config.yaml under wandb/run-*/files/
            continue
        found.add(run_dir)
    return sorted(found)


def _read_run(run_dir: Path) -> dict[str, Any] | None:
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        cfg_path = run_dir / ".hydra" / CONFIG_FILE
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        log.warning("skipping %s: unreadable config (%s)", cfg_path, err)
        return None
    method_cfg = _get(cfg, "method")
    method = _get(method_cfg, "name")
    if not isinstance(method, str):
        log.debug("skipping %s: no method.name, not a run config", cfg_path)
        return None
    reward = _get(_get(cfg, "reward"), "name")
    row: dict[str, Any] = {
        "method": method,
        "reward": str(reward) if method in REWARD_METHODS and reward is not None else NO_REWARD,
        "seed": _get(cfg, "seed"),
        "model": _get(_get(cfg, "model"), "name"),
        "lora_r": _get(_get(method_cfg, "lora"), "r"),
        "from_adapter": bool(_get(method_cfg, "adapter")),
        "experiment_name": _get(cfg, "experiment_name"),
        "status": OK,
        "error": "",
        "has_history": (run_dir / HISTORY_FILE).is_file(),
        "run_dir": str(run_dir),
    }
    metrics_path = run_dir / METRICS_FILE
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        if not isinstance(metrics, dict):
            raise ValueError(f"expected a JSON object, got {type(metrics).__name__}")
    except FileNotFoundError:
        row.update(status=FAILED, error=f"no {METRICS_FILE}")
        metrics = {}
    except (OSError, ValueError) as err:
        row.update(status=FAILED, error=f"unreadable {METRICS_FILE}: {err}")
        metrics = {}
    if row["status"] == FAILED:
        logs = sorted(p.name for p in run_dir.glob("*.log"))
        if logs:
            row["error"] += f" (log: {', '.join(logs)})"
    row.update({k: _as_float(v) for k, v in metrics.items() if k not in RUN_COLUMNS})
    return row


def _get(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, Mapping) else None


def _as_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _natural_key(text: str) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _seed_sort_key(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, int | float) and not pd.isna(seed) else (1, str(seed))


def _group_sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    method = str(row["method"])
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    lora = row["lora_r"]
    return (
        rank,
        method,
        bool(row["from_adapter"]),
        _natural_key(str(row["reward"])),
        -1 if lora is None or pd.isna(lora) else lora,
        str(row["model"]),
    )


# ------------------------------------------------------------------------------------------------------- tables
GROUP_COLUMNS: Final = ("method", "reward", "lora_r", "from_adapter", "model")


def row_label(
    method: str, reward: str, lora_r: Any = None, from_adapter: bool = False, model: str | None = None
) -> str:
    """The Table 1 row label of a group of runs (``model`` is prefixed only when given).

    >>> row_label("none", "-")
    'base, few-shot'
    >>> row_label("grpo", "v1", 8)
    'GRPO v1 (LoRA r8)'
    >>> row_label("grpo", "v2", 8, from_adapter=True, model="qwen2_5_vl_7b")
    'qwen2_5_vl_7b: GRPO v2 (LoRA r8, from adapter)'
    """
    lora = "LoRA" if lora_r is None or pd.isna(lora_r) else f"LoRA r{int(lora_r)}"
    adapter = ", from adapter" if from_adapter else ""
    if method == "none":
        label = "base + adapter, few-shot" if from_adapter else "base, few-shot"
    elif method == "sft":
        label = f"SFT ({lora}{adapter})"
    else:
        name = "GRPO" if method == "grpo" else method
        variant = "" if reward == NO_REWARD else f" {reward}"
        label = f"{name}{variant} ({lora}{adapter})"
    return f"{model}: {label}" if model else label


def table1(runs: pd.DataFrame, metrics: Sequence[tuple[str, str]] = METRICS) -> pd.DataFrame:
    """Table 1 of our runs: one row per method x reward (x LoRA rank, adapter start, model), mean ± 95% CI per metric.

    Each cell aggregates the finite ``eval/<metric>`` values of the group's finished runs (one run per seed): with
    two or more, mean ± Student-t 95% interval over seeds (``scipy.stats.t``, ddof 1); with one, its value and the
    run's own bootstrap CI (``eval/<metric>_lo`` / ``_hi``) when present; with none, ``–``. ``n`` counts the group's
    finished runs; a group whose runs all failed keeps its row with ``n`` = 0.

    Args:
        runs: the frame of :func:`collect_runs`.
        metrics: (metric key, column header) pairs; the study's seven by default.

    Returns:
        Display columns ``model``, ``n`` and the headers, then ``key/*`` and ``<metric>/{mean,lo,hi,n,ci}`` columns.
    """
    groups: list[dict[str, Any]] = []
    if runs.empty:
        return _empty_table(metrics)
    show_model = runs["model"].astype(str).nunique() > 1
    members: dict[tuple[Any, ...], list[int]] = {}
    for i, (_, run) in enumerate(runs.iterrows()):
        members.setdefault(tuple(_hashable(run[c]) for c in GROUP_COLUMNS), []).append(i)
    keys = [dict(zip(GROUP_COLUMNS, key, strict=True)) for key in members]
    for info in sorted(keys, key=_group_sort_key):
        group = runs.iloc[members[tuple(info.values())]]
        ok = group[group["status"] == OK]
        model = info["model"] if show_model else None
        row: dict[str, Any] = {
            "model": row_label(info["method"], info["reward"], info["lora_r"], info["from_adapter"], model),
            "n": len(ok),
        }
        row.update({f"key/{c}": info[c] for c in GROUP_COLUMNS})
        row.update(_cells(ok, "eval/", metrics))
        groups.append(row)
    return _ordered(pd.DataFrame(groups), metrics)


def references_table(runs: pd.DataFrame, metrics: Sequence[tuple[str, str]] = METRICS) -> pd.DataFrame:
    """The trivial references (``ref/always_yes/*``, ``ref/copy_demo/*``) aggregated like :func:`table1`.

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
    """The study's own Table 1 (:data:`lego_arta.evaluation.study.STUDY_TABLE1`), reported values, no CI."""
    rows = []
    for label, values in STUDY_TABLE1.items():
        row: dict[str, Any] = {"model": label}
        for key, header in metrics:
            value = values.get(key, math.nan)
            row[header] = format_cell(value, math.nan, math.nan, "none")
            row.update({f"{key}/mean": value, f"{key}/lo": math.nan, f"{key}/hi": math.nan})
        rows.append(row)
    return pd.DataFrame(rows)


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


def format_cell(mean: float, lo: float, hi: float, ci: str) -> str:
    """One table cell: ``mean ± half-width`` (t-interval), ``mean [lo, hi]`` (bootstrap), ``mean``, or ``–``."""
    if not math.isfinite(mean):
        return MISSING
    if ci == "t" and math.isfinite(lo) and math.isfinite(hi):
        return f"{mean:.2f} ± {(hi - lo) / 2:.2f}"
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
        column = f"{prefix}{key}"
        have = runs[runs[column].notna()] if column in runs.columns else runs.iloc[:0]
        if one_per_seed:
            have = have.drop_duplicates("seed")
        values = have[column].astype(float).tolist() if len(have) else []
        mean, lo, hi = mean_ci(values)
        ci = "t" if len(values) >= 2 else ""
        if len(values) == 1:
            lo = _as_float(have.iloc[0].get(f"{column}_lo", math.nan))
            hi = _as_float(have.iloc[0].get(f"{column}_hi", math.nan))
            ci = "bootstrap" if math.isfinite(lo) and math.isfinite(hi) else "none"
        out[header] = format_cell(mean, lo, hi, ci)
        out.update({f"{key}/mean": mean, f"{key}/lo": lo, f"{key}/hi": hi, f"{key}/n": len(values), f"{key}/ci": ci})
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


def to_markdown(table: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of the display columns (the names without ``/``), padded to line up.

    The first column and text columns are left-aligned, numeric ones (cells starting with a number, or ``–``)
    right-aligned; ``|`` in a cell is escaped.

    >>> print(to_markdown(pd.DataFrame({"model": ["base, few-shot"], "n": [3], "IoU": ["60.82 ± 1.00"]})))
    | model          |   n |          IoU |
    |:---------------|----:|-------------:|
    | base, few-shot |   3 | 60.82 ± 1.00 |
    """
    columns = list(columns) if columns is not None else [c for c in table.columns if "/" not in str(c)]
    cells = [[_md_cell(v) for v in table[c].tolist()] for c in columns]
    widths = [max([len(str(c)), 3, *(len(v) for v in col)]) for c, col in zip(columns, cells, strict=True)]
    right = [i > 0 and all(v == MISSING or _NUMBER.match(v) for v in col) for i, col in enumerate(cells)]

    def line(values: Iterable[str]) -> str:
        padded = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if r else ":" + "-" * (w + 1) for w, r in zip(widths, right, strict=True)
    )
    lines = [line(str(c) for c in columns), rule + "|"]
    lines += [line(col[i] for col in cells) for i in range(len(table))]
    return "\n".join(lines)


_NUMBER: Final = re.compile(r"-?\d")


def _md_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------------------------ reward curves
def load_history(run_dir: str | Path) -> pd.DataFrame:
    """The reward rows of a run's ``history.jsonl`` as a frame indexed by ``step`` (float columns, NaN for null).

    Rows without a ``step`` or without any reward key (a final summary row, an SFT run) are dropped; a step logged
    twice (a resumed run) keeps its last row. Empty when there is no history or no reward in it.
    """
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return pd.DataFrame()
    rows = [
        row
        for row in read_jsonl(path)
        if row.get("step") is not None and any(_is_reward_key(k) for k in row) and "train_runtime" not in row
    ]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["step"] = pd.to_numeric(frame["step"], errors="coerce")
    frame = frame.dropna(subset=["step"]).drop_duplicates("step", keep="last").set_index("step").sort_index()
    keep = [c for c in frame.columns if _is_reward_key(c)]
    return frame[keep].apply(pd.to_numeric, errors="coerce").astype(float)


def _is_reward_key(key: str) -> bool:
    # iou/matched: the bare IoU both IoU rewards log beside themselves (v1's curve includes its range bonus)
    return key in ("reward", MATCHED_IOU) or (key.startswith("rewards/") and key.endswith("/mean"))


def _panel_of(key: str) -> tuple[str, str]:
    """History key -> (panel, component name); ``iou_v1``/``iou_v2``/... share the ``iou`` panel."""
    if key == "reward":
        return "total", "reward"
    if key == MATCHED_IOU:
        return "iou_matched", "iou"
    name = key.removeprefix("rewards/").removesuffix("/mean")
    return ("iou" if re.fullmatch(r"iou(_.+)?", name) else name), name


def reward_curves(
    runs: pd.DataFrame,
    out_png: str | Path,
    *,
    smoothing: float = 0.0,
    band: str = "minmax",
    include_failed: bool = False,
) -> Figure | None:
    """Plot the training reward curves (like the study's Figure 1) to ``out_png``; one line per reward variant.

    One panel per reward component: the total ``reward`` first, then every ``rewards/<name>/mean`` logged
    (``iou_v1``, ``iou_v2``, ... share one IoU panel, the component named in its legend). x = training step; each
    line is the mean over the variant's seeds, the shaded band their spread (``band``: ``minmax`` or ``std``).
    Each run's series is EMA-smoothed first when ``smoothing`` > 0 (TensorBoard style, weight of the past), and
    linearly interpolated over steps where a component applied to no sample (NaN), so seeds line up.

    Args:
        runs: the frame of :func:`collect_runs`; runs with reward keys in their ``history.jsonl`` are plotted.
        out_png: where to write the PNG (parent dirs are created).
        smoothing: EMA weight in [0, 1); 0 plots raw values.
        band: ``minmax`` (min–max over seeds) or ``std`` (mean ± 1 sample std over seeds).
        include_failed: also plot runs without ``metrics.json`` (e.g. killed after training).

    Returns:
        The figure (``fig.axes`` = the panels, titled by :data:`PANEL_TITLES`), or None when no run logged a reward
        (then nothing is written).
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if band not in BANDS:
        raise ValueError(f"band must be one of {sorted(BANDS)}, got {band!r}")
    curves, seeds = _collect_curves(runs, include_failed)  # panel -> variant -> [(component, series)]; variant -> runs
    if not curves:
        log.info("no reward history in %d runs: no reward curves", len(runs))
        return None
    variants = sorted({v for by_variant in curves.values() for v in by_variant}, key=_natural_key)
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    order = [p for p in PANEL_TITLES if p in curves] + sorted(set(curves) - set(PANEL_TITLES))

    ncols = min(3, len(order))
    nrows = math.ceil(len(order) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows + 0.9), dpi=150, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(order) :]:
        ax.set_visible(False)
        fig.delaxes(ax)
    for ax, panel in zip(axes, order, strict=False):
        for variant in variants:
            series = curves[panel].get(variant)
            if not series:
                continue
            aligned = _align([_ema(s, smoothing) for _, s in series])
            mean = aligned.mean(axis=1)
            component = ", ".join(sorted({name for name, _ in series}))
            label = f"{variant}: {component}" if panel == "iou" else variant
            ax.plot(mean.index, mean.to_numpy(), color=colors[variant], lw=1.6, label=label)
            if aligned.shape[1] >= 2:
                if band == "minmax":
                    lo, hi = aligned.min(axis=1), aligned.max(axis=1)
                else:
                    std = aligned.std(axis=1, ddof=1)
                    lo, hi = mean - std, mean + std
                ax.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color=colors[variant], alpha=0.2, lw=0)
        ax.set_title(PANEL_TITLES.get(panel, panel), fontsize=11)
        ax.set_xlabel("training step")
        ax.set_ylabel("reward (weighted sum)" if panel == "total" else "reward (batch mean)")
        ax.grid(True, alpha=0.3)
        if panel == "iou":
            ax.legend(title="variant: reward", fontsize=8, title_fontsize=8, loc="best")
    handles = [
        Line2D([], [], color=colors[v], lw=2, label=f"{v} ({seeds[v]} seed{'s' * (seeds[v] != 1)})") for v in variants
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 6), title="reward variant", frameon=False
    )
    smooth = f"EMA smoothing {smoothing:g}" if smoothing else "raw (no smoothing)"
    fig.suptitle(f"GRPO training rewards: line = mean over seeds, band = {BANDS[band]}; {smooth}", fontsize=12)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    log.info("wrote %s (%d panels, %d variants)", out, len(order), len(variants))
    return fig


def _collect_curves(
    runs: pd.DataFrame, include_failed: bool
) -> tuple[dict[str, dict[str, list[tuple[str, pd.Series]]]], dict[str, int]]:
    curves: dict[str, dict[str, list[tuple[str, pd.Series]]]] = {}
    counts: dict[str, int] = {}
    if runs.empty:
        return curves, counts
    show_model = runs["model"].astype(str).nunique() > 1
    for _, run in runs.iterrows():
        if not run["has_history"] or (run["status"] != OK and not include_failed):
            continue
        history = load_history(run["run_dir"])
        if history.empty:
            continue
        variant = _variant_label(run, show_model)
        counts[variant] = counts.get(variant, 0) + 1
        for key in history.columns:
            series = history[key].dropna()
            if series.empty:
                continue
            panel, component = _panel_of(key)
            curves.setdefault(panel, {}).setdefault(variant, []).append((component, series))
    return curves, counts
    return curves


def _variant_label(run: Mapping[str, Any], show_model: bool) -> str:
    label = str(run["reward"]) if run["method"] == "grpo" else f"{run['method']} {run['reward']}"
    if run["from_adapter"]:
        label += " (from adapter)"
    return f"{run['model']}: {label}" if show_model else label


def _ema(series: pd.Series, smoothing: float) -> pd.Series:
    return series if smoothing == 0 else series.ewm(alpha=1 - smoothing, adjust=False).mean()


def _align(series: Sequence[pd.Series]) -> pd.DataFrame:
    """Seeds side by side on the union of their steps, each interpolated (by step) inside its own range only."""
    frame = pd.concat([s.rename(i) for i, s in enumerate(series)], axis=1).sort_index()
    return frame.interpolate(method="index", limit_area="inside")


# ------------------------------------------------------------------------------------------------------- report
def write_report(
    sweep_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    smoothing: float = 0.0,
    show_study: bool = True,
    band: str = "minmax",
) -> dict[str, Any]:
    """Write ``report.md``, ``report.csv``, ``runs.csv`` and (when a run logged rewards) ``reward_curves.png``.

    Args:
        sweep_dir: folder holding the run dirs (see :func:`collect_runs`).
        out_dir: where to write; ``sweep_dir`` by default.
        smoothing: EMA weight of the reward curves (0 = raw).
        show_study: put the study's reported Table 1 beside ours.
        band: spread shown around the curves: ``minmax`` or ``std``.

    Returns:
        ``report_md``, ``report_csv``, ``runs_csv``, ``reward_curves_png`` (None when not drawn): paths as strings;
        ``n_runs``, ``n_ok``, ``n_failed``, ``failed`` (run dirs), ``markdown`` (the text of report.md).

    Raises:
        FileNotFoundError: ``sweep_dir`` does not exist or holds no run dir.
    """
    root = Path(sweep_dir)
    runs = collect_runs(root)
    if runs.empty:
        raise FileNotFoundError(
            f"no run dirs under sweep_dir {str(root)!r}: expected folders with {CONFIG_FILE} (with method.name) "
            f"and {METRICS_FILE}"
        )
    out = Path(out_dir) if out_dir is not None else root
    out.mkdir(parents=True, exist_ok=True)
    ours, refs, extra_keys = table1(runs), references_table(runs), extra_metrics(runs)
    extra = table1(runs, extra_keys) if extra_keys else None
    study = study_table() if show_study else None

    png: Path | None = out / "reward_curves.png"
    if reward_curves(runs, out / "reward_curves.png", smoothing=smoothing, band=band) is None:
        png = None

    frames = [ours.assign(kind="ours"), refs.assign(kind="reference")]
    if study is not None:
        frames.append(study.assign(kind="study"))
    csv = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    csv = csv[["kind", *[c for c in csv.columns if c != "kind"]]]
    paths = {"report_csv": out / "report.csv", "runs_csv": out / "runs.csv", "report_md": out / "report.md"}
    csv.to_csv(paths["report_csv"], index=False)
    runs.to_csv(paths["runs_csv"], index=False)

    failed = runs[runs["status"] != OK]
    markdown = _markdown(root, runs, ours, refs, extra, study, failed, png, smoothing, band)
    paths["report_md"].write_text(markdown, encoding="utf-8")
    log.info("wrote %s (%d runs, %d failed)", paths["report_md"], len(runs), len(failed))
    return {
        **{k: str(v) for k, v in paths.items()},
        "reward_curves_png": str(png) if png is not None else None,
        "n_runs": len(runs),
        "n_ok": len(runs) - len(failed),
        "n_failed": len(failed),
        "failed": failed["run_dir"].tolist(),
        "markdown": markdown,
    }


def _markdown(
    root: Path,
    runs: pd.DataFrame,
    ours: pd.DataFrame,
    refs: pd.DataFrame,
    extra: pd.DataFrame | None,
    study: pd.DataFrame | None,
    failed: pd.DataFrame,
    png: Path | None,
    smoothing: float,
    band: str,
) -> str:
    n_ok = len(runs) - len(failed)
    parts = [
        f"# Report: {root}",
        f"{len(runs)} runs: {n_ok} finished, {len(failed)} failed"
        + (" (listed below, left out of the tables)." if len(failed) else "."),
        "## Table 1 (ours)",
        "Values x100. Cells: mean ± half-width of the 95% t-interval over seeds when n ≥ 2; "
        "mean [lo, hi] = the single run's 95% bootstrap CI over test samples when n = 1; – = not evaluated. "
        "n = finished runs (seeds).",
        to_markdown(ours),
    ]
    if study is not None:
        parts += [
            f"### Table 1 of the {STUDY_LABEL}",
            "The study's published numbers (single runs, no CI), not produced by this project.",
            to_markdown(study),
        ]
    if not refs.empty:
        shown = ["model", "n", *(h for _, h in METRICS if (refs[h] != MISSING).any())]
        parts += [
            "### Trivial references",
            "Scores of answers that need no model, on the same test splits (one value per seed).",
            to_markdown(refs, shown),
        ]
    if extra is not None:
        parts += ["### Other evaluation metrics", "Same aggregation as Table 1.", to_markdown(extra)]
    if png is not None:
        smooth = f"EMA smoothing {smoothing:g}" if smoothing else "raw values"
        parts += [
            "## Reward curves",
            f"GRPO training rewards per step ({smooth}): line = mean over seeds, band = {BANDS[band]}. "
            "Rewards of different variants are on different scales (v1 adds a coordinate-range bonus); compare "
            "shapes, not levels.",
            f"![reward curves]({png.name})",
        ]
    parts.append(f"## Failed runs ({len(failed)})")
    if len(failed):
        lines = [
            f"- `{_relative(Path(r['run_dir']), root)}`: {_describe(r)}: {r['error']}" for _, r in failed.iterrows()
        ]
        parts.append("\n".join(lines))
    else:
        parts.append(f"None: every run has its {METRICS_FILE}.")
    listing = runs.assign(run=[_relative(Path(d), root) for d in runs["run_dir"]])
    metric_cols = {f"eval/{key}": header for key, header in METRICS if f"eval/{key}" in runs.columns}
    listing = listing.rename(columns=metric_cols)
    parts += [
        "## Runs",
        to_markdown(listing, ["run", "method", "reward", "seed", "status", *metric_cols.values()]),
    ]
    return "\n\n".join(parts) + "\n"


def _describe(run: Mapping[str, Any]) -> str:
    reward = "" if run["reward"] == NO_REWARD else f" {run['reward']}"
    return f"{run['method']}{reward}, seed {run['seed']}"


def _relative(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."
