"""Score a model on the test split: generation, the contract's metrics with bootstrap CIs, trivial references."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from datasets import Dataset
from omegaconf import DictConfig
from transformers import PreTrainedModel, ProcessorMixin

from lego_arta import metrics as M
from lego_arta.evaluation.generate import GenerationSettings, TransformersBackend, VLLMBackend, generate_predictions
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


class Scored(NamedTuple):
    """Everything scored from a list of predictions: the flat run metrics, and the values / CIs for a table."""

    metrics: dict[str, float]
    values: dict[str, float]
    cis: dict[str, tuple[float, float]]


def score_predictions(
    records: Sequence[Mapping[str, Any]],
    bootstrap_samples: int,
    seed: int,
    demo_answers: Mapping[str, str] | None = None,
    names: Sequence[str] | None = None,
) -> Scored:
    """The run metrics of scored predictions, shared by evaluation and ``experiments/score.py``.

    Keys: ``eval/<metric>`` with ``_lo`` / ``_hi`` 95% bootstrap bounds (when ``bootstrap_samples`` > 0),
    ``eval/format_valid*``, ``eval/num_samples``, and the trivial references beside the results: ``ref/always_yes/*``
    (state) and, given ``demo_answers`` (id -> the first demo's answer), ``ref/copy_demo/*`` (grounding, object).

    Args:
        records: mappings with ``prediction``, ``reference``, optional ``task`` and ``id``.
        bootstrap_samples: number of bootstrap resamples (0: no CIs).
        seed: seed of the bootstrap.
        demo_answers: answers of the copy-the-demo reference, by record id.
        names: how scoring errors name each record (default: its id or index).
    """
    per_sample = M.score_samples(records, names=names)
    values = M.aggregate(per_sample) | M.format_validity(records)
    cis = M.bootstrap_ci(per_sample, n=bootstrap_samples, seed=seed) if bootstrap_samples > 0 else {}
    out = {f"eval/{k}": v for k, v in values.items()}
    for k, (lo, hi) in cis.items():
        out[f"eval/{k}_lo"], out[f"eval/{k}_hi"] = lo, hi
    out["eval/num_samples"] = float(len(per_sample))
    out |= {f"ref/always_yes/{k}": v for k, v in M.always_yes_reference(records).items()}
    copied = [
        {**r, "prediction": demo_answers[r["id"]]}
        for r in records
        if demo_answers and r.get("task") in ("grounding", "object") and r.get("id") in demo_answers
    ]
    if copied:
        out |= {f"ref/copy_demo/{k}": v for k, v in M.score(copied).items()}
    return Scored(out, values, cis)


def make_backend(
    cfg: DictConfig,
    processor: ProcessorMixin,
    model: PreTrainedModel | None = None,
    model_path: str | None = None,
    adapter: str | None = None,
) -> TransformersBackend | VLLMBackend:
    """The generation backend named by ``eval.backend``: ``transformers`` (needs ``model``, adapter merged in) or
    ``vllm`` (needs ``model_path``; loads ``adapter`` as a LoRA request); both get the same
    :class:`~lego_arta.evaluation.generate.GenerationSettings` from ``eval``."""
    ev, mc = cfg.eval, cfg.model
    settings = GenerationSettings.from_config(ev)
    backend = ev.get("backend", "transformers")
    if backend == "transformers":
        if model is None:
            raise ValueError("eval.backend=transformers needs the loaded model")
        return TransformersBackend(model, processor, settings, int(mc.min_pixels), int(mc.max_pixels))
    if backend == "vllm":
        if model_path is None:
            raise ValueError("eval.backend=vllm needs the model path")
        return VLLMBackend(
            model_path,
            processor,
            settings,
            adapter=adapter,
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
    generator: str = "",
) -> dict[str, float]:
    """Generate for the test split (``eval.*``), score, log ``eval/<metric>`` to the tracker, return the metrics.

    Args:
        cfg: the composed config (``eval``, ``seed``).
        backend: generates answers for a batch of prompts (:func:`make_backend`).
        test_dataset: the data layer's dataset view of the test split.
        run_dir: where ``predictions.jsonl`` is streamed (and resumed from).
        tracker: where ``eval/*`` and the predictions table go.
        demo_answers: test id -> the answer of its first few-shot demo (the copy-the-demo reference).
        generator: identity of the model + adapter + settings (:func:`~lego_arta.evaluation.generate.generator_id`):
            a resumed evaluation reuses only this generator's predictions.
    """
    ev = cfg.eval
    if ev.get("limit"):
        test_dataset = limit_per_task(test_dataset, int(ev.limit))
    records = generate_predictions(
        backend, test_dataset, run_dir / PREDICTIONS_FILE, batch_size=int(ev.batch_size), generator=generator
    )
    scored = score_predictions(records, int(ev.bootstrap.samples), int(ev.bootstrap.seed), demo_answers)
    results = scored.metrics
    log.info("evaluation on %d samples:\n%s", len(records), M.format_table(scored.values, scored.cis or None))
    tracker.log(results)
    tracker.summary(results)
    if int(ev.get("table_rows", 0)) > 0:
        columns, rows = predictions_table(records, test_dataset, int(ev.table_rows))
        tracker.log_table("eval/predictions", columns, rows)
    return results
