"""The project's Hydra config: its resolver and open nodes (registered on import), and composition outside a run.

Registered when ``lego_arta`` is imported, so before any entry script's ``@hydra.main`` composes:

- ``${lego_arta.root:}``: the project root (the folder holding ``conf/``). ``paths.root_dir`` uses it, so the run and
  sweep dirs resolve without ``${hydra:runtime.cwd}``, which a multirun's sweeper reads before Hydra sets it.
- ``${lego_arta.now:FORMAT}``: Hydra's ``${now:FORMAT}``, but one value for every process of a multi-process launch
  (:func:`lego_arta.distributed.shared_now`), so torchrun's ranks share one run dir. Cached like ``${now:}``: a
  multirun's jobs, and the tasks of a Slurm job (whose config is pickled with its cache), reuse the first value.
- ``${lego_arta.log_suffix:}``: empty on the main process, ``.rank<N>`` on the others: each rank logs to its own file
  in the shared run dir (``train.log``, ``train.rank1.log``, ...).
- ``${lego_arta.required:KEY,HINT}``: a value the user must set (``experiment=hybrid_sft_grpo`` needs
  ``method.adapter=``); reading it unset raises a :class:`~lego_arta.errors.ConfigError` naming the key.
- ``${lego_arta.needs_extra:EXTRA,TARGET}``: a class from an optional extra; without the ``cluster`` extra, a
  stand-in ``hydra/launcher=submitit_slurm`` uses it, so ``hydra/launcher=slurm`` fails naming
  ``pip install -e '.[cluster]'`` instead of Hydra's "Could not load".
- ``method/args=ignored``: the ``method.args`` node of ``method=none``, open to any key. A multirun composes its base
  config with the default ``method=none`` before it composes each job, so ``-m method=sft,grpo
  method.args.max_steps=2`` must compose there too; ``method=none`` trains nothing and warns that it ignores them.
- ``reward/iou=v1|v2``: the study's IoU reward nodes (:func:`iou_reward_nodes`), the ``reward.iou`` of
  ``conf/reward/v1.yaml`` / ``v2.yaml``; ``lego_arta.rewards.REWARDS`` builds ``iou_v1`` / ``iou_v2`` from that file.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import NoReturn

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from lego_arta.distributed import ranks, shared_now
from lego_arta.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
IOU_REWARDS = "lego_arta/rewards/iou.yaml"  # package data: the study's IoU reward nodes, their constants' one home


def required(key: str, hint: str) -> NoReturn:
    """``${lego_arta.required:KEY,HINT}``: a value the user must give (an overlay's ``???`` would not override a
    group's ``null`` default: OmegaConf merges never replace a value by MISSING)."""
    raise ConfigError(f"{key} is required here: set {key}={hint} on the command line")


def log_suffix() -> str:
    """``${lego_arta.log_suffix:}``: ``""`` on the main process, ``.rank<N>`` on rank N of a multi-process launch."""
    rank = ranks().rank
    return f".rank{rank}" if rank else ""


def needs_extra(extra: str, target: str) -> str:
    """``${lego_arta.needs_extra:EXTRA,TARGET}``: ``TARGET`` when its module imports, else a :class:`ConfigError`
    that names the extra which installs it (the Slurm launcher's config says ``cluster``)."""
    try:
        importlib.import_module(target.rsplit(".", 1)[0])
    except ImportError as err:
        raise ConfigError(f"{target} is not installed ({err}): pip install -e '.[{extra}]'") from err
    return target


def lora_targets(family_name: str) -> str:
    """``${lego_arta.lora_targets:${model.family}}``: the family's LoRA target regex (``Family.lora_targets``), so
    ``method.lora`` adapts every linear projection of whichever language model ``model=`` names. The family module
    is imported when the value is read (a resolver is lazy), not when the config is composed."""
    from lego_arta.models.families import FAMILIES

    if family_name not in FAMILIES:
        raise ConfigError(f"model.family={family_name}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[family_name].lora_targets


def iou_reward_nodes() -> DictConfig:
    """The study's IoU reward nodes by variant (``v1``, ``v2``: ``_target_`` and constants) of
    ``lego_arta/rewards/iou.yaml``, read as package data: an installed package has them without the repository."""
    text = (resources.files("lego_arta") / "rewards" / "iou.yaml").read_text(encoding="utf-8")
    nodes = OmegaConf.create(text)
    assert isinstance(nodes, DictConfig), IOU_REWARDS
    return nodes


def _register() -> None:
    OmegaConf.register_new_resolver("lego_arta.root", lambda: str(ROOT), replace=True)
    OmegaConf.register_new_resolver("lego_arta.now", shared_now, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("lego_arta.log_suffix", log_suffix, replace=True)
    OmegaConf.register_new_resolver("lego_arta.required", required, replace=True)
    OmegaConf.register_new_resolver("lego_arta.needs_extra", needs_extra, replace=True)
    OmegaConf.register_new_resolver("lego_arta.lora_targets", lora_targets, replace=True)
    try:
        importlib.import_module("hydra_plugins.hydra_submitit_launcher")
    except ImportError:  # stand in for the plugin's launcher config: selecting it names the missing extra
        target = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
        node = {"_target_": f"${{lego_arta.needs_extra:cluster,{target}}}"}
        ConfigStore.instance().store(group="hydra/launcher", name="submitit_slurm", node=node)
    ignored = OmegaConf.create({})
    OmegaConf.set_struct(ignored, False)  # stays open when Hydra closes the composed config
    ConfigStore.instance().store(group="method/args", name="ignored", node=ignored)
    for variant, node in iou_reward_nodes().items():
        ConfigStore.instance().store(group="reward/iou", name=str(variant), node=node)


_register()


def compose_config(
    overrides: Sequence[str] = (),
    *,
    output_dir: str | Path,
    cache_dir: str | Path | None = None,
    config_name: str = "config",
) -> DictConfig:
    """``conf/<config_name>.yaml`` with CLI-style overrides, as ``python experiments/...py OVERRIDES`` would see it.

    ``${hydra:runtime.output_dir}`` only exists inside a Hydra run, so the run dir is given here
    (``paths.output_dir``), and the build cache may be (``paths.cache_dir``); overrides win.
    """
    base = [f"paths.output_dir={output_dir}"]
    if cache_dir is not None:
        base.append(f"paths.cache_dir={cache_dir}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=[*base, *overrides])
