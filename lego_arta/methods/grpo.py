"""(c) GRPO with LoRA through TRL's ``GRPOTrainer``; rewards and their weights come from the ``reward`` group."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig
from transformers import PreTrainedModel, ProcessorMixin
from trl import GRPOConfig, GRPOTrainer

from lego_arta.methods.common import callbacks, check_train_split, lora_setup, trainer_args
from lego_arta.rewards import build_reward_funcs
from lego_arta.tracking import Tracker


def build_grpo_trainer(
    cfg: DictConfig,
    model: PreTrainedModel,
    processor: ProcessorMixin,
    train_dataset: Dataset,
    run_dir: Path,
    tracker: Tracker,
) -> GRPOTrainer:
    """A ``GRPOTrainer`` whose reward functions receive ``solution`` and ``task`` as keyword arguments.

    Mixed-task batches work: a reward returns None for samples of another task, and TRL leaves them out of that
    reward's mean (``rewards/<name>/mean``).
    """
    check_train_split(train_dataset)
    funcs, weights = build_reward_funcs(cfg.reward)
    args = trainer_args(GRPOConfig, cfg, run_dir)
    args.reward_weights = weights
    policy, peft_config = lora_setup(model, cfg.method)
    return GRPOTrainer(
        model=policy,
        reward_funcs=list(funcs),
        args=args,
        train_dataset=train_dataset.select_columns(["prompt", "images", "solution", "task", "id", "image_size"]),
        processing_class=processor,
        peft_config=peft_config,
        callbacks=callbacks(cfg, run_dir, tracker),
    )
