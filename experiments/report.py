"""Write the report of a sweep: Table 1 (mean ± 95% CI over seeds) beside the study's, reward curves, failed runs.

    python experiments/report.py sweep_dir=outputs/default/multirun/2025-01-01_12-00-00
    python experiments/report.py sweep_dir=outputs/default/multirun/2025-01-01_12-00-00 out_dir=reports smoothing=0.6

Writes report.md, report.csv, runs.csv and (when a GRPO run logged rewards) reward_curves.png into out_dir
(default: sweep_dir), then prints report.md.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from lego_arta.cli import hydra_task
from lego_arta.report import write_report


def run(cfg: DictConfig) -> dict[str, Any]:
    """Write the report of ``cfg.sweep_dir`` into ``cfg.out_dir`` (or the sweep dir); return paths and counts."""
    return write_report(
        cfg.sweep_dir,
        cfg.out_dir if cfg.out_dir is not None else cfg.sweep_dir,
        smoothing=float(cfg.smoothing),
        show_study=bool(cfg.show_study),
        band=str(cfg.get("band", "minmax")),
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
@hydra_task
def main(cfg: DictConfig) -> None:
    summary = run(cfg)
    print(summary["markdown"])


if __name__ == "__main__":
    main()
