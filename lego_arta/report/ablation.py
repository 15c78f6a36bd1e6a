"""The reward ablation as a claim with a test: GRPO with reward v2 against v1, one value per seed.

The study reads a "statistically significant gap" between the v1 and v2 reward curves. Here the two arms are compared
on the scale both share, not on their rewards (v1's adds a coordinate-range bonus):

- training: the matched IoU (``iou/matched``, logged by both IoU rewards) averaged over the last quarter of steps;
- evaluation: the test IoU (``eval/iou``).

For each, the difference of the means (v2 - v1) with Welch's t-test and its 95% CI (``scipy.stats.ttest_ind``,
``equal_var=False``), an exact permutation test over every relabelling of the seeds (``scipy.stats.permutation_test``,
two-sided, difference of means), and Cohen's d (pooled sample std). The verdict says plainly when the test cannot
decide: with 3 seeds per arm, the smallest two-sided permutation p-value possible is 2 / C(6, 3) = 0.1.

Power, for the endpoint: how often the same permutation test would reject at 0.05 with ``n`` seeds per arm, estimated
by resampling each arm's own seeds (:func:`resampled_power`). A t-test power formula assumes normal arms, and an arm
whose seeds either collapse or do not is bimodal; resampling keeps whatever shape the pilot seeds have.
:func:`seeds_for_power` searches the seeds per arm that give 80%.

>>> c = compare([0.10, 0.12, 0.11], [0.30, 0.33, 0.29])
>>> round(c.diff, 4), round(c.p_permutation, 2), c.min_p_permutation
(0.1967, 0.1, 0.1)
>>> verdict(c)
'not significant at 0.05 by the exact permutation test (the smallest p it can give with 3 vs 3 seeds is 0.10)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from lego_arta.markdown_table import MISSING
from lego_arta.report.collect import OK, STARTS
from lego_arta.report.curves import MATCHED_IOU, load_history

ALPHA: Final = 0.05
BASELINE, VARIANT = "v1", "v2"
LAST_FRACTION: Final = 0.25  # the training value of a run: its mean over the last quarter of logged steps
POWER: Final = 0.8  # the power the seeds per arm are searched for
POWER_DRAWS: Final = 1000  # resampled experiments per power estimate
POWER_PERMUTATIONS: Final = 999  # relabellings per resampled experiment (exact where there are fewer)
MAX_SEEDS: Final = 128  # seeds_for_power searches up to this many per arm


class Comparison(NamedTuple):
    """``variant`` - ``baseline`` over seeds: the difference of means and its tests."""

    n_baseline: int
    n_variant: int
    mean_baseline: float
    mean_variant: float
    diff: float
    ci_low: float
    ci_high: float
    p_welch: float
    p_permutation: float
    min_p_permutation: float
    cohens_d: float
    power: float = math.nan  # of the exact permutation test at these seeds per arm, by resampling (resampled_power)
    seeds_for_power: float = math.nan  # seeds per arm for POWER; inf beyond MAX_SEEDS; NaN when not computed


def compare(baseline: Sequence[float], variant: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Welch's t-test (with the CI of the difference), the exact permutation test and Cohen's d of two samples.

    Needs at least 2 values per arm (else the p-values, CI and d are NaN).
    """
    a, b = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    nan = math.nan
    diff = float(b.mean() - a.mean()) if len(a) and len(b) else nan
    if len(a) < 2 or len(b) < 2:
        return Comparison(len(a), len(b), _mean(a), _mean(b), diff, nan, nan, nan, nan, nan, nan)
    welch = stats.ttest_ind(b, a, equal_var=False)
    low, high = welch.confidence_interval(confidence)
    permutation = stats.permutation_test(
        (b, a),
        _difference_of_means,
        permutation_type="independent",
        n_resamples=np.inf,  # every relabelling: exact
        alternative="two-sided",
        vectorized=True,
    )
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return Comparison(
        n_baseline=len(a),
        n_variant=len(b),
        mean_baseline=float(a.mean()),
        mean_variant=float(b.mean()),
        diff=diff,
        ci_low=float(low),
        ci_high=float(high),
        p_welch=float(welch.pvalue),
        p_permutation=float(permutation.pvalue),
        min_p_permutation=2 / math.comb(len(a) + len(b), len(a)),
        cohens_d=diff / pooled if pooled > 0 else math.copysign(math.inf, diff) if diff else nan,
    )


def _difference_of_means(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def resampled_power(
    baseline: Sequence[float], variant: Sequence[float], n: int, *, alpha: float = ALPHA, seed: int = 0
) -> float:
    """The power of the two-sided permutation test of :func:`compare` with ``n`` seeds per arm, at the effect the
    pilot seeds show: the share of :data:`POWER_DRAWS` experiments, each drawing ``n`` values per arm with replacement
    from that arm's seeds, in which the test rejects at ``alpha`` (:data:`POWER_PERMUTATIONS` random relabellings each,
    every relabelling where there are fewer; one ``scipy.stats.permutation_test`` over all experiments at once).

    >>> resampled_power([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], 5)  # arms that never overlap: every experiment rejects
    1.0
    >>> resampled_power([1.0, 2.0], [1.0, 2.0], 5) < 0.2  # no effect: rejections at about the test's level
    True
    """
    rng = np.random.default_rng(seed)
    a, b = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    experiments_b = rng.choice(b, size=(POWER_DRAWS, n), replace=True)
    experiments_a = rng.choice(a, size=(POWER_DRAWS, n), replace=True)
    result = stats.permutation_test(
        (experiments_b, experiments_a),
        _difference_of_means,
        permutation_type="independent",
        n_resamples=POWER_PERMUTATIONS,
        alternative="two-sided",
        vectorized=True,
        axis=1,
        rng=rng,
    )
    return float(np.mean(result.pvalue < alpha))


def seeds_for_power(
    baseline: Sequence[float], variant: Sequence[float], *, target: float = POWER, seed: int = 0
) -> float:
    """The fewest seeds per arm whose :func:`resampled_power` reaches ``target``: doubling from 4 until it does (up to
    :data:`MAX_SEEDS`), then bisecting; ``inf`` when even :data:`MAX_SEEDS` do not (no effect, or too small a one).

    >>> seeds_for_power([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])  # 3 vs 3 cannot reject (smallest p 0.1); 4 vs 4 can
    4
    """
    low, high = 2, 4  # 2 vs 2 never reject at 0.05: the smallest two-sided p is 2 / C(4, 2) = 0.33
    while resampled_power(baseline, variant, high, seed=seed) < target:
        if high >= MAX_SEEDS:
            return math.inf
        low, high = high, min(2 * high, MAX_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        if resampled_power(baseline, variant, middle, seed=seed) >= target:
            high = middle
        else:
            low = middle
    return high


def with_power(c: Comparison, baseline: Sequence[float], variant: Sequence[float]) -> Comparison:
    """``c`` with its :func:`resampled_power` at its own seeds per arm (the smaller arm) and its
    :func:`seeds_for_power`; unchanged below 2 values per arm."""
    n = min(len(baseline), len(variant))
    if n < 2:
        return c
    return c._replace(power=resampled_power(baseline, variant, n), seeds_for_power=seeds_for_power(baseline, variant))


def verdict(c: Comparison, alpha: float = ALPHA) -> str:
    """One plain sentence: significant or not at ``alpha`` by the exact permutation test, and why it may not decide."""
    if math.isnan(c.p_permutation):
        return f"no test: {c.n_baseline} vs {c.n_variant} seeds (at least 2 per arm are needed)"
    if c.p_permutation < alpha:
        return f"significant at {alpha:g} by the exact permutation test (p = {c.p_permutation:.3f})"
    reason = ""
    if c.min_p_permutation >= alpha:
        reason = (
            f" (the smallest p it can give with {c.n_baseline} vs {c.n_variant} seeds is {c.min_p_permutation:.2f})"
        )
    return f"not significant at {alpha:g} by the exact permutation test{reason}"


def per_seed_values(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per finished GRPO run of reward v1 or v2: its seed, the training and the evaluation value.

    ``train`` is the run's mean matched IoU over its last quarter of logged steps (NaN without a history); ``eval``
    its ``eval/iou`` (NaN when not evaluated). Repeats of one seed count once, as in Table 1.
    """
    columns = ["reward", "seed", "train", "eval", "start", "model", "experiment_name", "numeric_path"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    grpo = runs[(runs["method"] == "grpo") & runs["reward"].isin([BASELINE, VARIANT]) & (runs["status"] == OK)]
    rows: list[dict[str, Any]] = []
    for _, run in grpo.drop_duplicates(["reward", "seed", *GROUPS]).iterrows():
        history = load_history(run["run_dir"])
        train = math.nan
        if MATCHED_IOU in history.columns:
            series = history[MATCHED_IOU].dropna()
            if len(series):
                first, end = series.index.min(), series.index.max()
                train = float(series[series.index >= end - LAST_FRACTION * (end - first)].mean())
        value = run.get("eval/iou", math.nan)
        rows.append(
            {
                "reward": run["reward"],
                "seed": run["seed"],
                "train": train,
                "eval": float(value) if value is not None else math.nan,
                "start": run["start"],
                "model": run["model"],
                "experiment_name": run["experiment_name"],
                "numeric_path": run["numeric_path"],
            }
        )
    return pd.DataFrame(rows, columns=columns)


SCALES: Final[dict[str, str]] = {
    "train": "matched IoU, last quarter of training",
    "eval": "test IoU (eval/iou)",
}


ENDPOINT: Final = "eval"  # the scale named before the runs: its comparison carries the power
GROUPS: Final = ("start", "model", "experiment_name", "numeric_path")  # never pooled: each its own comparison


def ablation(runs: pd.DataFrame) -> list[tuple[str, str, Comparison]]:
    """``(arm label, scale, v2 - v1 comparison)`` per GRPO start (the base model, an adapter or a fine-tuned model),
    model, experiment and numeric path (:mod:`lego_arta.provenance`: runs that round otherwise are never pooled), and
    scale (``train``: matched IoU over the last quarter of training; ``eval``: test IoU, the endpoint, with its
    power); only where both arms have a value (a sweep of one reward has no ablation)."""
    values = per_seed_values(runs)
    for key in ("experiment_name", "numeric_path"):
        values[key] = values[key].fillna(MISSING)
    out = []
    for (start, model, experiment, path), group in values.groupby(list(GROUPS), sort=True):
        label = f"GRPO from {STARTS.get(start, start)}" if start else "GRPO"
        if values["model"].nunique() > 1:
            label = f"{model}: {label}"
        if values["experiment_name"].nunique() > 1:
            label = f"{experiment}: {label}"
        if values["numeric_path"].nunique() > 1:
            label = f"{label}, numeric path {path}"
        for scale in SCALES:
            arms = {r: group.loc[group["reward"] == r, scale].dropna().tolist() for r in (BASELINE, VARIANT)}
            if arms[BASELINE] and arms[VARIANT]:  # a sweep of one reward has nothing to compare
                comparison = compare(arms[BASELINE], arms[VARIANT])
                if scale == ENDPOINT:
                    comparison = with_power(comparison, arms[BASELINE], arms[VARIANT])
                out.append((label, scale, comparison))
    return out


ABLATION_COLUMNS: Final = (
    "arm",
    "scale",
    "v1: mean (n)",
    "v2: mean (n)",
    "v2 − v1 [95% CI, Welch]",
    "p Welch",
    "p exact permutation",
    "Cohen's d",
    "power (resampled)",
    "seeds per arm for 80%",
)


def ablation_table(comparisons: Sequence[tuple[str, str, Comparison]]) -> pd.DataFrame:
    """The comparisons of :func:`ablation` as display cells (:data:`ABLATION_COLUMNS`), a row per arm and scale.

    >>> ablation_table([("GRPO", "eval", compare([1.0, 2.0], [3.0, 4.0]))]).iloc[0].tolist()
    ['GRPO', 'test IoU (eval/iou)', '1.5 (2)', '3.5 (2)', '+2 [-1.042, 5.042]', '0.106', '0.333', '2.83', '–', '–']
    """
    rows = []
    for label, scale, c in comparisons:
        ci = f"[{c.ci_low:.4g}, {c.ci_high:.4g}]" if math.isfinite(c.ci_low) else MISSING
        rows.append(
            [
                label,
                SCALES[scale],
                f"{c.mean_baseline:.4g} ({c.n_baseline})",
                f"{c.mean_variant:.4g} ({c.n_variant})",
                f"{c.diff:+.4g} {ci}",
                _p(c.p_welch),
                _p(c.p_permutation),
                f"{c.cohens_d:.2f}",
                MISSING if math.isnan(c.power) else f"{c.power:.2f} at {min(c.n_baseline, c.n_variant)}",
                _seeds(c.seeds_for_power),
            ]
        )
    return pd.DataFrame(rows, columns=list(ABLATION_COLUMNS))


def _seeds(n: float) -> str:
    if math.isnan(n):
        return MISSING
    return f"> {MAX_SEEDS}" if math.isinf(n) else str(int(n))


def _p(p: float) -> str:
    return MISSING if math.isnan(p) else f"{p:.3f}"


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else math.nan
