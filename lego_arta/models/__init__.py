"""Qwen2.5-VL models: the offline tiny builder, one loader for every model config, the image budget (``images``),
the architecture without weights (``meta``) and ``make plan``'s counts and memory estimate (``plan``, ``memory``)."""

from lego_arta.models import compat

compat.apply()

from lego_arta.models.loading import load_model, load_processor, resolve_model_path  # noqa: E402
from lego_arta.models.tiny import build_tiny_qwen2_5_vl  # noqa: E402

__all__ = ["build_tiny_qwen2_5_vl", "load_model", "load_processor", "resolve_model_path"]
