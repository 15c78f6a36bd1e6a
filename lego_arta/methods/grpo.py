"""(c) GRPO with LoRA through TRL's ``GRPOTrainer``; rewards and their weights come from the ``reward`` group.

GRPO learns only from groups whose rewards differ: a group of ``num_generations`` completions of one prompt with
equal rewards has zero advantage. TRL logs the share of such groups for the weighted sum (``frac_reward_zero_std``);
:class:`SignalGRPOTrainer` adds it per reward component (``rewards/<name>/frac_varying_groups``), so a run shows
whether a term such as v1's range bonus can move the advantage at all.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from datasets import Dataset
from omegaconf import DictConfig
from transformers import PreTrainedModel, ProcessorMixin
from trl import GRPOConfig, GRPOTrainer
from trl.generation import vllm_generation
from trl.trainer import grpo_trainer

from lego_arta.distributed import main_process_first
from lego_arta.methods.common import callbacks, check_train_split, lora_setup, trainer_args
from lego_arta.models import family, generation_prefix
from lego_arta.models.tiny_encoder import build_tiny_sentence_encoder
from lego_arta.rewards import RewardFunc, build_reward_funcs
from lego_arta.tracking import Tracker

# the dataset columns the rewards read (TRL passes every column but the prompt as a keyword argument)
REWARD_COLUMNS = ["prompt", "images", "solution", "task", "id", "image_size"]
# the columns each rollout row carries into TRL's completions buffer (lego_arta.methods.callbacks.RolloutsCallback)
ROLLOUT_COLUMNS = ("id", "task", "solution", "image_size")


def varying_groups(rewards: torch.Tensor, group_size: int, names: Sequence[str]) -> dict[str, float]:
    """Per reward component, the share of its groups in which it varies: ``rewards/<name>/frac_varying_groups``.

    Only in those groups can the component move the advantage. ``rewards`` is TRL's ``(completions, functions)``
    matrix, gathered over every process (a group may straddle processes), with NaN where a function does not apply;
    a group counts for a function when the function applies to it. A function that applies to no group is left out.

    Args:
        rewards: rewards per completion (rows, in groups of ``group_size`` consecutive rows) and function (columns).
        group_size: completions per prompt (``num_generations``).
        names: the functions' names, in column order.

    >>> r = torch.tensor([[1.0, 0.0], [1.0, 0.5], [0.0, float("nan")], [1.0, float("nan")]])
    >>> varying_groups(r, 2, ["state", "iou_v2"])
    {'rewards/state/frac_varying_groups': 0.5, 'rewards/iou_v2/frac_varying_groups': 1.0}
    """
    out: dict[str, float] = {}
    grouped = rewards.detach().float().cpu().view(-1, group_size, rewards.shape[1])
    missing = torch.isnan(grouped)
    low = torch.where(missing, torch.inf, grouped).amin(dim=1)
    high = torch.where(missing, -torch.inf, grouped).amax(dim=1)
    applies = ~missing.all(dim=1)
    varies = applies & ((high - low) > 1e-6)
    for i, name in enumerate(names):
        groups = int(applies[:, i].sum())
        if groups:
            out[f"rewards/{name}/frac_varying_groups"] = int(varies[:, i].sum()) / groups
    return out


def collapse_image_runs(ids: Sequence[int], processor: Any) -> list[int]:
    """``ids`` with each image's expanded token run (InternVL: with its ``<img>`` / ``</img>`` around it) back to the
    one placeholder token the chat template wrote, the prompt vLLM expands itself.

    >>> class P:
    ...     image_token_id, start_image_token_id, end_image_token_id = 9, 7, 8
    >>> collapse_image_runs([1, 9, 9, 9, 2, 7, 9, 9, 8, 3], P())
    [1, 9, 2, 9, 3]
    """
    image = processor.image_token_id
    start, end = getattr(processor, "start_image_token_id", None), getattr(processor, "end_image_token_id", None)
    out, i = [], 0
    while i < len(ids):
        wrapped = start is not None and ids[i] == start and i + 1 < len(ids) and ids[i + 1] == image
        if wrapped or ids[i] == image:
            j = i + 1 if wrapped else i
            while j < len(ids) and ids[j] == image:
                j += 1
            if wrapped and (j == len(ids) or ids[j] != end):  # not an image block after all: keep the start token
                out.append(ids[i])
                i += 1
                continue
            out.append(image)
            i = j + 1 if wrapped else j
            continue
        out.append(ids[i])
        i += 1
    return out


@contextlib.contextmanager
def vllm_engine_kwargs(**kwargs: Any) -> Iterator[None]:
    """While open, TRL's ``LLM(...)`` engine (the module global of ``trl.generation.vllm_generation``) is built
    with ``kwargs`` too: TRL 1.16 passes no ``mm_processor_kwargs`` and has no setting for them."""
    build = vllm_generation.LLM
    with mock.patch.object(vllm_generation, "LLM", functools.partial(build, **kwargs)):
        yield


def family_vllm_generation(mm_processor_kwargs: dict[str, Any]) -> type[vllm_generation.VLLMGeneration]:
    """TRL's vLLM generation with the model family's image budget (the engine's ``mm_processor_kwargs``: the
    processor files of the checkpoint carry another one, Qwen2.5-VL-7B's up to 12,845,056 px) and, in colocate mode,
    prompts whose images are one placeholder each.

    Works around two gaps of TRL 1.16's colocate mode: the engine is built from ``model.name_or_path`` alone, so
    rollouts would see images at the checkpoint file's budget, not the trainer's; and prompts go to vLLM as the
    training processor's token ids, each image already expanded to its visual tokens, which vLLM expands again
    (https://github.com/huggingface/trl/issues/6294, https://github.com/huggingface/trl/issues/6401). Server mode
    (``trl vllm-serve --mm-processor-kwargs ...``) keeps TRL's expanded ids, which its server expects. It can go when
    TRL passes unexpanded prompts and engine kwargs (grep ``vllm_generation.py`` for ``mm_processor_kwargs``).
    """

    class FamilyVLLMGeneration(vllm_generation.VLLMGeneration):
        def _init_vllm(self, *args: Any, **kwargs: Any) -> Any:
            if self.mode != "colocate":
                return super()._init_vllm(*args, **kwargs)
            with vllm_engine_kwargs(mm_processor_kwargs=dict(mm_processor_kwargs)):
                return super()._init_vllm(*args, **kwargs)

        def generate(self, prompts: list[list[int]], images: Any, *args: Any, **kwargs: Any) -> Any:
            if self.mode == "colocate" and images is not None:
                prompts = [collapse_image_runs(p, self.processing_class) for p in prompts]
            return super().generate(prompts, images, *args, **kwargs)

    return FamilyVLLMGeneration


class SignalGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` that also logs, per reward component, the share of groups it varies in
    (:func:`varying_groups`), on the rewards TRL has gathered over every process, beside TRL's own
    ``frac_reward_zero_std`` (the weighted sum), ``entropy`` and ``clip_ratio/*``.

    It extends ``_calculate_rewards`` (TRL 1.16: returns the gathered ``(completions, functions)`` matrix), the one
    place where every process holds every group's rewards; the values go to TRL's own metrics, logged and averaged
    with the others.
    With TRL's vLLM generation (``use_vllm``), that generation gets the model family's image budget
    (:func:`family_vllm_generation`, ``vllm_mm_processor_kwargs``).
    """

    def __init__(self, *args: Any, vllm_mm_processor_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        generation = family_vllm_generation(vllm_mm_processor_kwargs or {})
        with mock.patch.object(grpo_trainer, "VLLMGeneration", generation):  # what TRL's __init__ builds
            super().__init__(*args, **kwargs)

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
        # what the rollouts table needs beside TRL's own buffer (prompt, completion, rewards, advantage, images):
        # TRL gathers these columns over the processes into _logs["extra"], in the order of its other columns
        for column in ROLLOUT_COLUMNS:
            self._pending_extra_logs[column].extend(row.get(column) for row in inputs)
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        mode = "train" if self.model is not None and self.model.training else "eval"  # as TRL tells them apart
        size = self.num_generations if mode == "train" else self.num_generations_eval
        if size:
            for key, value in varying_groups(rewards, size, self.reward_func_names).items():
                self._metrics[mode][key].append(value)
        return rewards


def tiny_encoder(cfg: DictConfig) -> str:
    """The tiny offline sentence encoder of ``grounding_semantic`` (``reward.semantic.model=null``), built into the
    cache by the main process first."""
    with main_process_first():
        return str(build_tiny_sentence_encoder(cfg.paths.cache_dir))


def grpo_rewards(cfg: DictConfig) -> tuple[list[RewardFunc], list[float]]:
    """The run's reward functions and TRL ``reward_weights``: :func:`lego_arta.rewards.build_reward_funcs` of
    ``cfg.reward``, with the tiny offline encoder (built on first use) when ``reward.semantic.model`` is null."""
    return build_reward_funcs(cfg.reward, default_encoder=lambda: tiny_encoder(cfg))


def with_prefix(func: RewardFunc, prefix: str) -> RewardFunc:
    """``func`` scoring each completion as the model's whole turn: ``prefix`` (what the chat template's generation
    prompt opened the turn with, :func:`lego_arta.models.generation_prefix`) before the generated text, which TRL
    decodes without it. Qwen3.5's template opens the turn with ``<think>\\n``: without this, the study's format
    reward would never see its opening tag."""

    @functools.wraps(func)
    def scored(completions: list[Any], **kwargs: Any) -> list[float | None]:
        whole = [
            [{**c[0], "content": prefix + c[0]["content"]}, *c[1:]] if isinstance(c, list) else prefix + c
            for c in completions
        ]
        return func(whole, **kwargs)

    return scored


def build_grpo_trainer(
    cfg: DictConfig,
    model: PreTrainedModel,
    processor: ProcessorMixin,
    train_dataset: Dataset,
    run_dir: Path,
    tracker: Tracker,
    rewards: tuple[list[RewardFunc], list[float]] | None = None,
) -> GRPOTrainer:
    """A ``GRPOTrainer`` whose reward functions receive ``solution``, ``task`` and ``image_size`` as keyword
    arguments.

    ``rewards``: the :func:`grpo_rewards` of ``cfg`` when already built (:func:`lego_arta.checks.check_config`
    builds them before anything loads); ``None``: built here. Mixed-task batches work: a reward returns None for
    samples of another task, and TRL leaves them out of that reward's mean (``rewards/<name>/mean``).
    """
    check_train_split(train_dataset)
    funcs, weights = rewards if rewards is not None else grpo_rewards(cfg)
    args = trainer_args(GRPOConfig, cfg, run_dir)
    args.reward_weights = weights
    chat_kwargs = family(cfg.model).chat_template_kwargs(bool(cfg.data.reasoning))
    if chat_kwargs:
        args.chat_template_kwargs = {**chat_kwargs, **(args.chat_template_kwargs or {})}  # method.args' own win
    prefix = generation_prefix(processor, args.chat_template_kwargs or {})
    funcs = [with_prefix(func, prefix) for func in funcs] if prefix else funcs
    policy, peft_config = lora_setup(model, cfg.method)
    return SignalGRPOTrainer(
        model=policy,
        reward_funcs=list(funcs),
        args=args,
        train_dataset=train_dataset.select_columns(REWARD_COLUMNS),
        processing_class=processor,
        peft_config=peft_config,
        callbacks=callbacks(cfg, run_dir, tracker),
        vllm_mm_processor_kwargs=family(cfg.model).vllm_processor_kwargs(),
    )
