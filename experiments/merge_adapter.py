"""Merge a trained LoRA adapter into its base model: one full model dir for evaluation or serving.

    python experiments/merge_adapter.py adapter=outputs/demo/runs/<time>/adapter [out=DIR]

The base model is the one the adapter was trained on (``base_model_name_or_path`` in adapter_config.json);
the merged model and its processor are saved to ``out`` (default: ``<adapter>-merged``) and load with
``AutoModelForImageTextToText`` / ``AutoProcessor`` or ``model.path=DIR``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lego_arta.cli import hydra_task, launch
from lego_arta.errors import MissingInputError

log = logging.getLogger(__name__)


def merge(adapter: str | Path, out: str | Path | None = None) -> Path:
    """Load the adapter's base model, merge the adapter into it, save model + processor; return the out dir."""
    adapter = Path(adapter)
    config_file = adapter / "adapter_config.json"
    if not config_file.exists():
        raise MissingInputError(f"adapter={adapter}: no adapter_config.json in this directory")

    # imported here, not at the top: the model stack takes seconds to import, and Hydra reports an override typo
    # or prints --cfg before it is needed
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import lego_arta.models  # noqa: F401  (applies the CPU workarounds before any processor is loaded)

    base = json.loads(config_file.read_text())["base_model_name_or_path"]
    out = Path(out) if out else adapter.with_name(adapter.name + "-merged")
    model = AutoModelForImageTextToText.from_pretrained(base)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    processor_src = adapter if (adapter / "processor_config.json").exists() else Path(base)
    AutoProcessor.from_pretrained(str(processor_src)).save_pretrained(out)
    log.info("merged %s into %s -> %s", adapter, base, out)
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="merge")
@hydra_task
def main(cfg: DictConfig) -> None:
    print(merge(cfg.adapter, cfg.out))


if __name__ == "__main__":
    launch(main, "merge")
