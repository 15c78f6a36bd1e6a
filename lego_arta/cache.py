"""The build cache: what the project builds offline (tiny models, the tiny sentence encoder, synthetic scenes) is
built once per settings into ``paths.cache_dir`` and shared by every run, also by runs that start together.

:func:`build_dir` is the one way such a dir is written: into a temporary sibling, renamed into place when complete.
An interrupted build never leaves half a dir that a later run would reuse, and when two processes build the same dir
(jobs of a parallel sweep, Slurm jobs or test workers on one cache) the first complete one stays: the same settings
give the same files, and the process that built it may be reading them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def build_dir(out: Path, write: Callable[[Path], None], is_complete: Callable[[Path], bool]) -> Path:
    """Build the dir ``out`` with ``write(tmp)`` into a temporary sibling ``tmp``, then rename it into place.

    Args:
        out: the dir to build; its parents are created.
        write: writes the dir's files into the empty dir it is given.
        is_complete: whether a dir holds a complete build. An ``out`` that exists but is not complete (a layout of
            an older version) is replaced; a complete one another process renamed into place first is kept, and
            this build is dropped.

    Returns:
        ``out``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    try:
        write(tmp)
        if out.exists() and not is_complete(out):
            shutil.rmtree(out)
        try:
            tmp.rename(out)
        except OSError:  # the dir is there and not empty: another process finished the same build first
            if not is_complete(out):
                raise
            log.info("%s was built by another process meanwhile: kept", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
