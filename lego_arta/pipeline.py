"""One run of the study: data -> (train) -> evaluate, everything written into the run dir and logged to W&B."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError
from peft import PeftModel
from transformers import set_seed

from lego_arta.data import build_dataset, flat_counts, load_data, save_split
from lego_arta.errors import ConfigError, MissingInputError
from lego_arta.evaluation.evaluate import evaluate, make_backend
from lego_arta.evaluation.generate import generator_id
from lego_arta.models import load_model, load_processor, resolve_model_path
from lego_arta.runs import METRICS_FILE, save_config, write_metrics
from lego_arta.tracking import tracking

log = logging.getLogger(__name__)


def training_records(cfg: DictConfig, records: list[Any]) -> list[Any]:
    """The training split, restricted to ``method.tasks`` when set (evaluation still covers every task)."""
    tasks = cfg.method.tasks
    return [r for r in records if r.task in set(tasks)] if tasks else records


def check_config(cfg: DictConfig, run_dir: Path, trains: bool) -> None:
    """Fail in seconds, before any data or model is loaded, on what the config alone shows to be wrong.

    A value left at ``???`` (e.g. ``experiment=hybrid_sft_grpo`` without ``method.adapter=``), a ``method.adapter``
    dir without an adapter, ``method.tasks`` outside ``data.tasks``, and, for a training run, the TRL config (unknown
    fields, contradicting values) and the reward functions are built here; ``method=none`` warns that it ignores
    ``method.args``.
    """
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as err:  # e.g. ${lego_arta.required:...} of an unset value
        reason = str(err).splitlines()[0].split(" raised while resolving interpolation: ")[-1]
        raise ConfigError(reason if str(err.full_key) in reason else f"{err.full_key}: {reason}") from err
    if missing := sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra.")):
        raise ConfigError(f"no value for {', '.join(missing)}: set it on the command line ({missing[0]}=...)")
    if cfg.method.adapter and not (Path(str(cfg.method.adapter)) / "adapter_config.json").is_file():
        raise MissingInputError(f"method.adapter={cfg.method.adapter}: no adapter_config.json in this directory")
    if cfg.method.name == "none":
        if cfg.method.args:
            log.warning("method=none trains nothing: ignoring method.args (%s)", ", ".join(cfg.method.args))
        return
    if unknown := set(cfg.method.tasks or ()) - set(cfg.data.tasks):
        raise ConfigError(f"method.tasks: {sorted(unknown)} not in data.tasks={list(cfg.data.tasks)}")
    if trains:
        from lego_arta.methods import trainer_config

        trainer_config(cfg, run_dir)


def run_experiment(cfg: DictConfig, train: bool = True) -> dict[str, float]:
    """Run ``cfg``: train with ``cfg.method`` (when ``train`` and the method trains), then evaluate.

    Data and the model path are checked before any model is loaded; the resolved config, the split files,
    ``history.jsonl``, the adapter, ``predictions.jsonl`` and ``metrics.json`` land in ``cfg.paths.output_dir``.
    """
    run_dir = Path(cfg.paths.output_dir)
    trains = train and cfg.method.name != "none"
    check_config(cfg, run_dir, trains)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir)
    set_seed(int(cfg.seed))
    data = load_data(cfg)
    model_path = resolve_model_path(cfg.model, cfg.paths.cache_dir)  # a bad model.path fails before anything heavy
    save_split(data, run_dir)
    metrics: dict[str, float] = {}
    vllm = cfg.eval.backend == "vllm"
    with tracking(cfg, run_dir) as tracker:
        tracker.summary(flat_counts(data.summary) | {f"data/dropped/{k}": n for k, n in data.dropped.items()})
        adapter = str(cfg.method.adapter) if cfg.method.adapter else None
        model: Any = None
        if trains or not vllm:  # vLLM loads the weights itself
            model, processor = load_model(cfg.model, cfg.paths.cache_dir)
        else:
            processor = load_processor(model_path, cfg.model)
        if trains:
            from lego_arta.methods import train as train_method

            train_ds = build_dataset(training_records(cfg, data.train), data.train, cfg.data, int(cfg.seed))
            trained, model = train_method(cfg, model, processor, train_ds, run_dir, tracker)
            adapter = str(trained)
            log.info("LoRA adapter saved to %s", adapter)
        if not trains or cfg.eval.after_train:
            if vllm:
                del model  # free the training copy before vLLM takes the GPU
                backend = make_backend(cfg, processor, model_path=model_path, adapter=adapter)
            else:
                if adapter and not isinstance(model, PeftModel):
                    model = PeftModel.from_pretrained(model, adapter)
                if isinstance(model, PeftModel):
                    model = model.merge_and_unload()  # faster generation; the adapter stays on disk
                backend = make_backend(cfg, processor, model=model)
            test_ds = build_dataset(data.test, data.train, cfg.data, int(cfg.seed))
            generator = generator_id(model_path, adapter, {"model": cfg.model, "eval": cfg.eval})
            metrics = evaluate(cfg, backend, test_ds, run_dir, tracker, generator)
        write_metrics(metrics, run_dir)
    log.info("metrics: %s", run_dir / METRICS_FILE)
    return metrics
