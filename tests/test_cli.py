"""Config mistakes fail in seconds, before data or model load, as one ``error: ...`` line with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lego_arta.checks import check_config
from lego_arta.errors import ConfigError, UserError
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # a misspelled TRL field added with +: named, with the field it probably meant
        (
            ["method=grpo", "+method.args.num_generation=4"],
            r"method\.args\.num_generation: not a field of "
            r"trl\.GRPOConfig \(did you mean method\.args\.num_generations",
        ),
        # TRL's own consistency rule, checked before anything loads (the README's old example)
        (
            ["method=grpo", "method.args.per_device_train_batch_size=2", "method.args.num_generations=4"],
            r"generation_batch_size \(2\) must be divisible by "
            r"num_generations \(4\)",
        ),
        # a task outside data.tasks
        (["method=sft", "method.tasks=[objekt]"], r"method\.tasks: \['objekt'\] not in data\.tasks"),
        # the hybrid overlay without its adapter: no silent fresh LoRA
        (["experiment=hybrid_sft_grpo"], r"set method\.adapter=<SFT run dir>/adapter"),
        # an unknown reward weight key
        (["method=grpo", "+reward.weights.iuo=1"], r"unknown reward weight key 'iuo'"),
        # a value of the wrong type, which the TRL dataclass would take and the Trainer trip over after loading
        (["method=sft", "method.args.max_steps=2x"], r"method\.args\.max_steps='2x': trl\.SFTConfig wants a number"),
        # an image budget that contradicts itself (it used to fail after the model loaded, in a 33-line traceback)
        (["model.max_pixels=10"], r"model\.max_pixels=10 is below model\.min_pixels=3136"),
    ],
)
def test_config_mistakes_are_user_errors_before_anything_loads(make_cfg, tmp_path, overrides, message):
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg, tmp_path / "run", trains=True)
    assert not (tmp_path / "run").exists()  # nothing written, nothing loaded


def test_a_good_config_passes_the_check_and_none_ignores_method_args(make_cfg, tmp_path, caplog):
    check_config(
        make_cfg("method=grpo", "method.args.num_generations=4", "method.args.per_device_train_batch_size=4"),
        tmp_path,
        trains=True,
    )
    # the base composition of `-m method=sft,grpo method.args.max_steps=2` has method=none: it composes and warns
    check_config(make_cfg("method.args.max_steps=2"), tmp_path, trains=False)
    assert "method=none trains nothing: ignoring method.args (max_steps)" in caplog.text


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (
            ["method=grpo", "method.args.num_generation=4"],
            "method.args.num_generation: no such key. Did you mean method.args.num_generations?",
        ),
        (["reward.iou.penaltty=0.3"], "reward.iou.penaltty: no such key. Did you mean reward.iou.penalty?"),
        # a sweep: the keys of its first choice count, as Hydra composes that one first
        (["-m", "method=sft,grpo", "method.args.max_step=2"], "method.args.max_step: no such key. Did you mean "),
        (["method.tasks=[objekt]"], "method.tasks: no such key. Keys of method: adapter, args, name"),
        (["method=grpo", "method.args.num_generations=4"], None),  # a good override: no hint
        (["+method.args.num_generation=4"], None),  # an added key is for check_config to judge
        # Hydra's own keys are not in the job's config: a run that fails later must not blame them
        (["method=sft", "resume=true", "hydra.run.dir=outputs/default/runs/x"], None),
    ],
)
def test_a_misspelled_override_names_the_keys_nearby(argv, hint):
    from lego_arta.cli import unknown_key_hint

    got = unknown_key_hint(argv, "config")
    assert got == hint if hint is None else got is not None and got.startswith(hint), got


def test_user_errors_share_one_base_class():
    from lego_arta.data.records import DataError
    from lego_arta.errors import InputError, MissingInputError
    from lego_arta.models.loading import ModelPathError

    for cls in (ConfigError, MissingInputError, InputError, DataError, ModelPathError):
        assert issubclass(cls, UserError), cls


@pytest.mark.slow  # a Python + torch start-up per command
@pytest.mark.parametrize(
    ("args", "last_line", "started"),
    [
        (["method=sft", "method.tasks=[objekt]"], "error: method.tasks: ['objekt'] not in data.tasks", True),
        (["model.path=/nonexistent/model"], "error: model.path=/nonexistent/model: no such directory", True),
        # a compute node without network (HF_HUB_OFFLINE=1) and a model not in the cache: one line, before the data
        (
            ["model=qwen2_5_vl_7b"],
            "error: model.path=Qwen/Qwen2.5-VL-7B-Instruct: not in the Hugging Face cache",
            True,
        ),
        # Hydra's own composition error ("not in struct"), then the keys nearby; no run starts
        (
            ["reward.iou.penaltty=0.3"],
            "error: reward.iou.penaltty: no such key. Did you mean reward.iou.penalty?",
            False,
        ),
    ],
)
def test_the_entry_script_prints_one_error_line_and_exits_2(tmp_path, args, last_line, started):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LEGO_ARTA_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "train.py"), *args, "logger=none"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(last_line)
    assert "Traceback" not in proc.stderr
    # the run's own log keeps the traceback
    logs = list(Path(tmp_path, "outputs").rglob("train.log"))
    assert len(logs) == started
    assert all("Traceback (most recent call last)" in log.read_text() for log in logs)
    if "model=qwen2_5_vl_7b" in args:  # the hint names the cache it looked in and the ways out
        assert f"({tmp_path}/.cache/huggingface/hub)" in proc.stderr and "huggingface-cli download" in proc.stderr
        assert not list(Path(tmp_path).rglob("split_summary.json"))  # no data was loaded


@pytest.mark.parametrize(
    ("script", "args", "last_line"),
    [
        ("train.py", ["reward.iou.penaltty=0.3"], "error: reward.iou.penaltty: no such key."),
        ("train.py", ["--cfg", "job", "--package", "reward.iou"], "count_bonus: 0.1"),
        ("evaluate.py", ["--cfg", "job", "--package", "eval.val"], "mode: max"),
        ("merge_adapter.py", ["adapter=/nonexistent"], "error: adapter=/nonexistent: no adapter_config.json"),
    ],
)
def test_a_config_error_or_cfg_comes_before_the_model_stack_is_imported(tmp_path, script, args, last_line):
    # torch and transformers take seconds to import: an override typo, --cfg and a missing path say so without them
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "experiments" / script), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LEGO_ARTA_ROOT": str(tmp_path)},
        cwd=tmp_path,
    )
    timed = "import time:"
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith(timed)}
    assert "hydra" in imported and not {"torch", "transformers"} & imported
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if not line.startswith(timed)]
    assert any(line.startswith(last_line) for line in lines[-3:]), lines[-3:]


def test_a_hub_id_is_found_in_a_cache_laid_out_as_huggingface_hub_lays_it_out(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from lego_arta.models.loading import ModelPathError, check_hub_model

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelPathError, match=r"model\.path=org/vlm: not in the Hugging Face cache .* HF_HUB_OFFLINE"):
        check_hub_model("org/vlm")
    # models--org--vlm/snapshots/<commit>/config.json, and refs/main naming that commit
    repo = tmp_path / "models--org--vlm"
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    (repo / "snapshots" / "0123abc" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    check_hub_model("org/vlm")  # found: no error, no network


def test_an_adapter_dir_without_an_adapter_fails_before_anything_loads(make_cfg, tmp_path):
    from lego_arta.errors import MissingInputError

    for method in ("none", "grpo"):
        cfg = make_cfg(f"method={method}", f"method.adapter={tmp_path / 'nope'}")
        with pytest.raises(MissingInputError, match=r"method\.adapter=.*nope: no adapter_config\.json"):
            check_config(cfg, tmp_path / "run", trains=method != "none")


def test_a_launcher_whose_extra_is_missing_names_the_extra():
    # without the cluster extra, lego_arta.config stands in for the Slurm launcher's config: selecting it says what to
    # install (the dev extra installs the launcher, so the stand-in is checked through its resolver)
    from omegaconf import OmegaConf

    node = OmegaConf.create({"_target_": "${lego_arta.needs_extra:cluster,hydra_plugins.not_installed.SlurmLauncher}"})
    with pytest.raises(Exception, match=r"not installed .*pip install -e '\.\[cluster\]'"):
        OmegaConf.to_container(node, resolve=True)
