"""Find the run dirs of a sweep and read each one: its config, metrics and status (failed jobs included).

Reads only the run dir contract of :mod:`lego_arta.runs` (``config.yaml``, ``metrics.json``, ``history.jsonl``), so it
works on any copy of the run dirs, without W&B. A run dir whose ``metrics.json`` is missing or unreadable is a failed
job: it is listed as such with the last error line of its log, never a crash.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml

from lego_arta.runs import CONFIG_FILE, HISTORY_FILE, METRICS_FILE

log = logging.getLogger(__name__)

METHOD_ORDER: Final = ("none", "sft", "grpo")
REWARD_METHODS: Final = frozenset({"grpo"})  # methods whose reward variant matters; others show NO_REWARD
NO_REWARD: Final = "-"
OK: Final = "ok"
FAILED: Final = "failed"

RUN_COLUMNS: Final = (
    "method",
    "reward",
    "seed",
    "model",
    "lora_r",
    "from_adapter",
    "experiment_name",
    "status",
    "error",
    "has_history",
    "run_dir",
)


def collect_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run dir found (recursively) under ``sweep_dir``, failed jobs included.

    A run dir is a folder with a ``config.yaml`` (or, for a job that died before writing it, Hydra's
    ``.hydra/config.yaml``) whose config names a ``method.name``; W&B's own ``config.yaml`` files are skipped.

    Args:
        sweep_dir: a Hydra multirun dir, a single run dir, or any folder holding run dirs.

    Returns:
        Columns ``RUN_COLUMNS`` (``status`` is ``ok`` or ``failed``, ``error`` says why; ``reward`` is ``-`` for
        methods without a reward) followed by every key of the runs' ``metrics.json`` (sorted), NaN where missing.
        Rows are ordered by method (none, sft, grpo, others), reward, seed and run dir.

    Raises:
        FileNotFoundError: ``sweep_dir`` is not a directory.
    """
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep_dir {str(root)!r} does not exist or is not a directory")
    rows = [row for run_dir in _find_run_dirs(root) if (row := _read_run(run_dir)) is not None]
    metric_keys = sorted({k for row in rows for k in row if k not in RUN_COLUMNS})
    runs = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *metric_keys])
    runs["seed"] = pd.Series([row["seed"] for row in rows], dtype=object)  # ints stay ints next to a missing seed
    for key in metric_keys:
        runs[key] = pd.to_numeric(runs[key], errors="coerce").astype(float)
    if runs.empty:
        return runs
    order = runs.apply(lambda r: (*group_sort_key(r), seed_sort_key(r["seed"]), r["run_dir"]), axis=1)
    return runs.iloc[sorted(range(len(runs)), key=lambda i: order.iloc[i])].reset_index(drop=True)


def _find_run_dirs(root: Path) -> list[Path]:
    found: set[Path] = set()
    for path in root.rglob(CONFIG_FILE):
        run_dir = path.parent.parent if path.parent.name == ".hydra" else path.parent
        if "wandb" in path.relative_to(root).parts:  # W&B writes its own config.yaml under wandb/run-*/files/
            continue
        found.add(run_dir)
    return sorted(found)


def _read_run(run_dir: Path) -> dict[str, Any] | None:
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        cfg_path = run_dir / ".hydra" / CONFIG_FILE
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        log.warning("skipping %s: unreadable config (%s)", cfg_path, err)
        return None
    method_cfg = _get(cfg, "method")
    method = _get(method_cfg, "name")
    if not isinstance(method, str):
        log.debug("skipping %s: no method.name, not a run config", cfg_path)
        return None
    reward = _get(_get(cfg, "reward"), "name")
    row: dict[str, Any] = {
        "method": method,
        "reward": str(reward) if method in REWARD_METHODS and reward is not None else NO_REWARD,
        "seed": _get(cfg, "seed"),
        "model": _get(_get(cfg, "model"), "name"),
        "lora_r": _get(_get(method_cfg, "lora"), "r"),
        "from_adapter": bool(_get(method_cfg, "adapter")),
        "experiment_name": _get(cfg, "experiment_name"),
        "status": OK,
        "error": "",
        "has_history": (run_dir / HISTORY_FILE).is_file(),
        "run_dir": str(run_dir),
    }
    metrics_path = run_dir / METRICS_FILE
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        if not isinstance(metrics, dict):
            raise ValueError(f"expected a JSON object, got {type(metrics).__name__}")
    except FileNotFoundError:
        row.update(status=FAILED, error=f"no {METRICS_FILE}")
        metrics = {}
    except (OSError, ValueError) as err:
        row.update(status=FAILED, error=f"unreadable {METRICS_FILE}: {err}")
        metrics = {}
    if row["status"] == FAILED:
        logs = sorted(p.name for p in run_dir.glob("*.log"))
        if logs:
            row["error"] += f" (log: {', '.join(logs)})"
    row.update({k: as_float(v) for k, v in metrics.items() if k not in RUN_COLUMNS})
    return row


def _get(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, Mapping) else None


def as_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def natural_key(text: str) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def seed_sort_key(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, int | float) and not pd.isna(seed) else (1, str(seed))


def group_sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    method = str(row["method"])
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    lora = row["lora_r"]
    return (
        rank,
        method,
        bool(row["from_adapter"]),
        natural_key(str(row["reward"])),
        -1 if lora is None or pd.isna(lora) else lora,
        str(row["model"]),
    )
