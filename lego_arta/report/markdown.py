"""Markdown of a report: tables rendered to GitHub-flavoured markdown, and the report.md text."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd

from lego_arta.markdown_table import markdown_table
from lego_arta.report.ablation import MAX_SEEDS, SCALES, Comparison, ablation_table, verdict
from lego_arta.report.collect import NO_REWARD
from lego_arta.report.curves import BANDS
from lego_arta.report.generalisation import Finding, generalisation_table, generalisation_verdicts
from lego_arta.report.stats import METRIC_RANGE, METRICS, MISSING, TOO_WIDE
from lego_arta.report.study import STUDY_LABEL
from lego_arta.report.versus import COLUMNS, row_verdicts
from lego_arta.runs import METRICS_FILE, PROVENANCE_FILE

MACHINE_RUNS_SHOWN: Final = 4  # run dirs named per machine in the report; more are shortened to first, ..., last
ABLATION_ALIGN: Final = "llrrrrrrrr"  # the arm and scale left, the numbers right


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


@dataclass(frozen=True)
class ReportParts:
    """What report.md is made of: the sweep's runs and the tables and figures :func:`lego_arta.report.write_report`
    builds from them. A part left ``None`` (or empty) leaves its section out."""

    root: Path  # the sweep dir: the report's title; run dirs are shown relative to it
    runs: pd.DataFrame  # every run dir, finished or failed (collect_runs)
    failed: pd.DataFrame  # the failed ones among them
    ours: pd.DataFrame  # Table 1 (stats.table1)
    refs: pd.DataFrame  # the trivial references' rows (stats.references_table)
    extra: pd.DataFrame | None = None  # the other evaluation metrics, aggregated as Table 1
    study: pd.DataFrame | None = None  # the study's own Table 1
    trivial: pd.DataFrame | None = None  # trained runs against the trivial answers (versus.trivial_lines)
    baseline: pd.DataFrame | None = None  # trained runs against their SFT run (versus.baseline_lines)
    ood: pd.DataFrame | None = None  # trained runs against their start on the eval.extra sets (versus.start_lines)
    findings: list[Finding] | None = None  # experiment=generalisation's questions (generalisation.generalisation)
    reward_png: Path | None = None  # the reward curves figure
    smoothing: float = 0.0  # its EMA weight (0: raw values)
    band: str = "minmax"  # its band around the mean over seeds: a key of curves.BANDS
    val_png: Path | None = None  # the validation curves figure
    signal: pd.DataFrame | None = None  # what moved GRPO's advantage (signal.signal_table)
    comparisons: Sequence[tuple[str, str, Comparison]] = ()  # the reward ablation (ablation.ablation)


def title_section(parts: ReportParts) -> list[str]:
    """The title (the sweep dir) and how many runs finished and failed."""
    n_failed = len(parts.failed)
    return [
        f"# Report: {parts.root}",
        f"{len(parts.runs)} runs: {len(parts.runs) - n_failed} finished, {n_failed} failed"
        + (" (listed below, left out of the tables)." if n_failed else "."),
    ]


def table1_section(parts: ReportParts) -> list[str]:
    """Table 1 with how its cells read, and the rows whose repeated runs counted once per seed."""
    ours = parts.ours
    out = [
        "## Table 1 (ours)",
        "Values x100. Cells: mean ± std over seeds (n = seeds with a value) and [lo, hi] = the 95% t-interval over "
        f'seeds when n ≥ 2 ("{TOO_WIDE}" when its half-width exceeds the metric\'s range, {METRIC_RANGE:g}); '
        "mean [lo, hi] = the single run's 95% bootstrap CI over test samples when n = 1; – = not evaluated. "
        "n = seeds with a finished run.",
        to_markdown(ours),
    ]
    repeats = ours[ours["runs/finished"] > ours["n"]] if "runs/finished" in ours else ours.iloc[:0]
    if len(repeats):
        out.append(
            "Counted once per seed: "
            + "; ".join(f"{r['model']}: {r['runs/finished']} runs, {r['n']} seeds" for _, r in repeats.iterrows())
            + ". Runs of one row and one seed differ only in settings the method ignores (e.g. `reward` for SFT and "
            "the few-shot baseline), so they are the same run, not more seeds."
        )
    return out


def machines_section(parts: ReportParts) -> list[str]:
    """What produced the digits: each machine and numeric path (``provenance.json``) with its runs."""
    runs = parts.runs
    lines = []
    for machine, group in runs.groupby(runs["machine"].fillna(""), sort=True):
        dirs = [_relative(Path(d), parts.root) for d in group["run_dir"]]
        names = ", ".join(dirs) if len(dirs) <= MACHINE_RUNS_SHOWN else f"{', '.join(dirs[:2])}, ..., {dirs[-1]}"
        what = machine or f"not recorded (runs made before {PROVENANCE_FILE})"
        lines.append(f"- {what}: {len(group)} run{'s' if len(group) != 1 else ''} ({names})")
    return [
        "### Machines",
        "The CPU (or GPU), torch's CPU capability, BLAS, compute threads, the kernel settings in the environment and "
        "the numeric path: a hash of each kernel family's output on fixed inputs. Runs on other numeric paths round "
        "differently; the ablation compares seeds within one path.",
        "\n".join(lines),
    ]


def study_section(parts: ReportParts) -> list[str]:
    """The study's published Table 1, labelled as the study's."""
    if parts.study is None:
        return []
    return [
        f"### Table 1 of the {STUDY_LABEL}",
        "The study's published numbers (single runs, no CI), not produced by this project.",
        to_markdown(parts.study),
    ]


def references_section(parts: ReportParts) -> list[str]:
    """The trivial references' scores, in the metrics they have a value for."""
    refs = parts.refs
    if refs.empty:
        return []
    shown = ["model", "n", *(h for _, h in METRICS if (refs[h] != MISSING).any())]
    return [
        "### Trivial references",
        "Scores of answers that need no model, on the same test splits (one value per seed).",
        to_markdown(refs, shown),
    ]


def extra_section(parts: ReportParts) -> list[str]:
    """The evaluation metrics outside Table 1, aggregated as Table 1."""
    if parts.extra is None:
        return []
    return ["### Other evaluation metrics", "Same aggregation as Table 1.", to_markdown(parts.extra)]


def trivial_section(parts: ReportParts) -> list[str]:
    """Each trained run against the answers that need no model, with the verdicts."""
    if parts.trivial is None or not len(parts.trivial):
        return []
    return [
        "## Against the trivial answers",
        "Each trained run against the answers that need no model, on the same test samples: model − reference "
        "(x100) with its 95% paired bootstrap CI over test samples (`vs/<reference>/<metric>` in metrics.json). "
        "A run beats a reference when the CI's lower bound is above 0; a row beats it when every seed does.",
        versus_markdown(parts.trivial),
    ]


def baseline_section(parts: ReportParts) -> list[str]:
    """Each GRPO run against the SFT run it started from, with the verdicts."""
    if parts.baseline is None or not len(parts.baseline):
        return []
    return [
        "## Against SFT",
        "Each trained run other than SFT (GRPO) against its SFT run (the one whose adapter or fine-tuned model it "
        "started from, else the SFT run of its seed), on the test samples both answered, paired by sample id: "
        "GRPO − SFT (x100) with its 95% paired bootstrap CI over test samples (the run's `eval.bootstrap`). A run "
        "beats SFT when the CI's lower bound is above 0; a row beats it when every seed does.",
        versus_markdown(parts.baseline),
    ]


def ood_section(parts: ReportParts) -> list[str]:
    """Each trained run against the model it started from on the out-of-domain sets (``eval.extra``)."""
    if parts.ood is None or not len(parts.ood):
        return []
    return [
        "## Out of domain: against the start model",
        "Each trained run against the run of the model it started from (the untrained model, or the SFT run or "
        "pre-stage whose weights it loaded) on each `eval.extra` set (the `task` column), paired by sample id: "
        "trained − start (x100) with its 95% paired bootstrap CI. A CI above 0: training gained on that set; below "
        "0: it lost general grounding the start had. Table 1's `IoU (<set>)` / `Acc@0.5 (<set>)` columns hold the "
        "values (Acc@0.5: the share of samples whose best-matched box has IoU >= 0.5, lmms-eval's rule; VLM-R1 "
        "counts the first box at IoU > 0.5).",
        versus_markdown(parts.ood),
    ]


def reward_curves_section(parts: ReportParts) -> list[str]:
    """The reward curves figure and how to read it."""
    if parts.reward_png is None:
        return []
    smooth = f"EMA smoothing {parts.smoothing:g}" if parts.smoothing else "raw values"
    return [
        "## Reward curves",
        f"GRPO training rewards per step ({smooth}): line = mean over seeds, band = {BANDS[parts.band]}. "
        "Rewards of different variants are on different scales (v1 adds a coordinate-range bonus); compare "
        "shapes, not levels.",
        f"![reward curves]({parts.reward_png.name})",
    ]


def validation_section(parts: ReportParts) -> list[str]:
    """The validation curves figure and how to read it."""
    if parts.val_png is None:
        return []
    return [
        "## Validation during training",
        "Each trained run's headline metrics (x100) on training records held out for validation "
        "(`eval.val`), at every `eval.val.every_steps` steps: line = mean over seeds, band = min–max. "
        "`val/best_step` in a run's metrics.json names its kept best checkpoint.",
        f"![validation curves]({parts.val_png.name})",
    ]


def signal_section(parts: ReportParts) -> list[str]:
    """What moved GRPO's advantage, per run."""
    if parts.signal is None or not len(parts.signal):
        return []
    return [
        "## What moved the advantage",
        "Per GRPO run, over its training: `no advantage` = mean share of groups whose summed rewards were equal "
        "(TRL's `frac_reward_zero_std`: such a group gives no gradient); `varies: <component>` = mean share of "
        "the groups a component applies to in which it was not constant (only there can it move the advantage); "
        "`on grid` = share of box answers with every raw coordinate <= 105 (read on the 0-100 grid, not as "
        "pixels) and `entropy` = the policy's entropy, each as the mean over the first quarter of steps → the "
        "last quarter.",
        to_markdown(parts.signal),
    ]


def ablation_section(parts: ReportParts) -> list[str]:
    """The reward ablation's tests, v2 against v1."""
    if not parts.comparisons:
        return []
    return ["## Reward ablation: v2 against v1", ablation_markdown(parts.comparisons)]


def generalisation_section(parts: ReportParts) -> list[str]:
    """The pre-stage questions of ``experiment=generalisation``, with their tests and verdicts."""
    if not parts.findings:
        return []
    verdicts = "\n".join(f"- {v}." for v in generalisation_verdicts(parts.findings))
    return [
        "## Generalisation: what a pre-stage gives, what training forgets",
        "One value per seed of each arm (a chain stage `<arm>_s<seed>`), the endpoint named before the runs; B − A "
        "with Welch's 95% CI and the exact permutation test over seeds (two-sided), as the reward ablation's. "
        "`pre-stage`: the pre-stage's own value of the endpoint (one run).",
        to_markdown(generalisation_table(parts.findings)),
        verdicts,
    ]


def failed_section(parts: ReportParts) -> list[str]:
    """The failed runs, each with its run dir, method and last error line."""
    failed = parts.failed
    if not len(failed):
        return [f"## Failed runs ({len(failed)})", f"None: every run has its {METRICS_FILE}."]
    lines = [
        f"- `{_relative(Path(r['run_dir']), parts.root)}`: {_describe(r)}: {r['error']}" for _, r in failed.iterrows()
    ]
    return [f"## Failed runs ({len(failed)})", "\n".join(lines)]


def runs_section(parts: ReportParts) -> list[str]:
    """Every run: its dir, method, reward, seed, status and the study's metrics."""
    runs = parts.runs
    listing = runs.assign(run=[_relative(Path(d), parts.root) for d in runs["run_dir"]])
    metric_cols = {f"eval/{key}": header for key, header in METRICS if f"eval/{key}" in runs.columns}
    listing = listing.rename(columns=metric_cols)
    return ["## Runs", to_markdown(listing, ["run", "method", "reward", "seed", "status", *metric_cols.values()])]


# report.md's sections, in order
SECTIONS: Final[tuple[Callable[[ReportParts], list[str]], ...]] = (
    title_section,
    table1_section,
    machines_section,
    study_section,
    references_section,
    extra_section,
    trivial_section,
    baseline_section,
    ood_section,
    reward_curves_section,
    validation_section,
    signal_section,
    ablation_section,
    generalisation_section,
    failed_section,
    runs_section,
)


def render(parts: ReportParts) -> str:
    """The text of report.md: its :data:`SECTIONS` (the ones with something to show), paragraphs apart."""
    return "\n\n".join(paragraph for section in SECTIONS for paragraph in section(parts)) + "\n"


def versus_markdown(lines: pd.DataFrame) -> str:
    """Comparisons of :mod:`lego_arta.report.versus` as a table (a line per run, task and reference) and a plain
    verdict per Table 1 row, task and reference."""
    verdicts = "\n".join(f"- {v}." for v in row_verdicts(lines))
    return f"{to_markdown(lines, list(COLUMNS))}\n\nVerdicts:\n\n{verdicts}"


def ablation_markdown(comparisons: Sequence[tuple[str, str, Comparison]]) -> str:
    """The ablation's comparisons (:func:`lego_arta.report.ablation.ablation`) as a table
    (:func:`lego_arta.report.ablation.ablation_table`) and a verdict per line."""
    verdicts = [f"- {label}, {SCALES[scale]}: {verdict(c)}{_power(c)}." for label, scale, c in comparisons]
    note = (
        "One value per seed: the matched IoU (no bonus, the scale both rewards share) averaged over the last quarter "
        "of training steps, and the test IoU, the endpoint named before the runs. Two-sided tests; the exact "
        "permutation test relabels the seeds in every possible way. Power (endpoint only): the share of 1,000 "
        "experiments, each drawing that many seeds per arm with replacement from the arm's own seeds, in which the "
        "permutation test rejects at 0.05; beside it, the seeds per arm that would give 80%. Arms on other numeric "
        "paths (see Machines) are compared separately."
    )
    return "\n\n".join([note, to_markdown(ablation_table(comparisons), align=ABLATION_ALIGN), "\n".join(verdicts)])


def _power(c: Comparison) -> str:
    if math.isnan(c.power):
        return ""
    need = f"more than {MAX_SEEDS}" if math.isinf(c.seeds_for_power) else f"{int(c.seeds_for_power)}"
    return f"; power {c.power:.2f} at {min(c.n_baseline, c.n_variant)} seeds per arm, 80% needs {need} per arm"


def _describe(run: Mapping[str, Any]) -> str:
    reward = "" if run["reward"] == NO_REWARD else f" {run['reward']}"
    return f"{run['method']}{reward}, seed {run['seed']}"


def _relative(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."
