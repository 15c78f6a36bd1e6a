"""The VLMs: one loader for every model config (``loading``), and what differs between families behind one interface
(``family``: ``families.family(cfg.model)``; ``qwen2_5_vl``, ``internvl``, ``qwen3_vl``, ``qwen3_5``), each with its
tiny offline builder."""

from lego_arta.models import compat

compat.apply()

from lego_arta.models.families import FAMILIES, family  # noqa: E402
from lego_arta.models.family import Family, ImageBudgetError, generation_prefix  # noqa: E402
from lego_arta.models.loading import load_model, load_processor, resolve_model_path  # noqa: E402

__all__ = [
    "FAMILIES",
    "Family",
    "ImageBudgetError",
    "family",
    "generation_prefix",
    "load_model",
    "load_processor",
    "resolve_model_path",
]
