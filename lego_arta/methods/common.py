"""What SFT and GRPO share: TRL config from ``method.args``, LoRA from ``method.lora`` (or full fine-tuning),
callbacks, resume, saving."""

from __future__ import annotations

import dataclasses
import difflib
import errno
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from peft import PeftModel
from safetensors import safe_open
from transformers import PreTrainedModel, ProcessorMixin, Trainer
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from lego_arta.distributed import barrier, ranks
from lego_arta.errors import ConfigError, MissingInputError, UserError
from lego_arta.methods.callbacks import HistoryCallback, RolloutsCallback, SaveOnSignalCallback, StopOnNonFinite
from lego_arta.runs import HISTORY_FILE, Trained
from lego_arta.tracking import Tracker, report_to

log = logging.getLogger(__name__)


def trainer_args(config_cls: type, cfg: DictConfig, run_dir: Path) -> Any:
    """Build ``SFTConfig`` / ``GRPOConfig`` from ``method.args``; the run dir, seed, device and W&B are ours.

    Any field of the TRL config can be set from the CLI (``method.args.max_steps=2``); the values this pipeline
    needs of every trained method are ``conf/method/args/trained.yaml``. Fields derived here unless set: ``bf16``
    from the device (off on CPU), ``use_cpu`` for several CPU processes (torchrun on a machine without CUDA: else
    accelerate would not start DDP), ``report_to`` and ``run_name`` from the ``logger`` group. Needs no model,
    so the pipeline builds it before loading anything: a misspelled field or values that contradict each other
    (``num_generations`` not dividing the generation batch) fail in seconds, as a :class:`ConfigError`.
    """
    args: dict[str, Any] = OmegaConf.to_container(cfg.method.args, resolve=True)  # type: ignore[assignment]
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls) if f.init}
    for key in sorted(set(args) - set(defaults)):
        near = difflib.get_close_matches(key, defaults, n=3)
        hint = f"did you mean {', '.join(f'method.args.{k}' for k in near)}?" if near else "no similar field"
        raise ConfigError(f"method.args.{key}: not a field of trl.{config_cls.__name__} ({hint})")
    for key, value in args.items():  # the dataclass does not check types: "2x" for max_steps fails much later
        number = type(defaults[key])
        if (
            number in (int, float)
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, int | float))
        ):
            raise ConfigError(
                f"method.args.{key}={value!r}: trl.{config_cls.__name__} wants a number ({number.__name__})"
            )
    cuda = torch.cuda.is_available()
    derived = {
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "report_to": report_to(cfg),
        "run_name": cfg.logger.name,
    }
    if not cuda and ranks().world_size > 1:  # accelerate starts gloo DDP only when told the run is on CPU
        derived["use_cpu"] = True
    args = derived | args  # a value set in method.args wins
    try:
        return config_cls(output_dir=str(run_dir), seed=int(cfg.seed), data_seed=int(cfg.seed), **args)
    except ValueError as err:  # TRL's own consistency checks (__post_init__)
        raise ConfigError(f"method.args: {err}") from err


def lora_setup(model: PreTrainedModel, method_cfg: DictConfig) -> tuple[PreTrainedModel | PeftModel, Any]:
    """Return ``(model, peft_config)`` for a TRL trainer.

    A fresh LoRA from ``method.lora`` (the trainer wraps the model); with ``method.adapter``, the model with that
    adapter loaded trainable (the hybrid SFT -> GRPO) and no new LoRA; with ``method.lora=null``, no PEFT at all:
    full fine-tuning of every parameter that is not frozen (the vision tower stays frozen unless
    ``model.freeze_vision=false``).
    """
    if method_cfg.adapter:  # checked before anything loaded (checks.check_config)
        path = Path(str(method_cfg.adapter))
        log.info("continuing from the LoRA adapter %s", path)
        return PeftModel.from_pretrained(model, str(path), is_trainable=True), None
    if method_cfg.lora is None:
        log.info("method.lora=null: full fine-tuning, no LoRA")
        return model, None
    return model, instantiate(method_cfg.lora)


def callbacks(cfg: DictConfig, run_dir: Path, tracker: Tracker) -> list[Any]:
    history = HistoryCallback(run_dir / HISTORY_FILE)
    table = RolloutsCallback(tracker, int(cfg.logger.rollouts_every), run_dir)
    return [history, StopOnNonFinite(), table, SaveOnSignalCallback()]


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``checkpoint-<step>`` of ``run_dir`` that was written to the end, or None.

    The Trainer writes a checkpoint's ``trainer_state.json`` after its weights, optimizer, scheduler and RNG states
    (``Trainer._save_checkpoint``, transformers 5.24), so a checkpoint is complete when that file parses and names its
    own step. A newer one that a killed process left half-written is skipped, with a warning.
    """
    if not run_dir.is_dir():
        return None
    found = []
    for path in run_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        suffix = path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    broken: list[str] = []
    for step, path in sorted(found, reverse=True):
        try:
            complete = json.loads((path / TRAINER_STATE_NAME).read_text())["global_step"] == step
        except (OSError, ValueError, KeyError, TypeError):
            complete = False
        if not complete:
            log.warning("%s is incomplete (no readable %s for step %d): skipped", path, TRAINER_STATE_NAME, step)
            continue
        if bad := damaged_file(path):
            log.warning("%s: %s is damaged (truncated or corrupt): skipped, an older checkpoint is taken", path, bad)
            broken.append(str(path / bad))
            continue
        return path
    if broken:  # written to the end once, damaged since: starting over would silently lose the run's progress
        raise MissingInputError(
            f"no intact checkpoint to resume from: {broken[0]} is damaged (truncated or corrupt). Restore it, or "
            "delete its checkpoint dir to train from the start (resume=false does too)"
        )
    return None


class DiskFullError(UserError):
    """The disk filled while the run wrote (a checkpoint, most often): one line naming where, and how to go on."""

    def __init__(self, run_dir: Path, err: BaseException) -> None:
        writing = _newest_checkpoint(run_dir)
        try:
            kept = last_complete_checkpoint(run_dir)
        except MissingInputError:  # every checkpoint damaged: the resume will say which file
            kept = None
        where = f"writing {writing}" if writing is not None and writing != kept else f"writing into {run_dir}"
        resume = f"it resumes from {kept}" if kept is not None else "it starts over (no complete checkpoint yet)"
        super().__init__(
            f"the disk is full: {where} failed ({str(err).splitlines()[0][:160]}). Free space there, then run the "
            f"same command again: {resume}"
        )


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it came from) is the disk running out of space: ``OSError`` ENOSPC / EDQUOT,
    or the message torch (``PytorchStreamWriter failed writing file``) and safetensors (``os error 28``) give it."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen)
        if "No space left on device" in text or "os error 28" in text or "file write failed" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _newest_checkpoint(run_dir: Path) -> Path | None:
    steps = [
        (int(p.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")), p)
        for p in run_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if p.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-").isdigit()
    ]
    return max(steps)[1] if steps else None


def damaged_file(checkpoint: Path) -> str | None:
    """The first file of ``checkpoint`` that cannot be read back (a truncated weight or optimizer file), or None.

    Reads headers only: a safetensors file's header must cover the file (``safe_open``), a ``torch.save`` file must
    end with its zip directory. A disk that filled or a copy cut short after ``trainer_state.json`` was written leaves
    such a file behind a complete-looking state.
    """
    for path in sorted(checkpoint.iterdir()):
        if path.suffix == ".safetensors":
            try:
                with safe_open(str(path), "pt"):
                    pass
            except Exception:  # SafetensorError: incomplete metadata, file not fully covered
                return path.name
        elif path.suffix in (".pt", ".pth", ".bin") and not zipfile.is_zipfile(path):
            return path.name
    return None


def fit(trainer: Trainer, cfg: DictConfig, run_dir: Path, processor: ProcessorMixin) -> Trained:
    """Train, from the run dir's newest complete checkpoint when there is one (``resume=true``, the default: a run
    that was stopped, requeued or killed goes on where it was); save the final LoRA adapter (``adapter/``) or, after
    full fine-tuning, the whole model (``model/``), with the processor; return what was saved."""
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, RolloutsCallback):
            cb.trainer = trainer
    checkpoint = last_complete_checkpoint(run_dir) if cfg.resume else None
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    trained = Trained.saved(run_dir, adapter=isinstance(trainer.model, PeftModel))
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        trainer.save_model(str(trained.path))  # safetensors, written by the main process only
        if trainer.is_world_process_zero():
            processor.save_pretrained(str(trained.path))
    except Exception as err:
        if not disk_full(err):
            raise
        raise DiskFullError(run_dir, err) from err
    barrier()  # every rank reads the saved weights next (generator_id hashes them)
    log.info("%s saved to %s", "LoRA adapter" if trained.kind == "adapter" else "fine-tuned model", trained.path)
    return trained


def check_train_split(dataset: Dataset) -> None:
    if len(dataset) == 0:
        raise ValueError("the training split is empty: check data.tasks and split.test_size")
