"""Qwen2.5-VL: its image budget, box frame, vision side and tiny offline model (:class:`Qwen2_5_VL`).

The image budget is one resize path from a page image to visual tokens, for training and evaluation. Every image goes
through the processor's own PIL image processor (``load_image_processor``): ``smart_resize`` to multiples of 28 px
with ``model.min_pixels <= area <= model.max_pixels`` (aspect ratio kept), then a PIL bicubic resize, then 14 px
patches, 2x2 of which merge into one visual token. TRL's SFT collator, TRL's GRPO prompt and loss paths and the
transformers evaluation backend all hand the raw images to that processor; vLLM, which runs its own processor, gets
images already resized by :func:`fit_image`, the same operation, so its resize is a no-op. This is also what the
study's ``qwen_vl_utils.process_vision_info`` does to an image (same formula, PIL bicubic), without its torchvision
import. The box frame is pixels of that resized image (Qwen2.5-VL's grounding was trained on absolute
coordinates).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.image_transforms import convert_to_rgb
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize
from trl.chat_template_utils import qwen2_5_vl_chat_template

from lego_arta.errors import ConfigError
from lego_arta.models.family import Family, ImageBudgetError
from lego_arta.models.tiny import SPECIAL_TOKENS, is_built, save_tiny, tiny_dir, train_tokenizer

log = logging.getLogger(__name__)

# a tiny Qwen2.5-VL dir is complete with these (its processor files laid out as the 7B checkpoint ships them)
TINY_FILES = ("model.safetensors", "preprocessor_config.json")


def resized_size(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    """``(height, width)`` an image is resized to: transformers' ``smart_resize``, the processor's own function.

    >>> resized_size(2400, 3600, min_pixels=3136, max_pixels=2600 * 28 * 28)
    (1148, 1736)
    """
    return smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


def visual_tokens(
    height: int, width: int, min_pixels: int, max_pixels: int, patch_size: int = 14, merge_size: int = 2
) -> int:
    """Visual tokens of one ``height`` x ``width`` image: ``(h / patch) x (w / patch) / merge^2`` after resizing.

    >>> visual_tokens(2400, 3600, min_pixels=3136, max_pixels=2600 * 28 * 28)  # a LEGO page at the study's budget
    2542
    >>> visual_tokens(2400, 3600, min_pixels=3136, max_pixels=12845056)  # the checkpoint's own default
    11094
    """
    h, w = resized_size(height, width, min_pixels, max_pixels, patch_size * merge_size)
    return (h // patch_size) * (w // patch_size) // merge_size**2


def fit_image(image: Image.Image, min_pixels: int, max_pixels: int, factor: int = 28) -> Image.Image:
    """``image`` in RGB at the size the processor resizes it to, resized as the processor does (PIL bicubic).

    Feeding the result to the processor gives the same ``pixel_values`` as feeding ``image`` itself.
    """
    rgb = Image.fromarray(np.asarray(convert_to_rgb(image, return_numpy=True)))
    height, width = resized_size(rgb.height, rgb.width, min_pixels, max_pixels, factor)
    return rgb.resize((width, height), resample=Image.Resampling.BICUBIC)


def load_image_processor(path: str, min_pixels: int, max_pixels: int) -> Any:
    """The checkpoint's image processor with the configured limits, PIL backend, checked.

    ``min_pixels`` / ``max_pixels`` are passed by name: a checkpoint whose ``preprocessor_config.json`` carries
    old-style ``min_pixels`` / ``max_pixels`` keys (Qwen/Qwen2.5-VL-7B-Instruct: max 12,845,056) re-applies them
    over a ``size`` argument in transformers 5.24, so ``size`` alone was silently ignored; the names override those
    keys. The PIL backend is asked for explicitly so images are resized the same way with or without torchvision.
    """
    image_processor = AutoImageProcessor.from_pretrained(
        path, backend="pil", min_pixels=int(min_pixels), max_pixels=int(max_pixels)
    )
    check_image_budget(image_processor, min_pixels, max_pixels)
    return image_processor


def image_budget(image_processor: Any) -> tuple[int, int]:
    """The ``(min_pixels, max_pixels)`` an image processor resizes to (its ``size``)."""
    size = image_processor.size
    return int(size.shortest_edge), int(size.longest_edge)


def check_image_budget(image_processor: Any, min_pixels: int, max_pixels: int) -> None:
    """Raise :class:`ImageBudgetError` unless ``image_processor`` resizes within exactly these limits.

    Checks the limits it holds and what it does with them: the patches of an image of 4 x ``max_pixels`` must fit in
    ``max_pixels``, those of one of ``min_pixels`` / 4 must reach ``min_pixels``.
    """
    image_processor = getattr(image_processor, "image_processor", image_processor)  # a processor or its part
    effective = image_budget(image_processor)
    if effective != (int(min_pixels), int(max_pixels)):
        raise ImageBudgetError(
            f"the image processor resizes to min_pixels={effective[0]}, max_pixels={effective[1]}, not "
            f"model.min_pixels={min_pixels}, model.max_pixels={max_pixels}: load it with "
            "lego_arta.models.load_processor (the checkpoint's preprocessor_config.json may carry its own limits)"
        )
    patch_area = int(image_processor.patch_size) ** 2
    big, small = 2 * int(max_pixels**0.5), 1
    for side in (big, small):
        area = image_processor.get_number_of_image_patches(side, side, {}) * patch_area
        if (side == big and area > max_pixels) or (side == small and area < min_pixels):
            raise ImageBudgetError(
                f"a {side}x{side} image becomes {area} pixels, outside [{min_pixels}, {max_pixels}] "
                f"(image processor {type(image_processor).__name__})"
            )


def tiny_qwen_model(
    config_cls: Callable[..., PretrainedConfig],
    model_cls: Callable[[Any], PreTrainedModel],
    tokenizer: Any,
    text: Mapping[str, Any],
    vision: Mapping[str, Any],
    rope: Mapping[str, Any],
    seed: int,
) -> PreTrainedModel:
    """A randomly initialised Qwen-layout VLM (Qwen2.5-VL, Qwen3-VL, Qwen3.5) of ``text`` / ``vision`` sizes: the
    tiny tokenizer's special token ids in the config and generation config, tied embeddings, seeded weights."""
    ids: dict[str, int] = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS}
    config = config_cls(
        text_config={
            **text,
            "vocab_size": len(tokenizer),
            "rope_parameters": dict(rope),
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={**vision, "out_hidden_size": text["hidden_size"], "in_channels": 3, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def build_tiny_qwen2_5_vl(
    tiny: Mapping[str, Any], cache_dir: str | Path, min_pixels: int = 3136, max_pixels: int = 12544
) -> Path:
    """Build the tiny Qwen2.5-VL once into ``cache_dir/models/tiny_qwen2_5_vl-<hash>`` and return that dir.

    Args:
        tiny: builder settings (``model.tiny`` of the config): ``seed``, ``vocab_size``, ``text``, ``vision``.
        cache_dir: root of the project's build cache (``paths.cache_dir``).
        min_pixels: smallest image area the saved processor resizes to.
        max_pixels: largest image area the saved processor resizes to.

    Returns:
        The model dir, loadable with ``AutoModelForImageTextToText`` / ``AutoProcessor``.
    """
    tiny = dict(tiny)
    out = tiny_dir("tiny_qwen2_5_vl", tiny, cache_dir)
    if is_built(out, TINY_FILES):
        return out
    log.info("building the tiny Qwen2.5-VL into %s", out)
    seed = int(tiny["seed"])
    tokenizer = train_tokenizer(int(tiny["vocab_size"]), seed)
    text, vision = dict(tiny["text"]), dict(tiny["vision"])
    mrope_section = list(text.pop("mrope_section"))
    # Qwen2.5-VL's own unless set (+model.tiny.text.rope_theta=10: the README's position experiment)
    rope_theta = float(text.pop("rope_theta", 1_000_000.0))
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    if sum(mrope_section) * 2 != head_dim:
        raise ValueError(f"model.tiny.text.mrope_section={mrope_section} must sum to head size / 2 = {head_dim // 2}")
    rope = {"rope_type": "default", "rope_theta": rope_theta, "mrope_section": mrope_section}
    model = tiny_qwen_model(Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, tokenizer, text, vision, rope, seed)
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=vision["patch_size"],
        merge_size=vision["spatial_merge_size"],
    )
    files = {"chat_template.jinja": qwen2_5_vl_chat_template}
    save_tiny(out, tiny, [model, image_processor, tokenizer], files, TINY_FILES)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny Qwen2.5-VL built: %.2fM parameters, vocab %d, %s", n_params / 1e6, len(tokenizer), out)
    return out


class Qwen2_5_VL(Family):
    """Qwen2.5-VL (``model.family=qwen2_5_vl``): budget ``model.min_pixels`` / ``model.max_pixels``; boxes in pixels
    of the resized image; vision side ``visual`` (the tower and its patch merger)."""

    name = "qwen2_5_vl"
    vision_modules = ("visual",)
    native_frame = "in pixel coordinates of the image"
    # 14 px patches, 2 x 2 of which merge into one visual token (the checkpoint's preprocessor_config.json)
    patch_size, merge_size = 14, 2

    @property
    def min_pixels(self) -> int:
        return int(self.cfg["min_pixels"])

    @property
    def max_pixels(self) -> int:
        return int(self.cfg["max_pixels"])

    def check(self) -> None:
        if self.min_pixels > self.max_pixels:
            raise ConfigError(
                f"model.max_pixels={self.max_pixels} is below model.min_pixels={self.min_pixels}: the image "
                "budget (pixels per image after the resize) needs min_pixels <= max_pixels"
            )

    @property
    def factor(self) -> int:
        """Side in pixels of the area one visual token covers (``patch_size x merge_size``): resized sides are
        multiples of it."""
        return self.patch_size * self.merge_size

    def build_tiny(self, tiny: Mapping[str, Any], cache_dir: str | Path) -> Path:
        return build_tiny_qwen2_5_vl(tiny, cache_dir, self.min_pixels, self.max_pixels)

    def load_image_processor(self, path: str) -> Any:
        image_processor = load_image_processor(path, self.min_pixels, self.max_pixels)
        self.check_image_processor(image_processor)
        return image_processor

    def check_image_processor(self, processor: Any) -> None:
        check_image_budget(processor, self.min_pixels, self.max_pixels)
        image_processor = getattr(processor, "image_processor", processor)
        found = (int(image_processor.patch_size), int(image_processor.merge_size))
        if found != (self.patch_size, self.merge_size):
            raise ImageBudgetError(
                f"the image processor cuts {found[0]} px patches merged {found[1]} x {found[1]}, not {self.name}'s "
                f"{self.patch_size} px / {self.merge_size} x {self.merge_size} (model.family={self.name}: is the "
                "checkpoint of this family?)"
            )

    def visual_tokens(self, width: int, height: int) -> int:
        return visual_tokens(height, width, self.min_pixels, self.max_pixels, self.patch_size, self.merge_size)

    def image_tokens(self, width: int, height: int) -> int:
        return self.visual_tokens(width, height)  # <|vision_start|> / <|vision_end|> are the chat template's text

    def vision_patches(self, width: int, height: int) -> int:
        return self.merge_size**2 * self.visual_tokens(width, height)  # 2 x 2 patches merge into one token

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        resized_height, resized_width = resized_size(height, width, self.min_pixels, self.max_pixels, self.factor)
        return resized_width, resized_height

    def fit_image(self, image: Image.Image) -> Image.Image:
        return fit_image(image, self.min_pixels, self.max_pixels, self.factor)

    def vllm_processor_kwargs(self) -> dict[str, Any]:
        return {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}

    def budget(self) -> dict[str, int]:
        return {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}

    def describe_budget(self) -> str:
        side, area = self.factor, self.factor**2
        return f"min/max_pixels {self.min_pixels}/{self.max_pixels} ({self.max_pixels // area} x {side} x {side})"

    def smaller(self, divisor: int) -> tuple[Family, dict[str, int]]:
        area = self.factor**2
        pixels = max(self.max_pixels // (divisor * area), 4) * area
        return type(self)({"min_pixels": min(self.min_pixels, pixels), "max_pixels": pixels}), {"max_pixels": pixels}
