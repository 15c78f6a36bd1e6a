"""Qwen3-VL and Qwen3.5 against their checkpoints' files (tests/fixtures/qwen3_vl_8b, tests/fixtures/qwen3_5_9b) and
their tiny models: the image budget in 32 px tokens, the 0-1000 frame, LoRA on every linear projection of the
language model (Qwen3.5's linear-attention layers too), the reasoning tags through the real chat templates and
tokenizers, the memory plan of a hybrid model, and the tiny models' forward / generate / backward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from lego_arta.methods.grpo import with_prefix
from lego_arta.models import ImageBudgetError, family, generation_prefix, load_processor
from lego_arta.models.loading import load_model
from lego_arta.planning.memory import Dims
from lego_arta.planning.meta import empty_model, parameter_counts, with_lora
from lego_arta.planning.plan import format_plan, make_plan
from lego_arta.rewards import REWARDS

FIXTURES = Path(__file__).parent / "fixtures"
CHECKPOINTS = {"qwen3_vl_8b": FIXTURES / "qwen3_vl_8b", "qwen3_5_9b": FIXTURES / "qwen3_5_9b"}
THINK_ANSWER = 'The red brick is left.</think>\n\n<answer>[{"bbox_2d": [10, 20, 50, 60], "label": "brick"}]</answer>'


@pytest.mark.parametrize("model", sorted(CHECKPOINTS))
def test_the_studys_budget_in_32_px_tokens_is_what_the_processor_makes_of_a_page(make_cfg, model) -> None:
    cfg = make_cfg(f"model={model}")
    vlm = family(cfg.model)
    processor = load_processor(str(CHECKPOINTS[model]), cfg.model)
    image_processor = processor.image_processor
    assert (image_processor.patch_size, image_processor.merge_size) == (16, 2)  # only the checkpoint's file says 16
    assert list(image_processor.image_mean) == [0.5, 0.5, 0.5]
    # 2600 x 32 x 32: a 3600 x 2400 page -> 1984 x 1312 px -> 62 x 41 tokens, Qwen2.5-VL-7B's 2,542 at 28 px
    assert vlm.visual_tokens(3600, 2400) == 2542 == vlm.image_tokens(3600, 2400)
    inputs = processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>Find a brick."],
        images=[Image.new("RGB", (900, 600))],
        return_tensors="pt",
    )
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == vlm.visual_tokens(900, 600)
    assert vlm.frame_size(3600, 2400) == (1000, 1000) and vlm.frame_size(112, 112) == (1000, 1000)


def test_a_checkpoint_of_another_patch_is_refused_naming_the_family(make_cfg) -> None:
    cfg = make_cfg("model=qwen2_5_vl_7b")  # the 14 px family, pointed at Qwen3-VL's 16 px files
    with pytest.raises(ImageBudgetError, match=r"16 px patches .* not qwen2_5_vl's 14 px"):
        load_processor(str(CHECKPOINTS["qwen3_vl_8b"]), cfg.model)


def adapted(model: torch.nn.Module) -> set[str]:
    return {n.split(".lora_")[0].split(".")[-1] for n, p in model.named_parameters() if p.requires_grad}


def test_qwen3_5_lora_reaches_the_linear_attention_layers_and_never_the_vision_side(make_cfg) -> None:
    cfg = make_cfg("model=qwen3_5_9b", "method=grpo")
    assert cfg.method.lora.target_modules == family(cfg.model).lora_targets
    model = with_lora(empty_model(str(CHECKPOINTS["qwen3_5_9b"])), cfg.method.lora, cfg.model)
    linear = {"in_proj_qkv", "in_proj_z", "in_proj_a", "in_proj_b", "out_proj"}
    assert adapted(model) == linear | {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    # every layer: 24 linear-attention and 8 full-attention layers, each adapted
    layers = {n.split(".layers.")[1].split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert len(layers) == 32
    expected = sum(  # r x (in + out) per adapted projection, read from the config's shapes
        int(cfg.method.lora.r) * (module.in_features + module.out_features)
        for name, module in model.named_modules()
        if name.endswith(".base_layer")
    )
    total, trainable = parameter_counts(model)
    assert trainable == expected == 21_639_168
    assert 9.3e9 < total < 9.5e9  # 9.65B on the model card with the multi-token-prediction layer transformers skips
    # the study's recipe without the linear-attention names would adapt one layer in four
    r8_of_qwen2_5 = family(make_cfg("model=qwen2_5_vl_7b").model).lora_targets
    assert "in_proj_qkv" not in r8_of_qwen2_5 and "in_proj_qkv" in cfg.method.lora.target_modules


def test_paper_grpo_adds_lm_head_to_the_familys_targets(make_cfg) -> None:
    for model in ("qwen3_5_9b", "qwen2_5_vl_7b"):
        cfg = make_cfg("experiment=paper_grpo_v1", f"model={model}")
        assert cfg.method.lora.target_modules == family(cfg.model).lora_targets + "|lm_head"


@pytest.mark.parametrize("model", sorted(CHECKPOINTS))
def test_a_reasoning_answer_under_the_real_template_and_tokenizer_is_paid_by_the_format_reward(
    make_cfg, model
) -> None:
    cfg = make_cfg(f"model={model}", "data.reasoning=true")
    vlm = family(cfg.model)
    processor = load_processor(str(CHECKPOINTS[model]), cfg.model)
    kwargs = vlm.chat_template_kwargs(True)
    prefix = generation_prefix(processor, kwargs)
    # what the model generates after the generation prompt, through the real tokens and decode
    generated = THINK_ANSWER if prefix == "<think>\n" else "<think>" + THINK_ANSWER
    ids = processor.tokenizer(generated, add_special_tokens=False)["input_ids"]
    think = processor.tokenizer.convert_tokens_to_ids("<think>")
    decoded = processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded == generated  # <think> / </think> are tokens that skip_special_tokens keeps
    assert (think in ids) == (model == "qwen3_vl_8b")
    completions = [[{"role": "assistant", "content": decoded}]]
    assert with_prefix(REWARDS["format"], prefix)(completions) == [1.0]
    if model == "qwen3_5_9b":  # the hazard: the template opened the turn with <think>, the completion lacks it
        assert kwargs == {"enable_thinking": True} and prefix == "<think>\n"
        assert REWARDS["format"](completions) == [0.0]
        assert generation_prefix(processor, vlm.chat_template_kwargs(False)) == "<think>\n\n</think>\n\n"
    else:  # Qwen3-VL Instruct: no thinking switch, no default system prompt
        assert kwargs == {} and prefix == ""
        text = processor.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
        assert "system" not in text


def test_the_memory_plan_caches_keys_and_values_in_full_attention_layers_only(make_cfg) -> None:
    cfg = make_cfg("model=qwen3_5_9b", "experiment=paper_grpo_v1", config_name="plan")
    result = make_plan(cfg)
    dims = Dims.from_config(empty_model(str(CHECKPOINTS["qwen3_5_9b"])).config, params=1, trainable=0)
    assert (dims.full_layers, dims.linear_layers) == (8, 24)
    w = result["workload"]
    every_layer = 4 * 32 * dims.kv * w["gen_seqs"] * w["gen_tokens"] / 1e9
    assert 8 / 32 * every_layer < result["memory_gb"]["kv_cache"] < 0.4 * every_layer
    assert result["verdict"] == "fits" and "(2600 x 32 x 32)" in format_plan(result)


def test_the_plan_says_whether_the_vllm_share_holds_the_model(make_cfg) -> None:
    # Qwen3-VL-8B: 36 full-attention layers, whose KV cache of one rollout batch overflows the 0.3 share
    for model, fits in (("qwen3_5_9b", True), ("qwen3_vl_8b", False)):
        result = make_plan(make_cfg(f"model={model}", "experiment=grpo_vllm", config_name="plan"))
        v = result["vllm"]
        assert v["share_gb"] == pytest.approx(0.3 * 80) and v["fits"] is fits
        assert v["weights_gb"] == pytest.approx(2 * result["params_total"] / 1e9)
    small = make_plan(
        make_cfg("model=qwen3_5_9b", "experiment=grpo_vllm", "plan.gpu_memory_gb=40", config_name="plan")
    )
    assert not small["vllm"]["fits"] and "does NOT fit" in format_plan(small)


@pytest.mark.parametrize("model", ["tiny_qwen3_vl", "tiny_qwen3_5"])
def test_the_tiny_model_runs_forward_generate_and_backward_offline(make_cfg, cache_dir, model) -> None:
    cfg = make_cfg(f"model={model}")
    net, processor = load_model(cfg.model, cache_dir)
    assert {n.split(".")[1] for n, p in net.named_parameters() if not p.requires_grad} == {"visual"}
    assert processor.tokenizer.convert_tokens_to_ids("<think>") != processor.tokenizer.unk_token_id
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find a red brick."}]}]
    kwargs = family(cfg.model).chat_template_kwargs(True)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
    inputs = processor(text=[text], images=[Image.new("RGB", (112, 112))], return_tensors="pt")
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == family(cfg.model).visual_tokens(112, 112)
    out = net(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    assert any(p.grad is not None for p in net.parameters() if p.requires_grad)
    generated = net.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4
    if model == "tiny_qwen3_5":
        assert text.endswith("<|im_start|>assistant\n<think>\n")
        assert net.config.text_config.layer_types == ["linear_attention"] * 3 + ["full_attention"]


def test_generated_answers_hold_the_turn_the_template_opened(make_cfg, cache_dir) -> None:
    # Qwen3.5 thinking: the generation prompt ends with "<think>\n", so every prediction starts with it, as the
    # format reward and the metrics read the turn
    from lego_arta.evaluation.generate import GenerationSettings, TransformersBackend

    cfg = make_cfg("model=tiny_qwen3_5", "eval.max_new_tokens=4")
    net, processor = load_model(cfg.model, cache_dir)
    vlm = family(cfg.model)
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find a red brick."}]}]]
    for reasoning, opening in ((True, "<think>\n"), (False, "<think>\n\n</think>\n\n")):
        backend = TransformersBackend(
            net, processor, settings=GenerationSettings.from_config(cfg.eval), family=vlm,
            chat_kwargs=vlm.chat_template_kwargs(reasoning),
        )  # fmt: skip
        (answer,) = backend(messages, [[Image.new("RGB", (112, 112))]])
        assert answer.startswith(opening)
