"""(b) SFT with LoRA through TRL's ``SFTTrainer``: prompt-completion data, loss on the answer tokens only."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig
from transformers import PreTrainedModel, ProcessorMixin
from trl import SFTConfig, SFTTrainer

from lego_arta.methods.common import callbacks, check_train_split, lora_setup, trainer_args
from lego_arta.models import family
from lego_arta.tracking import Tracker


def build_sft_trainer(
    cfg: DictConfig,
    model: PreTrainedModel,
    processor: ProcessorMixin,
    train_dataset: Dataset,
    run_dir: Path,
    tracker: Tracker,
) -> SFTTrainer:
    """An ``SFTTrainer`` on the dataset view's ``prompt`` / ``completion`` / ``images`` columns.

    ``completion_only_loss`` (on in ``conf/method/sft.yaml``) masks the prompt and image tokens out of the loss: the
    study's own code trained on them too, a known bug this pipeline does not reproduce.
    """
    check_train_split(train_dataset)
    args = trainer_args(SFTConfig, cfg, run_dir)
    if not args.completion_only_loss:
        raise ValueError("method.args.completion_only_loss must stay true: SFT trains on the answer tokens only")
    policy, peft_config = lora_setup(model, cfg.method)
    columns = ["prompt", "completion", "images"]
    chat_kwargs = family(cfg.model).chat_template_kwargs(bool(cfg.data.reasoning))
    if chat_kwargs:  # TRL's SFT reads them per example (Qwen3.5's enable_thinking)
        columns.append("chat_template_kwargs")
        train_dataset = train_dataset.add_column("chat_template_kwargs", [chat_kwargs] * len(train_dataset))
    return SFTTrainer(
        model=policy,
        args=args,
        train_dataset=train_dataset.select_columns(columns),
        processing_class=processor,
        peft_config=peft_config,
        callbacks=callbacks(cfg, run_dir, tracker),
    )
