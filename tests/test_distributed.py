"""Several processes on one run: ranks from torchrun or Slurm, one run dir for all, only the main process writes.

The end-to-end test launches ``torchrun --nproc_per_node 2 experiments/train.py ...`` on CPU (gloo), as a user would;
the Slurm tests compose ``hydra/launcher=slurm`` and feed a Slurm task's environment to the mapping, without a cluster.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from omegaconf import OmegaConf
from torch.distributed import TCPStore

from lego_arta import distributed
from lego_arta.errors import ConfigError
from lego_arta.runs import read_jsonl
from tests.conftest import CONF, ROOT
from tests.wandb_files import read_offline_run

LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
SLURM_TASK = {  # task 5 of a 2-node x 4-GPU job, as srun starts it
    "SLURM_JOB_ID": "123456",
    "SLURM_PROCID": "5",
    "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "8",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_JOB_NODELIST": "gpu-[017-018]",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No launcher variables from the machine running the tests."""
    for key in (*LAUNCH_VARS, "TORCHELASTIC_USE_AGENT_STORE", *SLURM_TASK):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # one process: nothing to map
        ({}, {}),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, {}),
        # a task of a multi-node job: global and local rank, world size, rank 0's node, a port from the job id
        (
            SLURM_TASK,
            {
                "RANK": "5",
                "LOCAL_RANK": "1",
                "WORLD_SIZE": "8",
                "LOCAL_WORLD_SIZE": "4",
                "MASTER_ADDR": "gpu-017",
                "MASTER_PORT": str(20000 + 123456 % 20000),
            },
        ),
        # an address and port the job sets itself are kept
        (
            {**SLURM_TASK, "MASTER_ADDR": "head", "MASTER_PORT": "29400"},
            {"MASTER_ADDR": "head", "MASTER_PORT": "29400"},
        ),
    ],
)
def test_slurm_task_env_maps_to_torch_distributed(env, expected):
    mapped = distributed.slurm_env(env)
    assert {k: mapped[k] for k in expected} == expected
    assert bool(mapped) == bool(expected)


def test_torchrun_variables_win_over_slurms(clean_env):
    # torchrun started inside a Slurm job: its RANK / WORLD_SIZE describe the processes, not the Slurm tasks
    env = {**SLURM_TASK, "RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "4"}
    assert distributed.ranks(env) == distributed.Ranks(3, 3, 4)
    assert distributed.ranks(SLURM_TASK) == distributed.Ranks(5, 1, 8)
    assert distributed.ranks({}) == distributed.Ranks(0, 0, 1) and distributed.ranks({}).is_main


def test_the_slurm_launcher_starts_one_task_per_gpu():
    # hydra/launcher=slurm composes (the cluster extra only matters when it submits); one rank per GPU by default
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=8", "paths.output_dir=/tmp/x"],
            return_hydra_config=True,
        )
    assert (cfg.hydra.launcher.gpus_per_node, cfg.hydra.launcher.tasks_per_node) == (8, 8)


def test_a_slurm_jobs_tasks_share_the_run_dir_the_submitter_chose(clean_env):
    # hydra/launcher=slurm: the submitting process resolves the sweep dir (SlurmLauncher.launch), submitit pickles the
    # launcher with that config, and each task rebuilds its job config with load_sweep_config, which copies the
    # resolver cache: the tasks reuse the submitter's time and never ask for their own
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
    master = loader.load_configuration(
        "config", overrides=["hydra/launcher=slurm", "paths.output_dir=/tmp/x"], run_mode=RunMode.MULTIRUN
    )
    chosen = str(master.hydra.sweep.dir)
    time.sleep(1.1)  # a task starts later: its own clock would name another dir
    for key, value in SLURM_TASK.items():
        clean_env.setenv(key, value)  # a task of a multi-GPU job, without torchrun's store: shared_now would raise
    task = pickle.loads(pickle.dumps(master))
    job = loader.load_sweep_config(task, ["seed=1"])
    assert str(job.hydra.sweep.dir) == chosen
    with pytest.raises(ConfigError, match="no torchrun store"):
        distributed.shared_now("%Y-%m-%d_%H-%M-%S")


def test_torchrun_ranks_agree_on_the_first_ranks_time(clean_env):
    # torchrun's agent hosts a key-value store for its workers; here the test hosts it
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    clean_env.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    clean_env.setenv("MASTER_ADDR", "127.0.0.1")
    clean_env.setenv("MASTER_PORT", str(store.port))
    clean_env.setenv("WORLD_SIZE", "2")
    values = []
    for rank in ("1", "0"):  # whichever rank asks first decides
        clean_env.setenv("RANK", rank)
        values.append(distributed.shared_now("%H-%M-%S-%f"))
        time.sleep(0.01)
    assert values[0] == values[1]
    clean_env.setenv("WORLD_SIZE", "1")  # one process: its own clock
    assert distributed.shared_now("%H-%M-%S-%f") != values[0]


def test_each_rank_logs_to_its_own_file(clean_env):
    from lego_arta.config import log_suffix

    assert log_suffix() == ""
    clean_env.setenv("RANK", "1")
    clean_env.setenv("WORLD_SIZE", "2")
    assert log_suffix() == ".rank1"


def test_a_multi_process_launch_refuses_vllm_evaluation(make_cfg, clean_env, tmp_path):
    # vLLM in each training rank would meet the launch's process group: evaluate afterwards in one process
    from lego_arta.checks import check_config

    cfg = make_cfg("method=sft", "eval.backend=vllm")
    check_config(cfg, tmp_path, trains=True)
    clean_env.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"eval\.after_train=false"):
        check_config(cfg, tmp_path, trains=True)


@pytest.mark.slow(seconds=20)
def test_torchrun_two_cpu_processes_make_one_run(tmp_path, cache_dir):
    # as a user types it (plus the quick budget, fewer scenes, and the output and cache dirs of the test); SFT and GRPO
    # in one sweep, so the processes start once: each job is one run of two ranks
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun comes with torch"
    command = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "experiments/train.py",
        "-m",
        "method=sft,grpo",
        "debug=quick",
        "data.synthetic.num_manuals=4",
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={cache_dir}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the workers import this checkout
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    budget = OmegaConf.load(CONF / "debug" / "quick.yaml")
    steps, samples = list(range(1, budget.method.args.max_steps + 1)), 3 * budget.eval.limit  # 3 tasks
    sweeps = list((tmp_path / "default" / "multirun").iterdir())
    assert len(sweeps) == 1, sweeps  # one sweep dir for both ranks
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for job, method in zip(jobs, ["sft", "grpo"], strict=True):
        assert yaml.safe_load((job / "config.yaml").read_text())["method"]["name"] == method
        history = list(read_jsonl(job / "history.jsonl"))
        logged = Counter(row["step"] for row in history if "loss" in row)
        assert logged == dict.fromkeys(steps, 1), logged  # one row per step: written by the main process only
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["eval/num_samples"] == samples  # both shards merged once: eval.limit x 3 tasks
        predictions = list(read_jsonl(job / "predictions.jsonl"))
        assert len(predictions) == samples and not list(job.glob("predictions.rank*"))
        offline = list((job / "wandb").glob("offline-run-*"))
        assert len(offline) == 1, offline  # one W&B run
        run = read_offline_run(offline[0])
        curves = [row for row in run["history"] if "train/loss" in row]
        assert [row["train/global_step"] for row in curves] == steps
        assert (job / "train.log").is_file() and (job / "train.rank1.log").is_file()
        assert "metrics:" in (job / "train.log").read_text()
        assert "metrics:" not in (job / "train.rank1.log").read_text()
        if method == "grpo":
            assert all(f"rewards/{name}/mean" in history[0] for name in ("format", "iou_v2", "state", "grounding"))
            assert all("train/reward" in row for row in curves)
