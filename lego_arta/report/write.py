"""The report of a sweep, assembled: Table 1 beside the study's, references, the trained runs against the trivial
answers and against SFT, reward curves, what moved GRPO's advantage, the ablation's test, failed runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from lego_arta.errors import MissingInputError
from lego_arta.report.ablation import ablation
from lego_arta.report.collect import OK, SweepDirs, collect_runs, common_root, sweep_roots
from lego_arta.report.curves import reward_curves, validation_curves
from lego_arta.report.generalisation import generalisation
from lego_arta.report.markdown import ReportParts, render
from lego_arta.report.signal import signal_table
from lego_arta.report.stats import METRICS, extra_metrics, ood_metrics, references_table, study_table, table1
from lego_arta.report.versus import baseline_lines, start_lines, trivial_lines
from lego_arta.runs import CONFIG_FILE, METRICS_FILE
from lego_arta.sample_metrics import HEADLINE

VAL_CURVES = "validation_curves.png"

log = logging.getLogger(__name__)


def write_report(
    sweep_dir: SweepDirs,
    out_dir: str | Path | None = None,
    *,
    smoothing: float = 0.0,
    show_study: bool = True,
    band: str = "minmax",
) -> dict[str, Any]:
    """Write ``report.md``, ``report.csv``, ``runs.csv`` and (when a run logged rewards) ``reward_curves.png``, (when
    a run validated during training) ``validation_curves.png``.

    Args:
        sweep_dir: folder holding the run dirs (see :func:`collect_runs`), or a list of such folders.
        out_dir: where to write; ``sweep_dir`` (the folder holding all of them) by default.
        smoothing: EMA weight of the reward curves (0 = raw).
        show_study: put the study's reported Table 1 beside ours.
        band: spread shown around the curves: ``minmax`` or ``std``.

    Returns:
        ``report_md``, ``report_csv``, ``runs_csv``, ``reward_curves_png``, ``validation_curves_png`` (None when
        not drawn): paths as strings;
        ``n_runs``, ``n_ok``, ``n_failed``, ``failed`` (run dirs), ``markdown`` (the text of report.md).

    Raises:
        MissingInputError: ``sweep_dir`` does not exist or holds no run dir.
    """
    root = common_root(sweep_dir)
    runs = collect_runs(sweep_dir)
    if runs.empty:
        named = ", ".join(repr(str(p)) for p in sweep_roots(sweep_dir))
        raise MissingInputError(
            f"no run dirs under sweep_dir {named}: expected folders with {CONFIG_FILE} (with method.name) "
            f"and {METRICS_FILE}"
        )
    out = Path(out_dir) if out_dir is not None else root
    out.mkdir(parents=True, exist_ok=True)
    ours, refs, extra_keys = table1(runs, [*METRICS, *ood_metrics(runs)]), references_table(runs), extra_metrics(runs)
    extra = table1(runs, extra_keys) if extra_keys else None
    study = study_table() if show_study else None

    png: Path | None = out / "reward_curves.png"
    if reward_curves(runs, out / "reward_curves.png", smoothing=smoothing, band=band) is None:
        png = None
    val_png: Path | None = out / VAL_CURVES
    if validation_curves(runs, out / VAL_CURVES, metrics=list(HEADLINE.values())) is None:
        val_png = None

    frames = [ours.assign(kind="ours"), refs.assign(kind="reference")]
    if study is not None:
        frames.append(study.assign(kind="study"))
    csv = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    csv = csv[["kind", *[c for c in csv.columns if c != "kind"]]]
    paths = {"report_csv": out / "report.csv", "runs_csv": out / "runs.csv", "report_md": out / "report.md"}
    csv.to_csv(paths["report_csv"], index=False)
    runs.to_csv(paths["runs_csv"], index=False)

    failed = runs[runs["status"] != OK]
    comparisons = ablation(runs)
    trivial, baseline, ood = trivial_lines(runs), baseline_lines(runs), start_lines(runs)
    parts = ReportParts(
        root=root,
        runs=runs,
        failed=failed,
        ours=ours,
        refs=refs,
        extra=extra,
        study=study,
        trivial=trivial,
        baseline=baseline,
        ood=ood,
        findings=generalisation(runs),
        reward_png=png,
        smoothing=smoothing,
        band=band,
        val_png=val_png,
        signal=signal_table(runs),
        comparisons=comparisons,
    )
    markdown = render(parts)
    paths["report_md"].write_text(markdown, encoding="utf-8")
    log.info("wrote %s (%d runs, %d failed)", paths["report_md"], len(runs), len(failed))
    return {
        **{k: str(v) for k, v in paths.items()},
        "reward_curves_png": str(png) if png is not None else None,
        "validation_curves_png": str(val_png) if val_png is not None else None,
        "n_runs": len(runs),
        "n_ok": len(runs) - len(failed),
        "n_failed": len(failed),
        "failed": failed["run_dir"].tolist(),
        "markdown": markdown,
    }
