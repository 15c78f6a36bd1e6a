"""What every Hydra entry script shares: user errors as one line, each failure in its run's own log, the run dir.

``@hydra.main(...)`` goes on top of ``@hydra_task``, which wraps the script's ``run(cfg)``:

- the run dir is logged when the run starts (and the sweep dir, for a multirun's first job);
- a :class:`~lego_arta.errors.UserError` prints as one ``error: ...`` line and exits with status 2, unless
  ``HYDRA_FULL_ERROR=1`` asks for the traceback;
- ``launch(main, config_name)`` calls the script's ``main``: an override of a key that does not exist (a typo such as
  ``method.args.num_generation=4``) then also names the keys nearby, as ``error: ...`` with status 2;
- any failure's traceback goes into the run's own log file (``<run dir>/<script>.log``), so every failed job of a
  multirun keeps its reason; each failed job says so on stderr when it fails, and the sweep lists all of them at the
  end (Hydra itself re-raises only the first).
"""

from __future__ import annotations

import atexit
import difflib
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lego_arta.config import CONF_DIR
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


def launch(main: Callable[[], None], config_name: str) -> None:
    """Call an entry script's ``@hydra.main`` function; a composition error about a key that does not exist gets a
    second line naming the close matches and the keys that do exist there (Hydra's own message only says
    "not in struct" and suggests ``+``, which adds the typo instead of fixing it)."""
    try:
        main()
    except SystemExit as exit:
        if exit.code == 1 and (hint := unknown_key_hint(sys.argv[1:], config_name)):
            print(f"error: {hint}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        raise


def unknown_key_hint(argv: list[str], config_name: str) -> str | None:
    """For the first ``key=value`` override in ``argv`` whose key is not in the composed config: what it could be.

    Config group choices (``method=grpo``; a sweep's first choice) are composed first, so the keys they bring count.
    """
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
    except Exception:  # Hydra already reported the syntax error
        return None
    choices, keys = [], []
    for override in parsed:
        if override.is_add() or override.is_delete() or override.is_force_add():
            continue
        if override.key_or_group.startswith("hydra."):  # Hydra's own node, not part of the composed job config
            continue
        if "." in override.key_or_group:
            keys.append(override.key_or_group)
        else:
            choices.append(override)
    try:  # a sweep's first choice (a glob or an odd sweep that cannot say so: Hydra's own message stands)
        first = [
            f"{o.get_key_element()}={next(iter(o.sweep_iterator())) if o.is_sweep_override() else o.value()}"
            for o in choices
        ]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=first)
    except Exception:
        return None
    for key in keys:
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig):
            if parent is None:
                return f"{key}: {parent_key} is not in this config (a group may need choosing first, e.g. method=sft)"
            continue
        if leaf in parent:
            continue
        names = [str(k) for k in parent]
        close = difflib.get_close_matches(leaf, names, n=3)
        guess = f"Did you mean {', '.join(f'{parent_key}.{c}' for c in close)}? " if close else ""
        return f"{key}: no such key. {guess}Keys of {parent_key or 'the config'}: {', '.join(sorted(names))}"
    return None
