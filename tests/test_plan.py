"""`make plan`: exact counts on the tiny model and the 7B fixture, the memory formula by hand, the verdict, the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from peft import get_peft_model
from PIL import Image
from transformers import AutoModelForImageTextToText

from experiments import plan as plan_script
from lego_arta.data import build_rows, load_data
from lego_arta.models import family
from lego_arta.models.loading import load_processor
from lego_arta.planning.memory import GB, Dims, Workload, estimate
from lego_arta.planning.meta import empty_model, parameter_counts, with_lora
from lego_arta.planning.plan import (
    collect_prompts,
    example_records,
    format_plan,
    judge,
    make_plan,
    model_files,
    run_shape,
    workload,
)
from tests.conftest import ROOT

PAPER = ["paper_baseline", "paper_sft", "paper_grpo_v1", "paper_grpo_v2"]


def r8(text) -> int:
    """LoRA r8 on q, k, v, o, gate, up, down of every layer: 8 (9h + 2kv + 3i) per layer (see test_real_checkpoint)."""
    kv = text.hidden_size // text.num_attention_heads * text.num_key_value_heads
    return text.num_hidden_layers * 8 * (9 * text.hidden_size + 2 * kv + 3 * text.intermediate_size)


def lm_head_r8(text) -> int:
    """LoRA r8 on lm_head (paper GRPO, as VLM-R1's trainer): 8 (hidden + vocab)."""
    return 8 * (text.hidden_size + text.vocab_size)


# LoRA r8 parameters of the 7B: SFT (LLaMA-Factory's targets, the language model's projections) and GRPO (lm_head too)
SFT_7B_LORA, GRPO_7B_LORA = 20_185_088, 20_185_088 + 8 * (3584 + 152_064)


def processor_lengths(processor, rows, images) -> list[int]:
    # what the model is fed: the processor's own input_ids for the rendered prompt and its images
    out = []
    for row, imgs in zip(rows, images, strict=True):
        text = processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        out.append(processor(text=[text], images=imgs, return_tensors="pt")["input_ids"].shape[1])
    return out


@pytest.mark.slow
def test_counts_on_the_tiny_model_are_exact(make_cfg):
    cfg = make_cfg("method=grpo", config_name="plan")
    plan = make_plan(cfg)
    path, _ = model_files(cfg)
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert plan["params_total"] == sum(p.numel() for p in model.parameters())
    # trainable: the closed form, and what PEFT itself counts on the real (not meta) model
    assert plan["params_trainable"] == r8(model.config.text_config) == 65_536
    peft = get_peft_model(model, instantiate(cfg.method.lora))
    assert plan["params_trainable"] == sum(p.numel() for p in peft.parameters() if p.requires_grad)
    # 112 x 112 scenes: an 8 x 8 patch grid, 16 visual tokens each
    assert plan["visual_tokens_per_image"] == {"p50": 16, "p90": 16, "p99": 16, "max": 16}
    # every training prompt's token count equals the processor's input_ids for it
    processor = load_processor(path, cfg.model)
    prompts, source = collect_prompts(cfg, processor, trains=True)
    data = load_data(cfg)
    rows = build_rows(data.train, data.train, cfg.data, int(cfg.seed))
    assert "216 training prompts" in source and len(prompts) == len(rows) == 216
    images = [[Image.open(p) for p in row["images"]] for row in rows]
    expected = processor_lengths(processor, rows, images)
    assert [p.tokens(family(cfg.model)) for p in prompts] == expected
    assert plan["prompt_tokens"]["max"] == max(expected)
    # a GRPO step: per_device_train_batch_size 2 x accumulation 1 x 1 GPU completions, 2 per prompt
    assert plan["grpo_step"]["completions"] == 2 and plan["grpo_step"]["prompts"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("freeze_vision", [True, False])
def test_full_fine_tuning_counts_every_parameter_the_trainer_trains(make_cfg, freeze_vision):
    cfg = make_cfg("method=sft", "method.lora=null", f"model.freeze_vision={freeze_vision}", config_name="plan")
    plan = make_plan(cfg)
    model = AutoModelForImageTextToText.from_pretrained(model_files(cfg)[0])
    vision = sum(p.numel() for n, p in model.named_parameters() if "visual" in n)
    assert plan["params_trainable"] == plan["params_total"] - vision * freeze_vision
    assert "full fine-tuning" in format_plan(plan) and "LoRA" not in format_plan(plan)


@pytest.mark.slow
def test_full_fine_tuning_of_the_7b_fixture_trains_all_but_its_vision_tower(make_cfg):
    # the real checkpoint's config.json: its vision tower is named `visual` too, so freeze_vision finds it
    cfg = make_cfg("experiment=paper_sft", "method.lora=null", config_name="plan")
    plan = make_plan(cfg)
    model = empty_model(model_files(cfg)[0])
    vision = sum(p.numel() for n, p in model.named_parameters() if n.startswith("model.visual."))
    assert plan["params_total"] == 8_292_166_656 and vision > 600_000_000
    assert plan["params_trainable"] == plan["params_total"] - vision
    assert "full fine-tuning" in format_plan(plan)


@pytest.mark.slow
def test_counts_on_the_7b_fixture_are_exact(make_cfg):
    cfg = make_cfg("experiment=paper_grpo_v1", config_name="plan")
    assert cfg.data.root is None and cfg.data.hub is None  # no real data here: the stated example prompts
    plan = make_plan(cfg)
    assert (plan["params_total"], plan["params_trainable"]) == (8_292_166_656, GRPO_7B_LORA)
    text = empty_model(model_files(cfg)[0]).config.text_config
    assert plan["params_trainable"] == r8(text) + lm_head_r8(text)
    assert plan["visual_tokens_per_image"]["max"] == 2542  # a 3600 x 2400 page at 2600 x 28 x 28
    assert "data.root is not set" in plan["prompts_from"] and "3600x2400" in plan["prompts_from"]
    # the example prompts (demos + reasoning prefix) through the fixture's processor, with real 3600 x 2400 images
    processor = load_processor(model_files(cfg)[0], cfg.model)
    prompts, _ = collect_prompts(cfg, processor, trains=True)
    assert [p.task for p in prompts] == ["grounding", "object", "state"]
    assert [len(p.image_sizes) for p in prompts] == [2, 2, 3]  # one demo; a Yes/No pair for state
    records, pool = example_records(cfg, list(cfg.data.tasks))
    rows = build_rows(records, pool, cfg.data, int(cfg.seed))
    page = Image.new("RGB", (3600, 2400), (90, 90, 90))
    expected = processor_lengths(processor, rows, [[page] * len(r["images"]) for r in rows])
    assert [p.tokens(family(cfg.model)) for p in prompts] == expected
    assert plan["by_task"]["state"]["prompt_tokens_max"] == expected[2] == max(expected)
    # GRPO step: 4 per device x 2 accumulation = 8 completions, 4 prompts x 2 generations, <= 8 x 164 new tokens
    step = plan["grpo_step"]
    assert (step["completions"], step["prompts"], step["completion_tokens_max"]) == (8, 4, 8 * 164)
    assert step["tokens_longest_prompt"] == 8 * (max(expected) + 164)


def test_memory_formula_by_hand():
    d = Dims(params=1000, trainable=10, layers=2, hidden=4, intermediate=8, kv=2, vocab=10, vision_hidden=3,
             vision_intermediate=5)  # fmt: skip
    w = Workload(train_seqs=2, train_tokens=5, logit_tokens=3, train_patches=4, gen_seqs=1, gen_tokens=6,
                 gen_patches=8, gradient_checkpointing=False, lora_dropout=True)  # fmt: skip
    m = {k: v * GB for k, v in estimate(d, w, gpus=2, overhead_gb=0.0).items()}
    # a = 12h + 3kv + 4i = 48 + 6 + 32 = 86, + 1.5 (6h + i) = 48 -> 134 elements, 268 bytes per layer and token
    assert m["activations"] == pytest.approx(268 * 2 * 2 * 5)  # x L x B x T
    assert m["weights"] == pytest.approx(2 * 1000)
    assert m["lora"] == pytest.approx(4 * 10 + 16 * 10 / 2)  # adapter + (grad, master, Adam) / G
    assert m["logits"] == pytest.approx(12 * 10 * 2 * 3)
    assert m["vision_train"] == pytest.approx(2 * 4 * (4 * 3 + 3 * 5))
    assert m["kv_cache"] == pytest.approx(4 * 2 * 2 * 1 * 6)
    assert m["prefill"] == pytest.approx(2 * 1 * 6 * (2 * 4 + 2 * 2 + 3 * 8))
    assert m["vision_generate"] == pytest.approx(2 * 8 * 27)
    assert m["peak"] == pytest.approx(2000 + 120 + max(5360 + 720 + 216, 96 + 432 + 432 + 40))
    # checkpointing keeps each layer's input (2hL bytes per token) and recomputes one layer
    gc = estimate(d, replace(w, gradient_checkpointing=True), gpus=2, overhead_gb=0.0)
    assert gc["activations"] * GB == pytest.approx((2 * 4 * 2 + 268) * 2 * 5)
    # ZeRO-2 over more GPUs shrinks only the sharded LoRA states
    assert estimate(d, w, gpus=8, overhead_gb=0.0)["peak"] * GB == pytest.approx(m["peak"] - 80 + 20)


@pytest.fixture(scope="module")
def grpo_7b(cache_dir, tmp_path_factory):
    from lego_arta.config import compose_config

    out = tmp_path_factory.mktemp("plan")
    cfg = compose_config(["experiment=paper_grpo_v1"], output_dir=out, cache_dir=cache_dir, config_name="plan")
    files, _ = model_files(cfg)
    model = empty_model(files)
    total, _ = parameter_counts(model)
    _, trainable = parameter_counts(with_lora(model, cfg.method.lora, cfg.model))
    dims = Dims.from_config(model.config, params=total, trainable=trainable)
    prompts, _ = collect_prompts(cfg, load_processor(files, cfg.model), trains=True)
    return dims, run_shape(cfg), prompts


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gpu_gb", "verdict"),
    [
        # the study's A100 80 GB: the paper's GRPO settings fit
        (80, "fits"),
        # 32 GB: one completion per micro-batch (accumulation doubled twice), 4 micro-batches generated at once
        (32, "per_device_train_batch_size=1 method.args.gradient_accumulation_steps=8 "
             "method.args.steps_per_generation=4 ("),
        # 24 GB: besides, fewer visual tokens per image
        (24, "model.max_pixels="),
        # 16 GB: the bf16 weights alone (16.6 GB) are too many
        (16, "does not fit even with one sequence at a time"),
    ],
)  # fmt: skip
def test_verdict_names_the_knob(grpo_7b, gpu_gb, verdict):
    dims, shape, prompts = grpo_7b
    got = judge(dims, shape, prompts, gpus=1, overhead_gb=2.0, limit_gb=0.9 * gpu_gb)
    assert verdict in got
    if "it would with" in got:
        assert float(got.rsplit("estimated peak ", 1)[1].split(" GB")[0]) <= 0.9 * gpu_gb


@pytest.mark.slow
def test_gradient_checkpointing_is_the_first_knob(grpo_7b):
    dims, shape, prompts = grpo_7b
    off = replace(shape, checkpointing=False)
    assert estimate(dims, workload(off, prompts), 1, 2.0)["peak"] > 72  # ~340 GB of activations
    on = estimate(dims, workload(shape, prompts), 1, 2.0)["peak"]
    assert judge(dims, off, prompts, gpus=1, overhead_gb=2.0, limit_gb=72.0) == (
        f"does not fit; it would with method.args.activation_checkpointing=true (estimated peak {on:.1f} GB)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("experiment", PAPER)
def test_plan_runs_for_every_paper_overlay(make_cfg, capsys, experiment):
    # what `make plan ARGS="experiment=..."` runs: no data.root, no weights, no GPU
    plan = plan_script.run(make_cfg(f"experiment={experiment}", config_name="plan"))
    out = capsys.readouterr().out
    assert "ESTIMATE" in out and "verdict: fits" in out and plan["verdict"] == "fits"
    assert Path(plan["model_files"]).name == "qwen2_5_vl_7b"
    assert plan["params_total"] == 8_292_166_656
    expected = {"paper_baseline": 0, "paper_sft": SFT_7B_LORA}.get(experiment, GRPO_7B_LORA)
    assert plan["params_trainable"] == expected
    if experiment != "paper_baseline":  # the trained overlays have a measured H200 step time
        assert "wall time on h200, ESTIMATE" in out


def test_wall_time_from_the_measured_step_times_warns_past_the_slurm_limit(make_cfg):
    from lego_arta.planning.plan import _wall_time_lines, wall_time

    cfg = make_cfg("experiment=paper_grpo_v1", config_name="plan")
    t = wall_time(cfg, ["grounding", "object", "state"], None)
    # 500 steps x 99.3 s (the H200's measured paper_grpo step) = 49,650 s = 13.8 h > 12 h
    assert (t["steps"], t["seconds_per_step"], t["train_s"]) == (500, 99.3, 500 * 99.3)
    # validation every 50 steps, 32 answers per task: 10 x 96; the test split: 25% of the published counts
    assert (t["validations"], t["validation_answers"]) == (10, 960)
    assert t["test_answers"] == round(0.25 * 5612) + round(0.25 * 19136) + round(0.25 * 10864)
    assert t["eval_s"] == pytest.approx((960 + t["test_answers"]) * 12.4)
    lines = _wall_time_lines(t)
    assert any("training 500 steps x 99.3 s = 13.8 h" in line for line in lines)
    assert any(line.startswith("  warning: past the Slurm time limit of 12 h") for line in lines)
    # a GPU or an experiment without a measured figure says so instead of guessing
    other = wall_time(make_cfg("experiment=paper_grpo_v1", "plan.gpu=a100", config_name="plan"), ["object"], None)
    assert other["train_s"] is None and other["total_s"] is None


def test_the_plans_time_limit_is_the_slurm_launchers():
    plan = OmegaConf.load(ROOT / "conf" / "plan.yaml").plan
    slurm = OmegaConf.load(ROOT / "conf" / "hydra" / "launcher" / "slurm.yaml")
    assert plan.time_limit_min == slurm.timeout_min
