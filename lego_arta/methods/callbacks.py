"""Trainer callbacks: the logged history as JSONL, and a W&B table of sample GRPO completions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lego_arta.parsing import completion_text
from lego_arta.runs import append_jsonl, read_jsonl
from lego_arta.tracking import Tracker


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


class CompletionsTableCallback(TrainerCallback):
    """Every ``every`` steps, log the latest GRPO prompts, completions and per-reward scores as a W&B table.

    Works around: TRL 1.16's own ``log_completions=True`` raises a TypeError inside ``wandb.Table`` for
    conversational (mixed content) prompts. This reads the same buffer TRL fills (``trainer._logs``, sized to one
    generation batch) and logs plain strings. It can go when ``GRPOConfig(log_completions=True)`` works with W&B for
    image prompts.
    """

    def __init__(self, tracker: Tracker, every: int) -> None:
        self.tracker = tracker
        self.every = every
        self.trainer: Any = None  # set after the trainer exists

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw: Any):
        if self.trainer is None or self.every <= 0 or state.global_step % self.every != 0:
            return
        buffer = getattr(self.trainer, "_logs", None)
        if not buffer or not buffer.get("completion"):
            return
        names = list(buffer["rewards"].keys())
        rows = []
        for i, (prompt, completion) in enumerate(zip(buffer["prompt"], buffer["completion"], strict=False)):
            scores = [_finite_or_none(buffer["rewards"][n][i]) for n in names]
            rows.append([state.global_step, completion_text(prompt), completion_text(completion), *scores])
        self.tracker.log_table("train/completion_samples", ["step", "prompt", "completion", *names], rows)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
