"""The second family, InternVL, against its real checkpoint's files (tests/fixtures/internvl3_8b) and its tiny model:
LoRA placement and trainable count, the vision side frozen, the image budget in visual tokens, the processor as the
family loads it, and make plan's estimate."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lego_arta.models import ImageBudgetError, family, load_processor
from lego_arta.models.loading import load_model
from lego_arta.planning.meta import empty_model, parameter_counts, with_lora
from lego_arta.planning.plan import format_plan, make_plan

FIXTURE = Path(__file__).parent / "fixtures" / "internvl3_8b"


@pytest.fixture
def cfg(make_cfg):
    return make_cfg("model=internvl3_8b", "method=grpo", config_name="plan")


def test_lora_sits_on_the_language_model_only_and_counts_as_computed_from_the_config(cfg) -> None:
    model = with_lora(empty_model(str(FIXTURE)), cfg.method.lora, cfg.model)
    text = model.config.text_config
    kv = text.num_key_value_heads * text.hidden_size // text.num_attention_heads
    h, i, r = text.hidden_size, text.intermediate_size, int(cfg.method.lora.r)
    per_layer = r * (2 * (h + h) + 2 * (h + kv) + 3 * (h + i))  # q, o; k, v; gate, up, down
    total, trainable = parameter_counts(model)
    assert trainable == text.num_hidden_layers * per_layer == 20_185_088
    assert 7.9e9 < total < 8.0e9
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".language_model." in n and "lora_" in n for n in names)
    frozen = [n for n, p in model.named_parameters() if "vision_tower" in n or "multi_modal_projector" in n]
    assert frozen and not any(p.requires_grad for n, p in model.named_parameters() if n in frozen)


def test_image_budget_is_tiles_times_tokens_as_the_processor_tiles(cfg) -> None:
    vlm = family(cfg.model)
    processor = load_processor(str(FIXTURE), cfg.model)
    assert processor.image_seq_length == 256 and processor.image_processor.max_patches == 12
    # a 3600 x 2400 LEGO page: 3 x 2 tiles of 448 px + a thumbnail; the processor's own count agrees
    assert vlm.tiles(3600, 2400) == 7 == processor.image_processor.get_number_of_image_patches(2400, 3600, {})
    assert vlm.visual_tokens(3600, 2400) == 7 * 256
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find a brick"}]}], tokenize=False
    )
    ids = processor(text=[text], images=[Image.new("RGB", (900, 600))], return_tensors="pt")["input_ids"][0]
    context = int((ids == processor.image_token_id).sum())
    assert context == vlm.visual_tokens(900, 600) and vlm.image_tokens(900, 600) == context + 2
    assert vlm.frame_size(3600, 2400) == (1000, 1000)


def test_a_processor_tiling_other_than_the_config_is_refused(make_cfg) -> None:
    cfg = make_cfg("model=internvl3_8b", "model.tokens_per_tile=64")
    with pytest.raises(ImageBudgetError, match="tokens_per_tile"):
        load_processor(str(FIXTURE), cfg.model)


def test_make_plan_reads_the_fixture(cfg) -> None:
    result = make_plan(cfg)
    assert result["family"] == "internvl" and result["params_trainable"] == 20_185_088
    size = int(cfg.data.synthetic.image_size)  # the synthetic scenes: one tile
    assert result["visual_tokens_per_image"]["max"] == family(cfg.model).visual_tokens(size, size) == 256
    memory = result["memory_gb"]
    assert memory["weights"] == pytest.approx(2 * result["params_total"] / 1e9, rel=0.01)
    assert memory["weights"] < memory["peak"] < result["usable_gb"] and result["verdict"] == "fits"
    assert "up to 12 tiles of 448 px" in format_plan(result)
    smaller, overrides = family(cfg.model).smaller(4)
    assert overrides == {"max_tiles": 3} and smaller.visual_tokens(3600, 2400) < 7 * 256


def test_the_tiny_internvl_freezes_tower_and_projector(make_cfg, cache_dir) -> None:
    cfg = make_cfg("model=tiny_internvl3")
    model, processor = load_model(cfg.model, cache_dir)
    frozen = {n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"vision_tower", "multi_modal_projector"}
    assert processor.image_seq_length == 4 and type(model).__name__ == "InternVLForConditionalGeneration"
