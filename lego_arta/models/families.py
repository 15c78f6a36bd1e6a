"""The VLM families a ``model`` config can name (``model.family``), and the one function that reads that key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from lego_arta.errors import ConfigError
from lego_arta.models.family import Family
from lego_arta.models.internvl import InternVL
from lego_arta.models.qwen2_5_vl import Qwen2_5_VL
from lego_arta.models.qwen3_5 import Qwen3_5
from lego_arta.models.qwen3_vl import Qwen3_VL

FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (Qwen2_5_VL, InternVL, Qwen3_VL, Qwen3_5)}


def family(model_cfg: DictConfig | Mapping[str, Any]) -> Family:
    """The family of a ``model`` config, bound to its image budget keys (checked).

    Raises:
        ConfigError: an unknown ``model.family``, or budget keys that cannot work.
    """
    name = str(model_cfg["family"])
    if name not in FAMILIES:
        raise ConfigError(f"model.family={name}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name](model_cfg)
