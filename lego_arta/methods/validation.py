"""Validation during training: the project's own metrics on a held-out part of the training split, every few steps.

The test split is not looked at while training (choosing a checkpoint on it would bias the test scores). Instead,
``eval.val.size`` of each task's training records are held out (carved like the split itself: a state group stays
together, whole manuals with ``split=manual``) and never trained on. Every ``eval.val.every_steps`` steps the model
as it is answers them with the evaluation's own generation settings (``eval.*``) and the answers are measured with
``lego_arta.metrics.compute_metrics``: ``val/<metric>`` goes to ``history.jsonl`` (a row of its own, with ``step``)
and to W&B against ``train/global_step``. The step with the best ``eval.val.best`` is saved as a checkpoint and kept
through ``save_total_limit`` (the Trainer keeps ``state.best_model_checkpoint``); ``metrics.json`` names it
(``val/best_step``, ``val/best_<metric>``). A resumed run keeps its best (it is part of ``trainer_state.json``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from datasets import Dataset
from omegaconf import DictConfig
from transformers import ProcessorMixin, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lego_arta.distributed import any_process, is_main
from lego_arta.errors import ConfigError
from lego_arta.evaluation.evaluate import generate_sharded, limit_per_task
from lego_arta.evaluation.generate import GenerationSettings, TransformersBackend
from lego_arta.metrics import compute_metrics
from lego_arta.models import family
from lego_arta.runs import HISTORY_FILE, append_jsonl
from lego_arta.tracking import Tracker

log = logging.getLogger(__name__)

VAL_DIR = "val"  # <run dir>/val/predictions-<step>.jsonl: what the model answered at each validation
MODES = ("max", "min")


class ValidationCallback(TrainerCallback):
    """Every ``eval.val.every_steps`` steps: generate on the validation set, score, log ``val/*``, keep the best.

    Args:
        cfg: the composed config (``eval``, ``eval.val``, ``model`` for the image budget).
        processor: the model's processor.
        dataset: the validation rows (the data layer's dataset view of the held-out records).
        run_dir: the run dir (history, predictions, checkpoints).
        tracker: where ``val/*`` goes.
    """

    def __init__(
        self, cfg: DictConfig, processor: ProcessorMixin, dataset: Dataset, run_dir: Path, tracker: Tracker
    ) -> None:
        val = cfg.eval.val
        if str(val.mode) not in MODES:
            raise ConfigError(f"eval.val.mode={val.mode}: expected one of {', '.join(MODES)}")
        self.every, self.best_key, self.mode = int(val.every_steps), f"val/{val.best}", str(val.mode)
        self.dataset = limit_per_task(dataset, int(val.limit)) if val.limit else dataset
        self.settings = GenerationSettings.from_config(cfg.eval)
        self.batch_size = int(cfg.eval.batch_size)
        self.family = family(cfg.model)
        self.chat_kwargs = self.family.chat_template_kwargs(bool(cfg.data.reasoning))
        self.processor, self.run_dir, self.tracker = processor, run_dir, tracker

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kw: Any
    ):
        if self.every <= 0 or state.global_step % self.every != 0 or model is None:
            return control
        step = state.global_step
        values = self.validate(model, step)  # the main process's scores; {} on the others
        value = values.get(self.best_key)
        if is_main() and value is None:
            log.warning("%s: not among the validation metrics %s", self.best_key, sorted(values))
        better = value is not None and (
            state.best_metric is None
            or (value > state.best_metric if self.mode == "max" else value < state.best_metric)
        )
        if any_process(better):  # the main process decides; every process saves the checkpoint together
            state.best_global_step = step  # the Trainer then keeps checkpoint-<step> through save_total_limit
            state.best_metric = value
            control.should_save = True
            if is_main():
                log.info(
                    "validation: best %s %.2f at step %d: checkpoint-%d is kept", self.best_key, value, step, step
                )
        return control

    def validate(self, model: Any, step: int) -> dict[str, float]:
        """``val/<metric>`` of the model at ``step`` (main process; the others generate their shard and get {})."""
        was_training = model.training
        backend = TransformersBackend(
            model, self.processor, settings=self.settings, family=self.family, chat_kwargs=self.chat_kwargs
        )
        out = self.run_dir / VAL_DIR / f"predictions-{step}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            records = generate_sharded(backend, self.dataset, out, self.batch_size, f"step-{step}", {})
        finally:
            model.train(was_training)
        if records is None:
            return {}
        values = {f"val/{key}": value for key, value in compute_metrics(records).items()}
        append_jsonl(self.run_dir / HISTORY_FILE, {"step": step, **values})
        self.tracker.log({**values, "train/global_step": step})
        log.info("validation at step %d on %d samples: %s", step, len(records), values)
        return values


def best_checkpoint(state: TrainerState, best: str) -> dict[str, float]:
    """``val/best_step`` (the kept ``checkpoint-<step>``) and ``val/best_<best>`` of a finished training; empty when
    nothing was validated."""
    if state.best_global_step is None or state.best_metric is None:
        return {}
    return {"val/best_step": float(state.best_global_step), f"val/best_{best}": float(state.best_metric)}
