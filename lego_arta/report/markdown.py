"""Markdown of a report: tables rendered to GitHub-flavoured markdown, and the report.md text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd

from lego_arta.markdown_table import markdown_table
from lego_arta.report.ablation import SCALES, Comparison, ablation_table, verdict
from lego_arta.report.collect import NO_REWARD
from lego_arta.report.curves import BANDS
from lego_arta.report.stats import METRIC_RANGE, METRICS, MISSING, TOO_WIDE
from lego_arta.report.study import STUDY_LABEL
from lego_arta.report.versus import COLUMNS, row_verdicts
from lego_arta.runs import METRICS_FILE

ABLATION_ALIGN: Final = "llrrrrrr"  # the arm and scale left, the numbers right


def to_markdown(table: pd.DataFrame, columns: Sequence[str] | None = None, align: str | None = None) -> str:
    """A data frame's display columns (the names without ``/``, or ``columns``) as a markdown table, written by
    :func:`lego_arta.markdown_table.markdown_table` (``align`` as there).

    >>> table = pd.DataFrame({"model": ["base, few-shot"], "n": [3], "IoU": ["60.82 ± 1.00"], "iou/n": [3]})
    >>> print(to_markdown(table))
    | model          |   n |          IoU |
    |:---------------|----:|-------------:|
    | base, few-shot |   3 | 60.82 ± 1.00 |
    """
    columns = list(columns) if columns is not None else [c for c in table.columns if "/" not in str(c)]
    return markdown_table(columns, zip(*(table[c].tolist() for c in columns), strict=True), align)


def render(
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
    comparisons: Sequence[tuple[str, str, Comparison]] = (),
    trivial: pd.DataFrame | None = None,
    baseline: pd.DataFrame | None = None,
    signal: pd.DataFrame | None = None,
    val_png: Path | None = None,
) -> str:
    n_ok = len(runs) - len(failed)
    parts = [
        f"# Report: {root}",
        f"{len(runs)} runs: {n_ok} finished, {len(failed)} failed"
        + (" (listed below, left out of the tables)." if len(failed) else "."),
        "## Table 1 (ours)",
        "Values x100. Cells: mean ± std over seeds (n = seeds with a value) and [lo, hi] = the 95% t-interval over "
        f'seeds when n ≥ 2 ("{TOO_WIDE}" when its half-width exceeds the metric\'s range, {METRIC_RANGE:g}); '
        "mean [lo, hi] = the single run's 95% bootstrap CI over test samples when n = 1; – = not evaluated. "
        "n = seeds with a finished run.",
        to_markdown(ours),
    ]
    repeats = ours[ours["runs/finished"] > ours["n"]] if "runs/finished" in ours else ours.iloc[:0]
    if len(repeats):
        parts.append(
            "Counted once per seed: "
            + "; ".join(f"{r['model']}: {r['runs/finished']} runs, {r['n']} seeds" for _, r in repeats.iterrows())
            + ". Runs of one row and one seed differ only in settings the method ignores (e.g. `reward` for SFT and "
            "the few-shot baseline), so they are the same run, not more seeds."
        )
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
    if trivial is not None and len(trivial):
        parts += [
            "## Against the trivial answers",
            "Each trained run against the answers that need no model, on the same test samples: model − reference "
            "(x100) with its 95% paired bootstrap CI over test samples (`vs/<reference>/<metric>` in metrics.json). "
            "A run beats a reference when the CI's lower bound is above 0; a row beats it when every seed does.",
            versus_markdown(trivial),
        ]
    if baseline is not None and len(baseline):
        parts += [
            "## Against SFT",
            "Each trained run other than SFT (GRPO) against its SFT run (the one whose adapter or fine-tuned model it "
            "started from, else the SFT run of its seed), on the test samples both answered, paired by sample id: "
            "GRPO − SFT (x100) with its 95% paired bootstrap CI over test samples (the run's `eval.bootstrap`). A run "
            "beats SFT when the CI's lower bound is above 0; a row beats it when every seed does.",
            versus_markdown(baseline),
        ]
    if png is not None:
        smooth = f"EMA smoothing {smoothing:g}" if smoothing else "raw values"
        parts += [
            "## Reward curves",
            f"GRPO training rewards per step ({smooth}): line = mean over seeds, band = {BANDS[band]}. "
            "Rewards of different variants are on different scales (v1 adds a coordinate-range bonus); compare "
            "shapes, not levels.",
            f"![reward curves]({png.name})",
        ]
    if val_png is not None:
        parts += [
            "## Validation during training",
            "Each trained run's headline metrics (x100) on training records held out for validation "
            "(`eval.val`), at every `eval.val.every_steps` steps: line = mean over seeds, band = min–max. "
            "`val/best_step` in a run's metrics.json names its kept best checkpoint.",
            f"![validation curves]({val_png.name})",
        ]
    if signal is not None and len(signal):
        parts += [
            "## What moved the advantage",
            "Per GRPO run, over its training: `no advantage` = mean share of groups whose summed rewards were equal "
            "(TRL's `frac_reward_zero_std`: such a group gives no gradient); `varies: <component>` = mean share of "
            "the groups a component applies to in which it was not constant (only there can it move the advantage); "
            "`on grid` = share of box answers with every raw coordinate <= 105 (read on the 0-100 grid, not as "
            "pixels) and `entropy` = the policy's entropy, each as the mean over the first quarter of steps → the "
            "last quarter.",
            to_markdown(signal),
        ]
    if comparisons:
        parts += ["## Reward ablation: v2 against v1", ablation_markdown(comparisons)]
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


def versus_markdown(lines: pd.DataFrame) -> str:
    """Comparisons of :mod:`lego_arta.report.versus` as a table (a line per run, task and reference) and a plain
    verdict per Table 1 row, task and reference."""
    verdicts = "\n".join(f"- {v}." for v in row_verdicts(lines))
    return f"{to_markdown(lines, list(COLUMNS))}\n\nVerdicts:\n\n{verdicts}"


def ablation_markdown(comparisons: Sequence[tuple[str, str, Comparison]]) -> str:
    """The ablation's comparisons (:func:`lego_arta.report.ablation.ablation`) as a table
    (:func:`lego_arta.report.ablation.ablation_table`) and a verdict per line."""
    verdicts = [f"- {label}, {SCALES[scale]}: {verdict(c)}." for label, scale, c in comparisons]
    note = (
        "One value per seed: the matched IoU (no bonus, the scale both rewards share) averaged over the last quarter "
        "of training steps, and the test IoU. Two-sided tests; the exact permutation test relabels the seeds in "
        "every possible way."
    )
    return "\n\n".join([note, to_markdown(ablation_table(comparisons), align=ABLATION_ALIGN), "\n".join(verdicts)])


def _describe(run: Mapping[str, Any]) -> str:
    reward = "" if run["reward"] == NO_REWARD else f" {run['reward']}"
    return f"{run['method']}{reward}, seed {run['seed']}"


def _relative(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."
