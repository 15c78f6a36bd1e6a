"""Score a model on the test split: generation to predictions.jsonl, then ``metrics.prediction_metrics``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from omegaconf import DictConfig
from peft import PeftModel
from transformers import PreTrainedModel, ProcessorMixin

from lego_arta import distributed
from lego_arta.evaluation.generate import (
    GenerationSettings,
    TransformersBackend,
    VLLMBackend,
    finished_predictions,
    generate_predictions,
    shard_file,
    shard_files,
)
from lego_arta.evaluation.predictions_table import predictions_table
from lego_arta.gpu_memory import free_memory
from lego_arta.metrics import format_table, prediction_metrics
from lego_arta.models import family
from lego_arta.parsing import answer_text, completion_text
from lego_arta.runs import PREDICTIONS_FILE, Trained, extra_predictions_file
from lego_arta.scores.semantic import semantic_similarity
from lego_arta.tracking import Tracker

log = logging.getLogger(__name__)


def generate_sharded(
    backend: Callable[[Sequence[list[dict[str, Any]]], Sequence[list[Any]]], list[str]],
    dataset: Dataset,
    out_path: Path,
    batch_size: int,
    generator: str,
    columns: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]] | None:
    """:func:`generate_predictions` over every process of the run; the main process gets every row, the others None.

    One process: ``out_path`` directly. Several (torchrun, a Slurm job's tasks): rank N generates the N-th contiguous
    shard of ``dataset`` into ``predictions.rank<N>.jsonl`` (resuming from it and from ``out_path``), all wait for the
    slowest, then the main process merges the shards into ``out_path`` in dataset order and deletes them. A single
    process resumes from the shards a killed multi-process evaluation left. ``columns`` are added to every row
    (:func:`~lego_arta.evaluation.generate.generate_predictions`).
    """
    here = distributed.ranks()
    if here.world_size == 1:
        left = shard_files(out_path)
        rows = generate_predictions(
            backend, dataset, out_path, batch_size=batch_size, generator=generator, reuse=left, columns=columns
        )
        for path in left:
            path.unlink()
        return rows
    own = shard_file(out_path, here.rank)
    shard = dataset.shard(here.world_size, here.rank, contiguous=True)
    generate_predictions(
        backend, shard, own, batch_size=batch_size, generator=generator, reuse=[out_path], columns=columns
    )
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


@dataclass
class Weights:
    """The model an evaluation runs: its dir and the LoRA adapter on it, which identify it (and which vLLM loads),
    and the copy in memory, when there is one. :func:`make_backend` takes that copy over."""

    path: str  # the model dir: the base model's, or model/ after full fine-tuning
    adapter: str | None = None  # a LoRA adapter dir, on the model of ``path``
    model: PreTrainedModel | None = None  # loaded, or trained; None: vLLM loads its own from the dirs

    def after(self, trained: Trained, model: PreTrainedModel) -> Weights:
        """These weights trained into ``model``: a new adapter on the same base, or a model dir of their own."""
        if trained.kind == "adapter":
            return Weights(self.path, str(trained.path), model)
        return Weights(str(trained.path), None, model)


def merged(model: PreTrainedModel, adapter: str | None) -> PreTrainedModel:
    """``model`` with its LoRA adapter (or, when it has none yet, the one in ``adapter``) merged into its weights:
    faster generation; the adapter stays on disk."""
    if isinstance(model, PeftModel):  # trained with LoRA
        return model.merge_and_unload()
    if adapter:
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model


def make_backend(cfg: DictConfig, processor: ProcessorMixin, weights: Weights) -> TransformersBackend | VLLMBackend:
    """The generation backend named by ``eval.backend``, for ``weights``; both get the same
    :class:`~lego_arta.evaluation.generate.GenerationSettings` from ``eval``.

    It takes ``weights.model`` over (the caller keeps no other reference to it): ``transformers`` generates with it,
    the adapter merged in; ``vllm`` loads its own copy from ``weights.path`` (and ``weights.adapter`` as a LoRA
    request) once this one and what else nothing references (a trainer, its optimizer) are freed: the GPU must not
    hold both.
    """
    eval_cfg, model_cfg = cfg.eval, cfg.model
    settings = GenerationSettings.from_config(eval_cfg)
    backend = eval_cfg.backend
    model, weights.model = weights.model, None  # the only reference now: vLLM can free it, the backend keeps it
    if backend == "transformers":
        if model is None:
            raise ValueError("eval.backend=transformers needs the loaded model")
        return TransformersBackend(
            merged(model, weights.adapter),
            processor,
            settings=settings,
            family=family(model_cfg),
            chat_kwargs=family(model_cfg).chat_template_kwargs(bool(cfg.data.reasoning)),
        )
    if backend == "vllm":
        del model  # the training copy: vLLM loads its own
        free_memory()
        return VLLMBackend(
            weights.path,
            processor,
            settings=settings,
            adapter=weights.adapter,
            family=family(model_cfg),
            seed=int(cfg.seed),
            chat_kwargs=family(model_cfg).chat_template_kwargs(bool(cfg.data.reasoning)),
        )
    raise ValueError(f"eval.backend={backend}: expected 'transformers' or 'vllm'")


def semantic_metric(
    records: Sequence[Mapping[str, Any]], model: str, bootstrap_samples: int, seed: int
) -> dict[str, float]:
    """``eval/semantic``: the mean semantic similarity (x100) of the grounding answers and their references
    (:func:`lego_arta.scores.semantic.semantic_similarity`, the ``grounding_semantic`` reward's score, clipped to
    [0, 1]), with its percentile bootstrap 95% CI over the samples (``_lo`` / ``_hi``); {} without grounding samples.
    Computed only where ``eval.semantic_model`` names an encoder: the light scoring path stays free of torch."""
    grounding = [r for r in records if r["task"] == "grounding"]
    if not grounding:
        return {}
    values = 100 * np.array(
        semantic_similarity(
            [answer_text(completion_text(r["prediction"])) for r in grounding],
            [answer_text(r["reference"]) for r in grounding],
            model,
        )
    )
    out = {"eval/semantic": float(values.mean())}
    if bootstrap_samples > 0:
        rng = np.random.default_rng(seed)
        means = values[rng.integers(0, len(values), size=(bootstrap_samples, len(values)))].mean(axis=1)
        out |= {
            "eval/semantic_lo": float(np.percentile(means, 2.5)),
            "eval/semantic_hi": float(np.percentile(means, 97.5)),
        }
    return out


def evaluate(
    cfg: DictConfig,
    backend: Callable[[Sequence[list[dict[str, Any]]], Sequence[list[Any]]], list[str]],
    test_dataset: Dataset,
    run_dir: Path,
    tracker: Tracker,
    generator: str,
    mean_box_answers: Mapping[str, str],
    name: str | None = None,
) -> dict[str, float]:
    """Generate for the test split (``eval.*``), score, log ``eval/<metric>`` to the tracker, return the metrics.

    With ``name`` (an ``eval.extra`` set), the predictions go to ``predictions_extra_<name>.jsonl`` and the metrics
    are ``extra/<name>/<metric>`` (the model's own: no trivial references there).

    Over several processes each rank generates its shard (:func:`generate_sharded`); the main process scores and
    logs, the others return ``{}``.

    Args:
        cfg: the composed config (``eval``, ``seed``).
        backend: generates answers for a batch of prompts (:func:`make_backend`).
        test_dataset: the data layer's dataset view of the test split.
        run_dir: where ``predictions.jsonl`` is streamed (and resumed from).
        tracker: where ``eval/*`` and the predictions table go.
        generator: identity of the model + adapter + settings (:func:`~lego_arta.evaluation.generate.generator_id`):
            a resumed evaluation reuses only this generator's predictions.
        mean_box_answers: the mean-box reference's answer per object record id
            (:func:`~lego_arta.evaluation.trivial.mean_box_answers`), written into predictions.jsonl as
            ``mean_box_answer`` and scored as ``ref/mean_box/*`` beside the model.
    """
    eval_cfg = cfg.eval
    if eval_cfg.limit:
        test_dataset = limit_per_task(test_dataset, int(eval_cfg.limit))
    trivial = {"mean_box_answer": mean_box_answers}
    out = run_dir / (extra_predictions_file(name) if name else PREDICTIONS_FILE)
    records = generate_sharded(backend, test_dataset, out, int(eval_cfg.batch_size), generator, trivial)
    if records is None:  # another rank: the main process scores and logs
        return {}
    computed = prediction_metrics(records, int(eval_cfg.bootstrap.samples), int(eval_cfg.bootstrap.seed))
    results = computed.metrics
    if name:
        results = {f"extra/{name}/{k.removeprefix('eval/')}": v for k, v in results.items() if k.startswith("eval/")}
    if eval_cfg.semantic_model:
        results |= semantic_metric(
            records, str(eval_cfg.semantic_model), int(eval_cfg.bootstrap.samples), int(eval_cfg.bootstrap.seed)
        )
    what = f"out-of-domain set {name}" if name else "the test split"
    log.info(
        "evaluation on %s, %d samples:\n%s", what, len(records), format_table(computed.values, computed.cis or None)
    )
    tracker.log(results)
    tracker.summary(results)
    if int(eval_cfg.table_rows) > 0:
        columns, rows = predictions_table(records, test_dataset, int(eval_cfg.table_rows))
        tracker.log_table(f"extra/{name}/predictions" if name else "eval/predictions", columns, rows)
    return results
