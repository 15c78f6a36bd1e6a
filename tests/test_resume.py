"""Runs that stop and start again: the newest complete checkpoint, a checkpoint saved on a stop signal, and the Slurm
requeue (the launcher's checkpoint hook, called directly: no cluster needed). The end-to-end kills are in
tests/test_train.py."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import TrainerControl, TrainerState, TrainingArguments

from lego_arta.errors import MissingInputError
from lego_arta.methods.callbacks import SaveOnSignalCallback, stop_signals
from lego_arta.methods.common import last_complete_checkpoint


def _checkpoint(run_dir: Path, step: int, state: str | None) -> Path:
    path = run_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"lora_A": torch.zeros(64, 8)}, str(path / "adapter_model.safetensors"))
    torch.save({"state": {0: torch.zeros(64)}}, path / "optimizer.pt")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_the_newest_complete_checkpoint_is_taken_and_half_written_ones_are_skipped(tmp_path, caplog):
    complete = _checkpoint(tmp_path, 5, json.dumps({"global_step": 5}))
    _checkpoint(tmp_path, 10, None)  # killed before its trainer_state.json (written last)
    _checkpoint(tmp_path, 8, '{"global_st')  # killed while writing it
    _checkpoint(tmp_path, 7, json.dumps({"global_step": 6}))  # a state that is not this checkpoint's
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint
    # transformers' get_last_checkpoint would take checkpoint-10
    assert last_complete_checkpoint(tmp_path) == complete
    assert [r.message.split(" is incomplete")[0] for r in caplog.records] == [
        str(tmp_path / f"checkpoint-{step}") for step in (10, 8, 7)
    ]
    assert last_complete_checkpoint(tmp_path / "missing") is None
    assert last_complete_checkpoint(tmp_path / "checkpoint-x") is None


def test_a_checkpoint_damaged_after_its_state_was_written_is_passed_over(tmp_path, caplog):
    # the disk filled or a copy was cut short: trainer_state.json is intact, a weight or optimizer file is not
    older = _checkpoint(tmp_path, 4, json.dumps({"global_step": 4}))
    newest = _checkpoint(tmp_path, 8, json.dumps({"global_step": 8}))
    _truncate(newest / "adapter_model.safetensors")
    assert last_complete_checkpoint(tmp_path) == older  # not the newest, whose resume dies in SafetensorError
    assert f"{newest}: adapter_model.safetensors is damaged" in caplog.text
    _truncate(older / "optimizer.pt", keep=0.9)  # no intact checkpoint left: stop, naming the file
    with pytest.raises(MissingInputError, match=rf"{newest / 'adapter_model.safetensors'} is damaged .*Restore it"):
        last_complete_checkpoint(tmp_path)


def test_submitits_preemption_signal_is_read_from_its_variable(monkeypatch):
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    assert stop_signals() == (signal.SIGTERM, signal.SIGUSR2)  # submitit's default (NCCL may catch USR1)
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    assert stop_signals() == (signal.SIGTERM, signal.SIGUSR1)


def _steps(callback: SaveOnSignalCallback, n: int) -> list[TrainerControl]:
    args, controls = TrainingArguments(output_dir="/tmp/unused", report_to=[]), []
    for step in range(1, n + 1):
        controls.append(callback.on_step_end(args, TrainerState(global_step=step), TrainerControl()))
    return controls


def test_a_stop_signal_saves_at_the_next_step_then_hands_over_to_the_handler_before():
    received: list[int] = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
    try:
        callback = SaveOnSignalCallback([signal.SIGTERM, signal.SIGUSR2])
        args, state, control = (
            TrainingArguments(output_dir="/tmp/unused", report_to=[]),
            TrainerState(),
            TrainerControl(),
        )
        callback.on_train_begin(args, state, control)
        assert not any(c.should_save for c in _steps(callback, 3))  # nothing happens without a signal
        os.kill(os.getpid(), signal.SIGUSR2)
        assert received == []  # the handler before (submitit's requeue) waits for the checkpoint
        control = _steps(callback, 1)[0]
        assert control.should_save and control.should_training_stop
        with pytest.raises(SystemExit) as stopped:
            callback.on_save(args, state, control)  # the Trainer calls it once checkpoint-<step> is written
        assert received == [signal.SIGUSR2]  # then it runs (submitit's requeues the job and exits the main task)
        assert stopped.value.code == 128 + signal.SIGUSR2  # where it returns, the process ends as the signal meant
        assert signal.getsignal(signal.SIGUSR2) is not callback._catch  # handlers restored
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_without_a_handler_before_the_process_ends_with_the_signals_status():
    before = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        callback = SaveOnSignalCallback([signal.SIGUSR2])
        args, state = TrainingArguments(output_dir="/tmp/unused", report_to=[]), TrainerState()
        callback.on_train_begin(args, state, TrainerControl())
        os.kill(os.getpid(), signal.SIGUSR2)  # would end the process without the callback
        control = _steps(callback, 1)[0]
        with pytest.raises(SystemExit) as stopped:
            callback.on_save(args, state, control)
        assert stopped.value.code == 128 + signal.SIGUSR2
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_the_slurm_launchers_checkpoint_hook_requeues_the_same_job_after_the_save(tmp_path):
    # What happens on a cluster when Slurm sends submitit's signal before the time limit, with no cluster: the job as
    # hydra/launcher=slurm submits it (the launcher and the job's arguments), submitit's own signal handler, and ours
    from hydra.utils import instantiate
    from submitit.core.job_environment import SignalHandler
    from submitit.core.utils import DelayedSubmission, JobPaths

    from lego_arta.config import compose_config

    cfg = compose_config(["hydra/launcher=slurm"], output_dir=tmp_path / "unused")
    launcher_cfg = cfg.hydra.launcher if "hydra" in cfg else None
    if launcher_cfg is None:  # compose() leaves out the hydra node: read the launcher group as the CLI composes it
        from hydra import compose, initialize_config_dir

        from tests.conftest import CONF

        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            launcher_cfg = compose(
                "config", overrides=["hydra/launcher=slurm"], return_hydra_config=True
            ).hydra.launcher
    assert launcher_cfg.max_num_timeout >= 1 and launcher_cfg.signal_delay_s >= 300
    launcher = instantiate(launcher_cfg)
    # the arguments launch() submits for job 3 of a sweep: its overrides, the key of the sweep dir, its number
    job = (["seed=2"], "hydra.sweep.dir", 3, "job_id_for_3", {})
    delayed = DelayedSubmission(launcher, *job)
    delayed.set_timeout(int(launcher_cfg.timeout_min), int(launcher_cfg.max_num_timeout))

    class Env:  # the Slurm job environment of the main task; requeueing calls scontrol there
        global_rank = 0
        requeued: list[int] = []  # noqa: RUF012

        def _requeue(self, countdown: int) -> None:
            self.requeued.append(countdown)

    paths = JobPaths(tmp_path / ".submitit", job_id="1234")
    paths.folder.mkdir(parents=True)
    submitit_handler = SignalHandler(Env(), paths, delayed)  # type: ignore[arg-type]
    exits: list[str] = []
    submitit_handler._exit = lambda: exits.append("exit")  # type: ignore[method-assign]

    before = signal.signal(signal.SIGUSR2, submitit_handler.checkpoint_and_try_requeue)
    try:
        callback = SaveOnSignalCallback([signal.SIGTERM, signal.SIGUSR2])
        args, state = TrainingArguments(output_dir="/tmp/unused", report_to=[]), TrainerState()
        callback.on_train_begin(args, state, TrainerControl())
        os.kill(os.getpid(), signal.SIGUSR2)
        assert Env.requeued == []  # not before the checkpoint
        control = _steps(callback, 1)[0]
        assert control.should_save
        with pytest.raises(SystemExit):
            callback.on_save(args, state, control)
    finally:
        signal.signal(signal.SIGUSR2, before)
    # the job was requeued once, with one requeue fewer left (the signal came early: preempted, not timed out)
    assert Env.requeued == [int(launcher_cfg.max_num_timeout)] and exits == ["exit"]
    # and what Slurm starts again is the same job: the launcher and its arguments (same job number: same run dir,
    # where the run resumes from the checkpoint it just saved)
    again = DelayedSubmission.load(paths.submitted_pickle)
    assert type(again.function).__name__ == "SlurmLauncher" and again.args == job
