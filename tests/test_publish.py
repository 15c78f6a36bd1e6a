"""A finished run out to the Hub: a clean upload folder with a card written from the run (offline, in full), and one
line before anything is uploaded when the Hub cannot be reached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants

from experiments import train as train_script
from lego_arta.publish import PublishError, push, upload_folder
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache_dir) -> Path:
    from lego_arta.config import compose_config

    out = tmp_path_factory.mktemp("published") / "run"
    cfg = compose_config(
        ["method=sft", "debug=quick", "data.synthetic.num_manuals=4", "logger=wandb", "eval.limit=2"],
        output_dir=out,
        cache_dir=cache_dir,
    )
    train_script.run(cfg)
    return out


def test_the_upload_folder_holds_the_weights_and_a_card_from_the_run(run_dir, tmp_path) -> None:
    folder = upload_folder(run_dir, tmp_path / "publish")
    names = sorted(p.name for p in folder.iterdir())
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(names)
    # nothing of the run's data or logs (the Trainer's push_to_hub would send its whole output_dir)
    assert not {"train.jsonl", "test.jsonl", "predictions.jsonl", "history.jsonl", "wandb", "training_args.bin"} & set(
        names
    )
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n") and "fine-tuned version of [None]" not in card
    assert "# default: SFT on LEGO-ARTA, LoRA adapter" in card
    assert "| IoU " in card and "[" in card.split("| IoU ", 1)[1].splitlines()[0]  # the value with its 95% CI
    wandb_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    assert f"W&B run: `{wandb_id}`" in card and "numeric path" in card and "trl 1.16" in card
    assert "the project's synthetic scenes" in card and "```yaml\nseed: 0" in card


def test_without_the_hub_nothing_is_uploaded_and_one_line_says_why(run_dir, tmp_path, monkeypatch) -> None:
    folder = upload_folder(run_dir, tmp_path / "publish")
    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: pytest.fail("a repository was created"))
    monkeypatch.setattr(HfApi, "upload_folder", lambda *a, **k: pytest.fail("something was uploaded"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        PublishError, match=f"HF_HUB_OFFLINE is set: nothing uploaded. The upload folder is ready at {folder}"
    ):
        push(folder, "me/lego-arta", private=True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setattr(HfApi, "whoami", lambda *a, **k: (_ for _ in ()).throw(OSError("Network is unreachable")))
    with pytest.raises(PublishError, match=r"cannot be reached or no token is set \(Network is unreachable\)"):
        push(folder, "me/lego-arta", private=True)


def test_the_command_fails_with_one_line_on_a_machine_without_the_hub(run_dir) -> None:
    proc = subprocess.run(
        [sys.executable, "experiments/publish.py", f"run_dir={run_dir}", "repo_id=me/lego-arta"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(run_dir.parent), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: HF_HUB_OFFLINE is set: nothing uploaded.")
    assert (run_dir / "publish" / "README.md").is_file()  # the folder is ready for an upload elsewhere


def test_a_published_adapter_is_evaluated_by_its_hub_id_from_the_cache(run_dir, tmp_path, monkeypatch, make_cfg):
    # the adapter as the Hub would hand it back: a snapshot in the Hugging Face cache, read offline
    from lego_arta.errors import MissingInputError
    from lego_arta.pipeline import run_experiment

    folder = upload_folder(run_dir, tmp_path / "publish")
    cache = tmp_path / "hf" / "hub"
    snapshot = cache / "models--me--lego-arta" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (cache / "models--me--lego-arta" / "refs").mkdir()
    (cache / "models--me--lego-arta" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cfg = make_cfg("method=none", "method.adapter=me/lego-arta", "eval.limit=1", "eval.max_new_tokens=8")
    metrics = run_experiment(cfg, train=False)
    assert metrics["eval/num_samples"] > 0 and cfg.method.adapter == str(snapshot)  # loaded from the snapshot
    with pytest.raises(MissingInputError, match=r"method\.adapter=me/not-there: not in the Hugging Face cache"):
        run_experiment(make_cfg("method=none", "method.adapter=me/not-there"), train=False)


def test_an_online_run_records_its_data_in_and_its_weights_out(run_dir, tmp_path) -> None:
    # W&B lineage on an online run (no network here: the run object records what reaches it)
    import wandb

    from lego_arta.tracking import WandbTracker, data_source

    class Run:
        id, settings, used, logged = "abc123", type("S", (), {"mode": "online"})(), [], []

        def use_artifact(self, artifact):
            self.used.append(artifact)

        def log_artifact(self, artifact):
            self.logged.append(artifact)

    tracker = object.__new__(WandbTracker)
    tracker._wandb, tracker.run, tracker.stopped = wandb, Run(), False
    assert tracker.records_lineage
    hub = data_source({"name": "lego_arta", "hub": "PPPPPeter/arta"}, tmp_path, "c0ffee")
    tracker.use_data(hub)
    (data_dir := tmp_path / "scenes").mkdir()
    (data_dir / "a.json").write_text("{}")
    local = data_source({"name": "synthetic", "hub": None}, data_dir, None)
    tracker.use_data(local)
    hub_art, local_art = tracker.run.used
    assert hub_art.type == "dataset" and hub_art.metadata["revision"] == "c0ffee"
    assert [e.ref for e in hub_art.manifest.entries.values()] == [
        "https://huggingface.co/datasets/PPPPPeter/arta/tree/c0ffee"
    ]
    assert (
        list(local_art.manifest.entries) == ["source.json"]
        and local_art.metadata["uri"] == data_dir.resolve().as_uri()
    )
    assert len(local_art.metadata["digest"]) == 16  # a dir named by what it holds
    tracker.log_weights(run_dir / "adapter", "adapter", {"eval/iou": 1.5})
    (weights,) = tracker.run.logged
    assert weights.name == "adapter-abc123" and weights.type == "model" and weights.metadata == {"eval/iou": 1.5}
    assert "adapter_model.safetensors" in weights.manifest.entries
    tracker.run.settings.mode = "offline"  # W&B does not use artifacts offline: nothing is recorded there
    assert not tracker.records_lineage
