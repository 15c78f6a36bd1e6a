"""Evaluate a model on the test split: the few-shot baseline, or a trained LoRA adapter.

    python experiments/evaluate.py                                   # the base model, few-shot
    python experiments/evaluate.py method.adapter=outputs/default/runs/<time>/adapter
    python experiments/evaluate.py model=qwen2_5_vl_7b model.path=/data/Qwen2.5-VL-7B-Instruct data=lego_arta \
        data.root=/data/arta eval.batch_size=3

Streams predictions.jsonl (an interrupted evaluation resumes from it) and writes metrics.json into the run dir.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from lego_arta.cli import hydra_task, launch


def run(cfg: DictConfig) -> dict[str, float]:
    """Evaluate the model (and ``method.adapter`` when set); return the metrics."""
    # imported here, not at the top: the model stack takes seconds to import, and Hydra reports an override
    # typo or prints --cfg before it is needed
    from lego_arta.pipeline import run_experiment

    return run_experiment(cfg, train=False)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@hydra_task
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main, "config")
