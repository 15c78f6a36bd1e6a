"""GRPO rewards, called the TRL way: ``reward(completions, solution=[...], task=[...], **kwargs)``.

Each returns ``list[float | None]``.

``None`` marks a sample the reward does not apply to (another task), so TRL's per-reward mean stays honest in
mixed-task batches. Completions are strings or conversational ``[{"role": "assistant", "content": ...}]`` lists.
Every reward parses with ``lego_arta.parsing``, as the metrics do.

- ``REWARDS``: name -> callable (``format``, ``iou_v1``, ``iou_v2``, ``label_rouge``, ``state``, ``grounding``);
  ``iou_v1`` / ``iou_v2`` are the ``iou`` nodes of ``conf/reward/v1.yaml`` / ``v2.yaml``, where their constants live.
- ``build_reward_funcs(reward_cfg)``: the reward list and TRL ``reward_weights`` from the Hydra ``reward`` group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lego_arta.config import CONF_DIR
from lego_arta.errors import ConfigError
from lego_arta.rewards.detection import IoUReward, LabelRougeReward, label_rouge
from lego_arta.rewards.format import FormatReward
from lego_arta.rewards.format import format as format_reward
from lego_arta.rewards.text import GroundingReward, GroundingSemanticReward, StateReward, grounding, state

__all__ = [
    "REWARDS",
    "FormatReward",
    "GroundingReward",
    "GroundingSemanticReward",
    "IoUReward",
    "LabelRougeReward",
    "StateReward",
    "build_reward_funcs",
    "iou_reward",
]

RewardFunc = Callable[..., list[float | None]]


def iou_reward(iou_cfg: Mapping[str, Any], where: str = "reward.iou") -> IoUReward:
    """The IoU reward of an ``iou`` node (``name``, ``penalty``, ``range_bonus``, ``count_bonus``, all required).

    Raises:
        ConfigError: a missing or unknown key, named with ``where``.
    """
    try:
        return IoUReward(**{str(k): v for k, v in iou_cfg.items()})
    except TypeError as err:
        raise ConfigError(f"{where}: {err} (keys: name, penalty, range_bonus, count_bonus)") from err


def study_iou_reward(variant: str) -> IoUReward:
    """The study's IoU reward of ``conf/reward/<variant>.yaml``: its constants are written there only."""
    path = CONF_DIR / "reward" / f"{variant}.yaml"
    group = OmegaConf.load(path)
    assert isinstance(group, DictConfig), path
    return iou_reward(group.iou, where=f"{path}: iou")


REWARDS: dict[str, RewardFunc] = {
    "format": format_reward,
    "iou_v1": study_iou_reward("v1"),
    "iou_v2": study_iou_reward("v2"),
    "label_rouge": label_rouge,
    "state": state,
    "grounding": grounding,
}

# Weight keys of the reward group: ``iou`` is the configured IoU reward (``reward.iou``), ``grounding_semantic`` the
# semantic grounding reward with the encoder of ``reward.semantic.model``, the others are REWARDS.
WEIGHT_KEYS: tuple[str, ...] = ("format", "iou", "label_rouge", "state", "grounding", "grounding_semantic")


def semantic_encoder(
    reward_cfg: Mapping[str, Any] | Any, default: Callable[[], str] | None
) -> str | Callable[[], str]:
    """``reward.semantic.model`` when set, else ``default`` (which builds the tiny offline encoder)."""
    model = reward_cfg["semantic"]["model"] if "semantic" in reward_cfg else None
    if model is not None:
        return str(model)
    if default is None:

        def missing() -> str:
            raise ConfigError("reward.semantic.model is not set: a sentence-transformers model (hub id or local dir)")

        return missing
    return default


def build_reward_funcs(
    reward_cfg: Mapping[str, Any] | Any, default_encoder: Callable[[], str] | None = None
) -> tuple[list[RewardFunc], list[float]]:
    """The GRPO reward functions and TRL ``reward_weights`` of a ``reward`` config group.

    ``reward_cfg.weights`` maps a weight key to its weight, in order; ``iou`` builds ``IoUReward(**reward_cfg.iou)``
    (``name``, ``penalty``, ``range_bonus``, ``count_bonus``), ``grounding_semantic`` builds
    :class:`GroundingSemanticReward` with ``reward_cfg.semantic.model`` (null: ``default_encoder``, called on the
    reward's first use), the other keys take ``REWARDS[key]``. A weight of 0 drops the function.

    Args:
        reward_cfg: the ``reward`` node (DictConfig or dict) with ``weights`` and, when ``iou`` is weighted, ``iou``.

    Raises:
        ConfigError: an unknown weight key (the message lists the valid ones) or a missing ``iou`` node.

    >>> funcs, weights = build_reward_funcs({"iou": {"name": "iou_v2", "penalty": 1.0, "range_bonus": 0.0,
    ...                                              "count_bonus": 0.1}, "weights": {"format": 1, "iou": 0.5,
    ...                                              "state": 0}})
    >>> [f.__name__ for f in funcs], weights
    (['format', 'iou_v2'], [1.0, 0.5])
    """
    funcs: list[RewardFunc] = []
    weights: list[float] = []
    for key, weight in reward_cfg["weights"].items():
        if key not in WEIGHT_KEYS:
            raise ConfigError(
                f"unknown reward weight key {key!r} in reward.weights; valid keys: {', '.join(WEIGHT_KEYS)}"
            )
        if float(weight) == 0.0:
            continue
        if key == "iou":
            if "iou" not in reward_cfg:
                raise ConfigError("reward.weights.iou is set but reward.iou (name, penalty, ...) is missing")
            funcs.append(iou_reward(reward_cfg["iou"]))
        elif key == "grounding_semantic":
            funcs.append(GroundingSemanticReward(semantic_encoder(reward_cfg, default_encoder)))
        else:
            funcs.append(REWARDS[key])
        weights.append(float(weight))
    return funcs, weights
