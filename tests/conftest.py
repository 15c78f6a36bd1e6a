"""Shared fixtures: compose configs as the CLI does, one build cache per test session (tiny model, scenes)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from lego_arta.config import CONF_DIR, ROOT, compose_config

CONF = CONF_DIR
# Qwen2.5-VL-7B-Instruct's own config and processor files, no weights (fixtures/qwen2_5_vl_7b/README.txt)
FIXTURE_7B = Path(__file__).parent / "fixtures" / "qwen2_5_vl_7b"
__all__ = ["CONF", "FIXTURE_7B", "ROOT"]
# set in each pytest-xdist worker (``make test`` runs one per core); None in a single-process run
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs one worker per core), each worker computes on one thread, and so do the
    runs it starts (``OMP_NUM_THREADS``, as torchrun sets it): torch's default of one thread per core would have every
    worker contend for every core. Only the speed changes, not what is computed."""
    if XDIST_WORKER:
        import torch

        torch.set_num_threads(1)
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def _order(item: pytest.Item) -> tuple[bool, float]:
    slow = item.get_closest_marker("slow")
    return slow is None, -float(slow.kwargs.get("seconds", 0)) if slow else 0.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The end-to-end runs (``slow``) first, the longest (``slow(seconds=...)``, measured on 2 cores) before the
    rest, then file order: under pytest-xdist the long runs start at once and the short tests fill the other workers,
    instead of one long run starting last and running alone."""
    items.sort(key=_order)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the session: the tiny model and synthetic scenes are built once. Under pytest-xdist the
    workers share it (the builds are atomic, and a build another worker finished first is kept)."""
    if XDIST_WORKER:
        shared = tmp_path_factory.getbasetemp().parent / "cache"  # the run's dir, above each worker's own
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/<config_name>.yaml`` with CLI-style overrides, outputs in ``tmp_path``, W&B off by default."""

    def _make(*overrides: str, config_name: str = "config") -> DictConfig:
        quiet = config_name == "config" and not any(o.startswith("logger=") for o in overrides)
        return compose_config(
            ["logger=none"] * quiet + list(overrides),
            output_dir=tmp_path / "run",
            cache_dir=cache_dir,
            config_name=config_name,
        )

    return _make
