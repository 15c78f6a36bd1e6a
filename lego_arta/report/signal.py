"""What moved GRPO's advantage, per run: the report's table of the signal its rewards gave.

GRPO learns from a group of ``num_generations`` completions of one prompt only when their rewards differ. Per GRPO
run, over its training (``history.jsonl``): the share of groups with equal summed rewards (TRL's
``frac_reward_zero_std``: no advantage, no gradient), per reward component the share of its groups in which it varies
(``rewards/<name>/frac_varying_groups``: only there can it move the advantage), and how the share of box answers on
the 0-100 grid (``frame/grid_share``) and the policy's entropy moved from the first to the last quarter of steps.
"""

from __future__ import annotations

import math
from typing import Any, Final

import pandas as pd

from lego_arta.report.collect import OK
from lego_arta.report.curves import GRID_SHARE, VARYING, ZERO_STD, load_history

QUARTER: Final = 0.25


def signal_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per finished GRPO run with a history: ``reward``, ``seed``, ``steps``, ``no advantage`` (mean share of
    groups with equal rewards), ``varies: <component>`` (mean share of groups in which it varies), ``on grid`` and
    ``entropy`` (mean over the first quarter of steps → over the last); first ``experiment`` when the runs come from
    several. Sorted by experiment, reward and seed; empty when no run qualifies.

    Args:
        runs: the frame of :func:`lego_arta.report.collect.collect_runs`.
    """
    if runs.empty:
        return pd.DataFrame()
    grpo = runs[(runs["method"] == "grpo") & (runs["status"] == OK) & runs["has_history"]]
    rows: list[dict[str, Any]] = []
    several = grpo["experiment_name"].nunique() > 1  # runs of several experiments (paths) reported together
    for _, run in grpo.sort_values(["experiment_name", "reward", "seed"]).iterrows():
        history = load_history(run["run_dir"])
        if history.empty:
            continue
        row: dict[str, Any] = {"experiment": run["experiment_name"]} if several else {}
        row |= {"reward": run["reward"], "seed": run["seed"], "steps": len(history)}
        row["no advantage"] = _mean(history, ZERO_STD)
        for key in sorted(c for c in history.columns if c.endswith(VARYING)):
            row[f"varies: {key.removeprefix('rewards/').removesuffix(VARYING)}"] = _mean(history, key)
        row["on grid"] = _first_to_last(history, GRID_SHARE)
        row["entropy"] = _first_to_last(history, "entropy")
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(history: pd.DataFrame, key: str) -> float:
    return float(history[key].mean()) if key in history else math.nan


def _first_to_last(history: pd.DataFrame, key: str) -> str:
    """``"a → b"``: the mean over the first quarter of logged steps and over the last; ``–`` without values."""
    series = history[key].dropna() if key in history else pd.Series(dtype=float)
    if series.empty:
        return "–"
    first, end = series.index.min(), series.index.max()
    span = QUARTER * (end - first)
    early = series[series.index <= first + span].mean()
    late = series[series.index >= end - span].mean()
    return f"{early:.2f} → {late:.2f}"
