"""One image budget in training, evaluation and vLLM, for every family: the processor vLLM builds from a checkpoint's
files with the family's ``mm_processor_kwargs`` makes as many image tokens of a page as the trainer's processor;
GRPO's colocated vLLM engine gets those kwargs and prompts whose images are one placeholder each (vLLM itself is a
GPU extra: these tests check what reaches it)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from transformers import AutoProcessor
from trl.generation import vllm_generation
from trl.trainer import grpo_trainer

from lego_arta.methods.grpo import collapse_image_runs, family_vllm_generation, vllm_engine_kwargs
from lego_arta.models import family, load_processor
from lego_arta.models.loading import resolve_model_path

FIXTURES = Path(__file__).parent / "fixtures"
PAGE = (3600, 2400)  # the largest LEGO-ARTA page


def image_tokens(processor: Any, image: Image.Image) -> int:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find a brick."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0]
    return int((ids == processor.image_token_id).sum())


@pytest.mark.parametrize("model", ["qwen2_5_vl_7b", "internvl3_8b", "qwen3_vl_8b", "qwen3_5_9b"])
def test_vllms_processor_sees_a_page_at_the_trainers_budget(make_cfg, model) -> None:
    cfg = make_cfg(f"model={model}")
    vlm, path = family(cfg.model), str(cfg.model.files)
    page = Image.new("RGB", PAGE)
    trainer = image_tokens(load_processor(path, cfg.model), page)
    # vLLM: the processor class from the checkpoint's files, mm_processor_kwargs passed to from_pretrained (the
    # keys its processor does not take per call; vllm/transformers_utils/processor.py), the raw page as TRL gives it
    engine = AutoProcessor.from_pretrained(path, **vlm.vllm_processor_kwargs())
    assert image_tokens(engine, page) == trainer == vlm.visual_tokens(*PAGE)
    files = AutoProcessor.from_pretrained(path)  # the checkpoint's files alone
    if model == "internvl3_8b":
        # vLLM counts a page's tokens (its memory profile, the encoder budget) from the image processor as loaded
        # (vllm interns1.py: get_num_image_tokens, resolve_target_ratios): the real file's crop_to_patches=false
        # counts one 256-token tile, while the HF call tiles it into seven (InternVLProcessor's call-time default)
        assert files.image_processor.get_number_of_image_patches(*PAGE[::-1], {}) == 1
        assert engine.image_processor.get_number_of_image_patches(*PAGE[::-1], {}) * 256 == trainer == 7 * 256
    else:
        assert image_tokens(files, page) > 3 * trainer  # Qwen's files: up to 12.8 M (2.5) or 16.8 M px (3, 3.5)


@pytest.mark.parametrize("model", ["tiny_qwen2_5_vl", "tiny_internvl3", "tiny_qwen3_vl", "tiny_qwen3_5"])
def test_colocated_prompts_hold_one_placeholder_per_image(make_cfg, cache_dir, model) -> None:
    cfg = make_cfg(f"model={model}")
    processor = load_processor(resolve_model_path(cfg.model, cache_dir), cfg.model)
    content = [
        {"type": "image"},
        {"type": "text", "text": "Step one."},
        {"type": "image"},
        {"type": "text", "text": "?"},
    ]
    messages = [{"role": "user", "content": content}]
    images = [Image.new("RGB", (112, 112)), Image.new("RGB", (90, 140))]
    expanded = processor(
        text=[processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)], images=images
    )["input_ids"][0]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    unexpanded = processor.tokenizer(text, add_special_tokens=False)["input_ids"]  # what vLLM expands itself
    assert len(expanded) > len(unexpanded) + 10
    assert collapse_image_runs(list(expanded), processor) == unexpanded


def test_the_engine_is_built_with_the_familys_kwargs_in_colocate_mode_only(monkeypatch) -> None:
    built: list[dict[str, Any]] = []
    monkeypatch.setattr(vllm_generation, "LLM", lambda **kwargs: built.append(kwargs), raising=False)

    def trl_init(self: Any) -> None:  # TRL's _init_vllm builds LLM(...) from the module global
        vllm_generation.LLM(model="checkpoint", gpu_memory_utilization=0.3)

    monkeypatch.setattr(vllm_generation.VLLMGeneration, "_init_vllm", trl_init)
    generation = family_vllm_generation({"min_pixels": 3136, "max_pixels": 2038400})
    for mode in ("colocate", "server"):
        engine = object.__new__(generation)
        engine.mode = mode
        engine._init_vllm()
    assert built[0] == {
        "model": "checkpoint",
        "gpu_memory_utilization": 0.3,
        "mm_processor_kwargs": {"min_pixels": 3136, "max_pixels": 2038400},
    }
    assert built[1] == {"model": "checkpoint", "gpu_memory_utilization": 0.3}  # trl vllm-serve takes its own flags
    with vllm_engine_kwargs(seed=1):
        vllm_generation.LLM(model="m")
    assert built[2] == {"model": "m", "seed": 1} and len(built) == 3


def test_trl_still_builds_what_the_hook_replaces() -> None:
    # the hook swaps TRL's VLLMGeneration while GRPOTrainer.__init__ builds it, and the engine's LLM while
    # _init_vllm builds it: a TRL release that builds them otherwise fails here, not silently on a GPU
    assert "VLLMGeneration(" in inspect.getsource(grpo_trainer.GRPOTrainer.__init__)
    assert "self.llm = LLM(" in inspect.getsource(vllm_generation.VLLMGeneration._init_vllm)
    assert "mm_processor_kwargs" not in inspect.getsource(vllm_generation)  # when TRL passes them, drop the hook
    source = inspect.getsource(vllm_generation.VLLMGeneration.generate)
    assert '{"prompt_token_ids": ids}' in source  # the expanded ids go to vLLM as they are
