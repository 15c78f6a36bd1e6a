"""Shared by the ``experiments/bench_*.py`` scripts: machine facts and writing ``bench/<name>.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lego_arta.config import ROOT
from lego_arta.provenance import provenance

BENCH_DIR = ROOT / "bench"


def write_bench(name: str, report: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``report`` plus the machine facts as ``bench/<name>.json`` (or ``out``); return the path."""
    path = Path(out) if out else BENCH_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "machine": provenance()}, indent=2) + "\n")
    return path
