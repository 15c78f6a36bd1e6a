"""Reward-curve figures of a sweep's GRPO runs (the study's Figure 1 layout): a line per variant, bands over seeds.

Beside the rewards, the figure shows what decides whether GRPO can learn from them: the share of groups whose
summed reward is equal (TRL's ``frac_reward_zero_std``: no advantage, no gradient), per component the share of
groups in which it varies (``rewards/<name>/frac_varying_groups``), the share of answers on the 0-100 grid
(``frame/grid_share``), the policy's entropy and TRL's clipped ratio.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd
from matplotlib.figure import Figure  # used without pyplot: no global state, no display, Agg canvas for files
from matplotlib.lines import Line2D

from lego_arta.report.collect import OK, STARTS, natural_key
from lego_arta.runs import HISTORY_FILE, read_jsonl

log = logging.getLogger(__name__)

# reward-curve panels: history key -> panel; the total `reward` first, then the components in this order
PANEL_TITLES: Final[dict[str, str]] = {
    "total": "Total reward (weighted sum)",
    "format": "Format (<think> + <answer> structure)",
    "iou": "IoU (object detection)",
    "iou_matched": "Matched IoU, no bonus (one scale for every variant)",
    "label_rouge": "Label ROUGE-1 (object detection)",
    "state": "State Yes/No (state detection)",
    "grounding": "BLEU-4 + ROUGE-1 (grounding)",
    "grounding_semantic": "Semantic similarity (grounding)",
    "zero_std": "Groups with equal rewards: no advantage",
    "varying_format": "Groups where format varies",
    "varying_iou": "Groups where IoU varies",
    "varying_label_rouge": "Groups where label ROUGE varies",
    "varying_state": "Groups where state varies",
    "varying_grounding": "Groups where grounding varies",
    "varying_grounding_semantic": "Groups where semantic similarity varies",
    "grid_share": "Box answers on the 0-100 grid",
    "entropy": "Policy entropy (completion tokens)",
    "clip_ratio": "Clipped ratio (TRL clip_ratio/region_mean)",
}
MATCHED_IOU: Final[str] = "iou/matched"
GRID_SHARE: Final[str] = "frame/grid_share"
ZERO_STD: Final[str] = "frac_reward_zero_std"
VARYING: Final[str] = "/frac_varying_groups"  # rewards/<name>/frac_varying_groups
# the signal keys (history key -> panel) plotted beside the rewards; they do not make a row a reward row (SFT logs
# entropy too)
SIGNAL_KEYS: Final[dict[str, str]] = {
    ZERO_STD: "zero_std",
    GRID_SHARE: "grid_share",
    "entropy": "entropy",
    "clip_ratio/region_mean": "clip_ratio",
}
SHARE_PANELS: Final = frozenset({"zero_std", "grid_share", "clip_ratio"})
BANDS: Final[dict[str, str]] = {"minmax": "min–max over seeds", "std": "±1 std over seeds"}


def load_history(run_dir: str | Path) -> pd.DataFrame:
    """The reward rows of a run's ``history.jsonl`` as a frame indexed by ``step`` (float columns, NaN for null): the
    reward keys and the signal keys (:data:`SIGNAL_KEYS`, ``rewards/<name>/frac_varying_groups``).

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
    keep = [c for c in frame.columns if _is_reward_key(c) or _is_signal_key(c)]
    return frame[keep].apply(pd.to_numeric, errors="coerce").astype(float)


def _is_reward_key(key: str) -> bool:
    # iou/matched: the bare IoU both IoU rewards log beside themselves (v1's curve includes its range bonus)
    return key in ("reward", MATCHED_IOU) or (key.startswith("rewards/") and key.endswith("/mean"))


def _is_signal_key(key: str) -> bool:
    return key in SIGNAL_KEYS or (key.startswith("rewards/") and key.endswith(VARYING))


def _panel_of(key: str) -> tuple[str, str]:
    """History key -> (panel, component name); ``iou_v1``, ``iou_v2``, ... share the ``iou`` panels."""
    if key == "reward":
        return "total", "reward"
    if key == MATCHED_IOU:
        return "iou_matched", "iou"
    if key in SIGNAL_KEYS:
        return SIGNAL_KEYS[key], key
    varying = key.endswith(VARYING)
    name = key.removeprefix("rewards/").removesuffix(VARYING if varying else "/mean")
    panel = "iou" if re.fullmatch(r"iou(_.+)?", name) else name
    return (f"varying_{panel}" if varying else panel), name


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
    variants = sorted({v for by_variant in curves.values() for v in by_variant}, key=natural_key)
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
            label = f"{variant}: {component}" if panel in ("iou", "varying_iou") else variant
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
        ax.set_ylabel(_ylabel(panel))
        ax.grid(True, alpha=0.3)
        if panel in ("iou", "varying_iou"):
            ax.legend(title="variant: reward", fontsize=8, title_fontsize=8, loc="best")
    handles = [
        Line2D([], [], color=colors[v], lw=2, label=f"{v} ({seeds[v]} seed{'s' * (seeds[v] != 1)})") for v in variants
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 6), title="reward variant", frameon=False
    )
    smooth = f"EMA smoothing {smoothing:g}" if smoothing else "raw (no smoothing)"
    fig.suptitle(
        f"GRPO training rewards and signal: line = mean over seeds, band = {BANDS[band]}; {smooth}", fontsize=12
    )
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


VAL_PREFIX: Final[str] = "val/"


def load_validation(run_dir: str | Path) -> pd.DataFrame:
    """The validation rows of a run's ``history.jsonl`` (``val/<metric>`` by ``step``, x100); empty without them."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return pd.DataFrame()
    rows = [r for r in read_jsonl(path) if "step" in r and any(k.startswith(VAL_PREFIX) for k in r)]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).drop_duplicates("step", keep="last").set_index("step").sort_index()
    return frame[[c for c in frame.columns if c.startswith(VAL_PREFIX)]].apply(pd.to_numeric, errors="coerce")


def validation_curves(runs: pd.DataFrame, out_png: str | Path, *, metrics: Sequence[str]) -> Figure | None:
    """Plot each trained run's validation metrics over its training steps to ``out_png``: a panel per metric of
    ``metrics`` that some run logged as ``val/<metric>``, a line per Table 1 row (mean over seeds, min-max band).
    None (nothing written) when no run validated."""
    series: dict[str, dict[str, list[pd.Series]]] = {}
    show_model = not runs.empty and runs["model"].astype(str).nunique() > 1
    for _, run in runs.iterrows():
        if run["method"] == "none" or run["status"] != OK:
            continue
        history = load_validation(run["run_dir"])
        label = _variant_label(run, show_model) if run["method"] == "grpo" else f"{run['method']}"
        for metric in metrics:
            key = f"{VAL_PREFIX}{metric}"
            if key in history and not history[key].dropna().empty:
                series.setdefault(metric, {}).setdefault(label, []).append(history[key].dropna())
    if not series:
        return None
    panels = [m for m in metrics if m in series]
    labels = sorted({label for by_label in series.values() for label in by_label}, key=natural_key)
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    fig = Figure(figsize=(5.2 * len(panels), 4.0), dpi=150, layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(panels), squeeze=False).ravel(), panels, strict=True):
        for label, runs_series in series[metric].items():
            aligned = _align(runs_series)
            mean = aligned.mean(axis=1)
            ax.plot(
                mean.index, mean.to_numpy(), marker="o", color=colors[label], label=f"{label} ({len(runs_series)})"
            )
            if aligned.shape[1] >= 2:
                low, high = aligned.min(axis=1).to_numpy(), aligned.max(axis=1).to_numpy()
                ax.fill_between(mean.index, low, high, color=colors[label], alpha=0.2, lw=0)
        ax.set_title(f"val/{metric}", fontsize=11)
        ax.set_xlabel("training step")
        ax.set_ylabel("x100, held-out training records")
        ax.grid(True, alpha=0.3)
        ax.legend(title="run (seeds)", fontsize=8, title_fontsize=8, loc="best")
    fig.suptitle("Validation during training: line = mean over seeds, band = min–max over seeds", fontsize=12)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    log.info("wrote %s (%d panels)", out, len(panels))
    return fig


def _ylabel(panel: str) -> str:
    if panel == "total":
        return "reward (weighted sum)"
    if panel in SHARE_PANELS or panel.startswith("varying_"):
        return "share (batch)"
    return "nats per token" if panel == "entropy" else "reward (batch mean)"


def _variant_label(run: Mapping[str, Any], show_model: bool) -> str:
    label = str(run["reward"]) if run["method"] == "grpo" else f"{run['method']} {run['reward']}"
    if run["start"]:
        label += f" (from {STARTS.get(run['start'], run['start'])})"
    return f"{run['model']}: {label}" if show_model else label


def _ema(series: pd.Series, smoothing: float) -> pd.Series:
    return series if smoothing == 0 else series.ewm(alpha=1 - smoothing, adjust=False).mean()


def _align(series: Sequence[pd.Series]) -> pd.DataFrame:
    """Seeds side by side on the union of their steps, each interpolated (by step) inside its own range only."""
    frame = pd.concat([s.rename(i) for i, s in enumerate(series)], axis=1).sort_index()
    return frame.interpolate(method="index", limit_area="inside")
