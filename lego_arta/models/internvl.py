"""InternVL (transformers-native ``-hf`` checkpoints, e.g. OpenGVLab/InternVL3-8B-hf): its image budget, box frame,
vision side and tiny offline model (:class:`InternVL`).

The image budget is tiles, not pixels: the processor (``GotOcr2ImageProcessor``, ``crop_to_patches``) cuts an image
into up to ``model.max_tiles`` square tiles of ``model.tile_size`` px on the grid of closest aspect ratio, plus a
thumbnail of the whole image when it cut more than one; each tile becomes ``model.tokens_per_tile`` visual tokens
(448 px / 14 px patches = 1024 patches, pixel-shuffled 2x2 into 256), framed by ``<img>`` ... ``</img>``. Its
boxes are on a 0-1000 grid of the image, whatever its size (InternVL's grounding format).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor
from transformers.image_transforms import convert_to_rgb
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.processing_utils import ProcessorMixin

from lego_arta.errors import ConfigError
from lego_arta.models.family import Family, ImageBudgetError
from lego_arta.models.tiny import is_built, save_tiny, tiny_dir, train_tokenizer

log = logging.getLogger(__name__)

# a tiny InternVL dir is complete with these
TINY_FILES = ("model.safetensors", "processor_config.json")

# InternVL's image tokens by the tokenizer attribute InternVLProcessor reads (transformers' InternVL conversion
# script adds them to the Qwen2.5 tokenizer under these names)
IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# The chat template of the -hf checkpoints (transformers' convert_internvl_weights_to_hf.py): an image is an
# <IMG_CONTEXT> placeholder on its own line, which the processor expands to <img> + its tiles' tokens + </img>.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\\n' }}{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}"
)


class InternVL(Family):
    """InternVL (``model.family=internvl``): budget ``model.max_tiles`` tiles of ``model.tile_size`` px, each
    ``model.tokens_per_tile`` visual tokens; boxes on 0-1000; vision side ``vision_tower`` and
    ``multi_modal_projector``.

    The projector is frozen with the tower: it sits outside the tower in the module tree, but it is the vision side's
    output layer, pretrained with it, and LoRA r8 on the language model is the study's recipe for both families
    (thesis §4.2); training it would be a full fine-tune of 33M parameters (the 8B's) beside the adapters.
    """

    name = "internvl"
    vision_modules = ("vision_tower", "multi_modal_projector")
    native_frame = "with X and Y coordinates normalized to [0,1000]"
    FRAME = 1000

    @property
    def max_tiles(self) -> int:
        return int(self.cfg["max_tiles"])

    @property
    def tile_size(self) -> int:
        return int(self.cfg["tile_size"])

    @property
    def tokens_per_tile(self) -> int:
        return int(self.cfg["tokens_per_tile"])

    def check(self) -> None:
        for key in ("max_tiles", "tile_size", "tokens_per_tile"):
            if int(self.cfg[key]) < 1:
                raise ConfigError(f"model.{key}={self.cfg[key]}: must be at least 1 (InternVL's image budget)")

    @functools.cached_property
    def _tiler(self) -> GotOcr2ImageProcessorPil:
        """The image processor's tiling at this budget (its own ``get_number_of_image_patches``), built once."""
        return GotOcr2ImageProcessorPil(
            size={"height": self.tile_size, "width": self.tile_size}, max_patches=self.max_tiles, crop_to_patches=True
        )

    def tiles(self, width: int, height: int) -> int:
        """Tiles of one image, the thumbnail included.

        >>> InternVL({"max_tiles": 12, "tile_size": 448, "tokens_per_tile": 256}).tiles(3600, 2400)  # 3 x 2 + 1
        7
        """
        return int(self._tiler.get_number_of_image_patches(height, width, {}))

    def build_tiny(self, tiny: Mapping[str, Any], cache_dir: str | Path) -> Path:
        return build_tiny_internvl(tiny, cache_dir, self.tile_size, self.max_tiles, self.tokens_per_tile)

    def load_image_processor(self, path: str) -> Any:
        image_processor = AutoImageProcessor.from_pretrained(
            path, backend="pil", max_patches=self.max_tiles, crop_to_patches=True
        )
        self.check_image_processor(image_processor)
        return image_processor

    def check_image_processor(self, processor: Any) -> None:
        image_processor = getattr(processor, "image_processor", processor)
        size = image_processor.size
        found = {
            "tile_size": int(size.height if hasattr(size, "height") else size["height"]),
            "max_tiles": int(image_processor.max_patches),
        }
        if isinstance(processor, ProcessorMixin):  # the processor, not its image part
            found["tokens_per_tile"] = int(processor.image_seq_length)  # type: ignore[attr-defined]
        wanted = {key: int(self.cfg[key]) for key in found}
        if found != wanted or not image_processor.crop_to_patches:
            raise ImageBudgetError(
                f"the processor tiles images with {found} (crop_to_patches={image_processor.crop_to_patches}), not "
                f"the model config's {wanted}: load it with lego_arta.models.load_processor, or set model.tile_size / "
                "model.tokens_per_tile to the checkpoint's (preprocessor_config.json size, processor_config.json "
                "image_seq_length)"
            )

    def visual_tokens(self, width: int, height: int) -> int:
        return self.tiles(width, height) * self.tokens_per_tile

    def image_tokens(self, width: int, height: int) -> int:
        return self.visual_tokens(width, height) + 2  # <img> ... </img>

    def vision_patches(self, width: int, height: int) -> int:
        return 4 * self.visual_tokens(width, height)  # the pixel shuffle (downsample 0.5) merges 2 x 2 patches

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        return self.FRAME, self.FRAME

    def fit_image(self, image: Image.Image) -> Image.Image:
        return Image.fromarray(np.asarray(convert_to_rgb(image, return_numpy=True)))  # vLLM tiles it itself

    def vllm_processor_kwargs(self) -> dict[str, Any]:
        # crop_to_patches too: the -hf checkpoints' preprocessor_config.json says false (one 448 px tile per image),
        # and vLLM builds its processor from that file with these keyword arguments on top
        return {"max_patches": self.max_tiles, "crop_to_patches": True}

    def budget(self) -> dict[str, int]:
        return {"max_tiles": self.max_tiles, "tile_size": self.tile_size, "tokens_per_tile": self.tokens_per_tile}

    def describe_budget(self) -> str:
        return (
            f"up to {self.max_tiles} tiles of {self.tile_size} px (+ a thumbnail) x {self.tokens_per_tile} tokens "
            "(model.max_tiles)"
        )

    def smaller(self, divisor: int) -> tuple[Family, dict[str, int]]:
        tiles = max(self.max_tiles // divisor, 1)
        return InternVL({**self.budget(), "max_tiles": tiles}), {"max_tiles": tiles}


def build_tiny_internvl(
    tiny: Mapping[str, Any], cache_dir: str | Path, tile_size: int, max_tiles: int, tokens_per_tile: int
) -> Path:
    """Build the tiny InternVL once into ``cache_dir/models/tiny_internvl-<hash>`` and return that dir.

    Real ``InternVLForConditionalGeneration`` (InternViT tower, pixel-shuffle projector, Qwen2 language model) with
    small configs, the tiny models' tokenizer with InternVL's image tokens, the -hf chat template, and the real
    ``InternVLProcessor`` / ``GotOcr2ImageProcessor`` files.

    Args:
        tiny: builder settings (``model.tiny``): ``seed``, ``vocab_size``, ``text`` (Qwen2), ``vision``
            (InternVL vision: ``patch_size``, sizes) and ``downsample_ratio``.
        cache_dir: root of the project's build cache (``paths.cache_dir``).
        tile_size: the tower's input size and the processor's tile (``model.tile_size``).
        max_tiles: the processor's tile limit (``model.max_tiles``).
        tokens_per_tile: ``model.tokens_per_tile``, checked against the architecture.
    """
    settings = {**tiny, "tile_size": tile_size, "max_tiles": max_tiles}
    out = tiny_dir("tiny_internvl", settings, cache_dir)
    if is_built(out, TINY_FILES):
        return out
    log.info("building the tiny InternVL into %s", out)
    seed, text, vision = int(tiny["seed"]), dict(tiny["text"]), dict(tiny["vision"])
    ratio = float(tiny["downsample_ratio"])
    per_tile = round((tile_size // int(vision["patch_size"])) ** 2 * ratio**2)
    if per_tile != tokens_per_tile:
        raise ConfigError(
            f"model.tokens_per_tile={tokens_per_tile}, but a {tile_size} px tile of {vision['patch_size']} px patches "
            f"at downsample ratio {ratio} gives {per_tile}"
        )
    tokenizer = train_tokenizer(int(tiny["vocab_size"]), seed, named_tokens=IMAGE_TOKENS, chat_template=CHAT_TEMPLATE)
    ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in ("<|endoftext|>", "<|im_end|>")}  # type: ignore[arg-type]
    config = InternVLConfig(
        text_config={
            "model_type": "qwen2",
            **text,
            "vocab_size": len(tokenizer),
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={**vision, "image_size": tile_size},
        image_token_id=int(tokenizer.context_image_token_id),
        image_seq_length=tokens_per_tile,
        downsample_ratio=ratio,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": tile_size, "width": tile_size}, max_patches=max_tiles, crop_to_patches=True
    )
    # the processor's parts and its one setting, not an InternVLProcessor: with torchvision, AutoProcessor adds the
    # video processor itself, which a processor saved here without one would lack
    processor_config = {"image_seq_length": tokens_per_tile, "processor_class": InternVLProcessor.__name__}
    files = {"chat_template.jinja": CHAT_TEMPLATE, "processor_config.json": json.dumps(processor_config, indent=2)}
    save_tiny(out, settings, [model, image_processor, tokenizer], files, TINY_FILES)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny InternVL built: %.2fM parameters, vocab %d, %s", n_params / 1e6, len(tokenizer), out)
    return out
