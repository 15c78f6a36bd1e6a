"""Every command of the README's cookbook, run as a user types it: in a fresh copy of the repo, in a clean environment.

No ``hydra.sweep.dir``, no environment variable, no path the README does not show: the only additions are the
README's own budget, ``debug=quick`` (appended; the values a command sets itself win over it, as Hydra applies
command-line values after config groups), and ``<time>`` placeholders filled from the runs made before. Commands that
need what this machine lacks (a GPU, the real model and data, a W&B account, a Slurm cluster) are listed in ``NEEDS``
with their reason; each must fail within seconds with a clear last line. The exit code and wall time of every command
are printed (``pytest -s``) and kept in ``cookbook.json``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.cookbook]  # make test-cookbook; CI runs it after make test

# command substring -> (what it needs that this machine lacks, a pattern its last lines must show)
NEEDS: dict[str, tuple[str, str]] = {
    "logger=wandb_online": ("a W&B account and the network", r"error: W&B online: No API key configured"),
    "wandb sync": ("a W&B account and the network", r"No API key configured"),
    "make dashboard": ("a W&B account and the network", r"error: W&B: No API key configured"),
    "evaluate.py experiment=paper_baseline": ("the real model and data", r"error: .*/data/"),
    "prepare_data.py data=lego_arta data.root": (
        "the real LEGO-ARTA download",
        r"error: data\.root: /data/arta is not a dir",
    ),
    "data.hub=": (
        "the dataset in the Hugging Face cache",
        r"error: data\.hub=\S+: not in the Hugging Face cache",
    ),
    "data=refcoco data.root": ("a local copy of lmms-lab/RefCOCO", r"error: data\.root: /data/RefCOCO is not a dir"),
    "data=vlm_r1_rec data.root": (
        "VLM-R1's referring files and COCO images",
        r"error: data\.root: /data/rec_jsons_processed is not a dir",
    ),
    "repo_id=me/lego-arta-grpo": ("the network and a Hugging Face token", r"error: .*nothing uploaded"),
    "method.adapter=me/lego-arta-grpo": (
        "the adapter on the Hugging Face Hub",
        r"error: method\.adapter=me/lego-arta-grpo: not in the Hugging Face cache",
    ),
    "accelerate launch": ("a GPU and the gpu extra (DeepSpeed)", r"DeepSpeed is not installed"),
    "make gpu-check": ("a CUDA GPU", r"error: make gpu-check needs a CUDA GPU"),
    "make paper": ("the real model and data", r"4 failed job\(s\) in this sweep"),
    "hydra/launcher=slurm": ("a Slurm cluster (the dev extra has the launcher)", r'Could not detect "srun"'),
}
FAST_S = 60  # a command that cannot work here must say so within this many seconds
QUICK = "debug=quick"  # the README's budget for a quick check: conf/debug/quick.yaml


def cookbook(readme: str) -> list[str]:
    """The cookbook's commands as typed (continuation lines joined, trailing comments dropped)."""
    block = readme.split("## Command cookbook", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands, pending = [], ""
    for raw in block.splitlines():
        line = "" if raw.strip().startswith("#") else raw.split("  #", 1)[0].strip()
        if not line:
            continue
        pending += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            commands.append(pending.strip())
            pending = ""
    return commands


def with_budget(command: str) -> str:
    """``command`` with the quick budget at its end (inside ``ARGS="..."`` for make targets), where it runs a model."""
    words = shlex.split(command)
    env = list(itertools.takewhile(lambda w: re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w), words))  # VAR=value make ...
    words = words[len(env) :]
    if words[0] == "make":
        if words[1] not in ("demo", "ablation", "sweep", "paper"):
            return command
        args = next((w.removeprefix("ARGS=") for w in words if w.startswith("ARGS=")), "")
        rest = [w for w in words if not w.startswith("ARGS=")]
        return shlex.join([*env, *rest, f"ARGS={' '.join([args, QUICK]).strip()}"])
    script = next((w for w in words if w.startswith("experiments/")), "")
    if script.endswith(("train.py", "evaluate.py", "demo.py")):
        return f"{command} {QUICK}"
    return command


def fill(command: str, root: Path) -> str:
    """Fill ``<time>`` in ``outputs/...<time>/rest`` with the newest such folder that has ``rest`` (an SFT run for a
    command about SFT), as a user would pick one of their runs."""

    def newest(match: re.Match[str]) -> str:
        prefix, rest = match.group(1), match.group(2)
        dirs = sorted(p for p in (root / prefix).glob("*") if p.is_dir() and (p / rest).exists())
        if "sft" in command or "adapter" in rest:
            dirs = [p for p in dirs if (p / "config.yaml").is_file() and _method(p) == "sft"]
        assert dirs, f"no run under {prefix} for {command}"
        return f"{prefix}{dirs[-1].name}" + (f"/{rest}" if rest else "")

    return re.sub(r"(outputs/[\w/]+/)<time>/?([\w./]*)", newest, command)


class Clone:
    """A fresh copy of the working tree with its own ``.venv`` that reuses this one's packages (no network)."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root, self.home, self.results = root, home, []
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        for name in filter(None, files.split("\0")):
            if (ROOT / name).is_file():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, root / name)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
        purelib = sysconfig.get_paths(vars={"base": str(root / ".venv"), "platbase": str(root / ".venv")})["purelib"]
        # the clone's own code first, then this environment's packages (the editable finder of the original comes
        # after the clone on sys.path, so `lego_arta` is the clone's)
        Path(purelib, "_lego_arta_clone.pth").write_text(
            f"{root}\nimport site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n"
        )
        # the console scripts the commands call by name, as pip puts them in a user's venv: their processes must run
        # the clone's python (torchrun starts its workers with its own interpreter)
        for name, module in [("torchrun", "torch.distributed.run")]:
            script = root / ".venv" / "bin" / name
            script.write_text(f"#!{root / '.venv' / 'bin' / 'python'}\nfrom {module} import main\nmain()\n")
            script.chmod(0o755)
        makefile = (root / "Makefile").read_text()
        spec = re.search(r"^TORCH_SPEC \?= (.*)$", makefile, re.M).group(1)  # type: ignore[union-attr]
        extras = re.search(r"^EXTRAS \?= (.*)$", makefile, re.M).group(1)  # type: ignore[union-attr]
        stamp = subprocess.run(
            ["sh", "-c", f"printf '%s|%s' '{spec}' '{extras}' | cksum | cut -d' ' -f1"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        (root / ".venv" / f".installed-{stamp}").touch()  # `make` sees an installed .venv, as after `make install`
        tools = Path(sys.executable).parent  # wandb, accelerate: console scripts of the installed packages
        self.env = {
            "PATH": f"{root / '.venv' / 'bin'}:{tools}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
        }

    def run(self, command: str, timeout: float = 900) -> tuple[int, str, float]:
        """Run ``command`` with bash from the clone's root (globs, quotes as in a terminal)."""
        start = time.perf_counter()
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        wall = time.perf_counter() - start
        self.results.append({"command": command, "rc": proc.returncode, "wall_s": round(wall, 1)})
        return proc.returncode, proc.stdout + proc.stderr, wall


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Any:
    repo = Clone(tmp_path_factory.mktemp("clone"), tmp_path_factory.mktemp("home"))
    yield repo
    lines = [f"{r['rc']:>3}  {r['wall_s']:>6.1f} s  {r['command']}" for r in repo.results]
    print("\nexit  wall      command\n" + "\n".join(lines))
    (repo.root / "cookbook.json").write_text(json.dumps(repo.results, indent=2))


def last_lines(output: str, n: int = 6) -> str:
    return "\n".join([line for line in output.splitlines() if line.strip()][-n:])


def test_make_report_before_any_sweep_says_so_and_writes_nothing(clone: Clone) -> None:
    # a newcomer whose sweep failed (or who has not run one): no scan of the repo, no files in its root
    before = set(os.listdir(clone.root))
    rc, out, _ = clone.run("make report")
    assert rc != 0
    assert "error: no multirun under" in out and "make sweep" in out
    assert set(os.listdir(clone.root)) - before <= {"outputs", ".cache"}
    assert not list(clone.root.glob("report.*")) and not (clone.root / "reward_curves.png").exists()


def test_every_cookbook_command_works_as_typed(clone: Clone) -> None:
    readme = (clone.root / "README.md").read_text()
    commands = cookbook(readme)
    assert len(commands) >= 20
    assert f"add `{QUICK}`" in readme, "the README's cookbook must teach the budget the test adds"
    failures = []
    for typed in commands:
        need = next((v for k, v in NEEDS.items() if k in typed), None)
        command = fill(with_budget(typed), clone.root)
        generators = _generators(clone.root, command) if "hydra.run.dir=" in command else None
        rc, out, wall = clone.run(command)
        if need is None:
            if rc != 0:
                failures.append(f"{command}\n  exit {rc}:\n{last_lines(out, 15)}")
            elif generators is not None:  # the resumed run trained on: its predictions are new, not the old ones
                assert "resuming from" in out and generators != _generators(clone.root, command), out[-3000:]
        else:
            reason, pattern = need
            if rc == 0 or wall > FAST_S or not re.search(pattern, last_lines(out)):
                failures.append(f"{command} (needs {reason}): exit {rc} in {wall:.0f} s:\n{last_lines(out)}")
    assert not failures, "\n\n".join(failures)


def test_the_central_multirun_ran_every_job_with_its_own_log(clone: Clone) -> None:
    # `-m method=sft,grpo reward=v1,v2 seed=0,1,2` ran above (as typed, plus the budget): 12 jobs, one sweep dir
    # (other cookbook sweeps land beside it; Hydra's multirun.yaml says which one is which)
    sweeps = [
        p
        for p in sorted((clone.root / "outputs" / "default" / "multirun").iterdir())
        if "reward=v1,v2" in (p / "multirun.yaml").read_text()
        and "method=sft,grpo" in (p / "multirun.yaml").read_text()
    ]
    assert len(sweeps) == 1, sweeps
    jobs = [p for p in sweeps[0].iterdir() if p.is_dir() and p.name.isdigit()]
    assert len(jobs) == 12
    for job in jobs:
        assert (job / "metrics.json").is_file()
        log = (job / "train.log").read_text()
        assert f"run dir: {job}" in log and "metrics:" in log
    # the report counts SFT once per seed: the reward does not change SFT
    report = (sweeps[0] / "report.md").read_text()
    assert re.search(r"\| SFT \(LoRA r8\) +\| +3 \|", report), report
    assert "SFT (LoRA r8): 6 runs, 3 seeds" in report


def test_the_family_sweep_reports_a_row_per_model(clone: Clone) -> None:
    # `-m model=tiny_qwen2_5_vl,...,tiny_qwen3_5 method=sft,grpo` ran above: 8 jobs, a Table 1 row per model and method
    multirun = clone.root / "outputs" / "default" / "multirun"
    sweeps = [
        p
        for p in sorted(multirun.iterdir())
        if "model=tiny_qwen2_5_vl,tiny_internvl3,tiny_qwen3_vl,tiny_qwen3_5" in (p / "multirun.yaml").read_text()
    ]
    assert len(sweeps) == 1, sweeps
    assert sorted(p.name for p in sweeps[0].iterdir() if (p / "metrics.json").is_file()) == [str(i) for i in range(8)]
    rc, out, _ = clone.run(f"python experiments/report.py sweep_dir={sweeps[0]}")
    assert rc == 0, out[-3000:]
    report = (sweeps[0] / "report.md").read_text()
    for model in ("tiny_qwen2_5_vl", "tiny_internvl3", "tiny_qwen3_vl", "tiny_qwen3_5"):
        for method in ("SFT (LoRA r8)", "GRPO v2 (LoRA r8)"):
            assert re.search(rf"\| {model}: {re.escape(method)} +\|", report), report


def test_a_failing_sweep_job_leaves_its_reason_and_the_others_finish(clone: Clone) -> None:
    rc, out, _ = clone.run(f"python experiments/evaluate.py -m method.adapter=null,/nonexistent/adapter {QUICK}")
    assert rc != 0
    # the failed job says so when it fails, and the sweep lists it at its end
    assert "FAILED job 1 (method.adapter=/nonexistent/adapter" in out
    assert re.search(r"1 failed job\(s\) in this sweep:\n  job 1 .*no adapter_config.json", out)
    sweep = sorted((clone.root / "outputs" / "default" / "multirun").iterdir())[-1]
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "1" / "metrics.json").exists()
    log = (sweep / "1" / "evaluate.log").read_text()
    assert "Traceback (most recent call last)" in log and "no adapter_config.json" in log
    rc, out, _ = clone.run("make report")
    assert rc == 0
    assert re.search(r"## Failed runs \(1\)\n\n- `1`: none, seed 0: .*no adapter_config.json.* \(evaluate.log\)", out)


def _method(run_dir: Path) -> str:
    return str(yaml.safe_load((run_dir / "config.yaml").read_text())["method"]["name"])


def _generators(root: Path, command: str) -> set[str]:
    run_dir = root / re.search(r"hydra\.run\.dir=(\S+)", command).group(1)  # type: ignore[union-attr]
    path = run_dir / "predictions.jsonl"
    return {json.loads(line)["generator"] for line in path.read_text().splitlines()} if path.exists() else set()


def test_no_run_leaves_wandb_files_in_the_home_dir(clone: Clone) -> None:
    # every command above ran with this HOME (make demo, sweeps, GRPO with rollout tables): W&B staged its table
    # images and wrote its cache and debug logs inside each run's dir (<run dir>/wandb/{data,cache}), none here
    home = Path(clone.env["HOME"])
    left = [p for d in (".local/share/wandb", ".cache/wandb") for p in (home / d).rglob("*") if p.is_file()]
    assert not left, left[:5]
    staged = list((clone.root / "outputs" / "demo").glob("*/wandb/data/artifacts/staging/*"))
    assert staged  # make demo's tables were staged, inside its stages' run dirs
