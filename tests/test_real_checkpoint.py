"""Qwen2.5-VL-7B-Instruct's own files (tests/fixtures/qwen2_5_vl_7b, no weights): image budget and architecture."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor
from trl import GRPOTrainer
from trl.data_utils import apply_chat_template, prepare_multimodal_messages
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from lego_arta.data import Record, build_dataset
from lego_arta.evaluation.generate import model_inputs, vllm_requests
from lego_arta.models import family, load_processor
from lego_arta.models.qwen2_5_vl import ImageBudgetError, check_image_budget, fit_image, visual_tokens
from lego_arta.planning.meta import empty_model, parameter_counts, with_lora
from tests.conftest import FIXTURE_7B

STUDY_MAX_TOKENS = 2600  # thesis §4.4: max pixels 2600 (x 28 x 28)


@pytest.fixture
def model_cfg(make_cfg):
    return make_cfg("model=qwen2_5_vl_7b").model


@pytest.fixture
def processor(model_cfg):
    return load_processor(str(FIXTURE_7B), model_cfg)


def noise(width: int, height: int, seed: int) -> Image.Image:
    # random pixels: any difference in resampling shows in pixel_values
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_fixture_is_the_real_checkpoint():
    # the files the bug lives in: the old-style limits and the real architecture, token ids matching the tokenizer
    pre = json.loads((FIXTURE_7B / "preprocessor_config.json").read_text())
    assert (pre["min_pixels"], pre["max_pixels"]) == (3136, 12845056)
    config = json.loads((FIXTURE_7B / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"] and config["vocab_size"] == 152064
    tokenizer = AutoProcessor.from_pretrained(str(FIXTURE_7B)).tokenizer
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == config["image_token_id"] == 151655
    assert tokenizer.convert_tokens_to_ids("<|vision_start|>") == config["vision_start_token_id"]


def test_size_alone_is_overridden_by_the_checkpoint_and_the_check_says_so(model_cfg):
    # the old load_processor: `size` loses to the file's max_pixels; the budget check must catch it
    size = {"shortest_edge": model_cfg.min_pixels, "longest_edge": model_cfg.max_pixels}
    old = AutoProcessor.from_pretrained(str(FIXTURE_7B), size=size)
    assert old.image_processor.size.longest_edge == 12845056
    with pytest.raises(ImageBudgetError, match=r"max_pixels=12845056, not .*model.max_pixels=2038400"):
        check_image_budget(old, model_cfg.min_pixels, model_cfg.max_pixels)


def test_a_lego_page_stays_within_the_study_budget(processor, model_cfg):
    # a 3600x2400 page: 11,094 visual tokens at the checkpoint's own limits; at most 2,600 at the study's
    assert visual_tokens(2400, 3600, model_cfg.min_pixels, 12845056) == 11094
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find a 1x2 white beam."}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    inputs = processor(text=[text], images=[Image.new("RGB", (3600, 2400), (200, 30, 30))], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == 151655).sum())
    assert n_image_tokens == visual_tokens(2400, 3600, model_cfg.min_pixels, model_cfg.max_pixels) == 2542
    assert n_image_tokens <= STUDY_MAX_TOKENS
    assert inputs["image_grid_thw"].tolist() == [[1, 82, 124]]  # 1148 x 1736 px in 14 px patches


@pytest.mark.parametrize("style", ["old-style keys", "size only", "no limits"])
def test_the_configured_limits_win_for_any_checkpoint(tmp_path, model_cfg, style):
    # preprocessor_config.json as the 7B ships it, as transformers 5 saves it, and with no limits at all
    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURE_7B, ckpt)
    pre = json.loads((ckpt / "preprocessor_config.json").read_text())
    pre.pop("min_pixels"), pre.pop("max_pixels")
    if style == "size only":
        pre["size"] = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384}
    if style != "old-style keys":
        (ckpt / "preprocessor_config.json").write_text(json.dumps(pre))
    limits = (model_cfg.min_pixels, model_cfg.max_pixels)
    size = load_processor(str(ckpt), model_cfg).image_processor.size
    assert (size.shortest_edge, size.longest_edge) == limits


@pytest.mark.slow
def test_training_and_evaluation_inputs_are_identical(tmp_path, processor, model_cfg):
    # one object record after its same-manual demo: two large images, as the dataset view hands them to TRL
    paths = []
    for i, size in enumerate([(3600, 2400), (1500, 2200)]):
        paths.append(tmp_path / f"page{i}.png")
        noise(*size, seed=i).save(paths[-1])
    demo, record = (
        Record(id=f"m/object/{i}", task="object", manual_id="m", group_id=f"m/object/{i}", image=str(paths[i]),
               query="Find a 1x2 white beam", solution='[{"bbox_2d": [10, 20, 30, 40], "label": "1x2 white beam"}]')
        for i in (0, 1)
    )  # fmt: skip
    data_cfg = {
        "reasoning": True,
        "box_frame": "grid",
        "directive_frame": "grid",
        "demos": {"enabled": True, "match_box_count": True, "state_pair": "related"},
    }
    row = build_dataset([record], [demo], data_cfg, seed=0)[0]
    assert len(row["images"]) == 2  # the demo's image and the record's
    prompt, images = row["prompt"], row["images"]

    # SFT: TRL's collator on the prompt/completion columns (what SFTTrainer uses for this dataset)
    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    sft = collator([{"prompt": prompt, "completion": row["completion"], "images": images}])
    # GRPO, generation: TRL's own prompt tokenization (GRPOTrainer._tokenize_prompts) on its multimodal messages
    trainer = SimpleNamespace(
        processing_class=processor,
        _is_vlm=True,
        environment_factories=None,
        tools=None,
        chat_template=None,
        chat_template_kwargs={},
    )
    _, _, grpo_gen = GRPOTrainer._tokenize_prompts(trainer, [prepare_multimodal_messages(prompt, images=images)])
    # GRPO, loss: the processor call of GRPOTrainer._generate_and_score_completions on the templated prompt
    text = apply_chat_template({"prompt": prompt}, processor)["prompt"]
    grpo_loss = processor(images=[images], text=[text], padding=True, return_tensors="pt")
    # evaluation: the transformers backend's batch, and the images the vLLM backend sends through the same processor
    evaluation = model_inputs(processor, [prompt], [images])
    sent = vllm_requests(processor, [prompt], [images], family(model_cfg))[0]
    vllm = processor(images=sent["multi_modal_data"]["image"], text=[sent["prompt"]], return_tensors="pt")

    reference = evaluation
    assert reference["image_grid_thw"].tolist() == [[1, 82, 124], [1, 122, 84]]
    for name, inputs in [("sft", sft), ("grpo generation", grpo_gen), ("grpo loss", grpo_loss), ("vllm", vllm)]:
        # (TRL's generation path keeps the processor's numpy arrays)
        assert torch.equal(torch.as_tensor(inputs["image_grid_thw"]), reference["image_grid_thw"]), name
        assert torch.equal(torch.as_tensor(inputs["pixel_values"]), reference["pixel_values"]), name
    # vLLM's own processor keeps the size of what it is sent
    assert [img.size for img in sent["multi_modal_data"]["image"]] == [(1736, 1148), (1176, 1708)]


def test_fit_image_is_the_processors_own_resize(processor, model_cfg):
    # RGBA and palette images too: fit_image converts as the processor does before resizing
    for image in [noise(999, 777, 3), noise(640, 480, 4).convert("RGBA"), noise(300, 200, 5).convert("P")]:
        fitted = fit_image(image, model_cfg.min_pixels, model_cfg.max_pixels)
        direct = processor.image_processor(images=[image], return_tensors="pt")
        via_fit = processor.image_processor(images=[fitted], return_tensors="pt")
        assert torch.equal(direct["pixel_values"], via_fit["pixel_values"])


# ---- the 7B architecture from config.json, on the meta device, with conf/method/lora/r8.yaml ----

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def lora_7b(cache_dir):
    from lego_arta.config import compose_config

    cfg = compose_config(["method=grpo", "model=qwen2_5_vl_7b"], output_dir=cache_dir / "run", cache_dir=cache_dir)
    model = with_lora(empty_model(str(FIXTURE_7B)), cfg.method.lora, cfg.model)
    return model, cfg.method.lora


@pytest.mark.slow
def test_7b_builds_from_its_config_without_weights(lora_7b):
    model, _ = lora_7b
    params = list(model.parameters())
    assert {p.device.type for p in params} == {"meta"}
    config = json.loads((FIXTURE_7B / "config.json").read_text())
    text = model.base_model.model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (3584, 28, config["vocab_size"])
    # Qwen2.5-VL-7B-Instruct: 8,292,166,656 parameters (676,550,144 in the vision tower and merger)
    total, _ = parameter_counts(model.get_base_model())
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert total - lora == 8_292_166_656
    assert sum(p.numel() for n, p in model.named_parameters() if ".visual." in n) == 676_550_144


@pytest.mark.slow
def test_lora_r8_lands_on_every_language_model_projection_and_nothing_else(lora_7b):
    model, lora_cfg = lora_7b
    layers = json.loads((FIXTURE_7B / "config.json").read_text())["num_hidden_layers"]
    adapted = {name.removeprefix("base_model.model.") for name, m in model.named_modules() if hasattr(m, "lora_A")}
    expected = {
        f"model.language_model.layers.{i}.{'self_attn' if t[0] in 'qkvo' else 'mlp'}.{t}"
        for i in range(layers)
        for t in LORA_TARGETS
    }
    assert adapted == expected
    assert not any("visual" in name for name in adapted)  # no vision block, no merger
    assert all(m.r["default"] == lora_cfg.r == 8 for n, m in model.named_modules() if hasattr(m, "lora_A"))


@pytest.mark.slow
def test_trainable_parameters_are_the_closed_form_r8_count(lora_7b):
    model, lora_cfg = lora_7b
    text = json.loads((FIXTURE_7B / "config.json").read_text())
    h, i, layers, r = text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"], lora_cfg.r
    kv = h // text["num_attention_heads"] * text["num_key_value_heads"]  # 128 x 4 = 512
    # LoRA on a (d_in -> d_out) linear adds A (r x d_in) + B (d_out x r) = r (d_in + d_out) parameters; per layer:
    #   q: h->h, k: h->kv, v: h->kv, o: h->h, gate: h->i, up: h->i, down: i->h
    #   = r (2h + 2(h + kv) + 2h + 2(h + i) + (i + h)) = r (9h + 2kv + 3i)
    closed_form = layers * r * (9 * h + 2 * kv + 3 * i)
    assert closed_form == 20_185_088
    _, trainable = parameter_counts(model)
    assert trainable == closed_form
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.slow
def test_the_vision_tower_is_frozen(lora_7b):
    model, _ = lora_7b
    visual = [(n, p.requires_grad) for n, p in model.named_parameters() if ".visual." in n]
    assert visual and {n.split(".visual.")[1].split(".")[0] for n, _ in visual} == {"patch_embed", "blocks", "merger"}
    assert not any(rg for _, rg in visual)
