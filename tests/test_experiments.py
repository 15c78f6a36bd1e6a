"""What a user runs: the demo end to end (shrunk), the W&B dashboard (the README cookbook: tests/test_cookbook.py)."""

from __future__ import annotations

import re

import pytest
import yaml
from omegaconf import OmegaConf

from experiments import demo
from experiments.dashboard import EVAL_KEYS, REWARD_KEYS, SIGNAL_KEYS, build_workspace
from lego_arta.report.collect import collect_runs
from lego_arta.rewards import REWARDS
from lego_arta.runs import read_jsonl, read_provenance
from lego_arta.sample_metrics import STUDY_METRICS
from tests.conftest import CONF

STUDY_COLUMNS = ["F1-Theme", "ROUGE", "BLEU", "F1-Object", "IoU", "F1-State", "FPR"]


def shrunk(tmp_path, cache_dir) -> list[str]:
    """The stage plan of experiments/demo.py as `make demo ARGS="debug=quick demo.seeds=[0]"` runs it, with outputs
    under tmp_path and fewer scenes."""
    return [
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={cache_dir}",
        "logger=none",
        "debug=quick",
        "data.synthetic.num_manuals=4",
        "demo.seeds=[0]",
    ]


@pytest.mark.parametrize("experiment", ["demo", "ablation"])
def test_the_quick_budget_wins_over_every_stage_size(tmp_path, experiment):
    # `make demo ARGS=debug=quick`: each stage sets its own sizes (demo.yaml: SFT 400 steps, GRPO 60) and the budget
    # wins over them, as it wins over an overlay's values in a plain run; a value typed after it wins over it
    budget = OmegaConf.load(CONF / "debug" / "quick.yaml")
    keys = demo.budget_keys(["debug=quick"])
    assert {"method.args.max_steps", "eval.limit", "eval.max_new_tokens"} <= keys
    typed = [f"experiment={experiment}", f"paths.log_dir={tmp_path}", "demo.seeds=[0]"]
    _, _, quick = demo.compose_stages([*typed, "debug=quick"])
    assert [stage.name for stage in quick] == ["baseline", "sft", "grpo_v1_s0", "grpo_v2_s0"]
    for stage in quick:
        assert {key: OmegaConf.select(stage.cfg, key) for key in keys} == {
            key: OmegaConf.select(budget, key) for key in keys
        }, stage.name
    _, _, own = demo.compose_stages([*typed, "debug=quick", "method.args.max_steps=5"])
    assert all(stage.cfg.method.args.max_steps == 5 for stage in own)
    # without the budget the stages keep their own sizes (the check above can fail)
    _, _, full = demo.compose_stages(typed)
    assert all(stage.cfg.method.args.max_steps > budget.method.args.max_steps for stage in full[1:])


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reports_every_method(tmp_path, cache_dir):
    result = demo.run(shrunk(tmp_path, cache_dir))
    assert result["failed"] == {}
    out = tmp_path / "demo"
    assert set(result["timings"]) == {"baseline", "sft", "grpo_v1_s0", "grpo_v2_s0"}
    lines = (out / "report.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("|") and "F1-Theme" in line)
    cells = [c.strip() for c in lines[header].strip("|").split("|")]
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(cells, [c.strip() for c in line.strip("|").split("|")], strict=True)))
    # one row per method / reward of the demo, every study metric filled
    assert len(rows) == 4
    labels = " ".join(next(iter(r.values())) for r in rows)
    for name in ("few-shot", "SFT (full fine-tuning)", "GRPO v1 (LoRA r8, from fine-tuned model)", "GRPO v2"):
        assert name in labels
    # the demo's SFT trains the whole model; each GRPO stage puts LoRA r8 on that model
    assert (out / "sft" / "model" / "model.safetensors").is_file() and not (out / "sft" / "adapter").exists()
    assert (out / "grpo_v2_s0" / "adapter" / "adapter_config.json").is_file()
    for row in rows:
        for column in STUDY_COLUMNS:
            assert re.match(r"^\d+\.\d\d", row[column]), (column, row)
    assert (out / "reward_curves.png").stat().st_size > 10_000
    runs = collect_runs(out)
    assert sorted(runs["method"]) == ["grpo", "grpo", "none", "sft"]
    # every stage names what produced its digits; the GRPO stages ran side by side (demo.workers=2), one thread each
    assert runs["machine"].notna().all() and runs["numeric_path"].notna().all()
    assert all(read_provenance(out / name)["threads"] == 1 for name in ("grpo_v1_s0", "grpo_v2_s0"))
    assert "### Machines" in (out / "report.md").read_text()


@pytest.mark.slow
def test_ablation_teaches_pixels_then_asks_for_the_grid(tmp_path, cache_dir):
    result = demo.run(["experiment=ablation", *shrunk(tmp_path, cache_dir)])
    assert result["failed"] == {}
    out = tmp_path / "ablation"
    assert set(result["timings"]) == {"baseline", "sft", "grpo_v1_s0", "grpo_v2_s0"}
    data = {name: yaml.safe_load((out / name / "config.yaml").read_text())["data"] for name in result["timings"]}
    frames = {name: (node["box_frame"], node["directive_frame"]) for name, node in data.items()}
    # SFT teaches pixel answers under the study's grid directive; GRPO asks for the grid and is shown nothing else
    assert frames == {
        "baseline": ("grid", "grid"),
        "sft": ("native", "grid"),
        "grpo_v1_s0": ("grid", "grid"),
        "grpo_v2_s0": ("grid", "grid"),
    }
    sft_rows = read_jsonl(out / "sft" / "train.jsonl")
    assert sft_rows and {row["task"] for row in sft_rows} == {"object"}
    # the processor sees the 112 px scenes as 224 x 224 frames: every sample carries that frame for the frame rule
    for name in ("sft", "grpo_v2_s0"):
        rows = read_jsonl(out / name / "predictions.jsonl")
        assert rows and all(row["image_size"] == [224, 224] for row in rows)
    history = [row for row in read_jsonl(out / "grpo_v1_s0" / "history.jsonl") if "reward" in row]
    assert history and all("frac_reward_zero_std" in row for row in history)
    assert any(key.endswith("/frac_varying_groups") for key in history[0])
    report = (out / "report.md").read_text()
    assert "## What moved the advantage" in report and "## Reward ablation: v2 against v1" in report


def test_dashboard_is_defined_as_code_offline():
    workspace = build_workspace("team", "lego-arta", "reward_ablation")
    titles = [panel.title for section in workspace.sections for panel in section.panels]
    assert len(titles) == len({*REWARD_KEYS, *EVAL_KEYS, *SIGNAL_KEYS}) + 4
    # the keys come from the registries: a panel per registered reward and per study metric
    assert {f"rewards/{name}" for name in REWARDS} | set(STUDY_METRICS) <= set(titles)
    # what moved GRPO's advantage: TRL's zero-std groups, the varying groups per reward, the grid share
    assert {"frac_reward_zero_std", "frame/grid_share"} | {f"rewards/{n}/frac_varying_groups" for n in REWARDS} <= set(
        titles
    )
    assert "Group = 'reward_ablation'" in str(workspace.runset_settings.filters)


def test_generalisations_chain_starts_each_arm_where_its_question_needs(tmp_path):
    # make generalisation: the pre-stage on the referring set, then LEGO SFT from the base and from the pre-stage's
    # model, and GRPO from it (never from SFT); every stage scored on the referring set too
    _, out, stages = demo.compose_stages(["experiment=generalisation", f"paths.log_dir={tmp_path}"])
    names = [s.name for s in stages]
    arms = ("sft_base", "sft_pre", "grpo_pre")
    assert names == ["baseline", "prestage", *(f"{arm}_s{seed}" for arm in arms for seed in range(5))]
    by = {s.name: s for s in stages}
    assert by["prestage"].cfg.data.name == "refcoco_synthetic" and by["prestage"].cfg.data.splits.train == "train"
    assert by["prestage"].cfg.method.lora is None  # a fully fine-tuned model: the arms start from its model/
    for seed in range(5):
        base, pre, grpo = (by[f"{arm}_s{seed}"] for arm in arms)
        assert base.cfg.model.path is None and base.cfg.seed == seed and base.cfg.data.name == "synthetic"
        assert pre.cfg.model.path == grpo.cfg.model.path == str(out / "prestage" / "model")
        assert (pre.cfg.method.name, grpo.cfg.method.name) == ("sft", "grpo") and not grpo.cfg.method.adapter
        assert pre.cfg.method.lora.r == grpo.cfg.method.lora.r == 8  # the study's recipe on both arms
    assert {s.wave for s in stages if s.name.startswith(("sft_pre", "grpo_pre"))} == {1}
    assert all(list(s.cfg.eval.extra) == ["referring"] for s in stages)
    assert all(s.cfg.eval.extra.referring.splits.test == "val" for s in stages)  # never the pre-stage's train split


def test_a_chain_stage_starts_only_from_an_earlier_unseeded_stage(tmp_path):
    _, out, stages = demo.compose_stages(["experiment=prestage_grounding", f"paths.log_dir={tmp_path}"])
    assert [(s.name, s.wave, s.cfg.data.name) for s in stages] == [
        ("prestage", 0, "refcoco_synthetic"),
        ("grpo", 1, "synthetic"),
    ]
    assert stages[1].cfg.model.path == str(out / "prestage" / "model")
    lora_prestage = ["experiment=prestage_grounding", f"paths.log_dir={tmp_path}", "demo.prestage=['method=sft']"]
    _, _, stages = demo.compose_stages(lora_prestage)  # a LoRA pre-stage: stage 2 loads its adapter
    assert stages[1].cfg.method.adapter == str(out / "prestage" / "adapter") and stages[1].cfg.model.path is None
    backwards = ["experiment=prestage_grounding", f"paths.log_dir={tmp_path}", "demo.chain.0.from=grpo"]
    with pytest.raises(ValueError, match="stage prestage starts from grpo, not an earlier unseeded stage"):
        demo.compose_stages(backwards)
