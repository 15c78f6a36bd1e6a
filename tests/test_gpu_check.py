"""make gpu-check on a machine without a GPU: it says so at once; every stage's command composes and passes the
config checks the runs make before loading anything (bf16 off: this CPU cannot validate it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from experiments.gpu_check import stages
from lego_arta.checks import check_config
from tests.conftest import ROOT


def test_without_cuda_it_stops_with_one_line():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu_check.py")], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: make gpu-check needs a CUDA GPU (and make install-gpu); this machine has none"
    )


@pytest.mark.parametrize("vllm", [False, True])
def test_every_stage_composes_and_passes_the_checks(make_cfg, tmp_path, vllm):
    model = tmp_path / "qwen2_5_vl_7b_random"  # what build_7b writes: a dir with config.json
    model.mkdir()
    (model / "config.json").write_text("{}")
    plan = stages(model, tmp_path / "pages", vllm=vllm)
    assert [name for name, _, _ in plan] == ["tiny_bf16", "paper_sft", "paper_grpo"] + ["grpo_vllm"] * vllm
    for name, command, experiment in plan:
        overrides = command[command.index(str(ROOT / "experiments" / "train.py")) + 1 :]
        cfg = make_cfg(*overrides, "++method.args.bf16=false")
        check_config(cfg, tmp_path / name, trains=True)
        assert experiment is None or cfg.experiment_name.startswith(experiment.removesuffix("_v1"))
    # paper_sft under DeepSpeed ZeRO-2, through accelerate launch
    sft = next(command for name, command, _ in plan if name == "paper_sft")
    assert sft[:3] == ["accelerate", "launch", "--config_file"] and sft[3].endswith("zero2.yaml")
