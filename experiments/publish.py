"""Send a finished run's weights to the Hugging Face Hub: a clean upload folder with a model card from the run.

    python experiments/publish.py run_dir=outputs/default/runs/<time> repo_id=<user>/<name>    # private by default
    python experiments/publish.py run_dir=outputs/default/runs/<time> dry_run=true             # the folder only

The folder (``<run dir>/publish/``) holds the LoRA adapter (or the fully fine-tuned model) and the processor files,
and a README.md card: base model, Table 1 row with CIs, data source and revision, W&B run, machine, config. Nothing
of the run's data or logs. Without the Hub (HF_HUB_OFFLINE=1, no network, no token) it stops with one line before
uploading anything. ``conf/publish.yaml``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lego_arta.cli import hydra_task, launch
from lego_arta.publish import PublishError, push, upload_folder

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> str:
    """Write the upload folder; upload it unless ``dry_run``; return its path or the repository's URL."""
    if not cfg.dry_run and cfg.repo_id is None:
        raise PublishError(
            "repo_id is required to upload: set repo_id=<user>/<name> (or dry_run=true: the folder only)"
        )
    folder = upload_folder(Path(str(cfg.run_dir)), Path(str(cfg.out)))
    if cfg.dry_run:
        return str(folder)
    return push(folder, str(cfg.repo_id), private=bool(cfg.private))


@hydra.main(version_base="1.3", config_path="../conf", config_name="publish")
@hydra_task
def main(cfg: DictConfig) -> None:
    print(run(cfg))


if __name__ == "__main__":
    launch(main, "publish")
