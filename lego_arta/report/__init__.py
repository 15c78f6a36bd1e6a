"""Reports over a sweep of runs, one concern per module.

- :mod:`~lego_arta.report.collect`: find the run dirs and read them (config, metrics, status, error);
- :mod:`~lego_arta.report.stats`: Table 1 statistics (mean ± std with n and the CI over seeds, references, the study's
  table);
- :mod:`~lego_arta.report.versus`: trained runs against the trivial answers and against SFT, with plain verdicts;
- :mod:`~lego_arta.report.markdown`: the report.md text, its data frames as markdown tables;
- :mod:`~lego_arta.report.curves`: the reward-curve figure;
- :mod:`~lego_arta.report.write`: :func:`write_report`, which puts them together.
"""

from lego_arta.report.write import write_report

__all__ = ["write_report"]
