"""Score a model on the test split: generation, the contract's metrics with bootstrap CIs, trivial references."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from datasets import Dataset
from omegaconf import DictConfig
from transformers import PreTrainedModel, ProcessorMixin

from lego_arta import distributed
from lego_arta import metrics as M
from lego_arta.evaluation.generate import (
    GenerationSettings,
    TransformersBackend,
    VLLMBackend,
    finished_predictions,
    generate_predictions,
    shard_file,
    shard_files,
)
from lego_arta.evaluation.tables import predictions_table
from lego_arta.runs import PREDICTIONS_FILE
from lego_arta.tracking import Tracker

log = logging.getLogger(__name__)


def generate_sharded(
    backend: Callable[[Sequence[list[dict[str, Any]]], Sequence[list[Any]]], list[str]],
    dataset: Dataset,
    out_path: Path,
    batch_size: int,
    generator: str,
) -> list[dict[str, Any]] | None:
    """:func:`generate_predictions` over every process of the run; the main process gets every row, the others None.

    One process: ``out_path`` directly. Several (torchrun, a Slurm job's tasks): rank N generates the N-th contiguous
    shard of ``dataset`` into ``predictions.rank<N>.jsonl`` (resuming from it and from ``out_path``), all wait for the
    slowest, then the main process merges the shards into ``out_path`` in dataset order and deletes them. A single
    process resumes from the shards a killed multi-process evaluation left.
    """
    here = distributed.ranks()
    if here.world_size == 1:
        left = shard_files(out_path)
        rows = generate_predictions(backend, dataset, out_path, batch_size, generator, reuse=left)
        for path in left:
            path.unlink()
        return rows
    own = shard_file(out_path, here.rank)
    shard = dataset.shard(here.world_size, here.rank, contiguous=True)
    generate_predictions(backend, shard, own, batch_size, generator, reuse=[out_path])
    distributed.barrier()
    if not here.is_main:
        return None
    shards = [shard_file(out_path, r) for r in range(here.world_size)]
    done = finished_predictions(out_path, dataset, generator, shards)
    if missing := [i for i in dataset["id"] if i not in done]:
        raise RuntimeError(f"{len(missing)} predictions missing after every rank generated its shard: {missing[:3]}")
    rows = [done[i] for i in dataset["id"]]
    tmp = out_path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.replace(out_path)
    for path in shard_files(out_path):
        path.unlink()
    return rows


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

    Over several processes each rank generates its shard (:func:`generate_sharded`); the main process scores and
    logs, the others return ``{}``.

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
    records = generate_sharded(backend, test_dataset, run_dir / PREDICTIONS_FILE, int(ev.batch_size), generator)
    if records is None:  # another rank: the main process scores and logs
        return {}
    scored = score_predictions(records, int(ev.bootstrap.samples), int(ev.bootstrap.seed), demo_answers)
    results = scored.metrics
    log.info("evaluation on %d samples:\n%s", len(records), M.format_table(scored.values, scored.cis or None))
    tracker.log(results)
    tracker.summary(results)
    if int(ev.get("table_rows", 0)) > 0:
        columns, rows = predictions_table(records, test_dataset, int(ev.table_rows))
        tracker.log_table("eval/predictions", columns, rows)
    return results
