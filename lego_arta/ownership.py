"""One process per run dir: the first process of a run writes ``<run dir>/owner.json`` (host, pid, start time, Slurm
job, heartbeat) and keeps its heartbeat fresh; a second process started into a dir that a live process owns stops at
once with one line naming that owner (two processes appending to one ``history.jsonl`` interleave their steps).

A stale owner does not block, and is replaced:

- a process of this host that is no longer alive (killed, crashed, the machine rebooted);
- on another host (a shared file system), an owner whose heartbeat is older than ``ownership.stale_after_s`` (a node
  that died cannot say so; its heartbeat stops);
- the same Slurm job as this process (a requeue at the time limit restarts the job's own run);
- this very process (Hydra's basic launcher runs a multirun's jobs in one process, one dir each; a run started again in
  the same process).

The ranks of one run share the dir: only the main process (:func:`lego_arta.distributed.is_main`) takes it. The file
is created with ``os.link`` of a complete temporary file, which fails when the file exists: of two processes that
start together, one wins. The owner removes the file when the run ends, normally or by an exception; a kill leaves
it, stale.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lego_arta.errors import UserError

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"


class RunDirInUse(UserError):
    """The run dir is owned by a live process of another run."""


def me() -> dict[str, Any]:
    """This process as an owner record."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "command": " ".join(sys.argv),
        "heartbeat": time.time(),
    }


def read_owner(run_dir: str | Path) -> dict[str, Any] | None:
    """The owner record of ``run_dir``, or None (no file, or one cut short by a kill while written)."""
    try:
        owner = json.loads((Path(run_dir) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_reason(owner: Mapping[str, Any], stale_after_s: float, now: float | None = None) -> str | None:
    """Why ``owner`` no longer owns its run dir (a reason in words), or None while it does.

    >>> import os, socket
    >>> here = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": 0, "slurm_job": None}
    >>> stale_reason(here, 300)
    'this process'
    >>> stale_reason({"host": "node7", "pid": 1, "heartbeat": 1000.0, "slurm_job": None}, 300, now=1200.0) is None
    True
    >>> stale_reason({"host": "node7", "pid": 1, "heartbeat": 1000.0, "slurm_job": None}, 300, now=1400.0)
    'no heartbeat from node7 for 400 s (ownership.stale_after_s=300)'
    """
    now = time.time() if now is None else now
    job = os.environ.get("SLURM_JOB_ID")
    host, pid = str(owner.get("host")), int(owner.get("pid", -1))
    if host == socket.gethostname() and pid == os.getpid():
        return "this process"
    if job is not None and owner.get("slurm_job") == job:
        return f"the same Slurm job ({job}): a requeue"
    if host == socket.gethostname():
        return None if _alive(pid) else f"pid {pid} is not alive on this host"
    age = now - float(owner.get("heartbeat", 0.0))
    return (
        f"no heartbeat from {host} for {age:.0f} s (ownership.stale_after_s={stale_after_s:g})"
        if age > stale_after_s
        else None
    )


def describe(owner: Mapping[str, Any], now: float | None = None) -> str:
    """The owner in one line: pid, host, start, heartbeat age, Slurm job."""
    age = (time.time() if now is None else now) - float(owner.get("heartbeat", 0.0))
    job = f", Slurm job {owner['slurm_job']}" if owner.get("slurm_job") else ""
    return (
        f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('started')} (heartbeat {age:.0f} s ago{job})"
    )


def _write(path: Path, record: Mapping[str, Any], exclusive: bool) -> bool:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    try:
        if exclusive:
            try:
                os.link(tmp, path)  # fails when the file exists: one of two starters wins
            except FileExistsError:
                return False
            return True
        tmp.replace(path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def acquire(run_dir: str | Path, stale_after_s: float) -> dict[str, Any]:
    """Take ``run_dir`` for this process; return the owner record written.

    Raises:
        RunDirInUse: a live process of another run owns it (the message names it).
    """
    path = Path(run_dir) / OWNER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = me()
    for _ in range(3):  # a stale file removed, or one that vanished between the check and the link
        if _write(path, record, exclusive=True):
            return record
        owner = read_owner(run_dir)
        if owner is None:  # cut short by a kill while written, or just removed by its owner
            path.unlink(missing_ok=True)
            continue
        reason = stale_reason(owner, stale_after_s)
        if reason is None:
            raise RunDirInUse(
                f"{run_dir} is in use by {describe(owner)}: wait for that run to end, or start this one in another "
                "dir (hydra.run.dir=...)"
            )
        if reason != "this process":
            log.warning("run dir %s: taking it over from %s: %s", run_dir, describe(owner), reason)
        path.unlink(missing_ok=True)
    raise RunDirInUse(f"{run_dir}: could not take it after 3 tries (another process keeps taking it)")


def release(run_dir: str | Path, record: Mapping[str, Any]) -> None:
    """Remove the owner file when it is still ``record``'s (a process that took it over keeps it)."""
    owner = read_owner(run_dir)
    if owner is not None and (owner.get("host"), owner.get("pid")) == (record["host"], record["pid"]):
        (Path(run_dir) / OWNER_FILE).unlink(missing_ok=True)


def live_owners(root: str | Path, stale_after_s: float) -> list[tuple[Path, dict[str, Any]]]:
    """The run dirs under ``root`` (itself included) that a live process of another run owns, with their owners."""
    out = []
    for path in sorted(Path(root).rglob(OWNER_FILE)) if Path(root).is_dir() else []:
        owner = read_owner(path.parent)
        if owner is not None and stale_reason(owner, stale_after_s) is None:
            out.append((path.parent, owner))
    return out


@contextmanager
def owning(run_dir: str | Path, stale_after_s: float, heartbeat_s: float, main: bool = True) -> Iterator[None]:
    """Own ``run_dir`` while the block runs (main process only), its heartbeat refreshed every ``heartbeat_s``."""
    if not main:
        yield
        return
    record = acquire(run_dir, stale_after_s)
    stop = threading.Event()

    def beat() -> None:
        path = Path(run_dir) / OWNER_FILE
        while not stop.wait(heartbeat_s):
            owner = read_owner(run_dir)
            if owner is None or (owner.get("host"), owner.get("pid")) != (record["host"], record["pid"]):
                log.warning("run dir %s: another process took it over: %s", run_dir, owner and describe(owner))
                return
            _write(path, {**record, "heartbeat": time.time()}, exclusive=False)

    thread = threading.Thread(target=beat, name="run-dir-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        release(run_dir, record)
