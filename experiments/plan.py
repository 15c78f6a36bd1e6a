"""Will this run fit, before any GPU time: parameters, visual and prompt tokens, a peak-GPU-memory estimate, a verdict.

    python experiments/plan.py experiment=paper_grpo_v1 [plan.gpus=1 plan.gpu_memory_gb=80]
    make plan ARGS="experiment=paper_sft plan.gpus=8 plan.gpu_memory_gb=40"

No weights and no GPU: the model is built on the meta device from the checkpoint's config.json (``model.files``
while ``model.path`` is a hub id), the processor and prompts from its real files. The memory figure is an estimate;
its formula is in lego_arta/planning/memory.py.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from lego_arta.planning.plan import format_plan, make_plan


def run(cfg: DictConfig) -> dict[str, Any]:
    """Plan the run ``cfg`` describes; print the plan and return it."""
    plan = make_plan(cfg)
    print(format_plan(plan))
    return plan


@hydra.main(version_base="1.3", config_path="../conf", config_name="plan")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
