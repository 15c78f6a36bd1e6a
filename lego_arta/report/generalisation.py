"""The two questions of ``experiment=generalisation`` as claims with tests, one value per seed.

- **(a) Does a referring-expression pre-stage raise LEGO object IoU?** (thesis §7) The LEGO test IoU (``eval/iou``) of
  the same LEGO training from the pre-staged model (arm ``sft_pre``) against from the untrained model (``sft_base``).
- **(b) Does SFT on LEGO forget more general grounding than GRPO on LEGO?** (VLM-R1's claim) The referring val IoU
  (``extra/<set>/iou``) of GRPO (``grpo_pre``) against SFT (``sft_pre``), both from the one pre-stage (``prestage``),
  whose own score on that set is shown beside: each arm's change from it.

Arms are read by the chain's stage names (``<arm>_s<seed>`` run dirs, ``conf/experiment/generalisation.yaml``); the
test is the ablation's (:func:`lego_arta.report.ablation.compare`: Welch's CI, the exact permutation test over seeds,
Cohen's d, resampled power), per numeric path, never pooled across paths.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Final, NamedTuple

import pandas as pd

from lego_arta.markdown_table import MISSING
from lego_arta.report.ablation import Comparison, compare, verdict, with_power
from lego_arta.report.collect import OK

PRESTAGE: Final = "prestage"
# question -> (arm A, arm B, endpoint, what it asks); the test is B - A
QUESTIONS: Final[dict[str, tuple[str, str, str, str]]] = {
    "a": (
        "sft_base",
        "sft_pre",
        "eval/iou",
        "does the pre-stage raise LEGO object IoU? (SFT from it − from the base)",
    ),
    "b": ("sft_pre", "grpo_pre", "extra", "does SFT forget more grounding than GRPO? (GRPO − SFT, both from it)"),
}
_SEEDED = re.compile(r"^(?P<arm>.+)_s(?P<seed>\d+)$")


class Finding(NamedTuple):
    question: str
    endpoint: str  # the metrics.json key
    arm_a: str
    arm_b: str
    comparison: Comparison
    prestage: float  # the pre-stage's own value of the endpoint (NaN when it has none)
    path: str  # the numeric path of the runs compared


def arm_of(run_dir: str) -> str | None:
    """The chain arm of a run dir (``sft_pre_s3`` -> ``sft_pre``; the unseeded ``prestage`` -> itself).

    >>> arm_of("/o/generalisation/sft_pre_s3"), arm_of("/o/generalisation/prestage"), arm_of("/o/demo/sft")
    ('sft_pre', 'prestage', None)
    """
    name = Path(run_dir).name
    if name == PRESTAGE:
        return PRESTAGE
    match = _SEEDED.match(name)
    arms = {arm for a, b, _, _ in QUESTIONS.values() for arm in (a, b)}
    return match["arm"] if match and match["arm"] in arms else None


def generalisation(runs: pd.DataFrame) -> list[Finding]:
    """The findings of (a) and (b) per numeric path, where both arms have runs; [] for other sweeps."""
    if runs.empty:
        return []
    ok = runs[runs["status"] == OK].assign(arm=[arm_of(d) for d in runs[runs["status"] == OK]["run_dir"]])
    ok = ok[ok["arm"].notna()]
    if ok.empty:
        return []
    extra = sorted({c.split("/")[1] for c in ok.columns if c.startswith("extra/") and c.endswith("/iou")})
    out = []
    for path, group in ok.groupby(ok["numeric_path"].fillna(MISSING), sort=True):
        for question, (arm_a, arm_b, endpoint, _) in QUESTIONS.items():
            keys = [f"extra/{name}/iou" for name in extra] if endpoint == "extra" else [endpoint]
            for key in keys:
                if key not in group.columns:
                    continue
                a, b = (_values(group, arm, key) for arm in (arm_a, arm_b))
                if not a or not b:
                    continue
                # the pre-stage's own score where it was scored on the same samples (an eval.extra set; its
                # eval/ keys are on the referring set itself, not on LEGO-ARTA)
                pre = group.loc[group["arm"] == PRESTAGE, key].dropna().tolist() if endpoint == "extra" else []
                comparison = with_power(compare(a, b), a, b)
                out.append(Finding(question, key, arm_a, arm_b, comparison, float(pre[0]) if pre else math.nan, path))
    return out


def _values(group: pd.DataFrame, arm: str, key: str) -> list[float]:
    rows = group[group["arm"] == arm].drop_duplicates("seed")
    return [float(v) for v in rows[key] if v is not None and not pd.isna(v)]


COLUMNS: Final = (
    "question",
    "endpoint",
    "A: mean (n)",
    "B: mean (n)",
    "B − A [95% CI, Welch]",
    "p exact permutation",
    "Cohen's d",
    "power (resampled)",
    "pre-stage",
)


def generalisation_table(findings: list[Finding]) -> pd.DataFrame:
    """The findings as display cells (:data:`COLUMNS`), a row per question, endpoint and numeric path."""
    rows = []
    for f in findings:
        c = f.comparison
        ci = f"[{c.ci_low:.4g}, {c.ci_high:.4g}]" if math.isfinite(c.ci_low) else MISSING
        rows.append(
            [
                f"({f.question}) {QUESTIONS[f.question][3]}"
                + (f", numeric path {f.path}" if len(findings) > 2 else ""),
                f.endpoint,
                f"{f.arm_a}: {c.mean_baseline:.4g} ({c.n_baseline})",
                f"{f.arm_b}: {c.mean_variant:.4g} ({c.n_variant})",
                f"{c.diff:+.4g} {ci}",
                f"{c.p_permutation:.3f}" if math.isfinite(c.p_permutation) else MISSING,
                f"{c.cohens_d:.2f}",
                MISSING if math.isnan(c.power) else f"{c.power:.2f} at {min(c.n_baseline, c.n_variant)}",
                MISSING if math.isnan(f.prestage) else f"{f.prestage:.4g}",
            ]
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def generalisation_verdicts(findings: list[Finding]) -> list[str]:
    """One plain sentence per finding: the question, the difference and the permutation test's verdict."""
    out = []
    for f in findings:
        c = f.comparison
        change = ""
        if math.isfinite(f.prestage):
            change = (
                f"; against the pre-stage's {f.prestage:.4g}: {f.arm_a} {c.mean_baseline - f.prestage:+.4g}, "
                f"{f.arm_b} {c.mean_variant - f.prestage:+.4g}"
            )
        out.append(f"({f.question}) {f.arm_b} − {f.arm_a} on {f.endpoint} = {c.diff:+.4g}{change}: {verdict(c)}")
    return out
