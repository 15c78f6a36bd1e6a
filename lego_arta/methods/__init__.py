"""Methods: ``none`` (few-shot, no training), ``sft`` and ``grpo`` (TRL trainers, LoRA or full fine-tuning)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset
from omegaconf import DictConfig
from transformers import PreTrainedModel, ProcessorMixin, Trainer, TrainingArguments

from lego_arta.errors import ConfigError
from lego_arta.methods.common import fit, trainer_args
from lego_arta.methods.validation import ValidationCallback, best_checkpoint
from lego_arta.runs import Trained
from lego_arta.tracking import Tracker

if TYPE_CHECKING:
    from lego_arta.rewards import RewardFunc


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` gives back: the trained model, what it saved (a LoRA adapter or a whole model) and the best
    validation step's metrics (:func:`lego_arta.methods.validation.best_checkpoint`; empty without validation)."""

    model: PreTrainedModel
    trained: Trained
    best: dict[str, float]


def trainer_config(cfg: DictConfig, run_dir: Path) -> TrainingArguments:
    """The TRL config of ``cfg.method`` built without a model: a config check."""
    if cfg.method.name == "sft":
        from trl import SFTConfig

        return trainer_args(SFTConfig, cfg, run_dir)
    if cfg.method.name == "grpo":
        from trl import GRPOConfig

        return trainer_args(GRPOConfig, cfg, run_dir)
    raise ConfigError(f"method={cfg.method.name} does not train (valid: sft, grpo)")


def train(
    cfg: DictConfig,
    model: PreTrainedModel,
    processor: ProcessorMixin,
    train_dataset: Dataset,
    run_dir: Path,
    tracker: Tracker,
    val_dataset: Dataset | None = None,
    rewards: tuple[list[RewardFunc], list[float]] | None = None,
) -> TrainResult:
    """Train with ``cfg.method``, validating on ``val_dataset`` every ``eval.val.every_steps`` steps when given. GRPO
    takes ``rewards`` (the reward functions and weights :func:`lego_arta.checks.check_config` built) when given,
    else builds them."""
    name = cfg.method.name
    trainer: Trainer
    if name == "sft":
        from lego_arta.methods.sft import build_sft_trainer

        trainer = build_sft_trainer(cfg, model, processor, train_dataset, run_dir, tracker)
    elif name == "grpo":
        from lego_arta.methods.grpo import build_grpo_trainer

        trainer = build_grpo_trainer(cfg, model, processor, train_dataset, run_dir, tracker, rewards)
    else:
        raise ConfigError(f"method={name} does not train (valid: sft, grpo)")
    if val_dataset is not None:
        trainer.add_callback(ValidationCallback(cfg, processor, val_dataset, run_dir, tracker))
    trained = fit(trainer, cfg, run_dir, processor)
    best = best_checkpoint(trainer.state, str(cfg.eval.val.best)) if val_dataset is not None else {}
    return TrainResult(trainer.model, trained, best)  # type: ignore[arg-type]
