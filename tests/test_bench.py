"""The training bench (experiments/bench_train.py) on a tiny budget: the same work on both sides, a ratio with its
spread and the A/A noise floor, and a profile that finds what ours does beyond bare TRL."""

from __future__ import annotations

import pytest

from experiments.bench_train import bench

pytestmark = pytest.mark.slow


def test_the_sft_bench_reports_its_spread_and_where_ours_differs(cache_dir):
    report = bench("sft", steps=3, rounds=2, profile_steps=2, cache_dir=cache_dir)
    assert report["tokens"] > 0 and len(report["ratio_per_round"]) == 2
    assert report["ratio_min"] <= report["ratio"] <= report["ratio_max"]
    low, high = report["same_code_ratio_min_max"]
    assert 0 < low <= high
    profile = report["profile"]
    assert profile["s_per_training_step_ours"] > 0 and profile["s_per_training_step_bare"] > 0
    # ours saves a checkpoint after its last step (save_strategy=steps, to resume); bare TRL saves nothing
    assert "trl/trainer/sft_trainer.py:_save_checkpoint" in profile["only_ours_s_per_run"]
    assert profile["only_bare_s_per_run"] == {}
    ratio, profiled = report["notes"]
    assert f"{report['ratio']:.3f}" in ratio and f"{low:.3f} to {high:.3f}" in ratio
    assert f"{profile['s_per_training_step_ours']:.4f} s per step in ours" in profiled
