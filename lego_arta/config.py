"""Compose the project's Hydra config outside a Hydra run (scripts that chain runs, benchmarks, tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def compose_config(
    overrides: Sequence[str] = (),
    *,
    output_dir: str | Path,
    cache_dir: str | Path | None = None,
    config_name: str = "config",
) -> DictConfig:
    """``conf/<config_name>.yaml`` with CLI-style overrides, as ``python experiments/...py OVERRIDES`` would see it.

    ``${hydra:...}`` values only exist inside a Hydra run, so the run dir, the repo root and the build cache are
    given explicitly here (``paths.output_dir``, ``paths.root_dir``, ``paths.cache_dir``); overrides win.
    """
    base = [f"paths.root_dir={ROOT}", f"paths.output_dir={output_dir}"]
    base.append(f"paths.cache_dir={cache_dir if cache_dir is not None else ROOT / '.cache'}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=[*base, *overrides])
