"""The direction of learning on a tiny run (fixed seed): SFT's loss falls, then GRPO raises the IoU reward."""

from __future__ import annotations

from pathlib import Path

import pytest

from lego_arta.pipeline import run_experiment
from lego_arta.runs import read_jsonl

pytestmark = pytest.mark.slow

# the demo's model, data and GRPO settings (conf/experiment/demo.yaml), on the object task, shorter budgets
COMMON = ["experiment=demo", "eval.after_train=false", "method.tasks=[object]"]
SFT = ["method=sft", "method.args.max_steps=150", "method.args.learning_rate=3e-3", "method.args.save_steps=150"]
GRPO = [
    "method=grpo",
    "reward=v2",
    "method.args.max_steps=40",
    "method.args.learning_rate=1e-3",
    "method.args.num_generations=4",
    "method.args.per_device_train_batch_size=4",
    "method.args.max_completion_length=40",
    "method.args.temperature=0.5",
    "method.args.save_steps=40",
]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_sft_loss_falls_then_grpo_raises_the_iou_reward(make_cfg, tmp_path: Path):
    sft_cfg = make_cfg(*COMMON, *SFT, f"paths.output_dir={tmp_path / 'sft'}")
    run_experiment(sft_cfg)
    loss = [row["loss"] for row in read_jsonl(tmp_path / "sft" / "history.jsonl") if "loss" in row]
    assert len(loss) == 150
    assert _mean(loss[-10:]) < 0.5 * _mean(loss[:10]), (loss[:10], loss[-10:])

    adapter = tmp_path / "sft" / "adapter"
    grpo_cfg = make_cfg(*COMMON, *GRPO, f"method.adapter={adapter}", f"paths.output_dir={tmp_path / 'grpo'}")
    run_experiment(grpo_cfg)
    rows = [row for row in read_jsonl(tmp_path / "grpo" / "history.jsonl") if "rewards/iou_v2/mean" in row]
    iou = [row["rewards/iou_v2/mean"] or 0.0 for row in rows]  # None: no object sample in that step's batch
    assert len(iou) == 40
    third = len(iou) // 3
    assert _mean(iou[-third:]) > _mean(iou[:third]), iou
