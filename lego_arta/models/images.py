"""The image budget: one resize path from a page image to Qwen2.5-VL's visual tokens, for training and evaluation.

Every image goes through the processor's own PIL image processor (``load_image_processor``): ``smart_resize`` to
multiples of 28 px with ``model.min_pixels <= area <= model.max_pixels`` (aspect ratio kept), then a PIL bicubic
resize, then 14 px patches, 2x2 of which merge into one visual token. TRL's SFT collator, TRL's GRPO prompt and loss
paths and the transformers evaluation backend all hand the raw images to that processor; vLLM, which runs its own
processor, gets images already resized by :func:`fit_image`, the same operation, so its resize is a no-op. This is
also what the study's ``qwen_vl_utils.process_vision_info`` does to an image (same formula, PIL bicubic), without
its torchvision import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image
from transformers import AutoImageProcessor
from transformers.image_transforms import convert_to_rgb
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize


class ImageBudgetError(ValueError):
    """The processor would resize images to other limits than ``model.min_pixels`` / ``model.max_pixels``."""


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


def image_frame(min_pixels: int, max_pixels: int, factor: int = 28) -> Callable[[str], tuple[int, int]]:
    """image path -> ``(width, height)`` of that image after the processor's resize: the frame a model's pixel
    answers are in (the ``image_size`` column, ``data.box_frame=pixels``). Only the file's header is read; each path
    is measured once.

    >>> from pathlib import Path; from tempfile import mkdtemp
    >>> path = str(Path(mkdtemp()) / "page.png"); Image.new("RGB", (3600, 2400)).save(path)
    >>> image_frame(3136, 2600 * 28 * 28)(path)  # note: smart_resize returns (height, width)
    (1736, 1148)
    """

    @functools.cache
    def frame(path: str) -> tuple[int, int]:
        with Image.open(path) as image:
            width, height = image.size
        height, width = resized_size(height, width, min_pixels, max_pixels, factor)
        return width, height

    return frame


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
