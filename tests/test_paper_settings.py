"""The study's settings in the paper overlays: reasoning format, exact reward constants, sources, DeepSpeed."""

from __future__ import annotations

import math
import re

import pytest
from accelerate.utils import DeepSpeedPlugin
from accelerate.utils.deepspeed import HfDeepSpeedConfig
from transformers.integrations import deepspeed as hf_deepspeed
from trl import GRPOConfig, SFTConfig

from lego_arta.data import REASONING_PREFIX, Record, build_rows
from lego_arta.methods.common import trainer_args
from lego_arta.rewards import build_reward_funcs
from tests.conftest import CONF

PAPER = ["paper_baseline", "paper_sft", "paper_grpo_v1", "paper_grpo_v2"]
GRPO_OVERLAYS = ["paper_grpo_v1", "paper_grpo_v2", "hybrid_sft_grpo"]


@pytest.mark.parametrize(
    ("experiment", "reasoning"),
    [
        # thesis §4.1-4.2: the GRPO model answers <think>...</think><answer>...</answer>
        *[pytest.param(e, True, id=e) for e in GRPO_OVERLAYS],
        # thesis §4.1: the reasoning instruction is for the reasoning model only
        pytest.param("paper_baseline", False, id="paper_baseline"),
        pytest.param("paper_sft", False, id="paper_sft"),
    ],
)
def test_grpo_overlays_ask_for_think_and_answer(make_cfg, experiment, reasoning):
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.data.reasoning is reasoning
    record = Record(
        id="m/state/1",
        task="state",
        manual_id="m",
        group_id="m/state/1",
        image="/i.png",
        query="Was this step completed correctly?",
        solution="Yes",
    )
    prompt = build_rows([record], [], cfg.data, int(cfg.seed))[0]["prompt"]
    assert prompt[-1]["content"][1]["text"].startswith(REASONING_PREFIX) is reasoning


def answer(body: str) -> str:
    return f"<think>I look at the parts.</think><answer>{body}</answer>"


BEAM = '{"bbox_2d": [10, 20, 50, 60], "label": "1x2 white beam"}'
STEP = "Attach the red 2x4 brick to the base plate."


@pytest.mark.parametrize(
    ("completion", "solution", "task", "v1", "v2"),
    [
        # exact box: format 1 + IoU 1 (+ 4 x 0.1 in-range in v1) + 0.1 count + label ROUGE-1 1
        pytest.param(answer(f"[{BEAM}]"), f"[{BEAM}]", "object", 1 + 1 + 0.4 + 0.1 + 1, 1 + 1 + 0.1 + 1, id="exact"),
        # x2=150: clamped to 100, IoU (40x40)/(90x40) = 4/9; v1 halves it and counts 3 in-range coordinates
        pytest.param(
            answer('[{"bbox_2d": [10, 20, 150, 60], "label": "1x2 white beam"}]'),
            f"[{BEAM}]",
            "object",
            1 + 4 / 9 * 0.5 + 0.3 + 0.1 + 1,
            1 + 4 / 9 + 0.1 + 1,
            id="out-of-range",
        ),
        # a second box: IoU of the matched pair 1, no count bonus, 8 in-range coordinates; ROUGE-1 P 3/6, R 3/3
        pytest.param(
            answer(f'[{BEAM}, {{"bbox_2d": [60, 60, 80, 80], "label": "1x2 white beam"}}]'),
            f"[{BEAM}]",
            "object",
            1 + 1 + 0.8 + 2 / 3,
            1 + 1 + 2 / 3,
            id="extra-box",
        ),
        # no <think>: the format reward is 0, the rest scores the whole text
        pytest.param(f"[{BEAM}]", f"[{BEAM}]", "object", 0 + 1.5 + 1, 0 + 1.1 + 1, id="no-format"),
        # grounding: BLEU-4 1 + ROUGE-1 1 = the thesis's maximum 2.0, not halved
        pytest.param(answer(STEP), STEP, "grounding", 1 + 2.0, 1 + 2.0, id="grounding"),
        # state: +1.0 for the right yes/no, 0 for the wrong one
        pytest.param(answer("Yes"), "Yes", "state", 1 + 1, 1 + 1, id="state-right"),
        pytest.param(answer("Yes"), "No", "state", 1 + 0, 1 + 0, id="state-wrong"),
    ],
)
def test_effective_reward_of_the_paper_overlays(make_cfg, completion, solution, task, v1, v2):
    for experiment, expected in [("paper_grpo_v1", v1), ("paper_grpo_v2", v2)]:
        funcs, weights = build_reward_funcs(make_cfg(f"experiment={experiment}").reward)
        values = [f([completion], solution=[solution], task=[task])[0] for f in funcs]
        # TRL's GRPOTrainer: (rewards_per_func * reward_weights).nansum(dim=1), None -> NaN
        total = sum(w * v for w, v in zip(weights, values, strict=True) if v is not None and not math.isnan(v))
        assert total == pytest.approx(expected, abs=1e-9), (
            experiment,
            dict(zip([f.__name__ for f in funcs], values, strict=True)),
        )


SOURCE = re.compile(r"#.*(thesis §\d|study code: \S|our choice)")


@pytest.mark.parametrize("experiment", PAPER)
def test_every_paper_value_names_its_source(experiment):
    lines = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        code = line.split("#", 1)[0].strip()
        if not code or re.fullmatch(r"[\w/]+:", code):  # comment lines and mapping headers (method:, args:)
            continue
        assert SOURCE.search(line), f"conf/experiment/{experiment}.yaml:{number}: no source: {line.strip()}"


@pytest.mark.parametrize(
    ("experiment", "config_cls"),
    [("paper_sft", SFTConfig), ("paper_grpo_v1", GRPOConfig), ("paper_grpo_v2", GRPOConfig)],
)
def test_paper_trainer_configs_build(make_cfg, tmp_path, experiment, config_cls):
    # bf16 off: this CPU cannot validate it; every other value as the overlay sets it
    cfg = make_cfg(f"experiment={experiment}", "method.args.bf16=false")
    args = trainer_args(config_cls, cfg, tmp_path)
    assert args.seed == 42 and args.max_steps == 500 and args.activation_checkpointing
    if config_cls is GRPOConfig:
        # 4 completions per device x 2 accumulation steps = 4 prompts x num_generations 2 per optimizer step
        assert (args.generation_batch_size, args.num_generations, args.max_completion_length) == (8, 2, 164)


def deepspeed_config(ds_config: dict) -> HfDeepSpeedConfig:
    """transformers' trainer-side DeepSpeed config (fills "auto", records mismatches).

    Its class needs the deepspeed package only for a version check; on machines without it (CPU) the same methods run
    on accelerate's config class, which holds the dict.
    """
    if hf_deepspeed.is_deepspeed_available():
        return hf_deepspeed.HfTrainerDeepSpeedConfig(ds_config)
    methods = ("fill_match", "fill_only", "is_auto", "trainer_config_process")
    cls = type(
        "TrainerDeepSpeedConfig",
        (HfDeepSpeedConfig,),
        {m: vars(hf_deepspeed.HfTrainerDeepSpeedConfig)[m] for m in methods},
    )
    config = cls(ds_config)
    config.mismatches = []
    return config


@pytest.mark.parametrize("experiment", ["paper_sft", "paper_grpo_v1"])
def test_deepspeed_gradient_accumulation_follows_method_args(make_cfg, tmp_path, monkeypatch, experiment):
    import accelerate.commands.launch as launch
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    cfg = make_cfg(f"experiment={experiment}", "method.args.bf16=false")
    args = trainer_args(GRPOConfig if "grpo" in experiment else SFTConfig, cfg, tmp_path)
    assert args.gradient_accumulation_steps > 1  # 8 for SFT, 2 for GRPO: a pinned 1 would not match
    # `accelerate launch --config_file conf/accelerate/zero2.yaml ...` up to the environment it gives the processes
    seen = {}
    monkeypatch.setattr(launch, "deepspeed_launcher", lambda a: seen.update(env=prepare_deepspeed_cmd_env(a)[1]))
    parser = launch.launch_command_parser()
    launch.launch_command(parser.parse_args(["--config_file", str(CONF / "accelerate" / "zero2.yaml"), "train.py"]))
    for key, value in seen["env"].items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == 2
    ds = deepspeed_config(plugin.deepspeed_config)
    ds.trainer_config_process(args)  # what TrainingArguments does under DeepSpeed
    assert ds.mismatches == []
    assert ds.config["gradient_accumulation_steps"] == args.gradient_accumulation_steps
