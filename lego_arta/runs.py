"""What every run writes into its run dir: the resolved config, metrics.json, history.jsonl.

Run dir contract (read by reports and tests, no W&B account needed):
    config.yaml      the resolved config (plain YAML)
    metrics.json     flat {key: float}, e.g. {"eval/iou": 61.2, "eval/iou_lo": 55.0, "eval/iou_hi": 66.9}
    history.jsonl    one JSON object per logged training step, TRL's keys ("step", "loss", "rewards/iou_v1/mean", ...)
    predictions.jsonl one JSON object per evaluated sample
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
PREDICTIONS_FILE = "predictions.jsonl"


def save_config(cfg: DictConfig, run_dir: str | Path) -> Path:
    """Write the resolved config to ``run_dir/config.yaml`` and return its path."""
    path = Path(run_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def write_metrics(metrics: Mapping[str, float], run_dir: str | Path) -> Path:
    """Write ``metrics`` as JSON to ``run_dir/metrics.json`` (non-finite values become null)."""
    path = Path(run_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in metrics.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return path


def append_jsonl(path: str | Path, row: Mapping[str, Any]) -> None:
    """Append one JSON object as a line (flushed, so a killed run keeps what it wrote)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=_json_default) + "\n")


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file; a truncated last line (a killed writer) is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
