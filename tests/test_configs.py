"""Every method x reward x model combination and every experiment overlay composes, as the CLI would."""

from __future__ import annotations

import itertools
import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from peft import LoraConfig

from experiments.demo import budget_keys
from lego_arta.checks import check_config
from tests.conftest import CONF

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
REWARDS = sorted(p.stem for p in (CONF / "reward").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
DEBUGS = sorted(p.stem for p in (CONF / "debug").glob("*.yaml"))


def test_groups_have_the_study_options():
    # the study's options exist (a missing file would silently shrink the grid below)
    assert {"none", "sft", "grpo"} <= set(METHODS)
    assert {"v1", "v2"} <= set(REWARDS)
    assert {"tiny_qwen2_5_vl", "qwen2_5_vl_7b", "qwen2_5_vl_3b"} <= set(MODELS)
    assert {"demo", "reward_ablation", "paper_baseline", "paper_sft", "paper_grpo_v1", "paper_grpo_v2"} <= set(
        EXPERIMENTS
    )
    assert "quick" in DEBUGS  # the README's budget


@pytest.mark.parametrize(("method", "reward", "model"), list(itertools.product(METHODS, REWARDS, MODELS)))
def test_every_combination_composes(make_cfg, method, reward, model):
    cfg = make_cfg(f"method={method}", f"reward={reward}", f"model={model}")
    assert cfg.method.name == method
    assert cfg.reward.name == reward
    assert cfg.model.name == model
    # everything but Hydra-runtime values resolves (no typo'd interpolation)
    OmegaConf.to_container(cfg, resolve=True)


def test_the_3b_model_builds_on_the_7b(make_cfg):
    # one source per value: the 3B file sets only what differs from the 7B (its name, checkpoint, no plan fixture)
    small, large = make_cfg("model=qwen2_5_vl_3b").model, make_cfg("model=qwen2_5_vl_7b").model
    differs = {k for k in large if small[k] != large[k]}
    assert differs == {"name", "path", "files"}
    assert set(OmegaConf.load(CONF / "model" / "qwen2_5_vl_3b.yaml")) == {"defaults", *differs}


def shown_overrides(experiment: str) -> list[str]:
    """The overrides of the command an overlay's first comment shows (placeholders such as <time> filled in)."""
    first = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()[1]
    command = first[2:].split("  ")[0]  # `make demo   (= ...)`: the command ends at a double space
    return [re.sub(r"<[^>]+>", "filled", a) for a in shlex.split(command) if "=" in a]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_its_own_command(make_cfg, experiment):
    lines = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()
    # Hydra needs the package header on line 1; the first comment after it is the command that runs the overlay
    assert lines[0] == "# @package _global_"
    first = lines[1]
    assert first.startswith("# ") and ("experiments/" in first or first.startswith("# make ")), first
    # the overrides that command shows (placeholders such as <sft run> filled in) compose and resolve
    shown = shown_overrides(experiment)
    cfg = make_cfg(*shown) if shown else make_cfg(f"experiment={experiment}")
    assert not shown or f"experiment={experiment}" in shown
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(("debug", "experiment"), list(itertools.product(DEBUGS, [None, *EXPERIMENTS])))
def test_every_debug_option_wins_over_every_experiment(make_cfg, debug, experiment):
    # `debug` comes after `experiment` in conf/config.yaml's defaults list (lightning-hydra-template's order), so
    # `debug=quick` shrinks any overlay as typed; its first comment after the package header is a command that uses it
    lines = (CONF / "debug" / f"{debug}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_" and lines[1].startswith("# ") and f"debug={debug}" in lines[1]
    typed = (shown_overrides(experiment) or [f"experiment={experiment}"]) if experiment else []
    cfg = make_cfg(*typed, f"debug={debug}")
    values = OmegaConf.load(CONF / "debug" / f"{debug}.yaml")
    keys = budget_keys([f"debug={debug}"])
    assert keys and {k: OmegaConf.select(cfg, k) for k in keys} == {k: OmegaConf.select(values, k) for k in keys}
    OmegaConf.to_container(cfg, resolve=True)
    # a value typed on the command line still wins over the budget
    key = sorted(keys)[0]
    assert OmegaConf.select(make_cfg(*typed, f"debug={debug}", f"{key}=7"), key) == 7


def test_the_budget_wins_where_an_overlay_sets_the_same_key(make_cfg):
    # the order matters: experiment=demo sets eval.max_new_tokens itself (the check above can fail)
    assert (
        make_cfg("experiment=demo").eval.max_new_tokens
        != make_cfg("experiment=demo", "debug=quick").eval.max_new_tokens
    )


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_builds_its_trainer_config_lora_and_rewards_without_a_model(make_cfg, tmp_path, experiment):
    # the lightning-hydra-template habit: every overlay is exercised, here up to everything but the weights
    shown = shown_overrides(experiment) or [f"experiment={experiment}"]
    adapter = tmp_path / "adapter"  # the hybrid's SFT adapter (its dir is checked before anything loads)
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    shown = [f"method.adapter={adapter}" if o.startswith("method.adapter=") else o for o in shown]
    cfg = make_cfg(*shown, "++method.args.bf16=false")  # bf16 needs a GPU
    trains = cfg.method.name != "none"
    rewards = check_config(cfg, tmp_path / "run", trains=trains)  # the TRL config and, for GRPO, the rewards
    if trains:
        assert isinstance(instantiate(cfg.method.lora), LoraConfig)
    if cfg.method.name == "grpo":  # built once: the trainer takes them
        assert rewards is not None
        funcs, weights = rewards
        assert funcs and len(funcs) == len(weights)
    else:
        assert rewards is None


def test_a_required_value_left_unset_names_the_override():
    # experiment=hybrid_sft_grpo without method.adapter= must not fall back to a fresh LoRA (an overlay's ??? would)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=hybrid_sft_grpo", "paths.output_dir=/tmp/x"])
    with pytest.raises(Exception, match=r"set method\.adapter=<SFT run dir>/adapter"):
        OmegaConf.to_container(cfg, resolve=True)


def test_training_methods_use_lora_r8_on_the_language_model_only(make_cfg):
    for method in ("sft", "grpo"):
        lora = make_cfg(f"method={method}").method.lora
        assert lora.r == 8
        assert "language_model" in lora.target_modules


def test_rewards_differ_only_in_values():
    # v2 is v1 with the other node of the reward/iou group (lego_arta/rewards/iou.yaml): same keys, other constants
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        composed = {n: compose("config", overrides=[f"reward={n}", "logger=none"]).reward for n in ("v1", "v2")}
    v1, v2 = (OmegaConf.to_container(composed[n]) for n in ("v1", "v2"))
    assert isinstance(v1, dict) and isinstance(v2, dict)
    assert v1.keys() == v2.keys() and v1["iou"].keys() == v2["iou"].keys()
    assert {key for key in v1 if v1[key] != v2[key]} == {"name", "iou"}
    assert (v1["iou"]["penalty"], v2["iou"]["penalty"]) == (0.5, 1.0)


def test_unknown_group_option_names_the_option(make_cfg):
    with pytest.raises(ConfigCompositionException, match="Could not find 'method/ppo'"):
        make_cfg("method=ppo")


def test_the_vllm_overlay_is_the_paper_grpo_with_colocated_vllm_generation(make_cfg, tmp_path):
    # TRL's colocate mode: vLLM generates the completions inside each training process; nothing else changes
    from trl import GRPOConfig

    from lego_arta.methods.common import trainer_args

    vllm = trainer_args(GRPOConfig, make_cfg("experiment=grpo_vllm", "method.args.bf16=false"), tmp_path)
    paper = trainer_args(GRPOConfig, make_cfg("experiment=paper_grpo_v1", "method.args.bf16=false"), tmp_path)
    assert (vllm.use_vllm, vllm.vllm_mode, vllm.vllm_gpu_memory_utilization) == (True, "colocate", 0.3)
    assert vllm.vllm_max_model_length >= 7744 + vllm.max_completion_length  # make plan's longest 7B prompt
    changed = {k for k, v in vars(paper).items() if getattr(vllm, k) != v and k != "distributed_state"}
    assert changed == {"use_vllm", "vllm_max_model_length"}, changed


@pytest.mark.parametrize("generations", [2, 4, 8])
def test_num_generations_is_a_sweep_axis_on_its_own(make_cfg, tmp_path, generations):
    # GRPO's batch follows num_generations unless set (one group per device and step), so `-m
    # method.args.num_generations=2,4,8` keeps TRL's divisibility rule without a second override
    from lego_arta.methods import trainer_config

    cfg = make_cfg("method=grpo", f"method.args.num_generations={generations}")
    args = trainer_config(cfg, tmp_path)
    assert args.num_generations == generations and args.per_device_train_batch_size == generations
    # set explicitly, the batch is the user's (the paper overlays: 4 completions, groups of 2)
    cfg = make_cfg("method=grpo", "method.args.num_generations=2", "method.args.per_device_train_batch_size=4")
    assert trainer_config(cfg, tmp_path).per_device_train_batch_size == 4
