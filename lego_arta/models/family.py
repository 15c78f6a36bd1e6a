"""What differs between VLM families, behind one interface: ``family(cfg.model)`` is the only place that reads
``model.family``, and the rest of the code asks the object it returns.

A family says how its checkpoint sees an image (the image budget: the processor's resize, and the visual tokens an
image becomes), the frame its box answers are in (the ``image_size`` column, ``data.box_frame=native``), which
modules are its vision side (frozen by ``model.freeze_vision``), which modules LoRA adapts (``method.lora``'s
``target_modules`` resolves to :attr:`Family.lora_targets`), what its chat template is told (``enable_thinking``), and
how its tiny offline model is built. The chat template and the tokenizer come from the checkpoint's own files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig
from PIL import Image
from torch import nn

# the ChatML assistant header every family's template opens the model's turn with
ASSISTANT_HEADER = "<|im_start|>assistant\n"


def generation_prefix(processor: Any, chat_template_kwargs: Mapping[str, Any]) -> str:
    """What the chat template's generation prompt puts after the assistant header: text of the model's turn that
    the model does not generate (Qwen3.5: ``<think>\\n``, or an empty ``<think>`` block when ``enable_thinking`` is
    false; ``""`` for the other families). Put before a completion, it gives the turn as the template reads it back,
    which is what the rewards and metrics score.

    >>> class Template:
    ...     def apply_chat_template(self, messages, add_generation_prompt, tokenize, **kwargs):
    ...         return "<|im_start|>user\\nx<|im_end|>\\n<|im_start|>assistant\\n<think>\\n"
    >>> generation_prefix(Template(), {})
    '<think>\\n'
    """
    messages = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **chat_template_kwargs)
    _, found, prefix = text.rpartition(ASSISTANT_HEADER)
    if not found:
        raise ValueError(f"the chat template's generation prompt has no {ASSISTANT_HEADER!r}: {text[-80:]!r}")
    return prefix


class ImageBudgetError(ValueError):
    """The processor would resize images to another budget than the model config's."""


class Family(ABC):
    """One VLM family, bound to a ``model`` config (its image budget keys).

    Subclasses set the class attributes and implement the abstract methods; ``check`` raises
    :class:`~lego_arta.errors.ConfigError` on budget keys that cannot work, before anything loads.
    """

    name: ClassVar[str]
    # top-level module names of the vision side under the model's ``model`` (or the model itself): what
    # ``model.freeze_vision`` freezes
    vision_modules: ClassVar[tuple[str, ...]]
    # the native box frame in words, for the object directive of ``data.box_frame=native`` / ``directive_frame``
    native_frame: ClassVar[str]
    # the modules LoRA adapts, a regex PEFT matches against full module names (``method.lora.target_modules``
    # resolves to it): every linear projection of the language model, the study's recipe (LLaMA-Factory's
    # ``lora_target: all``, VLM-R1's linear layers outside the vision tower), never the vision side
    lora_targets: ClassVar[str] = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

    def __init__(self, model_cfg: DictConfig | Mapping[str, Any]) -> None:
        self.cfg = model_cfg
        self.check()

    @abstractmethod
    def check(self) -> None:
        """Raise ``ConfigError`` on budget keys that cannot work (e.g. a minimum above the maximum)."""

    @abstractmethod
    def build_tiny(self, tiny: Mapping[str, Any], cache_dir: str | Path) -> Path:
        """Build the family's tiny offline model once under ``cache_dir/models/`` and return its dir."""

    @abstractmethod
    def load_image_processor(self, path: str) -> Any:
        """The checkpoint's image processor with the configured budget (PIL backend), checked."""

    @abstractmethod
    def check_image_processor(self, processor: Any) -> None:
        """Raise :class:`ImageBudgetError` unless ``processor`` (or its image processor) resizes to the budget."""

    @abstractmethod
    def image_tokens(self, width: int, height: int) -> int:
        """Tokens one ``width`` x ``height`` image puts in the prompt in place of its placeholder."""

    @abstractmethod
    def visual_tokens(self, width: int, height: int) -> int:
        """Visual tokens (vision-tower outputs) of one ``width`` x ``height`` image."""

    @abstractmethod
    def vision_patches(self, width: int, height: int) -> int:
        """Patches the vision tower sees for one image (its working set: ``make plan``'s memory estimate)."""

    @abstractmethod
    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the frame the family's box answers are in, for an image of that size."""

    @abstractmethod
    def fit_image(self, image: Image.Image) -> Image.Image:
        """``image`` as vLLM should get it: what the processor's own resize gives the model."""

    @abstractmethod
    def vllm_processor_kwargs(self) -> dict[str, Any]:
        """``mm_processor_kwargs`` that give vLLM's processor the same budget."""

    @abstractmethod
    def budget(self) -> dict[str, int]:
        """The budget's keys and values (``make plan``'s JSON)."""

    @abstractmethod
    def describe_budget(self) -> str:
        """The budget in words (``make plan``'s line on visual tokens)."""

    @abstractmethod
    def smaller(self, divisor: int) -> tuple[Family, dict[str, int]]:
        """A budget of about 1/``divisor`` of the visual tokens, and the ``model.*`` overrides that set it."""

    def chat_template_kwargs(self, reasoning: bool) -> dict[str, Any]:
        """What the chat template is told besides the messages (TRL's ``chat_template_kwargs``, our generation):
        nothing by default. ``reasoning`` is ``data.reasoning`` (the study's ``<think>`` / ``<answer>`` format)."""
        return {}

    def image_frame(self, size: tuple[int, int] | None = None) -> ImageFrame:
        """image path -> the frame of the family's box answers for that image (``(width, height)``): the
        ``image_size`` column of the datasets and predictions, which the frame rule reads, and the ``words`` of
        ``data.box_frame=native``'s directive. ``size``: take every image to be that size (``make plan``'s stated
        example), instead of reading each file's header (once per path)."""
        return ImageFrame(self, size)

    def freeze_vision(self, model: nn.Module) -> int:
        """Freeze every parameter of the vision side (:attr:`vision_modules`); return how many tensors."""
        frozen = 0
        for name, param in model.named_parameters():
            parts = name.split(".")
            if any(part in self.vision_modules for part in parts[:3]):
                param.requires_grad_(False)
                frozen += 1
        if frozen == 0:
            raise RuntimeError(
                f"freeze_vision: no parameter under {', '.join(self.vision_modules)}: is this a {self.name} model "
                "(model.family)?"
            )
        return frozen


class ImageFrame:
    """A family's answer frame per image path (:meth:`Family.image_frame`)."""

    def __init__(self, vlm: Family, size: tuple[int, int] | None = None) -> None:
        self.vlm, self.size = vlm, size
        self.words = vlm.native_frame
        self._frames: dict[str, tuple[int, int]] = {}

    def __call__(self, path: str, /) -> tuple[int, int]:
        if path not in self._frames:
            if self.size is None:
                with Image.open(path) as image:
                    width, height = image.size
            else:
                width, height = self.size
            self._frames[path] = self.vlm.frame_size(width, height)
        return self._frames[path]
