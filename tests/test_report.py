"""The sweep report: run collection, Table 1 (mean ± 95% CI over seeds), markdown, reward curves, failed jobs.

Every test builds a fake Hydra multirun dir with known metrics.json / history.jsonl values and checks the report
against numbers computed here, independently of the report module.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from PIL import Image
from scipy import stats

from lego_arta.errors import MissingInputError
from lego_arta.report import write_report
from lego_arta.report.collect import collect_runs, latest_sweep
from lego_arta.report.curves import PANEL_TITLES, reward_curves, validation_curves
from lego_arta.report.generalisation import generalisation, generalisation_verdicts
from lego_arta.report.markdown import to_markdown, versus_markdown
from lego_arta.report.signal import signal_table
from lego_arta.report.stats import METRICS, ood_metrics, references_table, study_table, table1
from lego_arta.report.study import STUDY_LABEL, STUDY_TABLE1
from lego_arta.report.versus import baseline_lines, row_verdicts, start_lines, trivial_lines

REPO = Path(__file__).resolve().parents[1]
KEYS = ("f1_theme", "rouge", "bleu", "f1_object", "iou", "f1_state", "fpr")
HEADERS = ("F1-Theme", "ROUGE", "BLEU", "F1-Object", "IoU", "F1-State", "FPR")
BASE = {  # group -> metric -> base value; seed s adds OFFSETS[s] x (1 + i / 10) to the i-th metric
    ("none", "-"): [30.0, 27.0, 5.0, 59.0, 60.0, 38.0, 30.0],
    ("sft", "-"): [57.0, 53.0, 24.0, 81.0, 14.0, 95.0, 1.0],
    ("grpo", "v1"): [22.0, 19.0, 3.0, 63.0, 65.0, 40.0, 36.0],
    ("grpo", "v2"): [25.0, 20.0, 3.5, 64.0, 70.0, 41.0, 35.0],
    ("grpo", "v3"): [26.0, 21.0, 4.0, 65.0, 71.0, 42.0, 34.0],
}
OFFSETS = {0: 0.0, 1: 1.5, 2: 4.0}
SEEDS = {("none", "-"): [0, 1, 2], ("sft", "-"): [0, 1], ("grpo", "v1"): [0, 1, 2], ("grpo", "v2"): [0, 1]}
SEEDS[("grpo", "v3")] = [0]  # one seed: the cell shows the run's bootstrap CI
STEPS = 40


def metric_value(group: tuple[str, str], seed: int, i: int) -> float:
    return BASE[group][i] + OFFSETS[seed] * (1 + i / 10)


def reward_value(reward: str, seed: int, step: int, key: str) -> float:
    """A known, non-linear training curve per (variant, seed, component)."""
    level = {"v1": 0.3, "v2": 0.5, "v3": 0.7}[reward] + 0.02 * seed
    return round(level + 0.4 * (1 - math.exp(-step / 12)) + 0.03 * math.sin(step + len(key)), 6)


def history_rows(reward: str, seed: int, steps: int = STEPS) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        row: dict[str, Any] = {"step": step, "loss": 0.01, "kl": 0.001 * step, "learning_rate": 1e-5}
        for name in ("format", f"iou_{reward}" if reward != "v3" else "iou_v2", "label_rouge", "state", "grounding"):
            row[f"rewards/{name}/mean"] = reward_value(reward, seed, step, name)
            row[f"rewards/{name}/std"] = 0.1
        if (step - seed) % 3 == 0:  # a batch without a state sample (TRL logs NaN / null); differs per seed
            row["rewards/state/mean"] = None
        if reward == "v3":  # this variant never logged grounding
            row["rewards/grounding/mean"] = None
        row["reward"] = reward_value(reward, seed, step, "reward")
        row["reward_std"] = 0.2
        rows.append(row)
    rows.append({"train_runtime": 12.3, "train_loss": 0.01, "step": steps})  # TRL's final summary row
    return rows


def config(method: str, reward: str, seed: int) -> dict[str, Any]:
    method_cfg: dict[str, Any] = {"name": method, "adapter": None}
    if method != "none":
        method_cfg["lora"] = {"r": 8, "lora_alpha": 16}
    return {
        "seed": seed,
        "experiment_name": "fake",
        "model": {"name": "qwen2_5_vl_7b"},
        "method": method_cfg,
        "reward": {"name": reward if reward != "-" else "v2"},  # none/sft runs still carry the default reward node
    }


def write_run(run_dir: Path, method: str, reward: str, seed: int) -> None:
    group = (method, reward)
    run_dir.mkdir(parents=True)
    cfg = config(method, reward, seed)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics: dict[str, Any] = {}
    for i, key in enumerate(KEYS):
        value = metric_value(group, seed, i)
        metrics[f"eval/{key}"] = value
        metrics[f"eval/{key}_lo"] = value - 2.0 - i / 10  # bootstrap CI: used only for single-seed cells
        metrics[f"eval/{key}_hi"] = value + 3.0 + i / 10
    metrics["eval/rouge1"] = 40.0 + seed
    metrics["eval/format_valid"] = 90.0
    metrics["ref/always_yes/f1_state"] = 40.0
    metrics["ref/always_yes/fpr"] = 100.0
    if group == ("grpo", "v1"):  # grounding not evaluated for this variant: key absent
        for suffix in ("", "_lo", "_hi"):
            del metrics[f"eval/f1_theme{suffix}"]
    if group == ("sft", "-") and seed == 0:  # FPR null in one of the two seeds: the other seed's bootstrap CI shows
        metrics["eval/fpr"] = None
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if method == "grpo":
        (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history_rows(reward, seed)))
    if method == "sft":
        (run_dir / "history.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0, "mean_token_accuracy": 0.5}) + "\n")


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return make_sweep(tmp_path)


def make_sweep(tmp_path: Path) -> Path:
    """A fake multirun: none x3, sft x2, grpo v1 x3, grpo v2 x2 (+1 failed job), grpo v3 x1; W&B and Hydra litter."""
    root = tmp_path / "outputs" / "fake" / "multirun" / "2026-01-01_10-00-00"  # <log_dir>/<experiment>/multirun/<time>
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {mode: MULTIRUN}\n")
    job = 0
    for (method, reward), seeds in SEEDS.items():
        for seed in seeds:
            name = f"{job}_method={method},seed={seed}" + (f",reward={reward}" if method == "grpo" else "")
            write_run(root / name, method, reward, seed)
            job += 1
    # W&B's own config.yaml inside a run dir is not a run
    wandb_files = root / "0_method=none,seed=0" / "wandb" / "run-1" / "files"
    wandb_files.mkdir(parents=True)
    (wandb_files / "config.yaml").write_text(yaml.safe_dump({"method": {"value": {"name": "none"}}}))
    # the failed job: Hydra wrote .hydra/config.yaml and the log, the job died before config.yaml and metrics.json
    failed = root / "99_method=grpo,reward=v2,seed=2"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config("grpo", "v2", 2)))
    # what lego_arta.cli logs into the run's own log when a job fails, then more log lines after it
    (failed / "train.log").write_text(
        "[2026-01-01 10:00:00,000][lego_arta.data.load][INFO] - split record: ...\n"
        "[2026-01-01 10:00:09,000][lego_arta.cli][ERROR] - run failed:\n"
        "Traceback (most recent call last):\n"
        '  File "lego_arta/methods/common.py", line 90, in fit\n'
        "    trainer.train(resume_from_checkpoint=checkpoint)\n"
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
        "[2026-01-01 10:00:10,000][lego_arta.tracking][INFO] - W&B run files: ...\n"
    )
    (failed / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history_rows("v2", 2, steps=5)))
    return root


def expected_cell(group: tuple[str, str], i: int) -> tuple[str, float, float, float, int]:
    """The Table 1 cell computed from the known values, with statistics + scipy's t quantile."""
    seeds = SEEDS[group]
    if group == ("grpo", "v1") and i == 0:
        return "–", math.nan, math.nan, math.nan, 0
    if group == ("sft", "-") and i == 6:
        seeds = [1]
    values = [metric_value(group, s, i) for s in seeds]
    mean = statistics.fmean(values)
    if len(values) == 1:
        lo, hi = mean - 2.0 - i / 10, mean + 3.0 + i / 10
        return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]", mean, lo, hi, 1
    sd = statistics.stdev(values)
    half = stats.t.ppf(0.975, len(values) - 1) * sd / math.sqrt(len(values))
    assert half < 100  # every interval of this sweep is narrower than the metrics' range: printed
    cell = f"{mean:.2f} ± {sd:.2f} (n={len(values)}) [{mean - half:.2f}, {mean + half:.2f}]"
    return cell, mean, mean - half, mean + half, len(values)


def test_collect_runs_finds_every_run_and_the_failed_job(sweep: Path) -> None:
    runs = collect_runs(sweep)
    # 11 finished runs + 1 failed job; the W&B config.yaml and multirun.yaml are not runs
    assert len(runs) == 12
    assert runs["status"].tolist().count("failed") == 1
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert (failed["method"], failed["reward"], failed["seed"]) == ("grpo", "v2", 2)
    # the last error line of the job's own log, and which log holds it
    assert failed["error"] == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (train.log)"
    # rows ordered none, sft, grpo v1, v2, v3; the reward of none/sft is "-" though their config names one
    assert runs["method"].tolist() == ["none"] * 3 + ["sft"] * 2 + ["grpo"] * 7
    assert runs["reward"].tolist() == ["-"] * 5 + ["v1"] * 3 + ["v2"] * 3 + ["v3"]
    assert runs["seed"].tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 0, 1, 2, 0]
    assert runs.loc[0, "eval/iou"] == metric_value(("none", "-"), 0, 4)
    assert math.isnan(runs.loc[3, "eval/fpr"])  # null in metrics.json
    assert set(runs["model"]) == {"qwen2_5_vl_7b"}


def test_table1_cells_are_mean_and_95ci_over_seeds(sweep: Path) -> None:
    table = table1(collect_runs(sweep))
    groups = [("none", "-"), ("sft", "-"), ("grpo", "v1"), ("grpo", "v2"), ("grpo", "v3")]
    assert table["model"].tolist() == [
        "base, few-shot",
        "SFT (LoRA r8)",
        "GRPO v1 (LoRA r8)",
        "GRPO v2 (LoRA r8)",
        "GRPO v3 (LoRA r8)",
    ]
    assert table["n"].tolist() == [3, 2, 3, 2, 1]  # the failed v2 job does not count
    for row, group in enumerate(groups):
        for i, (key, header) in enumerate(zip(KEYS, HEADERS, strict=True)):
            cell, mean, lo, hi, n = expected_cell(group, i)
            assert table.loc[row, header] == cell, (group, key)
            np.testing.assert_allclose(
                [table.loc[row, f"{key}/{s}"] for s in ("mean", "lo", "hi")], [mean, lo, hi], rtol=0, atol=1e-9
            )
            assert table.loc[row, f"{key}/n"] == n
    # one cell by hand: none F1-Theme over seeds (30, 31.5, 34): mean 31.83, sd 2.0207, t(0.975, 2) = 4.3027,
    # half-width 4.3027 x 2.0207 / sqrt(3) = 5.02
    assert table.loc[0, "F1-Theme"] == "31.83 ± 2.02 (n=3) [26.81, 36.85]"
    assert table.loc[0, "f1_theme/std"] == pytest.approx(2.0207, abs=1e-4)


def test_table1_markdown_is_exact(sweep: Path) -> None:
    # the cells were checked against independently computed values above; this pins the layout
    assert to_markdown(table1(collect_runs(sweep))).split("\n") == [
        "| model             |   n |                          F1-Theme |                             ROUGE |"
        "                              BLEU |                         F1-Object |"
        "                               IoU |                           F1-State |"
        "                               FPR |",
        "|:------------------|----:|----------------------------------:|----------------------------------:|"
        "----------------------------------:|----------------------------------:|"
        "----------------------------------:|-----------------------------------:|"
        "----------------------------------:|",
        "| base, few-shot    |   3 | 31.83 ± 2.02 (n=3) [26.81, 36.85] | 29.02 ± 2.22 (n=3) [23.49, 34.54] |"
        "   7.20 ± 2.42 (n=3) [1.18, 13.22] | 61.38 ± 2.63 (n=3) [54.86, 67.91] |"
        " 62.57 ± 2.83 (n=3) [55.54, 69.59] |  40.75 ± 3.03 (n=3) [33.22, 48.28] |"
        " 32.93 ± 3.23 (n=3) [24.90, 40.96] |",
        "| SFT (LoRA r8)     |   2 | 57.75 ± 1.06 (n=2) [48.22, 67.28] | 53.83 ± 1.17 (n=2) [43.34, 64.31] |"
        " 24.90 ± 1.27 (n=2) [13.46, 36.34] | 81.97 ± 1.38 (n=2) [69.59, 94.36] |"
        "  15.05 ± 1.48 (n=2) [1.71, 28.39] | 96.12 ± 1.59 (n=2) [81.83, 110.42] |"
        "                 3.40 [0.80, 7.00] |",
        "| GRPO v1 (LoRA r8) |   3 |                                 – | 21.02 ± 2.22 (n=3) [15.49, 26.54] |"
        "  5.20 ± 2.42 (n=3) [-0.82, 11.22] | 65.38 ± 2.63 (n=3) [58.86, 71.91] |"
        " 67.57 ± 2.83 (n=3) [60.54, 74.59] |  42.75 ± 3.03 (n=3) [35.22, 50.28] |"
        " 38.93 ± 3.23 (n=3) [30.90, 46.96] |",
        "| GRPO v2 (LoRA r8) |   2 | 25.75 ± 1.06 (n=2) [16.22, 35.28] | 20.82 ± 1.17 (n=2) [10.34, 31.31] |"
        "  4.40 ± 1.27 (n=2) [-7.04, 15.84] | 64.97 ± 1.38 (n=2) [52.59, 77.36] |"
        " 71.05 ± 1.48 (n=2) [57.71, 84.39] |  42.12 ± 1.59 (n=2) [27.83, 56.42] |"
        " 36.20 ± 1.70 (n=2) [20.95, 51.45] |",
        "| GRPO v3 (LoRA r8) |   1 |              26.00 [24.00, 29.00] |              21.00 [18.90, 24.10] |"
        "                 4.00 [1.80, 7.20] |              65.00 [62.70, 68.30] |"
        "              71.00 [68.60, 74.40] |               42.00 [39.50, 45.50] |"
        "              34.00 [31.40, 37.60] |",
    ]


def test_report_writes_files_and_lists_the_failed_job(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    summary = write_report(sweep, out)
    assert (summary["n_runs"], summary["n_ok"], summary["n_failed"]) == (12, 11, 1)
    assert summary["failed"] == [str(sweep / "99_method=grpo,reward=v2,seed=2")]
    for key, name in [("report_md", "report.md"), ("report_csv", "report.csv"), ("runs_csv", "runs.csv")]:
        assert summary[key] == str(out / name)
        assert (out / name).stat().st_size > 0
    assert summary["reward_curves_png"] == str(out / "reward_curves.png")
    md = (out / "report.md").read_text()
    assert md == summary["markdown"]
    assert "12 runs: 11 finished, 1 failed" in md
    assert (
        "## Failed runs (1)\n\n- `99_method=grpo,reward=v2,seed=2`: grpo v2, seed 2: "
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (train.log)" in md
    )
    assert "![reward curves](reward_curves.png)" in md
    # the sections are there, each table rendered from its frame: Table 1, the study's table labelled as the study's
    for heading in ("## Table 1 (ours)", f"### Table 1 of the {STUDY_LABEL}", "### Trivial references", "## Runs"):
        assert f"\n{heading}\n" in md
    runs = collect_runs(sweep)
    assert f"n = seeds with a finished run.\n\n{to_markdown(table1(runs))}\n\n" in md
    study = study_table()
    assert f"### Table 1 of the {STUDY_LABEL}\n\n" in md and to_markdown(study) in md
    # the study's table holds its numbers
    assert study["model"].tolist() == list(STUDY_TABLE1)
    for _, row in study.iterrows():
        assert [float(row[header]) for header in HEADERS] == [STUDY_TABLE1[row["model"]][k] for k in KEYS]
    # the trivial reference: one value per seed (3 seeds), same in every run
    refs = references_table(runs)
    assert refs[["model", "n", "F1-State", "FPR"]].values.tolist() == [
        ["always Yes (trivial)", 3, "40.00 ± 0.00 (n=3) [40.00, 40.00]", "100.00 ± 0.00 (n=3) [100.00, 100.00]"]
    ]
    assert (refs[[h for h in HEADERS if h not in ("F1-State", "FPR")]] == "–").all().all()
    # report.csv: our rows, the reference, the study's rows, with the numbers; runs.csv: one row per run
    csv = pd.read_csv(out / "report.csv")
    assert csv["kind"].tolist() == ["ours"] * 5 + ["reference"] + ["study"] * 3
    assert csv.loc[0, "iou/mean"] == pytest.approx(
        statistics.fmean(metric_value(("none", "-"), s, 4) for s in range(3))
    )
    assert csv.loc[5, "fpr/mean"] == 100.0 and csv.loc[8, "iou/mean"] == 65.49
    assert len(pd.read_csv(out / "runs.csv")) == 12


def test_reward_curves_panels_lines_and_means(sweep: Path, tmp_path: Path) -> None:
    runs = collect_runs(sweep)
    png = tmp_path / "curves.png"
    fig = reward_curves(runs, png)
    assert fig is not None
    assert png.stat().st_size > 10_000
    width, height = Image.open(png).size
    assert width > 1500 and height > 900
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "Total reward (weighted sum)",
        "Format (<think> + <answer> structure)",
        "IoU (object detection)",
        "Label ROUGE-1 (object detection)",
        "State Yes/No (state detection)",
        "BLEU-4 + ROUGE-1 (grounding)",
    ]
    # one line per variant (v1, v2, v3), except grounding that v3 never logged; a band only with >= 2 seeds
    assert [len(ax.get_lines()) for ax in fig.axes] == [3, 3, 3, 3, 3, 2]
    assert [len(ax.collections) for ax in fig.axes] == [2, 2, 2, 2, 2, 2]
    total = fig.axes[0]
    v1 = total.get_lines()[0]
    assert v1.get_label() == "v1"
    np.testing.assert_allclose(v1.get_xdata(), np.arange(1, STEPS + 1))
    expected = [statistics.fmean(reward_value("v1", s, step, "reward") for s in (0, 1, 2)) for step in range(1, 41)]
    np.testing.assert_allclose(v1.get_ydata(), expected, atol=1e-9)
    # v2's failed job (5 steps of history, no metrics.json) is left out: its mean is over seeds 0 and 1
    v2 = total.get_lines()[1]
    np.testing.assert_allclose(v2.get_ydata()[0], statistics.fmean(reward_value("v2", s, 1, "reward") for s in (0, 1)))
    # IoU: iou_v1 and iou_v2 share one panel, the component named in the legend
    iou = fig.axes[2]
    assert [line.get_label() for line in iou.get_lines()] == ["v1: iou_v1", "v2: iou_v2", "v3: iou_v2"]
    # state was null every third step, at different steps per seed: each seed is interpolated inside its own range
    state = fig.axes[4].get_lines()[0]
    np.testing.assert_allclose(state.get_xdata(), np.arange(1, STEPS + 1))
    value = {s: {t: reward_value("v1", s, t, "state") for t in range(1, STEPS + 1)} for s in (0, 1, 2)}
    at_3 = statistics.fmean([(value[0][2] + value[0][4]) / 2, value[1][3], value[2][3]])  # seed 0 null at step 3
    at_1 = statistics.fmean([value[0][1], value[2][1]])  # seed 1 null at step 1: before its range, left out
    np.testing.assert_allclose(state.get_ydata()[[0, 2]], [at_1, at_3], atol=1e-9)
    # the figure legend names the variants with their seed counts, the title says what the band is
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["v1 (3 seeds)", "v2 (2 seeds)", "v3 (1 seed)"]
    assert "band = min–max over seeds" in fig.get_suptitle()
    assert "raw (no smoothing)" in fig.get_suptitle()


def test_reward_curves_smoothing_and_std_band(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for seed in (0, 1):
        run_dir = root / f"run{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config("grpo", "v1", seed)))
        (run_dir / "metrics.json").write_text(json.dumps({"eval/iou": 50.0}))
        rows = [{"step": s, "reward": r + seed} for s, r in [(1, 0.0), (2, 1.0), (3, 1.0)]]
        (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = reward_curves(collect_runs(root), tmp_path / "c.png", smoothing=0.5, band="std")
    assert fig is not None and len(fig.axes) == 1
    # EMA with weight 0.5: (0, 1, 1) -> (0, 0.5, 0.75); seed 1 is the same + 1: mean = that + 0.5
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [0.5, 1.0, 1.25])
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    std = statistics.stdev([0.0, 1.0])  # the two seeds differ by 1 at every step
    assert math.isclose(band.min(), 0.5 - std) and math.isclose(band.max(), 1.25 + std)
    assert "±1 std over seeds" in fig.get_suptitle() and "EMA smoothing 0.5" in fig.get_suptitle()
    with pytest.raises(ValueError, match="smoothing"):
        reward_curves(collect_runs(root), tmp_path / "c.png", smoothing=1.0)


def test_no_reward_history_no_png(tmp_path: Path) -> None:
    run_dir = tmp_path / "sweep" / "0_method=sft"
    write_run(run_dir, "sft", "-", 0)  # SFT history: loss only
    summary = write_report(tmp_path / "sweep")
    assert summary["reward_curves_png"] is None
    assert not (tmp_path / "sweep" / "reward_curves.png").exists()
    assert "## Reward curves" not in summary["markdown"]
    assert "None: every run has its metrics.json." in summary["markdown"]
    # one seed: the cell is the run's bootstrap CI
    table = table1(collect_runs(tmp_path / "sweep"))
    assert table[["model", "n", "F1-Theme"]].values.tolist() == [["SFT (LoRA r8)", 1, "57.00 [55.00, 60.00]"]]


def test_a_group_whose_runs_all_failed_keeps_its_row(tmp_path: Path) -> None:
    write_run(tmp_path / "0_none", "none", "-", 0)
    (tmp_path / "1_sft").mkdir()
    (tmp_path / "1_sft" / "config.yaml").write_text(yaml.safe_dump(config("sft", "-", 0)))
    (tmp_path / "1_sft" / "metrics.json").write_text("{not json")  # a writer killed mid-file
    runs = collect_runs(tmp_path)
    assert runs["status"].tolist() == ["ok", "failed"]
    assert runs.loc[1, "error"].startswith("unreadable metrics.json")
    table = table1(runs)
    assert table["model"].tolist() == ["base, few-shot", "SFT (LoRA r8)"]
    assert table.loc[1, "n"] == 0 and set(table.loc[1, list(HEADERS)]) == {"–"}
    assert table.loc[0, "IoU"] == "60.00 [57.60, 63.40]"  # one seed: the run's bootstrap CI


def test_rows_split_by_model_and_adapter_start(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "grpo", "v1", 0)
    write_run(tmp_path / "b", "grpo", "v1", 1)
    cfg = config("grpo", "v1", 0) | {"model": {"name": "qwen2_5_vl_3b"}}
    cfg["method"]["adapter"] = "/runs/sft/adapter"  # the hybrid SFT -> GRPO: a row of its own
    write_run(tmp_path / "c", "grpo", "v1", 0)
    (tmp_path / "c" / "config.yaml").write_text(yaml.safe_dump(cfg))
    table = table1(collect_runs(tmp_path))
    assert table["model"].tolist() == [
        "qwen2_5_vl_7b: GRPO v1 (LoRA r8)",
        "qwen2_5_vl_3b: GRPO v1 (LoRA r8, from adapter)",
    ]
    assert table["n"].tolist() == [2, 1]


def test_missing_or_empty_sweep_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r"sweep_dir=.*nope: no such directory"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match=r"no run dirs under sweep_dir '.*empty'"):
        write_report(tmp_path / "empty")


def test_run_from_the_composed_config_defaults_out_dir_to_sweep_dir(sweep: Path) -> None:
    spec = importlib.util.spec_from_file_location("report_script", REPO / "experiments" / "report.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="report", overrides=[f"sweep_dir={sweep}", "smoothing=0.3"])
    assert cfg.experiment_name == "report" and cfg.out_dir is None and cfg.show_study is True
    summary = script.run(cfg)
    assert summary["report_md"] == str(sweep / "report.md")
    assert (sweep / "reward_curves.png").is_file()
    assert "EMA smoothing 0.3" in summary["markdown"]
    # no sweep_dir: the newest multirun under paths.log_dir (make report), or a clear error when there is none
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        newest = compose(config_name="report", overrides=[f"paths.log_dir={sweep.parents[2]}"])
        nothing = compose(config_name="report", overrides=[f"paths.log_dir={sweep / 'no-sweeps-here'}"])
    assert script.run(newest)["report_md"] == str(sweep / "report.md")
    with pytest.raises(MissingInputError, match="no multirun under"):
        script.run(nothing)


@pytest.mark.slow  # a Python + Hydra start-up, about 5 s
def test_cli_prints_the_report(sweep: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "out"
    cmd = [sys.executable, "experiments/report.py", f"sweep_dir={sweep}", f"out_dir={out}", "show_study=false"]
    cmd.append(f"hydra.run.dir={tmp_path / 'hydra'}")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"\n# Report: {sweep}\n" in done.stdout  # after Hydra's console log lines
    assert STUDY_LABEL not in done.stdout
    assert (out / "report.md").is_file() and (out / "reward_curves.png").is_file()


def test_matched_iou_gets_its_own_panel_beside_the_iou_rewards(tmp_path: Path) -> None:
    # both IoU rewards log iou/matched (no range bonus): v1 and v2 are compared on one scale in their own panel
    sweep = tmp_path / "sweep"
    for reward in ("v1", "v2"):
        run_dir = sweep / f"grpo_{reward}"
        write_run(run_dir, "grpo", reward, 0)
        rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
        for row in rows[:-1]:
            row["iou/matched"] = 0.01 * row["step"] * (2 if reward == "v2" else 1)
        (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = reward_curves(collect_runs(sweep), tmp_path / "curves.png")
    assert fig is not None
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    matched = panels[PANEL_TITLES["iou_matched"]]
    assert len(matched.get_lines()) == 2
    ends = sorted(round(float(line.get_ydata()[-1]), 6) for line in matched.get_lines())
    assert ends == [0.4, 0.8]  # step 40: 0.01 x 40 (v1) and 0.02 x 40 (v2), unsmoothed


def test_runs_that_differ_only_in_what_the_method_ignores_count_once(tmp_path: Path) -> None:
    # `-m method=sft,grpo reward=v1,v2 seed=0,1,2`: SFT ran once per reward, but the reward does not change SFT
    job = 0
    for method in ("sft", "grpo"):
        for reward in ("v1", "v2"):
            for seed in (0, 1, 2):
                write_run(tmp_path / str(job), method, reward if method == "grpo" else "-", seed)
                if method == "sft":  # the reward node differs between the repeats, as in a real sweep
                    cfg = yaml.safe_load((tmp_path / str(job) / "config.yaml").read_text())
                    cfg["reward"]["name"] = reward
                    (tmp_path / str(job) / "config.yaml").write_text(yaml.safe_dump(cfg))
                job += 1
    table = table1(collect_runs(tmp_path))
    sft = table[table["model"] == "SFT (LoRA r8)"].iloc[0]
    assert (sft["n"], sft["runs/finished"]) == (3, 6)
    # the t-interval is over the 3 seeds, not over 6 values of 3 identical pairs
    values = [metric_value(("sft", "-"), seed, 4) for seed in (0, 1, 2)]
    sd = statistics.stdev(values)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    mean = statistics.mean(values)
    assert sft["IoU"] == f"{mean:.2f} ± {sd:.2f} (n=3) [{mean - half:.2f}, {mean + half:.2f}]"
    assert table[table["model"].str.startswith("GRPO")]["n"].tolist() == [3, 3]
    markdown = write_report(tmp_path)["markdown"]
    assert "Counted once per seed: SFT (LoRA r8): 6 runs, 3 seeds." in markdown


def test_latest_sweep_is_the_newest_multirun_and_none_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r"run a sweep first \(make sweep\)"):
        latest_sweep(tmp_path)
    old = tmp_path / "reward_ablation" / "multirun" / "2026-01-01_10-00-00"
    new = tmp_path / "default" / "multirun" / "2026-01-02_10-00-00"
    for i, path in enumerate((old, new)):
        path.mkdir(parents=True)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    assert latest_sweep(tmp_path) == new


def test_table1_mean_std_with_n_and_an_interval_wider_than_the_range(tmp_path: Path) -> None:
    # three seeds: F1-Object 50, 51, 52 (a narrow interval, printed) and IoU 0, 50, 100 (half-width
    # t(0.975, 2) x 50 / sqrt(3) = 124.2 > 100, the metric's range: mean ± std with n, and "more seeds needed")
    for seed, (f1, iou) in enumerate([(50.0, 0.0), (51.0, 50.0), (52.0, 100.0)]):
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config("sft", "-", seed)))
        (run_dir / "metrics.json").write_text(json.dumps({"eval/f1_object": f1, "eval/iou": iou}))
    row = table1(collect_runs(tmp_path)).iloc[0]
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd of (50, 51, 52) is 1
    assert row["F1-Object"] == f"51.00 ± 1.00 (n=3) [{51 - half:.2f}, {51 + half:.2f}]"
    assert row["IoU"] == "50.00 ± 50.00 (n=3), CI too wide: more seeds needed"
    # the numbers stay in the CSV columns
    assert (row["iou/mean"], row["iou/std"], row["iou/n"]) == (50.0, 50.0, 3)
    assert row["iou/hi"] - row["iou/lo"] == pytest.approx(2 * stats.t.ppf(0.975, 2) * 50.0 / math.sqrt(3))


def _versus_run(
    root: Path,
    name: str,
    method: str,
    reward: str,
    seed: int,
    rows: list[dict[str, Any]],
    adapter: str | None = None,
    model_path: str | None = None,
    lora: bool = True,
):
    """A run dir whose metrics.json is what the evaluation writes for ``rows`` (predictions.jsonl)."""
    from lego_arta.metrics import prediction_metrics

    run_dir = root / name
    run_dir.mkdir(parents=True)
    cfg = config(method, reward, seed)
    cfg["method"]["adapter"] = adapter
    cfg["model"]["path"] = model_path
    if not lora:
        cfg["method"]["lora"] = None  # method.lora=null: full fine-tuning
    cfg["eval"] = {"bootstrap": {"samples": 1000, "seed": seed}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = prediction_metrics(rows, bootstrap_samples=1000, seed=seed).metrics
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_report_says_which_trained_row_beats_the_trivial_answers_and_sft(tmp_path: Path) -> None:
    # a demo-shaped sweep: sft, grpo_v2_s0 and grpo_v2_s1 from sft/adapter, grpo_v1_s0 from scratch (its SFT: the SFT
    # run of its seed); predictions built so that each verdict is known
    ref = json.dumps([{"bbox_2d": [10, 10, 50, 50], "label": "red brick"}])
    demo = json.dumps([{"bbox_2d": [10, 10, 30, 30], "label": "red brick"}])  # IoU 0.25 with the reference
    mean_box = json.dumps([{"bbox_2d": [60, 60, 90, 90], "label": "red brick"}])  # IoU 0

    def rows(exact: int) -> list[dict[str, Any]]:
        # 12 object samples, the first `exact` answered exactly and the others with the demo's box; grounding copies
        # the demo; state always "No" on 2 groups of 1 Yes + 3 No
        out = [
            {"id": f"o{i}", "task": "object", "prediction": ref if i < exact else demo, "reference": ref}
            | {"demo_answer": demo, "mean_box_answer": mean_box}
            for i in range(12)
        ]
        out += [
            {"id": f"g{i}", "task": "grounding", "prediction": "Attach the blue plate.", "reference": "Attach it red."}
            | {"demo_answer": "Attach the blue plate."}
            for i in range(6)
        ]
        out += [
            {"id": f"s{i}", "task": "state", "prediction": "No", "reference": r}
            for i, r in enumerate(["Yes", "No", "No", "No"] * 2)
        ]
        return out

    sweep = tmp_path / "demo"
    _versus_run(sweep, "baseline", "none", "-", 0, rows(0))
    _versus_run(sweep, "sft", "sft", "-", 0, rows(6))  # IoU (6 + 6 x 0.25) / 12 = 62.5
    adapter = str(sweep / "sft" / "adapter")
    _versus_run(sweep, "grpo_v2_s0", "grpo", "v2", 0, rows(12), adapter)  # exact everywhere: +37.5 on IoU over SFT
    _versus_run(sweep, "grpo_v2_s1", "grpo", "v2", 1, rows(6), adapter)  # SFT's own answers: +0
    _versus_run(sweep, "grpo_v1_s0", "grpo", "v1", 0, rows(6))  # from scratch, paired with the SFT run of seed 0
    runs = collect_runs(sweep)
    trivial = trivial_lines(runs)
    # one line per trained run (the baseline is not trained), task and reference: 4 runs x 4 comparisons
    assert len(trivial) == 16 and "base, few-shot" not in set(trivial["row"])
    sft = {(r["metric"], r["reference"]): r for _, r in trivial[trivial["row"] == "SFT (LoRA r8)"].iterrows()}
    assert sft.keys() == {
        ("IoU", "copy the demo's answer"),
        ("IoU", "mean training box"),
        ("F1-Theme", "copy the demo's answer"),
        ("F1-State", "always Yes"),
    }
    # IoU 62.5 against the demo's 25 (+0.75 on half the samples) and the mean box's 0 (+1 or +0.25 on each)
    line = sft[("IoU", "copy the demo's answer")]
    assert (line["seed"], line["task"]) == (0, "object")
    assert [line["model"], line["reference value"], line["diff"]] == pytest.approx([62.5, 25.0, 37.5])
    assert 0.0 < line["lo"] < 37.5 < line["hi"] <= 75.0 and line["verdict"] == "beats"
    line = sft[("IoU", "mean training box")]
    assert line["diff"] == pytest.approx(62.5) and line["lo"] > 0 and line["verdict"] == "beats"
    # the grounding answer is the demo's: 0 [0, 0], and the verdict says so
    line = sft[("F1-Theme", "copy the demo's answer")]
    assert [line["difference"], line["verdict"]] == ["+0.00 [0.00, 0.00]", "does not beat"]
    # always "No" scores F1-State 0 against always-Yes' 40
    line = sft[("F1-State", "always Yes")]
    assert [line["model"], line["reference value"], line["diff"]] == pytest.approx([0.0, 40.0, -40.0])
    assert line["difference"].startswith("-40.00 [") and line["verdict"] == "does not beat"
    verdicts = row_verdicts(trivial)
    assert "SFT (LoRA r8), object IoU against mean training box: beats (in 1 of 1 seed)" in verdicts
    assert (
        "SFT (LoRA r8), grounding F1-Theme against copy the demo's answer: does not beat (beats in 0 of 1 seed)"
        in verdicts
    )
    assert (
        "GRPO v2 (LoRA r8, from adapter), object IoU against copy the demo's answer: beats (in 2 of 2 seeds)"
        in verdicts
    )
    assert (
        "GRPO v2 (LoRA r8, from adapter), state F1-State against always Yes: does not beat (beats in 0 of 2 seeds)"
        in verdicts
    )

    baseline = baseline_lines(runs)
    # the three GRPO runs, each on grounding, object and state, against the SFT run
    assert list(zip(baseline["row"], baseline["seed"], baseline["metric"], strict=True)) == [
        (row, seed, metric)
        for row, seed in [
            ("GRPO v1 (LoRA r8)", 0),
            ("GRPO v2 (LoRA r8, from adapter)", 0),
            ("GRPO v2 (LoRA r8, from adapter)", 1),
        ]
        for metric in ("F1-Theme", "IoU", "F1-State")
    ]
    iou = {(r["row"], r["seed"]): r for _, r in baseline[baseline["metric"] == "IoU"].iterrows()}
    # seed 0 is exact where SFT gave the demo's box: +75 on half the samples, 0 on the others
    s0 = iou[("GRPO v2 (LoRA r8, from adapter)", 0)]
    assert [s0["model"], s0["reference value"], s0["diff"]] == pytest.approx([100.0, 62.5, 37.5])
    assert s0["reference"] == "SFT (LoRA r8)" and s0["lo"] > 0 and s0["verdict"] == "beats"
    # seed 1 and the v1 run answered as SFT did: +0 [0, 0]
    for key in [("GRPO v2 (LoRA r8, from adapter)", 1), ("GRPO v1 (LoRA r8)", 0)]:
        assert [iou[key]["difference"], iou[key]["verdict"]] == ["+0.00 [0.00, 0.00]", "does not beat"]
    verdicts = row_verdicts(baseline)
    assert (
        "GRPO v2 (LoRA r8, from adapter), object IoU against SFT (LoRA r8): does not beat (beats in 1 of 2 seeds)"
        in verdicts
    )
    assert "GRPO v1 (LoRA r8), object IoU against SFT (LoRA r8): does not beat (beats in 0 of 1 seed)" in verdicts
    # every line states its verdict: none left to be implied
    assert set(baseline["verdict"]) <= {"beats", "does not beat"}
    # report.md shows both comparisons: each section's table and verdicts are rendered from these lines
    md = write_report(sweep)["markdown"]
    assert "## Against the trivial answers\n\n" in md and versus_markdown(trivial) in md
    assert "## Against SFT\n\n" in md and versus_markdown(baseline) in md
    # a copy of the sweep elsewhere: method.adapter still names the original sft/, the copy's sft/ is found by name
    copy = tmp_path / "copied" / "demo"
    shutil.copytree(sweep, copy)
    pd.testing.assert_frame_equal(baseline_lines(collect_runs(copy)), baseline)


def test_grpo_from_a_fully_fine_tuned_sft_model_is_compared_with_that_run(tmp_path: Path) -> None:
    # the demo's shape: SFT with method.lora=null saves sft_full/model, GRPO (LoRA r8) starts from model.path=it; a
    # LoRA SFT run of the same seed is there too, and the SFT run of the seed would be the fallback pairing
    ref = json.dumps([{"bbox_2d": [10, 10, 50, 50], "label": "red brick"}])
    half = json.dumps([{"bbox_2d": [10, 10, 30, 50], "label": "red brick"}])  # IoU 0.5

    def rows(prediction: str) -> list[dict[str, Any]]:
        return [{"id": f"o{i}", "task": "object", "prediction": prediction, "reference": ref} for i in range(8)]

    sweep = tmp_path / "demo"
    _versus_run(sweep, "sft", "sft", "-", 0, rows(ref))
    _versus_run(sweep, "sft_full", "sft", "-", 0, rows(half), lora=False)
    _versus_run(sweep, "grpo_v2_s0", "grpo", "v2", 0, rows(ref), model_path=str(sweep / "sft_full" / "model"))
    runs = collect_runs(sweep)
    assert sorted(zip(runs["lora_r"].fillna(-1), runs["start"], strict=True)) == [(0, ""), (8, ""), (8, "model")]
    assert table1(runs)["model"].tolist() == [
        "SFT (full fine-tuning)",
        "SFT (LoRA r8)",
        "GRPO v2 (LoRA r8, from fine-tuned model)",
    ]
    line = next(r for _, r in baseline_lines(runs).iterrows() if r["metric"] == "IoU")
    # paired with the run its weights came from (IoU 50), not with the LoRA SFT run of its seed (IoU 100)
    assert [line["model"], line["reference value"]] == pytest.approx([100.0, 50.0])
    assert line["reference"] == "SFT (full fine-tuning)" and line["verdict"] == "beats"


def test_the_signal_behind_the_advantage_is_plotted_and_tabled(tmp_path: Path) -> None:
    # two v1 seeds whose histories carry GRPO's signal keys, as SignalGRPOTrainer and the IoU rewards log them
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        run_dir = sweep / f"grpo_v1_s{seed}"
        write_run(run_dir, "grpo", "v1", seed)
        rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
        for row in rows[:-1]:
            step = row["step"]
            row["frac_reward_zero_std"] = 0.5 if step % 2 else 0.0  # mean over 40 steps: 0.25
            row["rewards/iou_v1/frac_varying_groups"] = 1.0 if step <= 10 else 0.0  # mean 10 / 40 = 0.25
            row["rewards/state/frac_varying_groups"] = None if step % 4 else 0.0  # only every 4th step: mean 0
            row["frame/grid_share"] = 0.0 if step <= 20 else 1.0
            row["entropy"] = 2.0 - step / 40
        (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = collect_runs(sweep)
    fig = reward_curves(runs, tmp_path / "curves.png")
    assert fig is not None
    titles = [ax.get_title() for ax in fig.axes]
    for panel in ("zero_std", "varying_iou", "varying_state", "grid_share", "entropy"):
        assert PANEL_TITLES[panel] in titles
    varying = next(ax for ax in fig.axes if ax.get_title() == PANEL_TITLES["varying_iou"])
    assert [line.get_label() for line in varying.get_lines()] == ["v1: iou_v1"]
    table = signal_table(runs)
    assert table["seed"].tolist() == [0, 1] and table["steps"].tolist() == [STEPS, STEPS]
    assert table["no advantage"].tolist() == pytest.approx([0.25, 0.25])
    assert table["varies: iou_v1"].tolist() == pytest.approx([0.25, 0.25])
    assert table["varies: state"].tolist() == [0.0, 0.0]
    # first quarter: steps 1..10.75 (0.0 on the grid; entropy 2 - 5.5 / 40 = 1.8625); last: steps 30.25..40 (1.0;
    # entropy 2 - 35.5 / 40 = 1.1125)
    assert table["on grid"].tolist() == ["0.00 → 1.00"] * 2
    assert table["entropy"].tolist() == ["1.86 → 1.11"] * 2
    # report.md has the section with the table; an SFT run (it logs entropy too) adds no row
    write_run(sweep / "sft", "sft", "-", 0)
    markdown = write_report(sweep)["markdown"]
    section = markdown.split("## What moved the advantage", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == [
        "reward",
        "seed",
        "steps",
        "no advantage",
        "varies: iou_v1",
        "varies: state",
        "on grid",
        "entropy",
    ]
    assert len(lines) == 2 + 2  # header, rule, one row per GRPO run


def test_validation_during_training_gets_its_figure_and_section(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for method, reward, seed in (("sft", "-", 0), ("grpo", "v2", 0), ("grpo", "v2", 1)):
        run_dir = sweep / f"{method}_{seed}"
        write_run(run_dir, method, reward, seed)
        with (run_dir / "history.jsonl").open("a") as f:
            for step in (50, 100):  # val rows of their own, as ValidationCallback writes them
                f.write(json.dumps({"step": step, "val/iou": step / 10 + seed, "val/f1_theme": 30.0}) + "\n")
    result = write_report(sweep)
    png = Path(result["validation_curves_png"])
    assert png.name == "validation_curves.png" and png.stat().st_size > 10_000
    assert (
        "## Validation during training" in result["markdown"]
        and "![validation curves](validation_curves.png)" in (result["markdown"])
    )
    fig = validation_curves(collect_runs(sweep), tmp_path / "v.png", metrics=["f1_theme", "iou", "f1_state"])
    assert fig is not None
    assert [ax.get_title() for ax in fig.axes] == ["val/f1_theme", "val/iou"]  # f1_state was not validated
    iou = {line.get_label(): line for line in fig.axes[1].get_lines()}
    assert set(iou) == {"sft (1)", "v2 (2)"}
    np.testing.assert_allclose(iou["v2 (2)"].get_ydata(), [5.5, 10.5])  # mean over seeds 0 and 1
    # a sweep without validation has neither
    plain = write_report(make_sweep(tmp_path / "plain"))
    assert plain["validation_curves_png"] is None and "## Validation during training" not in plain["markdown"]


def test_out_of_domain_sets_get_table1_columns_and_each_trained_run_meets_its_start(tmp_path: Path) -> None:
    # eval.extra=referring: the untrained model, SFT from it, GRPO from SFT's adapter; each scored on the set
    ref = json.dumps([{"bbox_2d": [10, 10, 50, 50], "label": "the red brick"}])
    half = json.dumps([{"bbox_2d": [10, 10, 30, 50], "label": "the red brick"}])  # IoU 0.5
    off = json.dumps([{"bbox_2d": [60, 60, 90, 90], "label": "the red brick"}])  # IoU 0

    def ood(answers: list[str]) -> list[dict[str, Any]]:
        return [{"id": f"r{i}", "task": "object", "prediction": a, "reference": ref} for i, a in enumerate(answers)]

    def run(name: str, method: str, answers: list[str], adapter: str | None = None) -> None:
        from lego_arta.metrics import prediction_metrics

        _versus_run(sweep, name, method, "v2" if method == "grpo" else "-", 0, ood([ref] * 4), adapter)
        run_dir = sweep / name
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        cfg["eval"]["extra"] = {"referring": {"name": "refcoco_synthetic"}}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
        rows = ood(answers)
        (run_dir / "predictions_extra_referring.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        scored = prediction_metrics(rows, bootstrap_samples=1000, seed=0).metrics
        metrics |= {f"extra/referring/{k[5:]}": v for k, v in scored.items() if k.startswith("eval/")}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))

    sweep = tmp_path / "chain"
    run("baseline", "none", [ref] * 8)  # the start grounds every expression
    run("sft", "sft", [half] * 4 + [off] * 4)  # SFT forgot: IoU 25, Acc@0.5 50
    run("grpo_v2_s0", "grpo", [ref] * 6 + [half] * 2, str(sweep / "sft" / "adapter"))  # GRPO regained from SFT
    runs = collect_runs(sweep)
    table = table1(runs, [*METRICS, *ood_metrics(runs)])
    # the study's seven, then the set's two, before the data columns
    assert list(table.columns[2:11]) == [h for _, h in METRICS] + ["IoU (referring)", "Acc@0.5 (referring)"]
    cells = dict(zip(table["model"], table["IoU (referring)"], strict=True))
    assert cells["base, few-shot"].startswith("100.00") and cells["SFT (LoRA r8)"].startswith("25.00")
    assert dict(zip(table["model"], table["Acc@0.5 (referring)"], strict=True))["SFT (LoRA r8)"].startswith("50.00")
    lines = start_lines(runs)
    got = {(r["row"], r["reference"]): r for _, r in lines.iterrows()}
    sft = got[("SFT (LoRA r8)", "base, few-shot")]  # SFT from the untrained model's run
    assert (sft["task"], sft["metric"]) == ("referring", "IoU") and sft["diff"] == pytest.approx(-75.0)
    assert sft["hi"] < 0 and sft["verdict"] == "does not beat"
    grpo = got[("GRPO v2 (LoRA r8, from adapter)", "SFT (LoRA r8)")]  # GRPO from the SFT run whose adapter it loaded
    assert grpo["diff"] == pytest.approx(62.5) and grpo["lo"] > 0 and grpo["verdict"] == "beats"
    md = write_report(sweep)["markdown"]
    assert "IoU (referring)" in md and "## Out of domain: against the start model" in md
    assert "SFT (LoRA r8), referring IoU against base, few-shot: does not beat (beats in 0 of 1 seed)." in md


def test_the_generalisation_questions_are_read_by_arm_and_tested_per_seed(tmp_path: Path) -> None:
    # make generalisation's run dirs: prestage, then <arm>_s<seed>; metrics built so that (a) and (b) are known
    sweep = tmp_path / "generalisation"

    def run(name: str, method: str, seed: int, lego: float, referring: float) -> None:
        run_dir = sweep / name
        run_dir.mkdir(parents=True)
        cfg = config(method, "v2" if method == "grpo" else "-", seed)
        cfg["data"] = {"name": "refcoco_synthetic" if name == "prestage" else "synthetic"}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
        metrics = {"eval/iou": lego, "extra/referring/iou": referring, "extra/referring/iou50": referring}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))

    run("prestage", "sft", 0, 70.0, 70.0)  # its eval/iou is on the referring set itself: not (a)'s pre-stage value
    for seed in range(5):
        run(f"sft_base_s{seed}", "sft", seed, 2.0 + seed / 10, 1.0)
        run(f"sft_pre_s{seed}", "sft", seed, 20.0 + seed, 40.0 - seed)  # SFT on LEGO forgets about 30 of 70
        run(f"grpo_pre_s{seed}", "grpo", seed, 15.0 + seed, 65.0 + seed / 2)  # GRPO keeps most of it
    findings = generalisation(collect_runs(sweep))
    assert [(f.question, f.endpoint, f.arm_a, f.arm_b) for f in findings] == [
        ("a", "eval/iou", "sft_base", "sft_pre"),
        ("b", "extra/referring/iou", "sft_pre", "grpo_pre"),
    ]
    a, b = findings
    assert a.comparison.diff == pytest.approx(19.8) and math.isnan(a.prestage)
    assert a.comparison.p_permutation == pytest.approx(2 / 252)  # every sft_pre seed above every sft_base seed
    assert b.comparison.diff == pytest.approx(28.0) and b.prestage == 70.0
    verdicts = generalisation_verdicts(findings)
    assert verdicts[1] == (
        "(b) grpo_pre − sft_pre on extra/referring/iou = +28; against the pre-stage's 70: sft_pre -32, grpo_pre -4: "
        "significant at 0.05 by the exact permutation test (p = 0.008)"
    )
    md = write_report(sweep)["markdown"]
    assert "## Generalisation: what a pre-stage gives, what training forgets" in md and verdicts[0] in md
    assert "## Reward ablation" not in md  # GRPO under one reward only: nothing to compare v2 with
    # the chain's rows stay apart in Table 1: the pre-stage trained on other data than the LEGO SFT from the base
    rows = table1(collect_runs(sweep))
    assert {"refcoco_synthetic: SFT (LoRA r8)", "synthetic: SFT (LoRA r8)"} <= set(rows["model"])
    assert dict(zip(rows["model"], rows["n"], strict=True))["refcoco_synthetic: SFT (LoRA r8)"] == 1
