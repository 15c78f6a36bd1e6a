"""Qwen3-VL (e.g. Qwen/Qwen3-VL-8B-Instruct): its image budget, box frame, vision side and tiny offline model
(:class:`Qwen3_VL`).

The image budget is Qwen2.5-VL's resize path (:mod:`lego_arta.models.qwen2_5_vl`: ``smart_resize`` with
``model.min_pixels <= area <= model.max_pixels``, the processor's PIL resize, the same image to vLLM) with Qwen3-VL's
patches: 16 px, 2 x 2 merged, so one visual token per 32 x 32 px. The processor classes are Qwen2-VL's; only the
checkpoint's ``preprocessor_config.json`` holds the 16 px patches and its mean/std 0.5 (the class defaults are
Qwen2-VL's 14 px and CLIP's statistics), so the budget check also checks the patch.

Its boxes are relative, on 0-1000 of the image whatever its size: the Qwen3-VL cookbook's ``2d_grounding``
("changed from the absolute coordinates used in Qwen2.5-VL to relative coordinates ranging from 0 to 1000",
https://github.com/QwenLM/Qwen3-VL/blob/main/cookbooks/2d_grounding.ipynb; the maintainers in
https://github.com/QwenLM/Qwen3-VL/issues/1427). Whether the top is 1000 or 999
(https://github.com/QwenLM/Qwen3-VL/issues/1741) moves a coordinate by 0.1 %: the frame is 1000, as InternVL's.

The Instruct chat template has no thinking switch (TRL's ``qwen3_vl.jinja``, the checkpoint's own); ``<think>`` and
``</think>`` are tokens of the tokenizer that are not special, so decoding keeps them and the format reward sees them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from transformers import PretrainedConfig, PreTrainedModel, Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from trl.chat_template_utils import qwen3_vl_chat_template

from lego_arta.models.qwen2_5_vl import Qwen2_5_VL, tiny_qwen_model
from lego_arta.models.tiny import is_built, save_tiny, tiny_dir, train_tokenizer

log = logging.getLogger(__name__)

# a tiny Qwen3 dir is complete with these (its processor files laid out as the checkpoints ship them)
TINY_FILES = ("model.safetensors", "preprocessor_config.json")
# Qwen3's reasoning tags: added tokens with "special": false in the Qwen3 tokenizers (tokenizer_config.json's
# added_tokens_decoder, ids 151667 / 151668 in Qwen3-VL), so skip_special_tokens=True keeps them
THINK_TOKENS = ("<think>", "</think>")
# Qwen3-VL's image normalisation (the checkpoint's preprocessor_config.json: image_mean / image_std)
IMAGE_MEAN = IMAGE_STD = (0.5, 0.5, 0.5)


def build_tiny_qwen3(
    name: str,
    config_cls: Callable[..., PretrainedConfig],
    model_cls: Callable[[Any], PreTrainedModel],
    chat_template: str,
    tiny: Mapping[str, Any],
    cache_dir: str | Path,
    min_pixels: int,
    max_pixels: int,
) -> Path:
    """Build a tiny Qwen3 VLM (Qwen3-VL or Qwen3.5) once into ``cache_dir/models/<name>-<hash>``; return the dir.

    Real architecture (``model_cls`` from ``config_cls`` with small ``text`` / ``vision`` sizes), the tiny models'
    tokenizer with Qwen's special tokens and Qwen3's ``<think>`` / ``</think>`` (not special, as in the real files),
    the checkpoint's chat template (TRL's verbatim copy, so TRL recognises it), and Qwen2-VL's image processor with
    the family's 16 px patches and the checkpoint's mean/std.

    Args:
        name: the cache dir's prefix (``tiny_qwen3_vl``, ``tiny_qwen3_5``).
        config_cls: ``Qwen3VLConfig`` / ``Qwen3_5Config``.
        model_cls: its ``...ForConditionalGeneration``.
        chat_template: the checkpoint's template.
        tiny: ``model.tiny``: ``seed``, ``vocab_size``, ``text`` (with ``mrope_section``, ``rope_theta`` and, for
            Qwen3.5, ``partial_rotary_factor``), ``vision``.
        cache_dir: ``paths.cache_dir``.
        min_pixels: smallest image area the saved processor resizes to.
        max_pixels: largest image area the saved processor resizes to.
    """
    tiny = dict(tiny)
    out = tiny_dir(name, tiny, cache_dir)
    if is_built(out, TINY_FILES):
        return out
    log.info("building %s into %s", name, out)
    seed = int(tiny["seed"])
    tokenizer = train_tokenizer(int(tiny["vocab_size"]), seed, chat_template=chat_template, plain_tokens=THINK_TOKENS)
    text, vision = dict(tiny["text"]), dict(tiny["vision"])
    rope = {"rope_type": "default", "mrope_interleaved": True, "mrope_section": list(text.pop("mrope_section"))}
    rope["rope_theta"] = float(text.pop("rope_theta"))
    if "partial_rotary_factor" in text:
        rope["partial_rotary_factor"] = float(text.pop("partial_rotary_factor"))
    model = tiny_qwen_model(config_cls, model_cls, tokenizer, text, vision, rope, seed)
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=vision["patch_size"],
        merge_size=vision["spatial_merge_size"],
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
    )
    save_tiny(out, tiny, [model, image_processor, tokenizer], {"chat_template.jinja": chat_template}, TINY_FILES)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s built: %.2fM parameters, vocab %d, %s", name, n_params / 1e6, len(tokenizer), out)
    return out


class Qwen3_VL(Qwen2_5_VL):
    """Qwen3-VL (``model.family=qwen3_vl``): Qwen2.5-VL's budget keys ``model.min_pixels`` / ``model.max_pixels``
    with 16 px patches (one visual token per 32 x 32 px); boxes on 0-1000 of the image; vision side ``visual`` (the
    tower, its merger and its DeepStack mergers)."""

    name = "qwen3_vl"
    native_frame = "in relative coordinates from 0 to 1000"
    patch_size, merge_size = 16, 2
    FRAME = 1000
    # the tiny model's config and model classes and the checkpoint's chat template (build_tiny_qwen3)
    tiny_classes: ClassVar[tuple[Any, Any, str]] = (
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        qwen3_vl_chat_template,
    )

    def build_tiny(self, tiny: Mapping[str, Any], cache_dir: str | Path) -> Path:
        config_cls, model_cls, template = self.tiny_classes
        return build_tiny_qwen3(
            f"tiny_{self.name}", config_cls, model_cls, template, tiny, cache_dir, self.min_pixels, self.max_pixels
        )

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        return self.FRAME, self.FRAME
