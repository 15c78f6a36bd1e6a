"""load_data from the composed main config, and experiments/prepare_data.py's run(cfg, out_dir).

``make_cfg`` (conftest) composes the main config with a session cache dir: ``paths.cache_dir`` is ``${hydra:...}``
based and does not resolve under ``hydra.compose`` otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from experiments.prepare_data import run
from lego_arta.data import DataError, SyntheticSettings, generate, load_data
from tests.conftest import ROOT
from tests.data_fixtures import MANUAL, real_tree, write_image

MakeCfg = Callable[..., DictConfig]


def test_default_config_generates_reads_and_splits(make_cfg: MakeCfg, cache_dir: Path) -> None:
    split = load_data(make_cfg())
    assert split.summary["counts"] == {
        "train": {"grounding": 36, "object": 36, "state": 144, "total": 216},
        "test": {"grounding": 12, "object": 12, "state": 48, "total": 72},
    }
    assert split.root.name == "ARTA_LEGO" and split.root.parent.parent == (cache_dir / "data").resolve()
    assert split.dropped == {}
    assert split.skipped["object: step_class 'fullscreeneop' not in data.object_step_classes"] == 8  # the covers
    again = load_data(make_cfg())  # the cached scenes are reused: the same split
    assert again.root == split.root and again.test == split.test


def test_real_layout_and_manual_split(make_cfg: MakeCfg, tmp_path: Path) -> None:
    real_tree(tmp_path)
    real_tree(tmp_path, manual="lego-10001-second-manual", page="10001%20Second")
    split = load_data(make_cfg("data=lego_arta", f"data.root={tmp_path}", "split=manual", "data.tasks=[state]"))
    assert {r.task for r in split.train + split.test} == {"state"}
    assert len({r.manual_id for r in split.train}) == len({r.manual_id for r in split.test}) == 1
    assert split.summary["split"]["by"] == "manual" and split.summary["data"] == "lego_arta"


def test_versions_of_one_manual_share_state_groups_and_a_side_of_the_manual_split(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    # the same pages in two versions of a manual (-readscr, -mobile): one state group per page (the study's
    # grouping by file name), so split=manual holds both versions out together
    real_tree(tmp_path)
    real_tree(tmp_path, manual=MANUAL.replace("-readscr", "-mobile"))
    real_tree(tmp_path, manual="lego-10001-second-manual", page="10001%20Second")
    split = load_data(make_cfg("data=lego_arta", f"data.root={tmp_path}", "split=manual"))
    sides = {r.manual_id: r in split.test for r in split.train + split.test}
    assert sides[MANUAL] == sides[MANUAL.replace("-readscr", "-mobile")] != sides["lego-10001-second-manual"]
    groups = {r.group_id for r in split.train + split.test if r.task == "state"}
    assert len(groups) == 4  # 2 pages x 2 versions, plus the second manual's 2 pages, in 4 groups


def test_drop_limit_and_strict_from_the_command_line(make_cfg: MakeCfg, tmp_path: Path) -> None:
    real_tree(tmp_path)
    for n in (1, 2, 3, 4):  # four fakes without an original beside 8 state records: 4 of 12 dropped
        write_image(tmp_path / "ARTA_LEGO/step_dataset/lego" / MANUAL / f"stray_0{n}_step_fake1.png")
    base = ("data=lego_arta", f"data.root={tmp_path}")
    with pytest.raises(DataError, match=r"data\.max_drop_fraction=0\.2.*\n.*state: 4 of 12 records dropped \(33%\)"):
        load_data(make_cfg(*base))
    split = load_data(make_cfg(*base, "data.max_drop_fraction=0.5"))
    assert split.summary["dropped"] == {"state: fake without its original": 4}
    with pytest.raises(DataError, match=r"4 problems .*\n.*stray_01_step_fake1\.png"):
        load_data(make_cfg(*base, "data.strict=true", "data.max_drop_fraction=1"))


def test_prepare_data_prints_counts_beside_the_published_ones(
    make_cfg: MakeCfg, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real_tree(tmp_path)
    write_image(tmp_path / "ARTA_LEGO/step_dataset/lego" / MANUAL / "stray_09_step_fake1.png")
    cfg = make_cfg("data=lego_arta", f"data.root={tmp_path}", "contact_sheet=false", config_name="prepare_data")
    run(cfg, out_dir=tmp_path / "run")
    printed = capsys.readouterr().out
    assert "published" in printed and "19,136" in printed and "5,612" in printed and "10,864" in printed
    assert "dropped (1): counted against data.max_drop_fraction" in printed
    assert f"e.g. step_dataset/lego/{MANUAL}/stray_09_step_fake1.png" in printed
    assert "skipped (4): by the record rules" in printed
    summary = json.loads((tmp_path / "run" / "split_summary.json").read_text())
    assert summary["dropped"] == {"state: fake without its original": 1}
    assert (
        summary["skipped"]["object: [detection-collect] row without an answer (MiniGPT-v2 answered [detection] rows)"]
        == 1
    )


def test_real_data_without_root_fails_before_anything_loads(make_cfg: MakeCfg) -> None:
    with pytest.raises(DataError, match=r"data\.root is not set: pass data\.root=DIR .* or data\.hub=PPPPPeter/arta"):
        load_data(make_cfg("data=lego_arta"))
    with pytest.raises(DataError, match=r"data\.root=/x and data\.hub=PPPPPeter/arta are both set"):
        load_data(make_cfg("data=lego_arta", "data.root=/x", "data.hub=PPPPPeter/arta"))


def _hub_cache(home: Path, commit: str = "5f3a9c1d2e") -> Path:
    """A Hugging Face cache holding the dataset repo PPPPPeter/arta as huggingface_hub lays it out: the files under
    snapshots/<commit>/, refs/main naming that commit (here: synthetic scenes in the download's layout)."""
    repo = home / "hub" / "datasets--PPPPPeter--arta"
    node = OmegaConf.load(ROOT / "conf" / "data" / "synthetic.yaml").synthetic
    settings = SyntheticSettings.from_config({**OmegaConf.to_container(node), "seed": 0, "num_manuals": 2})
    generate(settings, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


@pytest.mark.slow  # a Python + torch start-up per command
def test_the_dataset_is_read_from_the_hub_cache_offline_with_its_revision(tmp_path: Path) -> None:
    # a compute node without network: HF_HUB_OFFLINE=1, the dataset downloaded before into HF_HOME's cache
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LEGO_ARTA_ROOT": str(tmp_path)}
    env |= {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        str(ROOT / "experiments" / "prepare_data.py"),
        "data=lego_arta",
        "data.hub=PPPPPeter/arta",
    ]
    # not in the cache: one line that says how to get it
    missing = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    last = missing.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: data.hub=PPPPPeter/arta: not in the Hugging Face cache") and "HF_HUB_OFFLINE" in last
    )
    assert "huggingface-cli download PPPPPeter/arta --repo-type dataset" in last
    # in the cache: read from the snapshot, the commit recorded
    _hub_cache(tmp_path / "hf")
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (summary,) = Path(tmp_path, "outputs").rglob("split_summary.json")
    data = json.loads(summary.read_text())
    assert data["hub"] == {"id": "PPPPPeter/arta", "revision": "5f3a9c1d2e"}
    assert data["counts"]["train"]["total"] + data["counts"]["test"]["total"] == 2 * 6 * 6
    # a pinned revision that the cache does not hold fails the same way
    pinned = subprocess.run([*command, "data.revision=0000000"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert pinned.returncode == 2 and "data.hub=PPPPPeter/arta@0000000" in pinned.stderr


def test_prepare_data_writes_the_split_files_and_a_contact_sheet(make_cfg: MakeCfg, tmp_path: Path) -> None:
    cfg = make_cfg("data.synthetic.num_manuals=4", config_name="prepare_data")  # contact_sheet: true in the YAML
    out = tmp_path / "run"
    metrics = run(cfg, out_dir=out)
    assert metrics["data/test/total"] + metrics["data/train/total"] == 4 * 6 * 6
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(train) == metrics["data/train/total"] and Path(train[0]["image"]).is_absolute()
    summary = json.loads((out / "split_summary.json").read_text())
    assert summary["counts"]["test"]["state"] == metrics["data/test/state"]
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > 500 and sheet.height > 500


def test_prepare_data_without_contact_sheet(make_cfg: MakeCfg, tmp_path: Path) -> None:
    cfg = make_cfg("data.synthetic.num_manuals=2", "contact_sheet=false", config_name="prepare_data")
    run(cfg, out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "contact_sheet.png").exists()
    assert (tmp_path / "run" / "test.jsonl").exists()
