"""GRPO rewards, called the TRL way: ``reward(completions, solution=[...], task=[...], **kwargs)``.

Each returns ``list[float | None]``.

``None`` marks a sample the reward does not apply to (another task), so TRL's per-reward mean stays honest in
mixed-task batches. Completions are strings or conversational ``[{"role": "assistant", "content": ...}]`` lists.
Every reward parses with ``lego_arta.parsing``, as the metrics do.

A reward is built from config one way, :func:`build_reward`: ``hydra.utils.instantiate`` of a node's ``_target_``.

- ``REWARDS``: name -> callable (``format``, ``iou_v1``, ``iou_v2``, ``label_rouge``, ``state``, ``grounding``);
  ``iou_v1`` / ``iou_v2`` are built from ``lego_arta/rewards/iou.yaml``, package data where their constants live.
- ``build_reward_funcs(reward_cfg)``: the reward list and TRL ``reward_weights`` from the Hydra ``reward`` group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from lego_arta.config import IOU_REWARDS, iou_reward_nodes
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
    "build_reward",
    "build_reward_funcs",
]

RewardFunc = Callable[..., list[float | None]]


def build_reward(node: Mapping[str, Any] | Any, where: str, **kwargs: Any) -> RewardFunc:
    """The reward of a config node: ``hydra.utils.instantiate`` of its ``_target_`` (a reward class) with its keys,
    ``kwargs`` overriding them. The registry's IoU rewards and every reward of a run are built here.

    Raises:
        ConfigError: naming ``where``: a node without ``_target_``, a target that does not import or rejects the
            node's keys (a missing or unknown constant), or one that builds no callable with a ``__name__`` (TRL
            keys a reward by it; a ``functools.partial`` has none).

    >>> build_reward({"_target_": "lego_arta.rewards.detection.IoUReward", "name": "iou_x", "penalty": 1.0,
    ...               "range_bonus": 0.0, "count_bonus": 0.0}, "reward.iou")
    IoUReward('iou_x', penalty=1.0, range_bonus=0.0, count_bonus=0.0)
    """
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError(f"{where}: not a reward node (a mapping with _target_, the reward's class)")
    try:
        func = instantiate(node, **kwargs)
    except InstantiationException as err:
        raise ConfigError(f"{where}: {' '.join(str(err).split())}") from err
    if not (callable(func) and hasattr(func, "__name__")):
        raise ConfigError(
            f"{where}: {node['_target_']} built {func!r}, not a reward with a __name__ (TRL logs "
            "rewards/<__name__>/mean; a functools.partial has none: use a reward class)"
        )
    return func


def study_iou_rewards() -> dict[str, RewardFunc]:
    """The study's IoU rewards by name (``iou_v1``, ``iou_v2``), built from ``lego_arta/rewards/iou.yaml``."""
    rewards = [build_reward(node, f"{IOU_REWARDS}: {variant!s}") for variant, node in iou_reward_nodes().items()]
    return {reward.__name__: reward for reward in rewards}


REWARDS: dict[str, RewardFunc] = {
    "format": format_reward,
    **study_iou_rewards(),
    "label_rouge": label_rouge,
    "state": state,
    "grounding": grounding,
}


def build_reward_funcs(
    reward_cfg: Mapping[str, Any] | Any, default_encoder: Callable[[], str] | None = None
) -> tuple[list[RewardFunc], list[float]]:
    """The GRPO reward functions and TRL ``reward_weights`` of a ``reward`` config group.

    Each key of ``reward_cfg.weights``, in order, names a reward node of ``reward_cfg`` (``reward.iou``,
    ``reward.format``, ...), built with :func:`build_reward`; a weight of 0 drops it. A node whose ``encoder`` is null
    (``grounding_semantic`` with ``reward.semantic.model=null``) gets ``default_encoder``, called on the reward's first
    use.

    Args:
        reward_cfg: the ``reward`` node (DictConfig or dict): ``weights`` and the reward nodes they name.
        default_encoder: builds the sentence encoder of a reward node whose ``encoder`` is null.

    Raises:
        ConfigError: a weight key without a reward node (the message lists the valid ones), or a node that does not
            build (:func:`build_reward`).

    >>> iou = {"_target_": "lego_arta.rewards.detection.IoUReward", "name": "iou_v2", "penalty": 1.0,
    ...        "range_bonus": 0.0, "count_bonus": 0.1}
    >>> funcs, weights = build_reward_funcs({"format": {"_target_": "lego_arta.rewards.format.FormatReward"},
    ...                                      "iou": iou, "weights": {"format": 1, "iou": 0.5}})
    >>> [f.__name__ for f in funcs], weights
    (['format', 'iou_v2'], [1.0, 0.5])
    """
    nodes = [str(key) for key, node in reward_cfg.items() if isinstance(node, Mapping) and "_target_" in node]
    funcs: list[RewardFunc] = []
    weights: list[float] = []
    for key, weight in reward_cfg["weights"].items():
        if key not in nodes:
            raise ConfigError(
                f"unknown reward weight key {key!r} in reward.weights (reward.{key} is no reward node with a "
                f"_target_); valid keys: {', '.join(nodes)}"
            )
        if float(weight) == 0.0:
            continue
        node = reward_cfg[key]
        unset = "encoder" in node and node["encoder"] is None
        funcs.append(build_reward(node, f"reward.{key}", **({"encoder": default_encoder} if unset else {})))
        weights.append(float(weight))
    return funcs, weights
