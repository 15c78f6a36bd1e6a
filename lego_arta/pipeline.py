"""One run of the study: data -> (train) -> evaluate, everything written into the run dir and logged to W&B."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError
from peft import PeftModel
from transformers import set_seed

from lego_arta import distributed
from lego_arta.data import build_dataset, flat_counts, load_data, save_records, save_split, split_records
from lego_arta.errors import ConfigError, MissingInputError
from lego_arta.evaluation.evaluate import evaluate, make_backend
from lego_arta.evaluation.generate import generator_id
from lego_arta.evaluation.trivial import mean_box_answers
from lego_arta.models import load_model, load_processor, resolve_model_path
from lego_arta.models.images import image_frame
from lego_arta.models.loading import attention_implementation
from lego_arta.runs import METRICS_FILE, VAL_FILE, save_config, write_metrics
from lego_arta.tracking import tracking

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


def check_config(cfg: DictConfig, run_dir: Path, trains: bool) -> tuple[list[RewardFunc], list[float]] | None:
    """Fail in seconds, before any data or model is loaded, on what the config alone shows to be wrong.

    A value left at ``???`` (e.g. ``experiment=hybrid_sft_grpo`` without ``method.adapter=``), a ``method.adapter``
    dir without an adapter, ``method.tasks`` outside ``data.tasks``, and, for a training run, the TRL config (unknown
    fields, contradicting values) and the reward functions are built here; ``method=none`` warns that it ignores
    ``method.args``. ``model.attn_implementation=flash_attention_2`` without flash-attn (or CUDA) fails here, and so
    does ``eval.backend=vllm`` in a multi-process launch (vLLM would meet the launch's process group).

    Returns:
        for a GRPO training run, the reward functions and TRL ``reward_weights`` it built, for the trainer to take
        (they are built once per run); else ``None``.
    """
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as err:  # e.g. ${lego_arta.required:...} of an unset value
        reason = str(err).splitlines()[0].split(" raised while resolving interpolation: ")[-1]
        raise ConfigError(reason if str(err.full_key) in reason else f"{err.full_key}: {reason}") from err
    if missing := sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra.")):
        raise ConfigError(f"no value for {', '.join(missing)}: set it on the command line ({missing[0]}=...)")
    attention_implementation(cfg.model)
    if int(cfg.eval.val.every_steps) > 0 and not 0.0 < float(cfg.eval.val.size) < 1.0:
        raise ConfigError(f"eval.val.size={cfg.eval.val.size}: the share of training records held out, in (0, 1)")
    if int(cfg.model.min_pixels) > int(cfg.model.max_pixels):
        raise ConfigError(
            f"model.max_pixels={cfg.model.max_pixels} is below model.min_pixels={cfg.model.min_pixels}: the image "
            "budget (pixels per image after the resize) needs min_pixels <= max_pixels"
        )
    evaluates = not trains or cfg.eval.after_train
    if evaluates and cfg.eval.backend == "vllm" and (world := distributed.ranks().world_size) > 1:
        raise ConfigError(
            f"eval.backend=vllm runs in one process, not in each of {world}: set eval.after_train=false and evaluate "
            "afterwards with python experiments/evaluate.py eval.backend=vllm method.adapter=<run dir>/adapter"
        )
    if cfg.method.adapter and not (Path(str(cfg.method.adapter)) / "adapter_config.json").is_file():
        raise MissingInputError(f"method.adapter={cfg.method.adapter}: no adapter_config.json in this directory")
    if cfg.method.name == "none":
        if cfg.method.args:
            log.warning("method=none trains nothing: ignoring method.args (%s)", ", ".join(cfg.method.args))
        return None
    if unknown := set(cfg.method.tasks or ()) - set(cfg.data.tasks):
        raise ConfigError(f"method.tasks: {sorted(unknown)} not in data.tasks={list(cfg.data.tasks)}")
    if not trains:
        return None
    from lego_arta.methods import trainer_config

    trainer_config(cfg, run_dir)
    if cfg.method.name != "grpo":
        return None
    from lego_arta.methods.grpo import grpo_rewards

    return grpo_rewards(cfg)


def free_memory() -> None:
    """Collect what nothing references any more (the trainer, its optimizer, the training copy of the model: they hold
    reference cycles) and hand the freed GPU memory back to the driver, so that vLLM, which loads its own copy of the
    weights, finds it free."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_gpu_memory(stage: str) -> dict[str, float]:
    """``{"memory/<stage>_peak_gib": ...}``: the most memory torch held allocated on this process's GPU since the last
    call (GiB), then the count starts again; ``{}`` without CUDA. A run records ``load`` (the weights), ``train`` and
    ``eval`` (weights included), to set beside ``make plan``'s lines; the plan's peak also counts
    ``plan.overhead_gb`` for the CUDA context and the allocator's cache, which torch's count leaves out."""
    if not torch.cuda.is_available():
        return {}
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return {f"memory/{stage}_peak_gib": peak}


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
    rewards = check_config(cfg, run_dir, trains)
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
        adapter = str(cfg.method.adapter) if cfg.method.adapter else None
        model: Any = None
        if trains or not vllm:  # vLLM loads the weights itself
            model, processor = load_model(cfg.model, cfg.paths.cache_dir)
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
            trained, model, best = train_method(cfg, model, processor, train_ds, run_dir, tracker, val_ds, rewards)
            metrics |= best
            memory |= peak_gpu_memory("train")
            if (trained / "adapter_config.json").is_file():
                adapter = str(trained)
                log.info("LoRA adapter saved to %s", trained)
            else:  # full fine-tuning: the trained weights are a model dir of their own (model.path=<it> reloads it)
                model_path, adapter = str(trained), None
                log.info("fine-tuned model saved to %s", trained)
        if not trains or cfg.eval.after_train:
            if vllm:
                del model  # the training copy: vLLM loads its own, and the GPU must not hold both
                free_memory()
                backend = make_backend(cfg, processor, model_path=model_path, adapter=adapter)
            else:
                if adapter and not isinstance(model, PeftModel):
                    model = PeftModel.from_pretrained(model, adapter)
                if isinstance(model, PeftModel):
                    model = model.merge_and_unload()  # faster generation; the adapter stays on disk
                backend = make_backend(cfg, processor, model=model)
            test_ds = build_dataset(data.test, data.train, cfg.data, int(cfg.seed), frame_of)
            generator = generator_id(model_path, adapter, {"model": cfg.model, "eval": cfg.eval})
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
