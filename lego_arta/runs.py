"""What every run writes into its run dir: the resolved config, metrics.json, history.jsonl.

Run dir contract (read by reports and tests, no W&B account needed):
    config.yaml      the resolved config (plain YAML)
    metrics.json     flat {key: float}, e.g. {"eval/iou": 61.2, "eval/iou_lo": 55.0, "eval/iou_hi": 66.9}
    history.jsonl    one JSON object per logged training step, TRL's keys ("step", "loss", "rewards/iou_v1/mean", ...)
    predictions.jsonl one JSON object per evaluated sample
    val.jsonl        the training records held out for validation (eval.val.every_steps > 0); val/ its answers
    adapter/         the trained LoRA adapter, or model/ the whole model after full fine-tuning (:class:`Trained`)
    provenance.json  what produced its digits: CPU, numeric path, threads, versions (:mod:`lego_arta.provenance`)
    wandb_run_id.txt the W&B run id: a run started again in its dir (resumed, requeued) logs into the same W&B run
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from lego_arta.errors import InputError
from lego_arta.provenance import provenance

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
PREDICTIONS_FILE = "predictions.jsonl"


def extra_predictions_file(name: str) -> str:
    """The predictions of the ``eval.extra`` set ``name``: ``predictions_extra_<name>.jsonl``."""
    return f"predictions_extra_{name}.jsonl"


ADAPTER_DIR = "adapter"  # a LoRA run saves its adapter here
MODEL_DIR = "model"  # a full fine-tuning run (method.lora=null) saves the whole model here
WANDB_ID_FILE = "wandb_run_id.txt"
VAL_FILE = "val.jsonl"  # the training records held out for validation during training (eval.val)
PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class Trained:
    """What a training run saved into its run dir: a LoRA adapter (``adapter/``, on the base model) or, after full
    fine-tuning (``method.lora=null``), a whole model (``model/``, loaded again with ``model.path=<it>``)."""

    path: Path
    kind: Literal["adapter", "model"]

    @classmethod
    def saved(cls, run_dir: Path, adapter: bool) -> Trained:
        """The adapter dir of ``run_dir`` when ``adapter``, else its model dir."""
        return cls(run_dir / ADAPTER_DIR, "adapter") if adapter else cls(run_dir / MODEL_DIR, "model")


def saved_value(node: Any, *keys: str) -> Any:
    """A value of a run's saved config (``config.yaml`` read back as plain YAML), None where a key is absent (a run
    of an older version of the project).

    >>> saved_value({"eval": {"bootstrap": {"seed": 3}}}, "eval", "bootstrap", "seed"), saved_value({}, "eval", "x")
    (3, None)
    """
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


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


def write_provenance(run_dir: str | Path) -> dict[str, Any]:
    """Write this process's :func:`lego_arta.provenance.provenance` to ``run_dir/provenance.json``; return it."""
    prov = provenance()
    path = Path(run_dir) / PROVENANCE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(prov, indent=2, sort_keys=True) + "\n")
    return prov


def read_provenance(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``provenance.json``, or None when it has none (a run from before it was written) or it is not
    a JSON object."""
    try:
        prov = json.loads((Path(run_dir) / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return prov if isinstance(prov, dict) else None


def append_jsonl(path: str | Path, row: Mapping[str, Any]) -> None:
    """Append one JSON object as a line (flushed, so a killed run keeps what it wrote)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=_json_default) + "\n")


def iter_jsonl(path: str | Path, strict: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, value)`` for every non-empty line of a JSONL file.

    A line that is not JSON raises :class:`~lego_arta.errors.InputError` naming the file and line, except, when not
    ``strict``, a last line cut short by a killed writer, which is skipped (and logged): it is the only thing a
    resumed run may drop.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield i + 1, json.loads(line)
        except (ValueError, RecursionError) as err:
            if strict or i != last or line.endswith("\n"):
                raise InputError(f"{path}:{i + 1}: not a JSON line ({err})") from err
            log.warning("%s:%d: skipping a truncated last line (a killed writer)", path, i + 1)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file written by a run (a truncated last line is skipped)."""
    for _, value in iter_jsonl(path):
        yield value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
