"""What a user runs: the demo end to end (shrunk), a robust sweep, the README cookbook, the W&B dashboard."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from experiments import demo
from experiments.dashboard import EVAL_KEYS, REWARD_KEYS, build_workspace
from lego_arta.config import compose_config
from lego_arta.report.collect import collect_runs
from tests.conftest import ROOT

STUDY_COLUMNS = ["F1-Theme", "ROUGE", "BLEU", "F1-Object", "IoU", "F1-State", "FPR"]


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reports_every_method(tmp_path, cache_dir):
    shrunk = [
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={cache_dir}",
        "logger=none",
        "data.synthetic.num_manuals=4",
        "eval.limit=2",
        "eval.max_new_tokens=8",
        "eval.bootstrap.samples=100",
        "demo.seeds=[0]",
        "demo.sft=['method.args.max_steps=2']",
        "demo.grpo=['method.args.max_steps=2','method.args.max_completion_length=8']",
    ]
    result = demo.run(shrunk)
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
    for name in ("few-shot", "SFT", "GRPO v1", "GRPO v2"):
        assert name in labels
    for row in rows:
        for column in STUDY_COLUMNS:
            assert re.match(r"^\d+\.\d\d", row[column]), (column, row)
    assert (out / "reward_curves.png").stat().st_size > 10_000
    runs = collect_runs(out)
    assert sorted(runs["method"]) == ["grpo", "grpo", "none", "sft"]


@pytest.mark.slow
def test_a_failing_sweep_job_is_reported_and_the_others_finish(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        str(ROOT / "experiments" / "evaluate.py"),
        "-m",
        "method.adapter=null,/nonexistent/adapter",
        "eval.limit=1",
        "eval.max_new_tokens=4",
        "eval.bootstrap.samples=10",
        "data.synthetic.num_manuals=4",
        "logger=none",
        f"paths.cache_dir={cache_dir}",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0
    assert "/nonexistent/adapter" in proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 2
    assert (jobs[0] / "metrics.json").exists()
    assert (jobs[1] / "config.yaml").exists() and not (jobs[1] / "metrics.json").exists()
    runs = collect_runs(sweep)
    assert sorted(runs["status"]) == ["failed", "ok"]


def _cookbook() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Command cookbook", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands, pending = [], ""
    for raw in block.splitlines():
        line = raw.split("  #", 1)[0].strip() if not raw.strip().startswith("#") else ""
        if not line:
            continue
        pending += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            commands.append(shlex.split(pending))
            pending = ""
    return commands


def test_readme_cookbook_commands_are_real():
    commands = _cookbook()
    assert len(commands) > 10
    makefile = (ROOT / "Makefile").read_text()
    for cmd in commands:
        if cmd[0] == "make":
            assert re.search(rf"^{cmd[1]}:", makefile, re.M), cmd
            continue
        script = next((c for c in cmd if c.startswith("experiments/")), None)
        if script is None:  # wandb sync
            continue
        assert (ROOT / script).exists(), cmd
        # <time> and the like are the user's to fill in
        args = [re.sub(r"<[^>]+>", "filled", c) for c in cmd[cmd.index(script) + 1 :] if c != "-m"]
        if script.endswith(("train.py", "evaluate.py")):
            # the overrides compose as the CLI would (a multirun's lists are split into one job each)
            overrides = [a.split(",")[0] if "=" in a and not a.startswith("hydra/") else a for a in args]
            overrides = [o for o in overrides if not o.startswith(("hydra/", "hydra."))]
            compose_config(overrides, output_dir="/tmp/cookbook")


def test_dashboard_is_defined_as_code_offline():
    workspace = build_workspace("team", "lego-arta", "reward_ablation")
    titles = [panel.title for section in workspace.sections for panel in section.panels]
    assert len(titles) == len({*REWARD_KEYS, *EVAL_KEYS}) + 4
    assert "Group = 'reward_ablation'" in str(workspace.runset_settings.filters)
