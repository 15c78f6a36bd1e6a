"""Shared by the ``experiments/bench_*.py`` scripts: machine facts and writing ``bench/<name>.json``."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from lego_arta.config import ROOT

BENCH_DIR = ROOT / "bench"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_bench(name: str, report: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``report`` plus the machine facts as ``bench/<name>.json`` (or ``out``); return the path."""
    path = Path(out) if out else BENCH_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "machine": machine()}, indent=2) + "\n")
    return path
