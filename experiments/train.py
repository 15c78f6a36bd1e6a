"""Train one model (SFT or GRPO with LoRA), then evaluate it on the test split.

    python experiments/train.py method=grpo reward=v1
    python experiments/train.py -m method=sft,grpo reward=v1,v2 seed=0,1,2
    python experiments/train.py experiment=paper_grpo_v1 model.path=/data/Qwen2.5-VL-7B-Instruct data.root=/data/arta

`method=none` skips training and evaluates the few-shot baseline. Writes config.yaml, history.jsonl, the LoRA adapter,
predictions.jsonl and metrics.json into the run dir (outputs/<experiment_name>/...).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from lego_arta.cli import hydra_task, launch


def run(cfg: DictConfig) -> dict[str, float]:
    """Train (unless ``method=none``), evaluate when ``eval.after_train``, return the metrics."""
    # imported here, not at the top: the model stack takes seconds to import, and Hydra reports an override
    # typo or prints --cfg before it is needed
    from lego_arta.pipeline import run_experiment

    return run_experiment(cfg, train=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@hydra_task
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main, "config")
