"""Score a model on the test split: generation, the contract's metrics with bootstrap CIs, trivial references."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
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


def metrics_with_ci(records: Sequence[Mapping[str, Any]], samples: int, seed: int, prefix: str) -> dict[str, float]:
    """``prefix/<metric>`` for every contract key, with ``_lo`` / ``_hi`` 95% bootstrap bounds."""
    per_sample = M.score_samples(records)
    values = M.aggregate(per_sample)
    out = {f"{prefix}/{k}": v for k, v in values.items()}
    if samples > 0:
        for k, (lo, hi) in M.bootstrap_ci(per_sample, n=samples, seed=seed).items():
            out[f"{prefix}/{k}_lo"], out[f"{prefix}/{k}_hi"] = lo, hi
    return out


def reference_metrics(records: Sequence[Mapping[str, Any]], demo_answers: Mapping[str, str]) -> dict[str, float]:
    """Trivial references beside the results: always-"Yes" for state, copy-the-demo's-answer for the others."""
    out: dict[str, float] = {}
    state = [r for r in records if r["task"] == "state"]
    if state:
        out |= {f"ref/always_yes/{k}": v for k, v in M.always_yes_reference(state).items()}
    copied = [
        {**r, "prediction": demo_answers[r["id"]]}
        for r in records
        if r["task"] in ("grounding", "object") and r["id"] in demo_answers
    ]
    if copied:
        out |= {f"ref/copy_demo/{k}": v for k, v in M.score(copied).items()}
    return out


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
    backend = ev.get("backend", "transformers")
    if backend == "transformers":
        if model is None:
            raise ValueError("eval.backend=transformers needs the loaded model")
        return TransformersBackend(
            model, processor, int(ev.max_new_tokens), bool(ev.do_sample), int(mc.min_pixels), int(mc.max_pixels)
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
    demo_answers: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Generate for the test split (``eval.*``), score, log ``eval/<metric>`` to the tracker, return the metrics.

    Args:
        cfg: the composed config (``eval``, ``seed``).
        backend: generates answers for a batch of prompts (:func:`make_backend`).
        test_dataset: the data layer's dataset view of the test split.
        run_dir: where ``predictions.jsonl`` is streamed (and resumed from).
        tracker: where ``eval/*`` and the predictions table go.
        demo_answers: test id -> the answer of its first few-shot demo (the copy-the-demo reference).
    """
    ev = cfg.eval
    if ev.get("limit"):
        test_dataset = limit_per_task(test_dataset, int(ev.limit))
    records = generate_predictions(backend, test_dataset, run_dir / PREDICTIONS_FILE, batch_size=int(ev.batch_size))
    results = metrics_with_ci(records, int(ev.bootstrap.samples), int(ev.bootstrap.seed), "eval")
    results |= {f"eval/{k}": v for k, v in M.format_validity(records).items()}
    results |= reference_metrics(records, demo_answers or {})
    results["eval/num_samples"] = float(len(records))
    log.info("evaluation on %d samples:\n%s", len(records), M.format_table(M.aggregate(M.score_samples(records))))
    tracker.log(results)
    tracker.summary(results)
    if int(ev.get("table_rows", 0)) > 0:
        columns, rows = predictions_table(records, test_dataset, int(ev.table_rows))
        tracker.log_table("eval/predictions", columns, rows)
    return results
