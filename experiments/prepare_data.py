"""Prepare the data of a run: read (or generate) and split, write the split files and a contact sheet.

    python experiments/prepare_data.py                                   # synthetic scenes (the default)
    python experiments/prepare_data.py data=lego_arta data.root=/data/arta split=manual
    python experiments/prepare_data.py data.synthetic.num_manuals=20 +contact_sheet=false

Writes into the Hydra run dir: train.jsonl, test.jsonl (one record per line, image paths absolute),
split_summary.json (counts per task and split, dropped records by reason) and contact_sheet.png (a few samples per
task with their boxes, query and answer). ``contact_sheet`` is not in the main config: add it with ``+``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lego_arta.cli import hydra_task
from lego_arta.data import flat_counts, load_data, save_split
from lego_arta.data.contact_sheet import contact_sheet

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict[str, float]:
    """Write the split files (and the contact sheet) into ``out_dir``; return the counts as flat metric keys.

    ``out_dir`` defaults to the Hydra run dir; pass it when calling from ``hydra.compose`` (tests), where there is no
    run dir (and override ``paths.cache_dir`` too).
    """
    out = Path(out_dir) if out_dir is not None else Path(HydraConfig.get().runtime.output_dir)
    split = load_data(cfg)
    save_split(split, out)
    if cfg.get("contact_sheet", True):
        path = contact_sheet(split.train + split.test, out / "contact_sheet.png", seed=int(cfg.get("seed", 0)))
        log.info("contact sheet: %s", path)
    print(counts_table(split.summary))
    return {key: float(n) for key, n in flat_counts(split.summary).items()}


def counts_table(summary: dict) -> str:
    """The counts per task and split as a small text table (with dropped records by reason)."""
    counts = summary["counts"]
    tasks = list(counts["train"])
    lines = [f"{'':8}" + "".join(f"{t:>11}" for t in tasks)]
    lines += [f"{name:8}" + "".join(f"{counts[name][t]:>11}" for t in tasks) for name in ("train", "test")]
    lines += [f"dropped: {n:>5}  {reason}" for reason, n in sorted(summary.get("dropped", {}).items())]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@hydra_task
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
