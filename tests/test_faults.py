"""The faults of a long job, each injected: what happens, and what is kept (docs/processes.md has the table)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

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


@pytest.mark.slow(seconds=30)
def test_a_full_disk_during_a_checkpoint_stops_with_one_line_and_the_same_command_resumes(
    make_cfg, monkeypatch, caplog
):
    # the disk fills while checkpoint-4 is written (its optimizer state: torch's own message for ENOSPC); the Trainer
    # writes weights, optimizer, scheduler, RNG, then trainer_state.json, so checkpoint-4 is left without its state
    from experiments import train as train_script
    from lego_arta.methods.common import DiskFullError, last_complete_checkpoint

    cfg = make_cfg(
        "method=grpo", "debug=quick", "data.synthetic.num_manuals=4", "eval.after_train=false",
        "method.args.per_device_train_batch_size=2", "method.args.num_generations=2",
        "method.args.max_completion_length=8", "method.args.max_steps=4", "method.args.save_steps=2",
    )  # fmt: skip
    run_dir = Path(cfg.paths.output_dir)
    save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if "checkpoint-4" in str(f):
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: file "
                "write failed"
            )
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DiskFullError) as caught:
        train_script.run(cfg)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"the disk is full: writing {run_dir / 'checkpoint-4'} failed")
    assert message.endswith(f"run the same command again: it resumes from {run_dir / 'checkpoint-2'}")
    assert last_complete_checkpoint(run_dir) == run_dir / "checkpoint-2"  # the half-written one is passed over
    monkeypatch.setattr(torch, "save", save)  # room again: the same command goes on from step 2
    caplog.clear()
    with caplog.at_level("INFO", logger="lego_arta.methods.common"):
        train_script.run(cfg)
    steps = [
        row["step"] for row in map(json.loads, (run_dir / "history.jsonl").read_text().splitlines()) if "reward" in row
    ]
    assert steps == [1, 2, 3, 4]  # steps 3 and 4 done again from checkpoint-2, each kept once
    assert f"resuming from {run_dir / 'checkpoint-2'}" in caplog.text
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow(seconds=20)
def test_a_non_finite_loss_is_logged_as_it_is_and_stops_the_run_at_its_step(make_cfg, monkeypatch):
    from trl import SFTTrainer

    from experiments import train as train_script
    from lego_arta.methods.callbacks import NonFiniteError

    cfg = make_cfg(
        "method=sft", "debug=quick", "data.synthetic.num_manuals=4", "eval.after_train=false",
        "method.args.max_steps=6", "method.args.save_steps=2",
    )  # fmt: skip
    assert cfg.method.args.logging_nan_inf_filter is False  # transformers would log the running mean instead
    compute_loss = SFTTrainer.compute_loss

    def diverging(self, *args, **kwargs):
        loss = compute_loss(self, *args, **kwargs)
        return loss * float("nan") if self.state.global_step >= 2 else loss  # from step 3 on

    monkeypatch.setattr(SFTTrainer, "compute_loss", diverging)
    with pytest.raises(NonFiniteError, match=r"^step 3: loss = nan: the run stops"):
        train_script.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows if "loss" in r][-1] == (3, None)  # visible: null, not a mean
    assert (run_dir / "checkpoint-2" / "trainer_state.json").is_file()  # the checkpoint before it is intact
    assert not (run_dir / "checkpoint-4").exists()
