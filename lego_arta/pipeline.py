"""One run of the study: data -> (train) -> evaluate, everything written into the run dir and logged to W&B."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict
from transformers import set_seed

from lego_arta import distributed
from lego_arta.checks import check_config
from lego_arta.data import build_dataset, flat_counts, load_data, save_records, save_split, split_records
from lego_arta.evaluation.evaluate import Weights, evaluate, make_backend
from lego_arta.evaluation.generate import generator_id
from lego_arta.evaluation.trivial import mean_box_answers
from lego_arta.gpu_memory import peak_gpu_memory
from lego_arta.models import load_model, load_processor, resolve_model_path
from lego_arta.models.images import image_frame
from lego_arta.runs import METRICS_FILE, VAL_FILE, save_config, write_metrics
from lego_arta.tracking import tracking

log = logging.getLogger(__name__)


def training_records(cfg: DictConfig, records: list[Any]) -> list[Any]:
    """The training split, restricted to ``method.tasks`` when set (evaluation still covers every task)."""
    tasks = cfg.method.tasks
    return [r for r in records if r.task in set(tasks)] if tasks else records


def validation_split(cfg: DictConfig, records: list[Any]) -> tuple[list[Any], list[Any]]:
    """``(records to train on, records held out for validation)``: ``eval.val.size`` of each task's training records,
    carved like the split itself (a state group stays together; whole manuals with ``split=manual``); nothing is held
    out unless ``eval.val.every_steps`` > 0."""
    val = cfg.eval.val
    if int(val.every_steps) <= 0:
        return records, []
    by = "manual" if cfg.split.by == "manual" else "record"
    return split_records(records, test_size=float(val.size), seed=int(cfg.seed), by=by)


def run_experiment(cfg: DictConfig, train: bool = True) -> dict[str, float]:
    """Run ``cfg``: train with ``cfg.method`` (when ``train`` and the method trains), then evaluate.

    Data and the model path are checked before any model is loaded; the resolved config, the split files,
    ``history.jsonl``, the adapter (``model/`` after full fine-tuning, ``method.lora=null``), ``predictions.jsonl``
    and ``metrics.json`` land in ``cfg.paths.output_dir``.

    Launched as several processes (torchrun, ``accelerate launch``, a Slurm job's tasks: :mod:`lego_arta.distributed`),
    every rank trains its share of each batch on its own device and generates its shard of the test split; only the
    main process writes the run dir's files, merges the predictions, scores them and logs to W&B. The other ranks
    return no metrics.
    """
    run_dir = Path(cfg.paths.output_dir)
    trains = train and cfg.method.name != "none"
    check_config(cfg, run_dir, trains)
    main = distributed.setup().is_main
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        save_config(cfg, run_dir)
    set_seed(int(cfg.seed))
    with distributed.main_process_first():  # the main process builds the tiny model and the scenes into the cache
        model_path = resolve_model_path(cfg.model, cfg.paths.cache_dir)  # a bad model.path fails before the data
        data = load_data(cfg)
    if data.revision is not None:  # the commit of data.hub that was read: config.yaml and the W&B config say it
        with open_dict(cfg):
            cfg.data.revision = data.revision
        if main:
            save_config(cfg, run_dir)
    if main:
        save_split(data, run_dir)
    metrics: dict[str, float] = {}
    memory: dict[str, float] = {}
    frame_of = image_frame(int(cfg.model.min_pixels), int(cfg.model.max_pixels))  # the image_size of each sample
    vllm = cfg.eval.backend == "vllm"
    with tracking(cfg, run_dir) as tracker:
        tracker.summary(flat_counts(data.summary) | {f"data/dropped/{k}": n for k, n in data.dropped.items()})
        weights = Weights(model_path, str(cfg.method.adapter) if cfg.method.adapter else None)
        if trains or not vllm:  # vLLM loads the weights itself
            weights.model, processor = load_model(cfg.model, cfg.paths.cache_dir)
            memory |= peak_gpu_memory("load")
        else:
            processor = load_processor(model_path, cfg.model)
        if trains:
            from lego_arta.methods import train as train_method

            records, held_out = validation_split(cfg, training_records(cfg, data.train))
            held_ids = {r.id for r in held_out}  # their answers must not reach training prompts as few-shot demos
            pool = [r for r in data.train if r.id not in held_ids]
            train_ds = build_dataset(records, pool, cfg.data, int(cfg.seed), frame_of)
            val_ds = None
            if held_out:
                if main:
                    save_records(held_out, run_dir / VAL_FILE)
                val_ds = build_dataset(held_out, records, cfg.data, int(cfg.seed), frame_of)
            assert weights.model is not None  # loaded above for every run that trains
            result = train_method(cfg, weights.model, processor, train_ds, run_dir, tracker, val_ds)
            weights = weights.after(result.trained, result.model)
            metrics |= result.best
            del result  # make_backend takes the model over: nothing else may hold it
            memory |= peak_gpu_memory("train")
        if not trains or cfg.eval.after_train:
            backend = make_backend(cfg, processor, weights)
            test_ds = build_dataset(data.test, data.train, cfg.data, int(cfg.seed), frame_of)
            generator = generator_id(weights.path, weights.adapter, {"model": cfg.model, "eval": cfg.eval})
            mean_boxes = mean_box_answers(data.train, data.test)  # the trivial box answer, from the training split
            metrics = evaluate(cfg, backend, test_ds, run_dir, tracker, generator, mean_boxes)
            if not vllm:  # vLLM's engine allocates outside torch's count
                memory |= peak_gpu_memory("eval")
        if main:
            metrics |= memory
            tracker.summary(memory)
            write_metrics(metrics, run_dir)
    if main:
        log.info("metrics: %s", run_dir / METRICS_FILE)
    return metrics
