"""load_data from the composed main config, and experiments/prepare_data.py's run(cfg, out_dir).

``make_cfg`` (conftest) composes the main config with a session cache dir: ``paths.cache_dir`` is ``${hydra:...}``
based and does not resolve under ``hydra.compose`` otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig
from PIL import Image

from experiments.prepare_data import run
from lego_arta.data import DataError, load_data
from tests.data_fixtures import tiny_tree

MakeCfg = Callable[..., DictConfig]


def test_default_config_generates_reads_and_splits(make_cfg: MakeCfg, cache_dir: Path) -> None:
    split = load_data(make_cfg())
    assert split.summary["counts"] == {
        "train": {"grounding": 36, "object": 36, "state": 144, "total": 216},
        "test": {"grounding": 12, "object": 12, "state": 48, "total": 72},
    }
    assert split.root.parent == (cache_dir / "data").resolve()
    assert split.dropped["object: ImageContent label"] == 8
    again = load_data(make_cfg())  # the cached scenes are reused: the same split
    assert again.root == split.root and again.test == split.test


def test_real_layout_and_manual_split(make_cfg: MakeCfg, tmp_path: Path) -> None:
    root = tiny_tree(tmp_path / "arta")
    tiny_tree(root, manual="lego-10001-second-manual")
    split = load_data(make_cfg("data=lego_arta", f"data.root={root}", "split=manual", "data.tasks=[state]"))
    assert {r.task for r in split.train + split.test} == {"state"}
    assert len({r.manual_id for r in split.train}) == len({r.manual_id for r in split.test}) == 1
    assert split.summary["split"]["by"] == "manual" and split.summary["data"] == "lego_arta"


def test_real_data_without_root_fails_before_anything_loads(make_cfg: MakeCfg) -> None:
    with pytest.raises(DataError, match=r"data\.root: missing value"):
        load_data(make_cfg("data=lego_arta"))


def test_prepare_data_writes_the_split_files_and_a_contact_sheet(make_cfg: MakeCfg, tmp_path: Path) -> None:
    cfg = make_cfg("data.synthetic.num_manuals=4", "+contact_sheet=true")
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
    cfg = make_cfg("data.synthetic.num_manuals=2", "+contact_sheet=false")
    run(cfg, out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "contact_sheet.png").exists()
    assert (tmp_path / "run" / "test.jsonl").exists()
