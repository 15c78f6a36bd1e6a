"""What every Hydra entry script shares: user errors as one line, each failure in its run's own log, the run dir.

``@hydra.main(...)`` goes on top of ``@hydra_task``, which wraps the script's ``run(cfg)``:

- the run dir is logged when the run starts (and the sweep dir, for a multirun's first job);
- a :class:`~lego_arta.errors.UserError` prints as one ``error: ...`` line and exits with status 2, unless
  ``HYDRA_FULL_ERROR=1`` asks for the traceback;
- any failure's traceback goes into the run's own log file (``<run dir>/<script>.log``), so every failed job of a
  multirun keeps its reason; each failed job says so on stderr when it fails, and the sweep lists all of them at the
  end (Hydra itself re-raises only the first).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lego_arta.errors import UserError

log = logging.getLogger(__name__)

EXIT_USER_ERROR = 2
R = TypeVar("R")
_FAILED_JOBS: list[str] = []


def hydra_task(run: Callable[[DictConfig], R]) -> Callable[[DictConfig], R]:
    """Wrap an entry script's ``run(cfg)`` as the task function of ``@hydra.main`` (see the module docstring)."""

    @functools.wraps(run)
    def task(cfg: DictConfig) -> R:
        hydra = HydraConfig.get()
        multirun = hydra.mode == RunMode.MULTIRUN
        run_dir = hydra.runtime.output_dir
        if multirun and str(hydra.job.num) == "0":
            log.info("sweep dir: %s", hydra.sweep.dir)
        log.info("run dir: %s", run_dir)
        try:
            return run(cfg)
        except Exception as err:
            logs = _write_to_log_files(traceback.format_exc())
            summary = last_error_line(err)
            if multirun:
                where = f"job {hydra.job.num} ({' '.join(hydra.overrides.task)})"
                _note_failed_job(f"{where}: {summary}; log: {', '.join(logs) or run_dir}")
                print(f"FAILED {where}: {summary}", file=sys.stderr)
            elif isinstance(err, UserError) and not os.environ.get("HYDRA_FULL_ERROR"):
                print(f"error: {err}", file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)
            raise

    return task


def last_error_line(err: BaseException) -> str:
    """``Type: message`` on one line (a user error: its message alone)."""
    text = " ".join(str(err).split())
    return text if isinstance(err, UserError) else f"{type(err).__name__}: {text}"


def _write_to_log_files(text: str) -> list[str]:
    """Log ``text`` to the root logger's log files only (the console gets Hydra's own report); their paths."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "run failed:\n%s", (text.rstrip(),), None)
    paths = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            paths.append(handler.baseFilename)
    return paths


def _note_failed_job(line: str) -> None:
    if not _FAILED_JOBS:
        atexit.register(_print_failed_jobs)
    _FAILED_JOBS.append(line)


def _print_failed_jobs() -> None:
    print(f"\n{len(_FAILED_JOBS)} failed job(s) in this sweep:", file=sys.stderr)
    for line in _FAILED_JOBS:
        print(f"  {line}", file=sys.stderr)
