"""Score a model on the test split: generation to predictions.jsonl, then ``metrics.score_predictions``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from omegaconf import DictConfig
from transformers import PreTrainedModel, ProcessorMixin

from lego_arta import metrics as M
from lego_arta.evaluation.generate import TransformersBackend, VLLMBackend, generate_predictions
from lego_arta.evaluation.tables import predictions_table
from lego_arta.runs import PREDICTIONS_FILE
from lego_arta.tracking import Tracker

log = logging.getLogger(__name__)


def limit_per_task(dataset: Dataset, limit: int) -> Dataset:
    """The first ``limit`` rows of each task (in dataset order): a quick evaluation that still covers every task."""
    seen: dict[str, int] = {}
    keep = []
    for i, task in enumerate(dataset["task"]):
        seen[task] = seen.get(task, 0) + 1
        if seen[task] <= limit:
            keep.append(i)
    return dataset.select(keep)


def make_backend(
    cfg: DictConfig,
    processor: ProcessorMixin,
    model: PreTrainedModel | None = None,
    model_path: str | None = None,
    adapter: str | None = None,
) -> TransformersBackend | VLLMBackend:
    """The generation backend named by ``eval.backend``: ``transformers`` (needs ``model``, adapter merged in) or
    ``vllm`` (needs ``model_path``; loads ``adapter`` as a LoRA request)."""
    ev, mc = cfg.eval, cfg.model
    backend = ev.backend
    if backend == "transformers":
        if model is None:
            raise ValueError("eval.backend=transformers needs the loaded model")
        return TransformersBackend(
            model,
            processor,
            max_new_tokens=int(ev.max_new_tokens),
            do_sample=bool(ev.do_sample),
            min_pixels=int(mc.min_pixels),
            max_pixels=int(mc.max_pixels),
        )
    if backend == "vllm":
        if model_path is None:
            raise ValueError("eval.backend=vllm needs the model path")
        return VLLMBackend(
            model_path,
            processor,
            adapter=adapter,
            max_new_tokens=int(ev.max_new_tokens),
            do_sample=bool(ev.do_sample),
            min_pixels=int(mc.min_pixels),
            max_pixels=int(mc.max_pixels),
            seed=int(cfg.seed),
        )
    raise ValueError(f"eval.backend={backend}: expected 'transformers' or 'vllm'")


def evaluate(
    cfg: DictConfig,
    backend: Callable[[Sequence[list[dict[str, Any]]], Sequence[list[Any]]], list[str]],
    test_dataset: Dataset,
    run_dir: Path,
    tracker: Tracker,
    generator: str,
) -> dict[str, float]:
    """Generate for the test split (``eval.*``), score, log ``eval/<metric>`` to the tracker, return the metrics.

    Args:
        cfg: the composed config (``eval``, ``seed``).
        backend: generates answers for a batch of prompts (:func:`make_backend`).
        test_dataset: the data layer's dataset view of the test split.
        run_dir: where ``predictions.jsonl`` is streamed (and resumed from).
        tracker: where ``eval/*`` and the predictions table go.
        generator: identity of the model + adapter + settings (:func:`~lego_arta.evaluation.generate.generator_id`):
            a resumed evaluation reuses only this generator's predictions.
    """
    ev = cfg.eval
    if ev.limit:
        test_dataset = limit_per_task(test_dataset, int(ev.limit))
    records = generate_predictions(
        backend, test_dataset, run_dir / PREDICTIONS_FILE, batch_size=int(ev.batch_size), generator=generator
    )
    scored = M.score_predictions(records, int(ev.bootstrap.samples), int(ev.bootstrap.seed))
    results = scored.metrics
    log.info("evaluation on %d samples:\n%s", len(records), M.format_table(scored.values, scored.cis or None))
    tracker.log(results)
    tracker.summary(results)
    if int(ev.table_rows) > 0:
        columns, rows = predictions_table(records, test_dataset, int(ev.table_rows))
        tracker.log_table("eval/predictions", columns, rows)
    return results
