"""Learning on a fixed seed, with the demo's own recipe (conf/experiment/demo.yaml) on a shorter budget: SFT (the whole
tiny model) answers grounding better than copying the few-shot demo, by a margin and with the paired bootstrap CI
above 0, and GRPO v2 (LoRA r8 on the fine-tuned model) raises its IoU reward and its test IoU."""

from __future__ import annotations

from pathlib import Path

import pytest

from lego_arta.pipeline import run_experiment
from lego_arta.runs import read_jsonl

pytestmark = pytest.mark.slow(seconds=80)  # on 2 cores: the longest test, started first under xdist

# the demo's scenes and stage overrides (demo.sft, demo.grpo), evaluated on the two tasks its SFT trains on, shorter
TASKS = ["experiment=demo", "data.tasks=[grounding,object]"]
SFT_STEPS = 200
GRPO_STEPS = 40
MARGIN = 2.0  # F1-Theme points above copying the demo's answer


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_sft_beats_copying_the_demo_then_grpo_raises_the_iou_reward(make_cfg, tmp_path: Path):
    demo = make_cfg("experiment=demo").demo
    sft_cfg = make_cfg(
        *TASKS,
        "method=sft",
        *demo.sft,
        f"method.args.max_steps={SFT_STEPS}",
        f"method.args.save_steps={SFT_STEPS}",
        f"paths.output_dir={tmp_path / 'sft'}",
    )
    assert sft_cfg.method.lora is None  # the demo's SFT trains the whole model
    metrics = run_experiment(sft_cfg)
    loss = [row["loss"] for row in read_jsonl(tmp_path / "sft" / "history.jsonl") if "loss" in row]
    assert len(loss) == SFT_STEPS and _mean(loss[-10:]) < 0.2 * _mean(loss[:10]), (loss[:10], loss[-10:])
    # grounding: better than the trivial answer, paired over the same test samples
    gain = metrics["vs/copy_demo/f1_theme"]
    assert gain >= MARGIN and metrics["vs/copy_demo/f1_theme_lo"] > 0, (gain, metrics["vs/copy_demo/f1_theme_lo"])
    assert metrics["eval/f1_theme"] == pytest.approx(metrics["ref/copy_demo/f1_theme"] + gain)

    grpo_cfg = make_cfg(
        *TASKS,
        "method=grpo",
        "reward=v2",
        *demo.grpo,
        f"model.path={tmp_path / 'sft' / 'model'}",
        f"method.args.max_steps={GRPO_STEPS}",
        f"method.args.save_steps={GRPO_STEPS}",
        f"paths.output_dir={tmp_path / 'grpo'}",
    )
    grpo = run_experiment(grpo_cfg)
    rows = [row for row in read_jsonl(tmp_path / "grpo" / "history.jsonl") if "rewards/iou_v2/mean" in row]
    iou = [row["rewards/iou_v2/mean"] or 0.0 for row in rows]
    assert len(iou) == GRPO_STEPS
    third = len(iou) // 3
    assert _mean(iou[-third:]) > _mean(iou[:third]), iou
    # and on the test split: measured 3.51 after GRPO against 0.00 for its SFT start (the demo's full budget, 4.91
    # against 1.66, also beats the mean training box; this shorter one does not: +0.95 [-0.68, 2.51])
    assert grpo["eval/iou"] > metrics["eval/iou"] + 1.0, (grpo["eval/iou"], metrics["eval/iou"])
