"""One process per run dir: a live owner of another run blocks a second process at once, with one line naming it;
a stale owner (dead here, silent elsewhere, the same Slurm job) does not; make demo never deletes a live run's dir."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import demo
from lego_arta.ownership import OWNER_FILE, RunDirInUse, acquire, owning, read_owner, release
from tests.conftest import ROOT


def write_owner(run_dir: Path, **fields: object) -> dict:
    record = {"host": socket.gethostname(), "pid": 1, "started": "2026-12-07T06:00:00+00:00", "slurm_job": None}
    record |= {"command": "python experiments/train.py", "heartbeat": time.time(), **fields}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / OWNER_FILE).write_text(json.dumps(record))
    return record


@pytest.fixture
def sleeper():
    """A live process of this host that is not this one: another run's owner."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_live_owner_blocks_and_is_named(tmp_path, sleeper) -> None:
    write_owner(tmp_path, pid=sleeper)
    with pytest.raises(RunDirInUse, match=rf"is in use by pid {sleeper} on {socket.gethostname()} since 2026-12-07"):
        acquire(tmp_path, stale_after_s=300)
    assert read_owner(tmp_path)["pid"] == sleeper  # left as it was


def test_stale_owners_do_not_block(tmp_path, monkeypatch) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cases = {
        "dead here": {"pid": dead.pid},
        "silent elsewhere": {"host": "node-gone", "pid": 4242, "heartbeat": time.time() - 301},
        "a requeue of the same Slurm job": {"host": "node7", "pid": 4242, "slurm_job": "991"},
    }
    monkeypatch.setenv("SLURM_JOB_ID", "991")
    for name, fields in cases.items():
        run_dir = tmp_path / name.replace(" ", "_")
        write_owner(run_dir, **fields)
        record = acquire(run_dir, stale_after_s=300)
        assert read_owner(run_dir)["pid"] == record["pid"], name
        release(run_dir, record)
        assert not (run_dir / OWNER_FILE).exists()
    monkeypatch.delenv("SLURM_JOB_ID")
    alive_elsewhere = write_owner(tmp_path / "busy", host="node7", pid=4242, heartbeat=time.time() - 10)
    with pytest.raises(RunDirInUse, match=r"on node7 .*heartbeat 10 s ago"):
        acquire(tmp_path / "busy", stale_after_s=300)
    assert read_owner(tmp_path / "busy") == alive_elsewhere


def test_the_owner_keeps_its_heartbeat_and_leaves_no_file(tmp_path) -> None:
    with owning(tmp_path, stale_after_s=300, heartbeat_s=0.05):
        first = read_owner(tmp_path)["heartbeat"]
        time.sleep(0.3)
        assert read_owner(tmp_path)["heartbeat"] > first
    assert not (tmp_path / OWNER_FILE).exists()
    with pytest.raises(ZeroDivisionError), owning(tmp_path, stale_after_s=300, heartbeat_s=10):
        1 / 0  # noqa: B018
    assert not (tmp_path / OWNER_FILE).exists()  # released on an exception too
    with owning(tmp_path, stale_after_s=300, heartbeat_s=10, main=False):
        assert not (tmp_path / OWNER_FILE).exists()  # the other ranks share the main process's dir


def test_a_second_process_into_a_live_runs_dir_stops_in_seconds(tmp_path, sleeper) -> None:
    run_dir = tmp_path / "run"
    write_owner(run_dir, pid=sleeper)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "experiments/train.py", "method=none", "logger=none", f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and time.perf_counter() - start < 60
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {run_dir} is in use by pid {sleeper} on {socket.gethostname()} since "), last
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "history.jsonl").exists()


def test_make_demo_never_deletes_a_live_runs_dir(tmp_path, sleeper) -> None:
    overrides = ["experiment=demo", f"paths.log_dir={tmp_path}", "logger=none"]
    _, out, _ = demo.compose_stages(overrides)
    write_owner(out / "sft", pid=sleeper)
    (out / "sft" / "history.jsonl").write_text("{}\n")
    with pytest.raises(RunDirInUse, match=rf"{out / 'sft'} is in use by pid {sleeper} .*is not deleted"):
        demo.run(overrides)
    assert (out / "sft" / "history.jsonl").exists()
