"""Workarounds for library gaps on CPU-only machines, applied in one place (``apply()``, called on import).

Each patch says what it works around, the version it was seen with, and how to tell it can go.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import warnings
from typing import Any

log = logging.getLogger(__name__)

_APPLIED = False


def has_torchvision() -> bool:
    """True when torchvision imports (the registry's wheels are CUDA builds that fail beside the CPU torch)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # a CUDA torchvision beside a CPU torch raises at import ("torchvision::nms does not exist")
        return False
    return True


def _processor_without_video() -> None:
    """Let ``Qwen2_5_VLProcessor``, ``Qwen3VLProcessor`` (Qwen3-VL and Qwen3.5) and ``InternVLProcessor`` be built,
    saved and loaded without a video processor.

    Works around: transformers 5.24 requires a video processor for each, whose classes need torchvision; without
    torchvision, building the processor fails (``VIDEO_PROCESSOR_MAPPING has no attribute _extra_content``) and
    ``AutoProcessor.from_pretrained`` fails (``Can't load video processor``). The patch drops the video processor
    from the processor's attributes (its ``__init__`` signature is what transformers inspects), so images and text
    work as before and videos are unsupported. Skipped when torchvision imports (GPU machines), so nothing changes
    there. It can go when ``Qwen2_5_VLProcessor(image_processor=..., tokenizer=...)`` works without torchvision.
    """
    from transformers.models.internvl import processing_internvl
    from transformers.models.qwen2_5_vl import processing_qwen2_5_vl
    from transformers.models.qwen3_vl import processing_qwen3_vl
    from transformers.processing_utils import ProcessorMixin

    def qwen(self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs):
        kwargs.pop("video_processor", None)
        self.video_processor = None
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def qwen3(self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs):
        qwen(self, image_processor, tokenizer, chat_template, **kwargs)  # then what Qwen3VLProcessor adds
        self.vision_start_token = getattr(tokenizer, "vision_start_token", None) or "<|vision_start|>"
        self.vision_end_token = getattr(tokenizer, "vision_end_token", None) or "<|vision_end|>"
        self.vision_start_token_id = tokenizer.convert_tokens_to_ids(self.vision_start_token)
        self.vision_end_token_id = tokenizer.convert_tokens_to_ids(self.vision_end_token)

    def internvl(
        self: Any,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: Any = None,
        image_seq_length: int = 256,
        **kwargs: Any,
    ):
        kwargs.pop("video_processor", None)
        self.video_processor = None
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
        self.image_seq_length = image_seq_length  # the rest as InternVLProcessor.__init__ sets it
        self.start_image_token, self.end_image_token = tokenizer.start_image_token, tokenizer.end_image_token
        self.start_image_token_id, self.end_image_token_id = (
            tokenizer.start_image_token_id,
            tokenizer.end_image_token_id,
        )
        self.image_token, self.image_token_id = tokenizer.context_image_token, tokenizer.context_image_token_id
        self.video_token = tokenizer.video_token
        self.multimodal_pattern = re.compile(
            f"(?P<image>{re.escape(self.image_token)})|(?P<video>{re.escape(self.video_token)})"
        )

    processing_qwen2_5_vl.Qwen2_5_VLProcessor.__init__ = qwen  # type: ignore[method-assign,assignment]
    processing_qwen3_vl.Qwen3VLProcessor.__init__ = qwen3  # type: ignore[method-assign,assignment]
    processing_internvl.InternVLProcessor.__init__ = internvl  # type: ignore[method-assign,assignment]


def _quiet_deprecated_checkpointing_property() -> None:
    """Silence the FutureWarning that TRL and PEFT trigger by reading ``model.is_gradient_checkpointing``.

    Works around: transformers 5.24 renamed it ``is_activation_checkpointing`` and warns on the old name, which
    trl 1.16 (``trl/models/utils.py``) and peft 0.21 (``peft_model.py``) still read on every trainer set-up: two
    warnings per run that the user cannot act on. Our own config uses ``activation_checkpointing``. It can go when
    TRL and PEFT read the new name (grep their sources for ``is_gradient_checkpointing``).
    """
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def apply() -> None:
    """Apply every workaround this machine needs (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    _quiet_deprecated_checkpointing_property()
    if not has_torchvision():
        _processor_without_video()
        log.debug(
            "torchvision missing: the Qwen2.5-VL, Qwen3-VL and InternVL processors are patched to build without video"
        )
