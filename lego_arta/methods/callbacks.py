"""Trainer callbacks: the logged history as JSONL, the GRPO rollouts as a W&B table with images and box layers, and
a checkpoint saved when the job is told to stop."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lego_arta.distributed import any_process
from lego_arta.errors import UserError
from lego_arta.evaluation.predictions_table import table_image
from lego_arta.parsing import completion_text
from lego_arta.runs import append_jsonl, read_jsonl
from lego_arta.tracking import BoxedImage, Tracker


class HistoryCallback(TrainerCallback):
    """Append every ``on_log`` dict to ``history.jsonl`` (TRL's keys, plus ``step``), so reports need no W&B.

    On resume, rows logged after the checkpoint's step are dropped first: the history stays one row per step. Only
    the main process writes (the Trainer calls every rank's callbacks with the same, already reduced, logs).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        if state.is_world_process_zero and self.path.exists():
            kept = [row for row in read_jsonl(self.path) if row.get("step", 0) <= state.global_step]
            self.path.write_text("")
            for row in kept:
                append_jsonl(self.path, row)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw: Any):
        if logs and state.is_world_process_zero:
            row = {"step": state.global_step, **{k: _finite_or_none(v) for k, v in logs.items()}}
            append_jsonl(self.path, row)


class NonFiniteError(UserError):
    """A logged loss or mean reward is NaN or infinite: the run stops (the rule of :class:`StopOnNonFinite`)."""


class StopOnNonFinite(TrainerCallback):
    """The rule for non-finite values: the first logged step whose ``loss`` or mean ``reward`` is NaN or infinite
    stops the run with one line naming the step and the value.

    After a non-finite loss the next update writes NaN into the weights and every later step is lost, and the
    Trainer would go on for hours: better to stop where it happened, with the checkpoints before it intact. The
    value is not averaged away first: ``logging_nan_inf_filter`` is off (``conf/method/args/trained.yaml``;
    transformers replaces a non-finite loss by the running mean in the logs by default), and the row is in
    ``history.jsonl`` (as null) and W&B before the stop. The rewards of this project never return a non-finite value
    (bad output scores 0), so a non-finite mean reward is a bug to report.
    """

    KEYS = ("loss", "reward")

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw: Any):
        for key in self.KEYS:
            value = logs[key] if logs and key in logs else None
            if isinstance(value, int | float) and not math.isfinite(value):
                raise NonFiniteError(
                    f"step {state.global_step}: {key} = {value}: the run stops (docs/processes.md, faults). The "
                    "checkpoints before it are intact: lower method.args.learning_rate or check the data, then run "
                    "the same command to resume from the last one, or resume=false to start over"
                )


class RolloutsCallback(TrainerCallback):
    """Every ``every`` steps, the GRPO rollouts of the step: a W&B table ``train/rollouts`` and
    ``<run dir>/rollouts/step-<step>.jsonl``, one row per sampled completion.

    A row holds the step, the sample's id and task, the query image (for object samples with the predicted and
    reference boxes as box layers, after the frame rule:
    :func:`lego_arta.evaluation.predictions_table.table_image`), the raw completion, each reward component and the
    advantage. Every step's table is logged under the same key with a ``step`` column, so W&B's history keeps them
    all; the JSONL file has the same rows (the boxes as lists, no image).

    Works around: TRL 1.16's own ``log_completions=True`` raises a TypeError inside ``wandb.Table`` for
    conversational (mixed content) prompts. This reads the buffer TRL fills (``trainer._logs``, one generation batch:
    prompts, completions, rewards, advantages, images, and the ``extra`` columns :class:`SignalGRPOTrainer` adds).
    It can go when ``GRPOConfig(log_completions=True)`` logs image prompts with box layers.
    """

    def __init__(self, tracker: Tracker, every: int, run_dir: Path) -> None:
        self.tracker = tracker
        self.every = every
        self.run_dir = run_dir
        self.trainer: Any = None  # set after the trainer exists
        self.logged_step = -1

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw: Any):
        if self.trainer is None or self.every <= 0 or state.global_step % self.every != 0:
            return
        if not state.is_world_process_zero or state.global_step == self.logged_step:  # the final summary's on_log
            return
        self.logged_step = state.global_step
        buffer = getattr(self.trainer, "_logs", None)
        if not buffer or not buffer.get("completion"):
            return
        columns, rows, records = rollout_rows(buffer, state.global_step)
        self.tracker.log_table("train/rollouts", columns, rows)
        out = self.run_dir / ROLLOUTS_DIR / f"step-{state.global_step}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(record, default=str) + "\n" for record in records))


ROLLOUTS_DIR = "rollouts"


def rollout_rows(buffer: Mapping[str, Any], step: int) -> tuple[list[str], list[list[Any]], list[dict[str, Any]]]:
    """The columns, W&B rows and JSON records of the rollouts in TRL's completions ``buffer`` at ``step``."""
    names = list(buffer["rewards"].keys())
    extra = buffer.get("extra", {})

    def column(name: str, i: int) -> Any:
        values = extra.get(name)
        return values[i] if values is not None and i < len(values) else None

    images = list(buffer.get("images") or [])
    advantages = list(buffer.get("advantages") or [])
    rows, records = [], []
    for i, completion in enumerate(buffer["completion"]):
        text = completion_text(completion)
        task, solution = column("task", i), column("solution", i)
        image = images[i][-1] if i < len(images) and images[i] else None
        cell = table_image(task, image, text, solution, column("image_size", i)) if solution is not None else None
        scores = [_finite_or_none(buffer["rewards"][n][i]) for n in names]
        advantage = _finite_or_none(advantages[i]) if i < len(advantages) else None
        rows.append([step, column("id", i), task, cell, text, *scores, advantage])
        record = {"step": step, "id": column("id", i), "task": task, "completion": text, "solution": solution}
        record |= dict(zip(names, scores, strict=True)) | {"advantage": advantage}
        if isinstance(cell, BoxedImage):
            record["boxes"] = {name: [list(b) for b in boxes] for name, boxes in cell.layers.items()}
        records.append(record)
    return ["step", "id", "task", "image", "completion", *names, "advantage"], rows, records


log = logging.getLogger(__name__)
# submitit (hydra/launcher=slurm) asks Slurm for this signal signal_delay_s before the time limit, and on preemption;
# SUBMITIT_PREEMPT_SIGNAL changes it (submitit/core/job_environment.py: USR2 by default, as NCCL may catch USR1)
PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"
EXIT_SIGNALLED = 128  # + the signal's number: the shell's exit status of a process a signal ended


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals after which a run saves a checkpoint at the next step boundary before it stops: SIGTERM (scancel,
    a scheduler's preemption, a time limit without --signal) and submitit's preemption signal."""
    name = os.environ.get(PREEMPT_SIGNAL_ENV, "USR2").upper().removeprefix("SIG")
    return (signal.SIGTERM, signal.Signals[f"SIG{name}"])


class SaveOnSignalCallback(TrainerCallback):
    """On a stop signal, save a checkpoint at the next step boundary, then stop the way the signal meant.

    The signal only sets a flag (the step in progress finishes); at the end of the step every process learns whether
    any of them was signalled (:func:`lego_arta.distributed.any_process`), and they save ``checkpoint-<step>``
    together. Then the handler that was there before runs: submitit's requeues the job (``hydra/launcher=slurm``
    with ``max_num_timeout``) and exits; without one, the process exits with status 128 + the signal's number
    (through ``SystemExit``, so the W&B run is closed), as a signal would have ended it. The next start of the same
    run dir resumes from that checkpoint. Without this, a job killed at its time limit loses everything since its
    last ``save_steps`` checkpoint.

    Handlers are installed for the training only (from ``on_train_begin``, in the main thread) and restored after.
    """

    def __init__(self, signals: Sequence[signal.Signals] | None = None) -> None:
        self.signals = tuple(signals) if signals is not None else stop_signals()
        self.caught: signal.Signals | None = None
        self.stopping = False
        self._previous: dict[signal.Signals, Any] = {}

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            previous = signal.getsignal(sig)
            if previous is not signal.SIG_IGN:
                self._previous[sig] = previous
                signal.signal(sig, self._catch)

    def _catch(self, signum: int, frame: Any) -> None:
        self.caught = signal.Signals(signum)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        if any_process(self.caught is not None):
            self.stopping = True
            log.warning(
                "%s: saving checkpoint-%d, then stopping (the next start in this run dir resumes from it)",
                self.caught.name if self.caught else "another process was signalled",
                state.global_step,
            )
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        if self.stopping:
            self._stop()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        self._restore()

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def _stop(self) -> None:
        sig = self.caught or self.signals[0]
        previous = self._previous.get(sig, signal.SIG_DFL)
        self._restore()
        if callable(previous):  # submitit's handler requeues and exits (on its main task; it returns on the others)
            previous(int(sig), None)
        raise SystemExit(EXIT_SIGNALLED + int(sig))


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
