"""The study's objective by construction: docs/study_objective.md's tables against the overlays and the installed TRL.

Each table row names a TRL config field, the study's value and TRL 1.16's default. A row fails when an overlay that
runs the study leaves the field to TRL (a future TRL default would change the study silently) or sets another value,
when the installed TRL's default is no longer the one written (re-read the table: the study's runs are safe, the
table is stale), or when "ours" is not what the overlay builds.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
import yaml
from trl import GRPOConfig, SFTConfig

from experiments.demo import compose_stages
from lego_arta.methods.common import trainer_args
from tests.conftest import ROOT

DOC = ROOT / "docs" / "study_objective.md"
CELL = re.compile(r"^`([^`]*)`$")


def scalar(text: str) -> Any:
    """A cell's value: YAML's reading, with ``1e-08`` a float (YAML 1.1 wants ``1.0e-08``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def table(heading: str) -> dict[str, dict[str, Any]]:
    """The rows of the table under ``## <heading>``: field -> {study, source, trl, ours} (values parsed as YAML)."""
    section = DOC.read_text().split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, Any]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not CELL.match(cells[0]):
            continue  # the header, the rule line, prose
        field, study, source, trl, ours = cells
        values = [scalar(CELL.match(c).group(1)) for c in (study, trl, ours)]  # type: ignore[union-attr]
        rows[CELL.match(field).group(1)] = dict(zip(["study", "trl", "ours"], values, strict=True), source=source)  # type: ignore[union-attr]
    return rows


GRPO = table("GRPO: VLM-R1's `VLMGRPOTrainer`")
SFT = table("SFT: LLaMA-Factory")


def test_the_tables_are_read():
    # the fields the issue of TRL 1.16 vs VLM-R1 turns on, and a table of SFT: a parse that found nothing would pass
    assert {"loss_type", "beta", "use_bias_correction_kl", "top_k", "scale_rewards", "optim"} <= set(GRPO)
    assert {"optim", "completion_only_loss", "learning_rate"} <= set(SFT)
    assert all(row["source"] for row in [*GRPO.values(), *SFT.values()])


@pytest.mark.parametrize(("rows", "config_cls"), [(GRPO, GRPOConfig), (SFT, SFTConfig)], ids=["grpo", "sft"])
def test_trl_defaults_are_the_ones_written(rows, config_cls):
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls) if f.init}
    for field, row in rows.items():
        assert field in defaults, f"{field}: not a field of trl.{config_cls.__name__} any more"
        assert defaults[field] == row["trl"], (
            f"trl.{config_cls.__name__}.{field} now defaults to {defaults[field]!r}, the table says {row['trl']!r}: "
            "update docs/study_objective.md"
        )


def check_overlay(method_args: Any, built: Any, rows: dict[str, dict[str, Any]], where: str, skip=()) -> None:
    for field, row in rows.items():
        if field in skip:
            continue
        assert field in method_args, (
            f"{where}: method.args.{field} is left to TRL's default (the study's: {row['study']!r})"
        )
        assert method_args[field] == row["study"] == row["ours"], (where, field, method_args[field], row)
        assert getattr(built, field) == row["study"], (where, field)  # what TRL's config holds after __post_init__


@pytest.mark.parametrize(
    ("experiment", "skip"),
    [("paper_grpo_v1", ()), ("paper_grpo_v2", ()), ("grpo_vllm", ("use_vllm",))],
)
def test_paper_grpo_overlays_set_the_study_objective(make_cfg, tmp_path, experiment, skip):
    cfg = make_cfg(f"experiment={experiment}", "method.args.bf16=false")
    check_overlay(cfg.method.args, trainer_args(GRPOConfig, cfg, tmp_path), GRPO, experiment, skip)


def test_grpo_vllm_keeps_the_importance_sampling_correction(make_cfg):
    # the one departure from the study's trainer, set explicitly (docs/study_objective.md, "what vLLM changes")
    args = make_cfg("experiment=grpo_vllm").method.args
    assert args.use_vllm is True and args.vllm_importance_sampling_correction is True


def test_paper_sft_sets_the_study_objective(make_cfg, tmp_path):
    cfg = make_cfg("experiment=paper_sft", "method.args.bf16=false")
    check_overlay(cfg.method.args, trainer_args(SFTConfig, cfg, tmp_path), SFT, "paper_sft")


def test_every_ablation_grpo_stage_sets_the_study_objective(tmp_path):
    _, _, stages = compose_stages(["experiment=ablation", "logger=none"])
    grpo = [s for s in stages if s.name.startswith("grpo_")]
    assert len(grpo) >= 20  # 10 seeds per reward at least
    for stage in grpo:
        check_overlay(stage.cfg.method.args, trainer_args(GRPOConfig, stage.cfg, tmp_path), GRPO, stage.name)


def test_plain_grpo_keeps_trls_defaults(make_cfg):
    # method=grpo alone is TRL's GRPO (method/objective=trl): the study's objective is an overlay's choice
    args = make_cfg("method=grpo").method.args
    assert "loss_type" not in args and "use_bias_correction_kl" not in args


def test_paper_grpo_puts_lora_on_lm_head_as_vlm_r1(make_cfg):
    pattern = make_cfg("experiment=paper_grpo_v1").method.lora.target_modules
    names = ["lm_head", "model.language_model.layers.0.self_attn.q_proj", "model.language_model.layers.0.mlp.up_proj"]
    assert all(re.fullmatch(pattern, n) for n in names)
    assert not re.fullmatch(pattern, "model.visual.blocks.0.attn.qkv")
    assert not re.fullmatch(pattern, "model.language_model.embed_tokens")


def test_the_unscaled_ablation_changes_only_the_std_scaling(tmp_path):
    # experiment=ablation_unscaled repeats ablation.yaml's grpo_extra: it must differ in scale_rewards and nothing else
    def grpo_args(experiment: str) -> dict[str, Any]:
        _, _, stages = compose_stages([f"experiment={experiment}", "logger=none"])
        return {s.name: dict(s.cfg.method.args) for s in stages if s.name.startswith("grpo_")}

    scaled, unscaled = grpo_args("ablation"), grpo_args("ablation_unscaled")
    assert scaled.keys() == unscaled.keys()
    for name, args in scaled.items():
        assert unscaled[name] == args | {"scale_rewards": "none"}, name
        assert args["scale_rewards"] == "group"
