"""A checkpoint's architecture without its weights: the model on the meta device, LoRA applied, parameters counted.

Used by ``experiments/plan.py`` and the tests of the 7B architecture; nothing here reads or allocates weights.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate import init_empty_weights
from hydra.utils import instantiate
from omegaconf import DictConfig
from peft import PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedModel

from lego_arta.models.families import family


def empty_model(path: str, dtype: torch.dtype = torch.bfloat16) -> PreTrainedModel:
    """The model of the ``config.json`` in ``path`` on the meta device (accelerate's ``init_empty_weights``)."""
    config = AutoConfig.from_pretrained(path)
    with init_empty_weights():
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.tie_weights()  # from_config leaves tied embeddings (the tiny model's) as two tensors on the meta device
    return model


def with_lora(
    model: PreTrainedModel, lora_cfg: DictConfig | None, model_cfg: DictConfig
) -> PreTrainedModel | PeftModel:
    """``model`` as the trainers see it: the family's vision side frozen when ``model.freeze_vision``, then wrapped by
    PEFT with ``method.lora`` (not wrapped for full fine-tuning, ``method.lora=null``).

    The same ``peft.get_peft_model(model, LoraConfig)`` call TRL makes when given ``peft_config``.
    """
    if model_cfg.freeze_vision:
        family(model_cfg).freeze_vision(model)
    return model if lora_cfg is None else get_peft_model(model, instantiate(lora_cfg))


def parameter_counts(model: Any) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts (meta tensors have shapes, so this needs no weights)."""
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return total, trainable
