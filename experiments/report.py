"""Write the report of a sweep: Table 1 (mean ± std, 95% CI over seeds) beside the study's, the trained runs against
the trivial answers and SFT, reward curves, failed runs.

    python experiments/report.py                     # the newest multirun under outputs/ (= make report)
    python experiments/report.py sweep_dir=outputs/reward_ablation/multirun/2025-01-01_12-00-00 smoothing=0.6
    python experiments/report.py "sweep_dir=[outputs/ablation,outputs/ablation_mkl_compatible]" out_dir=outputs/paths

Writes report.md, report.csv, runs.csv and (when a GRPO run logged rewards) reward_curves.png into out_dir
(default: the sweep dir), then prints report.md and where the files are.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from lego_arta.cli import hydra_task, launch
from lego_arta.report import write_report
from lego_arta.report.collect import common_root, latest_sweep


def run(cfg: DictConfig) -> dict[str, Any]:
    """Write the report of ``cfg.sweep_dir`` (or the newest multirun) into ``cfg.out_dir`` (or the sweep dir)."""
    sweep_dir = cfg.sweep_dir if cfg.sweep_dir is not None else latest_sweep(cfg.paths.log_dir)  # one dir, or a list
    return write_report(
        sweep_dir,
        cfg.out_dir if cfg.out_dir is not None else common_root(sweep_dir),
        smoothing=float(cfg.smoothing),
        show_study=bool(cfg.show_study),
        band=str(cfg.band),
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
@hydra_task
def main(cfg: DictConfig) -> None:
    summary = run(cfg)
    print(summary["markdown"])
    print(f"report: {summary['report_md']}")
    if summary["reward_curves_png"]:
        print(f"reward curves: {summary['reward_curves_png']}")


if __name__ == "__main__":
    launch(main, "report")
