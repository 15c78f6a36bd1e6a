"""Find the run dirs of a sweep and read each one: its config, metrics and status (failed jobs included).

Reads only the run dir contract of :mod:`lego_arta.runs` (``config.yaml``, ``metrics.json``, ``history.jsonl``), so it
works on any copy of the run dirs, without W&B. A run dir whose ``metrics.json`` is missing or unreadable is a failed
job: it is listed as such with the last error line of its log, never a crash.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml

from lego_arta.errors import MissingInputError
from lego_arta.provenance import describe
from lego_arta.runs import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, MODEL_DIR, read_provenance

log = logging.getLogger(__name__)

METHOD_ORDER: Final = ("none", "sft", "grpo")
REWARD_METHODS: Final = frozenset({"grpo"})  # methods whose reward variant matters; others show NO_REWARD
NO_REWARD: Final = "-"
FULL: Final = 0  # the lora_r of a fully fine-tuned run (method.lora=null)
STARTS: Final = {"adapter": "adapter", "model": "fine-tuned model"}  # start_of's values, as the report names them
OK: Final = "ok"
FAILURE_MARK: Final = "run failed:"  # what lego_arta.cli writes before a failed run's traceback
TRACEBACK_MARK: Final = "Traceback (most recent call last):"
FAILED: Final = "failed"

RUN_COLUMNS: Final = (
    "method",
    "reward",
    "seed",
    "model",
    "data",
    "lora_r",
    "start",
    "experiment_name",
    "status",
    "error",
    "has_history",
    "numeric_path",
    "machine",
    "run_dir",
)


SweepDirs = str | Path | Sequence[str | Path]  # one folder of run dirs, or several reported together


def sweep_roots(sweep_dir: SweepDirs) -> list[Path]:
    """The folders of ``sweep_dir``: itself, or each of a list (e.g. one ablation per numeric path)."""
    return [Path(sweep_dir)] if isinstance(sweep_dir, str | Path) else [Path(p) for p in sweep_dir]


def common_root(sweep_dir: SweepDirs) -> Path:
    """The folder that holds every folder of ``sweep_dir``: the report's title and default output dir."""
    roots = sweep_roots(sweep_dir)
    return roots[0] if len(roots) == 1 else Path(os.path.commonpath([p.resolve() for p in roots]))


def collect_runs(sweep_dir: SweepDirs) -> pd.DataFrame:
    """One row per run dir found (recursively) under ``sweep_dir`` (or under each of its folders), failed jobs
    included.

    A run dir is a folder with a ``config.yaml`` (or, for a job that died before writing it, Hydra's
    ``.hydra/config.yaml``) whose config names a ``method.name``; W&B's own ``config.yaml`` files are skipped.

    Args:
        sweep_dir: a Hydra multirun dir, a single run dir, or any folder holding run dirs; or a list of them.

    Returns:
        Columns ``RUN_COLUMNS`` (``status`` is ``ok`` or ``failed``, ``error`` says why; ``reward`` is ``-`` for
        methods without a reward; ``numeric_path`` and ``machine`` come from ``provenance.json``, None without one)
        followed by every key of the runs' ``metrics.json`` (sorted), NaN where missing.
        Rows are ordered by method (none, sft, grpo, others), reward, seed and run dir.

    Raises:
        MissingInputError: ``sweep_dir`` is not a directory.
    """
    roots = sweep_roots(sweep_dir)
    for root in roots:
        if not root.is_dir():
            raise MissingInputError(f"sweep_dir={root}: no such directory")
    run_dirs = sorted({run_dir for root in roots for run_dir in _find_run_dirs(root)})
    rows = [row for run_dir in run_dirs if (row := _read_run(run_dir)) is not None]
    metric_keys = sorted({k for row in rows for k in row if k not in RUN_COLUMNS})
    runs = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *metric_keys])
    runs["seed"] = pd.Series([row["seed"] for row in rows], dtype=object)  # ints stay ints next to a missing seed
    for key in metric_keys:
        runs[key] = pd.to_numeric(runs[key], errors="coerce").astype(float)
    if runs.empty:
        return runs
    order = runs.apply(lambda r: (*group_sort_key(r), seed_sort_key(r["seed"]), r["run_dir"]), axis=1)
    return runs.iloc[sorted(range(len(runs)), key=lambda i: order.iloc[i])].reset_index(drop=True)


def latest_sweep(log_dir: str | Path) -> Path:
    """The newest multirun dir under ``log_dir`` (``<log_dir>/<experiment>/multirun/<time>``), by modification time.

    Raises:
        MissingInputError: there is none (no sweep ran yet, or it died before its first job).
    """
    sweeps = [p for p in Path(log_dir).glob("*/multirun/*") if p.is_dir()]
    if not sweeps:
        raise MissingInputError(
            f"no multirun under {log_dir}/<experiment>/multirun/: run a sweep first (make sweep), "
            "or name the runs to report: sweep_dir=<dir>"
        )
    return max(sweeps, key=lambda p: p.stat().st_mtime)


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
        "data": _get(_get(cfg, "data"), "name"),
        "lora_r": lora_rank(method, method_cfg),
        "start": start_of(cfg),
        "experiment_name": _get(cfg, "experiment_name"),
        "status": OK,
        "error": "",
        "has_history": (run_dir / HISTORY_FILE).is_file(),
        "numeric_path": None,  # what produced its digits (provenance.json), None for a run without one
        "machine": None,
        "run_dir": str(run_dir),
    }
    prov = read_provenance(run_dir)
    if prov is not None:
        row.update(numeric_path=prov.get("numeric_path"), machine=describe(prov))
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
        row["error"] = last_error(run_dir) or row["error"]
    row.update({k: as_float(v) for k, v in metrics.items() if k not in RUN_COLUMNS})
    return row


def last_error(run_dir: str | Path) -> str | None:
    """The last line of the traceback a failed run left in its log (``*.log``, ``error.txt``) and which file holds it.

    Entry scripts log a failure's traceback into the run's own log (:mod:`lego_arta.cli`), so this is the exception
    line, e.g. ``ValueError: ... (train.log)``; None when no log holds a failure.
    """
    for path in sorted(Path(run_dir).glob("*.log")) + sorted(Path(run_dir).glob("error.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        start = max(text.rfind(FAILURE_MARK), text.rfind(TRACEBACK_MARK))
        if start < 0:
            continue
        lines = [line for line in text[start:].splitlines() if line.strip() and not line.startswith((" ", "["))]
        if lines:
            return f"{lines[-1].strip()} ({path.name})"
    return None


def _get(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, Mapping) else None


def lora_rank(method: str, method_cfg: Any) -> Any:
    """The LoRA rank of a run; :data:`FULL` (0) for a trained run without LoRA (``method.lora=null``), None when the
    method trains nothing or the config does not say."""
    if method == "none" or not isinstance(method_cfg, Mapping) or "lora" not in method_cfg:
        return None
    lora = method_cfg["lora"]
    return FULL if lora is None and not _get(method_cfg, "adapter") else _get(lora, "r")


def start_of(cfg: Any) -> str:
    """What a run's weights started from: ``adapter`` (``method.adapter``, e.g. GRPO from the SFT run's adapter),
    ``model`` (``model.path`` = a fully fine-tuned run's ``model/`` dir), else ``""`` (the base model)."""
    if _get(_get(cfg, "method"), "adapter"):
        return "adapter"
    path = _get(_get(cfg, "model"), "path")
    return "model" if path and Path(str(path)).name == MODEL_DIR else ""


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
        str(row["start"]),
        natural_key(str(row["reward"])),
        -1 if lora is None or pd.isna(lora) else lora,
        str(row["model"]),
        str(row["data"]),
    )
