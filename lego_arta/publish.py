"""What a finished run sends to the Hugging Face Hub: a clean upload folder and a model card written from the run.

The folder holds the trained weights and the processor files only (the LoRA adapter's ``adapter/``, or the fully
fine-tuned ``model/``), never the run's data, predictions or logs (the Trainer's ``push_to_hub`` would upload its
whole ``output_dir``, the run dir: train.jsonl, test.jsonl, wandb/). The card (``README.md``) replaces the generic
ones (TRL's "fine-tuned version of [None]", PEFT's template): the base model, the run's Table 1 row with its 95%
bootstrap intervals, the data source and revision, the W&B run, the machine, the library versions and the composed
config. The repository is private unless asked otherwise; on a machine without the Hub, the command stops with one
line before anything is uploaded, the folder ready for an upload elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from lego_arta.errors import MissingInputError, UserError
from lego_arta.markdown_table import markdown_table
from lego_arta.provenance import describe
from lego_arta.runs import (
    ADAPTER_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_DIR,
    WANDB_ID_FILE,
    read_provenance,
    saved_value,
)
from lego_arta.sample_metrics import STUDY_METRICS

log = logging.getLogger(__name__)

CARD = "README.md"
# left out of the upload: the generic card the libraries write beside the weights (replaced by ours), and the
# Trainer's pickled TrainingArguments (local paths, and a pickle is no file to hand out)
LEFT_OUT = ("README.md", "training_args.bin")
HEADERS = {"f1_theme": "F1-Theme", "rouge": "ROUGE", "bleu": "BLEU", "f1_object": "F1-Object", "iou": "IoU",
           "f1_state": "F1-State", "fpr": "FPR"}  # fmt: skip


class PublishError(UserError):
    """The run cannot be published as asked (no weights, no Hub, no token)."""


def weights_dir(run_dir: Path) -> tuple[Path, str]:
    """``(dir, kind)`` of what the run trained: its LoRA ``adapter/`` or its fully fine-tuned ``model/``."""
    for name, kind in ((ADAPTER_DIR, "adapter"), (MODEL_DIR, "model")):
        if (run_dir / name).is_dir():
            return run_dir / name, kind
    raise MissingInputError(f"run_dir={run_dir}: no {ADAPTER_DIR}/ or {MODEL_DIR}/ (not a finished training run)")


def upload_folder(run_dir: str | Path, out: str | Path) -> Path:
    """Write the clean upload folder for ``run_dir`` into ``out`` (replaced): its weights and processor files, and
    the card. Files are hard-linked where the file system allows (a 16 GB model is not copied)."""
    run_dir, out = Path(run_dir), Path(out)
    source, kind = weights_dir(run_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in LEFT_OUT:
            try:
                os.link(path, out / path.name)
            except OSError:
                shutil.copy2(path, out / path.name)
    (out / CARD).write_text(model_card(run_dir, kind), encoding="utf-8")
    log.info("upload folder: %s (%s)", out, ", ".join(sorted(p.name for p in out.iterdir())))
    return out


def model_card(run_dir: Path, kind: str) -> str:
    """The card of a run: front matter for the Hub, then what the run was and what it scored."""
    cfg = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) if (run_dir / CONFIG_FILE).is_file() else {}
    metrics = json.loads((run_dir / METRICS_FILE).read_text()) if (run_dir / METRICS_FILE).is_file() else {}
    base = saved_value(cfg, "model", "path") or f"(the project's tiny offline {saved_value(cfg, 'model', 'name')})"
    method, reward = saved_value(cfg, "method", "name"), saved_value(cfg, "reward", "name")
    data = {k: saved_value(cfg, "data", k) for k in ("name", "hub", "revision", "root")}
    front: dict[str, Any] = {
        "library_name": "peft" if kind == "adapter" else "transformers",
        "tags": ["lego-arta", str(method)],
    }
    if saved_value(cfg, "model", "path"):
        front["base_model"] = str(saved_value(cfg, "model", "path"))
    if data["hub"]:
        front["datasets"] = [str(data["hub"])]
    rows = []
    for key in STUDY_METRICS:
        if f"eval/{key}" in metrics and metrics[f"eval/{key}"] is not None:
            lo, hi = metrics.get(f"eval/{key}_lo"), metrics.get(f"eval/{key}_hi")
            ci = f"[{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "–"
            rows.append([HEADERS[key], f"{metrics[f'eval/{key}']:.2f}", ci])
    for column in sorted(k for k in metrics if k.startswith("extra/") and k.endswith(("/iou", "/iou50"))):
        rows.append([column, f"{metrics[column]:.2f}", "–"])
    wandb_id = (run_dir / WANDB_ID_FILE).read_text().strip() if (run_dir / WANDB_ID_FILE).is_file() else None
    logger = cfg.get("logger") or {}
    prov = read_provenance(run_dir)
    source = (
        f"{data['hub']}@{data['revision'] or 'main'} (Hugging Face Hub)"
        if data["hub"]
        else (
            f"a local copy ({data['root']})" if data["root"] else "the project's synthetic scenes (embedded default)"
        )
    )
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {saved_value(cfg, 'experiment_name')}: {str(method).upper()}"
        + (f" (reward {reward})" if method == "grpo" else "")
        + f" on LEGO-ARTA, {'LoRA adapter' if kind == 'adapter' else 'fine-tuned model'}",
        "",
        f"Trained with the lego-arta pipeline from `{base}` ({method}"
        + (f", reward {reward}" if method == "grpo" else "")
        + f", seed {saved_value(cfg, 'seed')}). "
        + ("Load it with PEFT on that base model." if kind == "adapter" else ""),
        "",
        "## Scores on the test split",
        "Values x100; [lo, hi]: the 95% bootstrap interval over test samples (one run).",
        "",
        markdown_table(["metric", "value", "95% CI"], rows) if rows else "Not evaluated.",
        "",
        "## Data",
        f"- set: `{data['name']}`, from {source}",
        f"- split: `{saved_value(cfg, 'split', 'name')}` (seed {saved_value(cfg, 'split', 'seed')}), "
        f"tasks {saved_value(cfg, 'data', 'tasks')}",
        "",
        "## Tracking and machine",
        f"- W&B run: `{wandb_id}` (project `{logger.get('project')}`, group `{logger.get('group')}`)"
        if wandb_id
        else "- W&B: not tracked",
        f"- machine: {describe(prov)}" if prov else "- machine: not recorded",
        f"- versions: {', '.join(f'{k} {v}' for k, v in sorted((prov or {}).get('versions', {}).items()))}"
        if prov and prov.get("versions")
        else "",
        "",
        "## The composed config",
        "```yaml",
        yaml.safe_dump(cfg, sort_keys=False).strip(),
        "```",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)


def push(folder: Path, repo_id: str, private: bool) -> str:
    """Upload ``folder`` to the model repository ``repo_id`` (created, private unless ``private`` is false); return
    its URL.

    Raises:
        PublishError: one line, before anything is uploaded, when the Hub cannot be reached or no token is set.
    """
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise PublishError(
            f"HF_HUB_OFFLINE is set: nothing uploaded. The upload folder is ready at {folder}; upload it where there "
            f"is network: huggingface-cli upload {repo_id} {folder} --private"
        )
    api = HfApi()
    try:
        api.whoami()
    except Exception as err:  # no token, or no network: one line, not a trace
        why = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise PublishError(
            f"the Hugging Face Hub cannot be reached or no token is set ({why}): nothing uploaded. The upload folder "
            f"is ready at {folder} (huggingface-cli login, then run this again)"
        ) from err
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model")
    return f"https://huggingface.co/{repo_id}"
