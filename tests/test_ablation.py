"""The reward ablation's test: exact permutation p-values computable by hand, Welch's t-test by its formula, the
per-seed values read from run dirs, and the report's plain verdict."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml
from scipy import stats

from lego_arta.report import write_report
from lego_arta.report.ablation import SCALES, ablation, ablation_table, compare, per_seed_values, verdict
from lego_arta.report.collect import collect_runs


def hand_permutation_p(a: list[float], b: list[float]) -> float:
    """Two-sided exact p over the C(n, k) relabellings of the seeds: twice the smaller one-sided share (scipy's
    convention), at most 1; each one-sided share counts the relabellings at least as extreme as the observed."""
    pooled, k = a + b, len(b)
    observed = statistics.mean(b) - statistics.mean(a)
    diffs = []
    for chosen in itertools.combinations(range(len(pooled)), k):
        new_b = [pooled[i] for i in chosen]
        new_a = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        diffs.append(statistics.mean(new_b) - statistics.mean(new_a))
    greater = sum(d >= observed - 1e-12 for d in diffs) / len(diffs)
    less = sum(d <= observed + 1e-12 for d in diffs) / len(diffs)
    return min(1.0, 2 * min(greater, less))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # fully separated 3 vs 3: only the observed split and its mirror are as extreme, 2 of C(6,3) = 20
        ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], 2 / 20),
        # overlapping arms: a few relabellings are as extreme as the observed +2.33
        ([1.0, 2.0, 4.0], [3.0, 5.0, 6.0], None),
        # no difference at all: every relabelling is as extreme (p = 1)
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 1.0),
        # 4 vs 3: C(7,3) = 35 relabellings, only the observed one as large: 2 x 1/35
        ([0.1, 0.2, 0.15, 0.12], [0.3, 0.35, 0.28], 2 / 35),
    ],
)
def test_permutation_p_value_is_exact(a, b, expected):
    c = compare(a, b)
    assert c.p_permutation == pytest.approx(hand_permutation_p(a, b), abs=1e-12)
    if expected is not None:
        assert c.p_permutation == pytest.approx(expected, abs=1e-12)
    assert c.min_p_permutation == pytest.approx(2 / math.comb(len(a) + len(b), len(a)))


def test_welch_matches_its_formula():
    a, b = [0.10, 0.14, 0.09], [0.30, 0.21, 0.35, 0.27]
    c = compare(a, b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.mean(b) - statistics.mean(a)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    assert c.p_welch == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (c.ci_low, c.ci_high) == pytest.approx((c.diff - half, c.diff + half), rel=1e-9)
    pooled = math.sqrt(((len(a) - 1) * statistics.variance(a) + (len(b) - 1) * statistics.variance(b)) / 5)
    assert c.cohens_d == pytest.approx(c.diff / pooled)


def test_verdict_says_plainly_when_the_test_cannot_decide():
    three = compare([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])  # as separated as can be, and still p = 0.1
    assert verdict(three) == (
        "not significant at 0.05 by the exact permutation test (the smallest p it can give with 3 vs 3 seeds is 0.10)"
    )
    five = compare([1.0, 2.0, 3.0, 1.5, 2.5], [4.0, 5.0, 6.0, 4.5, 5.5])  # 2 / C(10, 5) = 0.0079
    assert verdict(five) == "significant at 0.05 by the exact permutation test (p = 0.008)"
    assert verdict(compare([1.0], [2.0])).startswith("no test: 1 vs 1 seeds")


def write_grpo_run(run_dir: Path, reward: str, seed: int, matched: list[float], eval_iou: float) -> None:
    run_dir.mkdir(parents=True)
    cfg = {"seed": seed, "model": {"name": "tiny"}, "method": {"name": "grpo", "adapter": None, "lora": {"r": 8}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**cfg, "reward": {"name": reward}}))
    (run_dir / "metrics.json").write_text(json.dumps({"eval/iou": eval_iou}))
    rows = [{"step": i + 1, "reward": 0.5, "iou/matched": v} for i, v in enumerate(matched)]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_compares_v2_with_v1_on_the_last_quarter_of_matched_iou(tmp_path):
    # 9 logged steps, 1..9: the last quarter is steps >= 9 - 0.25 * 8 = 7, i.e. steps 7, 8, 9
    for seed in range(3):
        write_grpo_run(tmp_path / f"v1_{seed}", "v1", seed, [0.0] * 6 + [0.01 * seed] * 3, 1.0 + seed)
        write_grpo_run(tmp_path / f"v2_{seed}", "v2", seed, [0.9] * 6 + [0.1 + 0.01 * seed] * 3, 10.0 + seed)
    runs = collect_runs(tmp_path)
    values = per_seed_values(runs).sort_values(["reward", "seed"])
    assert values["train"].tolist() == pytest.approx([0.0, 0.01, 0.02, 0.1, 0.11, 0.12])
    assert values["eval"].tolist() == [1.0, 2.0, 3.0, 10.0, 11.0, 12.0]
    table = ablation_table(ablation(runs))
    assert table[["arm", "scale"]].values.tolist() == [["GRPO", SCALES["train"]], ["GRPO", SCALES["eval"]]]
    train = table.iloc[0]
    assert [train["v1: mean (n)"], train["v2: mean (n)"]] == ["0.01 (3)", "0.11 (3)"]
    assert train["v2 − v1 [95% CI, Welch]"].startswith("+0.1 [")
    # the exact permutation p of two fully separated 3-seed arms, on both scales
    assert table["p exact permutation"].tolist() == ["0.100", "0.100"]
    markdown = write_report(tmp_path)["markdown"]
    section = markdown.split("## Reward ablation: v2 against v1", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(table) and rows[0].startswith("| arm ")  # header, rule, a row per comparison
    assert "- GRPO, test IoU (eval/iou): not significant at 0.05 by the exact permutation test" in section
