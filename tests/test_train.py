"""End-to-end training with the tiny model on synthetic scenes: SFT and GRPO through TRL, LoRA or full fine-tuning,
resumable."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from experiments import train as train_script
from lego_arta.data import build_dataset, load_data
from lego_arta.errors import ConfigError
from lego_arta.methods.sft import build_sft_trainer
from lego_arta.models import load_model
from lego_arta.runs import read_jsonl
from lego_arta.tracking import Tracker
from tests.conftest import ROOT
from tests.wandb_files import read_offline_run

pytestmark = pytest.mark.slow

# the quick budget (conf/debug/quick.yaml) on fewer scenes: small enough for CI on 2 CPUs; tests that evaluate say so
FAST = ["debug=quick", "data.synthetic.num_manuals=4", "eval.after_train=false"]
GRPO = [
    "method=grpo",
    "method.args.per_device_train_batch_size=2",
    "method.args.num_generations=2",
    "method.args.max_completion_length=8",
    "method.args.save_steps=100",
]


def _sft_trainer(cfg, tmp_path):
    data = load_data(cfg)
    model, processor = load_model(cfg.model, cfg.paths.cache_dir)
    train_ds = build_dataset(data.train, data.train, cfg.data, int(cfg.seed))
    return build_sft_trainer(cfg, model, processor, train_ds, tmp_path, Tracker()), processor, data


def test_sft_masks_prompt_and_images_out_of_the_loss(make_cfg, tmp_path):
    cfg = make_cfg("method=sft", *FAST)
    trainer, processor, _ = _sft_trainer(cfg, tmp_path)
    rows = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer.data_collator(rows)
    image_id = trainer.model.config.image_token_id
    for i, row in enumerate(rows):
        labels = batch["labels"][i]
        kept = labels[labels != -100]
        answer = row["completion"][0]["content"][0]["text"]
        # only the answer (and the end-of-turn token) is learned; no image token, no prompt text
        assert processor.tokenizer.decode(kept).strip() == answer + "<|im_end|>"
        assert not (kept == image_id).any()
        assert (labels == -100).sum() > (labels != -100).sum()


def test_sft_lowers_the_loss_on_a_fixed_batch(make_cfg, tmp_path):
    cfg = make_cfg("method=sft", *FAST, "method.args.max_steps=15", "method.args.learning_rate=3e-3")
    trainer, _, _ = _sft_trainer(cfg, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(model(**batch).loss)

    before = loss()
    trainer.train()
    after = loss()
    assert after < before - 0.1, (before, after)


def test_grpo_logs_every_reward_curve_to_offline_wandb(make_cfg, tmp_path):
    reward = "v1"  # v2 differs only in the reward's constants (tests/test_configs.py builds both)
    # the object task only: every rollout row then has reference boxes to draw
    cfg = make_cfg(
        *GRPO, *FAST, f"reward={reward}", "logger=wandb", "logger.rollouts_every=1", "method.tasks=[object]"
    )
    train_script.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    steps = list(range(1, cfg.method.args.max_steps + 1))
    iou = f"iou_{reward}"
    names = ["format", iou, "label_rouge", "state", "grounding"]
    history = [row for row in read_jsonl(run_dir / "history.jsonl") if "reward" in row]
    assert [row["step"] for row in history] == steps
    for name in names:
        assert f"rewards/{name}/mean" in history[0]
    # GRPO's signal per step: TRL's share of groups with equal summed rewards, and ours per component (format applies
    # to every task, so every step has it; a group of 2 either varies or not)
    for row in history:
        assert {"frac_reward_zero_std", "entropy", "rewards/format/frac_varying_groups"} <= set(row)
        assert row["rewards/format/frac_varying_groups"] in (0.0, 1.0)
    # the offline W&B run holds the same curves (read back from its files, no account needed)
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    run = read_offline_run(offline[0])
    curves = [row for row in run["history"] if "train/reward" in row]
    assert [row["train/global_step"] for row in curves] == steps
    for name in names:
        assert all(f"train/rewards/{name}/mean" in row for row in curves)
    assert all("train/kl" in row and "train/completions/mean_length" in row for row in curves)
    assert all("train/rewards/format/frac_varying_groups" in row for row in curves)
    # the rollouts of every step: a W&B table with the image and its box layers, each reward and the advantage
    tables = [row["train/rollouts/path"] for row in run["history"] if "train/rollouts/path" in row]
    assert len(tables) == len(steps)  # (the reader flattens the table reference into its fields)
    table = json.loads((offline[0] / "files" / tables[-1]).read_text())
    assert table["columns"] == ["step", "id", "task", "image", "completion", *names, "advantage"]
    # (offline, W&B keeps the image cells in the table's artifact; the box layers are checked in
    # test_predictions_table.py). W&B stages those images under this run's dir, not in the home dir: every staged
    # path the .wandb file records (what `wandb sync` uploads) is a file inside <run dir>/wandb/data
    (wandb_file,) = offline[0].glob("*.wandb")
    staging = str(run_dir / "wandb" / "data" / "artifacts" / "staging")
    records = wandb_file.read_bytes()  # a staged name: tempfile's tmp + 8 characters, then protobuf bytes
    staged = {m.decode() for m in re.findall(rb"/[^\x00-\x1f\"]*/artifacts/staging/tmp[a-z0-9_]{8}", records)}
    assert staged and all(path.startswith(staging) and Path(path).is_file() for path in staged), sorted(staged)[:3]
    # and the same rows in the run dir, one file per step
    for step in steps:
        rows = list(read_jsonl(run_dir / "rollouts" / f"step-{step}.jsonl"))
        assert len(rows) == 2 and all(row["step"] == step and row["task"] == "object" for row in rows)
        assert all(row["boxes"]["reference"] and "advantage" in row and iou in row for row in rows)
    # grouped by experiment, tagged with method and reward: the ablation is one dashboard filter
    assert run["config"]["reward"]["name"] == reward, list(run["config"])[:20]
    assert {"method:grpo", f"reward:{reward}"} <= set(run["tags"]) and run["group"] == "default"
    # the final adapter is a safetensors LoRA
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()


def test_grpo_validates_while_training_and_keeps_the_best_checkpoint(make_cfg, tmp_path):
    validation = ["eval.val.every_steps=2", "eval.val.limit=2", "eval.val.best=f1_theme"]
    steps = ["method.args.max_steps=4", "method.args.save_steps=1", "method.args.save_total_limit=2"]
    # evaluated after training too: the test metrics join the best validation step's, neither replaces the other
    cfg = make_cfg(*GRPO, *FAST, *steps, *validation, "logger=wandb", "eval.after_train=true")
    metrics = train_script.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert "eval/f1_theme" in metrics and "val/best_step" in metrics
    # val/* at steps 2 and 4, in rows of their own beside the training rows
    rows = [row for row in read_jsonl(run_dir / "history.jsonl") if "val/f1_theme" in row]
    assert [row["step"] for row in rows] == [2, 4]
    assert {"val/iou", "val/f1_state"} <= set(rows[0])
    # the held-out records are training records that were not trained on; state groups stay whole
    train_ids = {row["id"] for row in read_jsonl(run_dir / "train.jsonl")}
    held_out = list(read_jsonl(run_dir / "val.jsonl"))
    assert held_out and {row["id"] for row in held_out} <= train_ids
    groups = {row["group_id"] for row in held_out if row["task"] == "state"}
    assert all(
        row["id"] in {r["id"] for r in held_out}
        for row in read_jsonl(run_dir / "train.jsonl")
        if row["group_id"] in groups
    )
    assert sorted(p.name for p in (run_dir / "val").iterdir()) == ["predictions-2.jsonl", "predictions-4.jsonl"]
    # the best step's checkpoint is kept through save_total_limit=2 (else 3 and 4 would be) and named in metrics.json
    best = int(metrics["val/best_step"])
    assert best in (2, 4) and (run_dir / f"checkpoint-{best}" / "trainer_state.json").is_file()
    assert (run_dir / "checkpoint-4").is_dir() and not (run_dir / "checkpoint-3").exists()  # the others rotate
    values = {row["step"]: row["val/f1_theme"] for row in rows}
    assert metrics["val/best_f1_theme"] == pytest.approx(max(values.values()))
    assert json.loads((run_dir / "metrics.json").read_text())["val/best_step"] == best
    # and the offline W&B run has the curve against the trainer's step
    run = read_offline_run(next((run_dir / "wandb").glob("offline-run-*")))
    logged = [row for row in run["history"] if "val/f1_theme" in row]
    assert [row["train/global_step"] for row in logged] == [2, 4]


def test_grpo_with_the_semantic_grounding_reward_has_its_own_curve(make_cfg, cache_dir, monkeypatch):
    # reward=v2_semantic with the tiny offline sentence encoder (reward.semantic.model unset: built into the cache);
    # the evaluation scores eval/semantic with the same encoder. The rewards are built once, by the config check
    # before anything loads, and the trainer takes them.
    from lego_arta.methods import grpo
    from lego_arta.models.tiny_encoder import build_tiny_sentence_encoder

    built = []
    monkeypatch.setattr(grpo, "grpo_rewards", lambda cfg, build=grpo.grpo_rewards: built.append(1) or build(cfg))

    semantic = ["eval.after_train=true", f"eval.semantic_model={build_tiny_sentence_encoder(cache_dir)}"]
    cfg = make_cfg(*GRPO, *FAST, "reward=v2_semantic", "method.tasks=[grounding]", *semantic)
    metrics = train_script.run(cfg)
    assert built == [1]
    assert 0.0 <= metrics["eval/semantic_lo"] <= metrics["eval/semantic"] <= metrics["eval/semantic_hi"] <= 100.0
    rows = [row for row in read_jsonl(Path(cfg.paths.output_dir) / "history.jsonl") if "reward" in row]
    assert [row["step"] for row in rows] == list(range(1, cfg.method.args.max_steps + 1))
    for row in rows:
        assert 0.0 <= row["rewards/grounding_semantic/mean"] <= 1.0
        assert "rewards/grounding_semantic/frac_varying_groups" in row
        assert "rewards/grounding/mean" not in row  # BLEU + ROUGE is off (weight 0)


def test_only_lora_parameters_change(make_cfg, tmp_path):
    # SFT: every step has a gradient (a GRPO group whose samples all score the same has none)
    cfg = make_cfg("method=sft", *FAST)
    train_script.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    base, _ = load_model(cfg.model, cfg.paths.cache_dir)
    adapter = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    assert not any("visual" in k for k in adapter)  # the vision tower carries no LoRA
    assert any(float(v.abs().sum()) > 0 for k, v in adapter.items() if "lora_B" in k)  # LoRA B starts at 0
    # merging the adapter changes only LoRA-targeted language-model weights; everything else is bit-identical
    from peft import PeftModel

    fresh, _ = load_model(cfg.model, cfg.paths.cache_dir)
    merged = PeftModel.from_pretrained(fresh, str(run_dir / "adapter")).merge_and_unload().state_dict()
    reference = base.state_dict()
    changed = {k for k in reference if not torch.equal(reference[k], merged[k])}
    assert changed and all("language_model" in k and k.endswith("proj.weight") for k in changed)
    assert all(torch.equal(reference[k], merged[k]) for k in reference if "visual" in k)


def test_full_fine_tuning_saves_the_model_and_grpo_adds_lora_to_it(make_cfg, tmp_path):
    # the demo's SFT stage as a user types it: method.lora=null model.freeze_vision=false
    sft_dir, grpo_dir = tmp_path / "sft", tmp_path / "grpo"
    cfg = make_cfg(
        "method=sft",
        "method.lora=null",
        "model.freeze_vision=false",
        *FAST,
        "eval.after_train=true",
        f"paths.output_dir={sft_dir}",
    )
    metrics = train_script.run(cfg)
    # the fine-tuned model in memory was evaluated (eval.limit records per task)
    assert metrics["eval/num_samples"] == 3 * cfg.eval.limit
    assert not (sft_dir / "adapter").exists()
    from transformers import AutoModelForImageTextToText

    saved = AutoModelForImageTextToText.from_pretrained(str(sft_dir / "model")).state_dict()
    base, _ = load_model(cfg.model, cfg.paths.cache_dir)
    reference = base.state_dict()
    assert saved.keys() == reference.keys()
    changed = {k for k, v in saved.items() if not torch.equal(v, reference[k])}
    # every part trains: the language model, the vision tower and its merger
    for part in ("language_model", "visual.blocks", "visual.merger"):
        assert any(part in k for k in changed), part
    # the saved dir is a model of its own: evaluation and GRPO load it with model.path=
    grpo = make_cfg(*GRPO, *FAST, f"model.path={sft_dir / 'model'}", f"paths.output_dir={grpo_dir}")
    train_script.run(grpo)
    adapter_cfg = json.loads((grpo_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 8 and adapter_cfg["base_model_name_or_path"] == str(sft_dir / "model")
    from lego_arta.report.collect import collect_runs
    from lego_arta.report.stats import row_label

    runs = collect_runs(tmp_path).sort_values("method", ascending=False)
    labels = [row_label(r.method, r.reward, r.lora_r, r.start) for r in runs.itertuples()]
    assert labels == ["SFT (full fine-tuning)", "GRPO v2 (LoRA r8, from fine-tuned model)"]


def _train_cmd(run_dir: Path, cache_dir: Path) -> list[str]:
    # the same command for the first start and the next one: nothing says "resume"
    return [
        sys.executable,
        str(ROOT / "experiments" / "train.py"),
        "method=sft",
        *FAST,
        "method.args.max_steps=30",  # long enough that the signal lands mid-training
        "method.args.save_steps=5",
        "logger=wandb",
        f"paths.cache_dir={cache_dir}",
        f"hydra.run.dir={run_dir}",
    ]


def _final_step(run_dir: Path) -> int:
    states = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    return json.loads(states[-1].read_text())["global_step"]


def _logged_steps(run_dir: Path) -> list[int]:
    return [row["step"] for row in read_jsonl(run_dir / "history.jsonl") if "loss" in row]


def _stop(run_dir: Path, cache_dir: Path, env: dict[str, str], sig: signal.Signals, ready: Callable[[], bool]) -> None:
    """Start the run and send ``sig`` once ``ready()`` holds; it stops before the end of training."""
    proc = subprocess.Popen(_train_cmd(run_dir, cache_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not ((run_dir / "history.jsonl").exists() and ready()):
        assert proc.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.05)
    proc.send_signal(sig)
    code = proc.wait()
    assert not (run_dir / "adapter").exists(), sig  # it really stopped mid-training
    if sig == signal.SIGTERM:  # a Slurm time limit or scancel: exits as the signal meant
        assert code == 128 + signal.SIGTERM, proc.stderr.read().decode()[-2000:] if proc.stderr else code


@pytest.mark.slow(seconds=35)
def test_a_run_stopped_twice_and_started_again_ends_as_one_run(tmp_path, cache_dir):
    # one run, three starts of the same command: stopped by SIGTERM (a time limit: it saves where it is), then by
    # SIGKILL (an OOM kill or a node failure: nothing saved, the newest periodic checkpoint is where it goes on)
    # WANDB_SERVICE: this pytest process's own W&B service (set by the in-process W&B tests); a user's shell has none,
    # and a child connected to it would find the killed run's id still registered there
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "PYTHONPATH": str(ROOT)}
    run_dir = tmp_path / "run"
    _stop(run_dir, cache_dir, env, signal.SIGTERM, lambda: len(_logged_steps(run_dir)) >= 3)
    # saved a checkpoint at the step it was on: no step is lost
    stopped_at = _logged_steps(run_dir)[-1]
    assert _final_step(run_dir) == stopped_at < 30
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    # killed after the next periodic checkpoint (save_steps=5) past where the first start stopped
    next_save = (stopped_at // 5 + 1) * 5
    _stop(
        run_dir,
        cache_dir,
        env,
        signal.SIGKILL,
        lambda: (run_dir / f"checkpoint-{next_save}" / "trainer_state.json").exists(),
    )
    again = subprocess.run(_train_cmd(run_dir, cache_dir), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:] + (run_dir / "train.log").read_text()[-3000:]
    assert _final_step(run_dir) == 30  # method.args.max_steps, as a run that was never stopped ends
    assert _logged_steps(run_dir) == list(range(1, 31))  # one history row per step: none missing, none twice
    # one W&B run: every start logged under the id kept in the run dir (offline: one folder per start)
    assert (run_dir / "wandb_run_id.txt").read_text().strip() == run_id
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 3 and {p.name.rsplit("-", 1)[1] for p in offline} == {run_id}


def test_method_tasks_restricts_training_not_evaluation(make_cfg):
    from lego_arta.checks import check_config
    from lego_arta.pipeline import training_records

    cfg = make_cfg("method=grpo", "method.tasks=[object]", *FAST)
    data = load_data(cfg)
    kept = training_records(cfg, data.train)
    assert kept and {r.task for r in kept} == {"object"}
    assert len(kept) == sum(r.task == "object" for r in data.train)
    # a task outside data.tasks is a config error, raised before anything loads
    with pytest.raises(ConfigError, match=r"method.tasks: \['detection'\]"):
        check_config(make_cfg("method=grpo", "method.tasks=[detection]", *FAST), Path("run"), trains=False)


@pytest.mark.parametrize(
    ("method", "free"),
    [("sft", True), ("grpo", True), pytest.param("sft", False, id="sft-control")],
)
def test_vllm_evaluation_after_training_finds_the_trained_model_gone(make_cfg, monkeypatch, method, free):
    # eval.backend=vllm loads its own copy of the weights: when vLLM starts, nothing may still hold the training copy
    # (model, trainer, optimizer: reference cycles that only a gc pass frees). The control run skips make_backend's
    # free step and shows the model is then still alive: the check can fail.
    import weakref

    from lego_arta import methods
    from lego_arta.evaluation import evaluate

    refs: list[weakref.ref] = []
    real_train = methods.train

    def train(*args, **kwargs):
        result = real_train(*args, **kwargs)
        refs.extend([weakref.ref(result.model), weakref.ref(result.model.get_base_model())])
        return result

    alive: list[bool] = []

    def vllm_backend(model_path, processor, *, adapter, **settings):
        assert Path(model_path).is_dir() and Path(adapter, "adapter_config.json").is_file()
        alive.extend(ref() is not None for ref in refs)
        return lambda prompts, images: ["Yes"] * len(prompts)

    monkeypatch.setattr(methods, "train", train)
    monkeypatch.setattr(evaluate, "VLLMBackend", vllm_backend)
    if not free:
        monkeypatch.setattr(evaluate, "free_memory", lambda: None)
    budget = GRPO if method == "grpo" else ["method=sft"]
    cfg = make_cfg(*budget, *FAST, "method.args.max_steps=1", "eval.after_train=true", "eval.backend=vllm")
    metrics = train_script.run(cfg)
    assert metrics["eval/num_samples"] > 0
    assert len(alive) == 2 and alive == [not free] * 2, alive
