"""One run of the study: data -> (train) -> evaluate, everything written into the run dir and logged to W&B."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import ProcessorMixin, set_seed

from lego_arta import distributed
from lego_arta.checks import check_config
from lego_arta.data import DataSplit, build_dataset, flat_counts, load_data, save_records, save_split, split_records
from lego_arta.data.prompts import FrameOf
from lego_arta.evaluation.evaluate import Weights, evaluate, make_backend
from lego_arta.evaluation.generate import generator_id
from lego_arta.evaluation.trivial import mean_box_answers
from lego_arta.gpu_memory import peak_gpu_memory
from lego_arta.models import family, load_model, load_processor, resolve_model_path
from lego_arta.models.loading import resolve_adapter
from lego_arta.ownership import owning
from lego_arta.runs import METRICS_FILE, VAL_FILE, save_config, write_metrics, write_provenance
from lego_arta.tracking import Tracker, data_source, tracking

if TYPE_CHECKING:
    from lego_arta.rewards import RewardFunc

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


def prepare(cfg: DictConfig, run_dir: Path) -> tuple[DataSplit, str]:
    """The data and the model path, checked before any model loads; the main process writes the resolved config
    (again with ``data.revision`` when the data came from the hub), ``provenance.json`` and the split files into
    ``run_dir``."""
    main = distributed.is_main()
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        save_config(cfg, run_dir)
        write_provenance(run_dir)  # the machine and numeric path: figures name what produced them
    set_seed(int(cfg.seed))
    with distributed.main_process_first():  # the main process builds the tiny model and the scenes into the cache
        model_path = resolve_model_path(cfg.model, cfg.paths.cache_dir)  # a bad model.path fails before the data
        if cfg.method.adapter:  # a hub id: its snapshot in the HF cache (what vLLM and the generator id read)
            adapter = resolve_adapter(str(cfg.method.adapter))
            if adapter != str(cfg.method.adapter):
                log.info("method.adapter=%s: %s", cfg.method.adapter, adapter)
                with open_dict(cfg):
                    cfg.method.adapter = adapter
        data = load_data(cfg)
    if data.revision is not None:  # the commit of data.hub that was read: config.yaml and the W&B config say it
        with open_dict(cfg):
            cfg.data.revision = data.revision
        if main:
            save_config(cfg, run_dir)
    if main:
        save_split(data, run_dir)
    return data, model_path


def data_counts(data: DataSplit) -> dict[str, int]:
    """``data/<split>/<task>``: the records of each split and task; ``data/dropped/<reason>``: those left out."""
    return flat_counts(data.summary) | {f"data/dropped/{k}": n for k, n in data.dropped.items()}


def load_stage(cfg: DictConfig, model_path: str, trains: bool) -> tuple[Weights, ProcessorMixin, dict[str, float]]:
    """The weights to start from (``model_path``, with ``method.adapter`` when set), the processor and the memory
    the loaded weights took; a run that only evaluates with vLLM loads no weights (vLLM loads its own)."""
    adapter = str(cfg.method.adapter) if cfg.method.adapter else None
    if not trains and cfg.eval.backend == "vllm":
        return Weights(model_path, adapter), load_processor(model_path, cfg.model), {}
    model, processor = load_model(cfg.model, cfg.paths.cache_dir)
    return Weights(model_path, adapter, model), processor, peak_gpu_memory("load")


def train_stage(
    cfg: DictConfig,
    weights: Weights,
    processor: ProcessorMixin,
    data: DataSplit,
    frame_of: FrameOf,
    run_dir: Path,
    tracker: Tracker,
    rewards: tuple[list[RewardFunc], list[float]] | None = None,
) -> tuple[Weights, dict[str, float]]:
    """Train ``weights`` with ``cfg.method`` on the training split (``method.tasks`` of it), validating on the
    records held out (written to ``val.jsonl``) when ``eval.val`` says so; GRPO scores with ``rewards`` (built by
    the config checks); return the trained weights and the best validation step's metrics."""
    from lego_arta.methods import train

    records, held_out = validation_split(cfg, training_records(cfg, data.train))
    held_ids = {r.id for r in held_out}  # their answers must not reach training prompts as few-shot demos
    pool = [r for r in data.train if r.id not in held_ids]
    train_ds = build_dataset(records, pool, cfg.data, int(cfg.seed), frame_of)
    val_ds = None
    if held_out:
        if distributed.is_main():
            save_records(held_out, run_dir / VAL_FILE)
        val_ds = build_dataset(held_out, records, cfg.data, int(cfg.seed), frame_of)
    assert weights.model is not None  # load_stage loads the weights of every run that trains
    result = train(cfg, weights.model, processor, train_ds, run_dir, tracker, val_ds, rewards)
    return weights.after(result.trained, result.model), result.best


def evaluate_stage(
    cfg: DictConfig,
    weights: Weights,
    processor: ProcessorMixin,
    data: DataSplit,
    frame_of: FrameOf,
    run_dir: Path,
    tracker: Tracker,
    extras: dict[str, DataSplit] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Evaluate ``weights`` on the test split (demos and the mean-box reference from the training split), then on the
    test split of each ``eval.extra`` set in ``extras`` (``extra/<name>/<metric>``); return the metrics (``{}`` on
    the ranks other than the main one) and the peak GPU memory of the evaluation, unless vLLM generated (its engine
    allocates outside torch's count)."""
    backend = make_backend(cfg, processor, weights)
    test_ds = build_dataset(data.test, data.train, cfg.data, int(cfg.seed), frame_of)
    generator = generator_id(weights.path, weights.adapter, {"model": cfg.model, "eval": cfg.eval})
    mean_boxes = mean_box_answers(data.train, data.test)  # the trivial box answer, from the training split
    metrics = evaluate(cfg, backend, test_ds, run_dir, tracker, generator, mean_boxes)
    for name, extra in (extras or {}).items():  # the out-of-domain sets, with the same backend
        extra_ds = build_dataset(extra.test, extra.train, cfg.eval.extra[name], int(cfg.seed), frame_of)
        metrics |= evaluate(cfg, backend, extra_ds, run_dir, tracker, generator, {}, name=name)
    return metrics, {} if cfg.eval.backend == "vllm" else peak_gpu_memory("eval")


def extra_sets(cfg: DictConfig) -> dict[str, DataSplit]:
    """The ``eval.extra`` sets, each read by its data config (as ``data`` would be): their test split is scored."""
    out = {}
    for name, node in cfg.eval.extra.items():
        view = OmegaConf.masked_copy(cfg, ["split", "paths", "seed"])
        with open_dict(view):
            view.data = node
        out[str(name)] = load_data(view)
    return out


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
    rewards = check_config(cfg, run_dir, trains)  # GRPO's reward functions, built once
    own = cfg.ownership
    with owning(run_dir, float(own.stale_after_s), float(own.heartbeat_s), main=distributed.ranks().is_main):
        return _run(cfg, run_dir, trains, rewards)


def _run(
    cfg: DictConfig, run_dir: Path, trains: bool, rewards: tuple[list[RewardFunc], list[float]] | None
) -> dict[str, float]:
    main = distributed.setup().is_main
    data, model_path = prepare(cfg, run_dir)
    evaluates = not trains or cfg.eval.after_train
    extras = extra_sets(cfg) if evaluates else {}  # read before any model loads: a bad set fails in seconds
    metrics: dict[str, float] = {}
    frame_of = family(cfg.model).image_frame()  # the image_size of each sample: its answers' frame
    with tracking(cfg, run_dir) as tracker:
        tracker.summary(data_counts(data))
        if cfg.logger.lineage and tracker.records_lineage:  # online W&B only
            tracker.use_data(data_source(cfg.data, data.root, data.revision))
        weights, processor, memory = load_stage(cfg, model_path, trains)
        if trains:
            weights, metrics = train_stage(cfg, weights, processor, data, frame_of, run_dir, tracker, rewards)
            memory |= peak_gpu_memory("train")
        if evaluates:
            test_metrics, eval_memory = evaluate_stage(
                cfg, weights, processor, data, frame_of, run_dir, tracker, extras
            )
            metrics |= test_metrics  # beside the best validation step's (val/best_*)
            memory |= eval_memory
        if main:
            metrics |= memory
            tracker.summary(memory)
            write_metrics(metrics, run_dir)
            if trains and cfg.logger.log_weights and tracker.records_lineage:
                trained = Path(weights.adapter) if weights.adapter else Path(weights.path)
                tracker.log_weights(trained, "adapter" if weights.adapter else "model", metrics)
    if main:
        log.info("metrics: %s", run_dir / METRICS_FILE)
    return metrics
