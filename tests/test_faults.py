"""The faults of a long job, each injected: what happens, and what is kept (docs/processes.md has the table)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import ROOT


@pytest.mark.slow(seconds=40)
def test_the_tracker_dying_mid_run_loses_no_step(tmp_path, cache_dir) -> None:
    # kill -9 of W&B's service process two steps into a GRPO run: training goes on, history.jsonl keeps every step,
    # metrics.json is written, one warning says W&B stopped (without the guard: exit 1, ConnectionResetError)
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "experiments/train.py", "method=grpo", "logger=wandb", "method.args.max_steps=8",
        "method.args.per_device_train_batch_size=2", "method.args.num_generations=2",
        "method.args.max_completion_length=8", "data.synthetic.num_manuals=4", "eval.limit=1",
        "eval.max_new_tokens=8", f"paths.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    history = run_dir / "history.jsonl"
    deadline = time.monotonic() + 300
    killed = []
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [json.loads(line) for line in history.read_text().splitlines()] if history.exists() else []
        if sum("reward" in row for row in steps) >= 2:
            killed = [
                c for c in psutil.Process(proc.pid).children(recursive=True) if "wandb-core" in " ".join(c.cmdline())
            ]
            for child in killed:
                child.kill()
            break
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=300)
    assert killed, "no W&B service process found to kill"
    assert proc.returncode == 0, out[-3000:]
    rows = [json.loads(line) for line in history.read_text().splitlines()]
    assert [row["step"] for row in rows if "reward" in row] == list(range(1, 9))
    assert (run_dir / "metrics.json").is_file() and "eval/iou" in json.loads((run_dir / "metrics.json").read_text())
    log = (run_dir / "train.log").read_text()
    assert log.count("W&B stopped (") == 1 and "training goes on without it" in log
