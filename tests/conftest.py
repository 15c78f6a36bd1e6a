"""Shared fixtures: compose configs as the CLI does, one build cache per test session (tiny model, scenes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the session: the tiny model and synthetic scenes are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/config.yaml`` with CLI-style string overrides, outputs in ``tmp_path``, W&B off by default."""

    def _make(*overrides: str, config_name: str = "config") -> DictConfig:
        base = [
            f"paths.root_dir={ROOT}",
            f"paths.cache_dir={cache_dir}",
            f"paths.output_dir={tmp_path / 'run'}",
        ]
        if config_name == "config" and not any(o.startswith("logger=") for o in overrides):
            base.append("logger=none")
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=config_name, overrides=[*base, *overrides])

    return _make
