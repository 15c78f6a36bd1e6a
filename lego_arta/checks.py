"""The config checks a run makes before it loads any data or model: what the config alone shows to be wrong."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from lego_arta import distributed
from lego_arta.errors import ConfigError, MissingInputError
from lego_arta.models import family
from lego_arta.models.loading import attention_implementation, check_hub_model, looks_local

if TYPE_CHECKING:
    from lego_arta.rewards import RewardFunc

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig, run_dir: Path, trains: bool) -> tuple[list[RewardFunc], list[float]] | None:
    """Fail in seconds, before any data or model is loaded, on what the config alone shows to be wrong.

    A value left at ``???`` (e.g. ``experiment=hybrid_sft_grpo`` without ``method.adapter=``), a ``method.adapter``
    dir without an adapter, ``method.tasks`` outside ``data.tasks``, and, for a training run, the TRL config (unknown
    fields, contradicting values) and the reward functions are built here; ``method=none`` warns that it ignores
    ``method.args``. ``model.attn_implementation=flash_attention_2`` without flash-attn (or CUDA) fails here, and so
    does ``eval.backend=vllm`` in a multi-process launch (vLLM would meet the launch's process group).

    Returns:
        for a GRPO training run, the reward functions and TRL ``reward_weights`` it built, for the trainer to take
        (they are built once per run); else ``None``.
    """
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as err:  # e.g. ${lego_arta.required:...} of an unset value
        reason = str(err).splitlines()[0].split(" raised while resolving interpolation: ")[-1]
        raise ConfigError(reason if str(err.full_key) in reason else f"{err.full_key}: {reason}") from err
    if missing := sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra.")):
        raise ConfigError(f"no value for {', '.join(missing)}: set it on the command line ({missing[0]}=...)")
    attention_implementation(cfg.model)
    if int(cfg.eval.val.every_steps) > 0 and not 0.0 < float(cfg.eval.val.size) < 1.0:
        raise ConfigError(f"eval.val.size={cfg.eval.val.size}: the share of training records held out, in (0, 1)")
    family(cfg.model)  # an unknown model.family, or image budget keys that cannot work (min_pixels > max_pixels)
    evaluates = not trains or cfg.eval.after_train
    if evaluates and cfg.eval.backend == "vllm" and (world := distributed.ranks().world_size) > 1:
        raise ConfigError(
            f"eval.backend=vllm runs in one process, not in each of {world}: set eval.after_train=false and evaluate "
            "afterwards with python experiments/evaluate.py eval.backend=vllm method.adapter=<run dir>/adapter"
        )
    if cfg.method.adapter:  # a local dir with its adapter_config.json, or a hub id in the cache or on the hub
        adapter = str(cfg.method.adapter)
        if looks_local(adapter):
            if not (Path(adapter).expanduser() / "adapter_config.json").is_file():
                raise MissingInputError(f"method.adapter={adapter}: no adapter_config.json in this directory")
        else:
            check_hub_model(adapter, key="method.adapter", file="adapter_config.json")
    if cfg.method.name == "none":
        if cfg.method.args:
            log.warning("method=none trains nothing: ignoring method.args (%s)", ", ".join(cfg.method.args))
        return None
    if trains and cfg.data.layout != "lego_arta" and cfg.data.splits.train is None:
        raise ConfigError(
            f"data={cfg.data.name} has no training split (data.splits.train=null: {cfg.data.layout} sets like "
            "lmms-lab's RefCOCO are evaluation splits, never trained on): train on data=vlm_r1_rec or on a split you "
            "name (data.splits.train=...), and score this set with eval.extra"
        )
    if unknown := set(cfg.method.tasks or ()) - set(cfg.data.tasks):
        raise ConfigError(f"method.tasks: {sorted(unknown)} not in data.tasks={list(cfg.data.tasks)}")
    if not trains:
        return None
    from lego_arta.methods import trainer_config

    trainer_config(cfg, run_dir)
    if cfg.method.name != "grpo":
        return None
    from lego_arta.methods.grpo import grpo_rewards

    return grpo_rewards(cfg)
