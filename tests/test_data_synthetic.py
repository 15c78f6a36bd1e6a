"""Synthetic LEGO scenes: the answers match the drawn bricks, generation is deterministic, cached and atomic."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from lego_arta.data import DataError, SyntheticSettings, ensure_synthetic, generate
from lego_arta.data.drawing import COLORS, SHAPES
from tests.conftest import CONF
from tests.data_fixtures import read

YAML = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "synthetic.yaml").synthetic)  # seed: ${seed} unresolved


def settings(**values: object) -> SyntheticSettings:
    """conf/data/synthetic.yaml's settings (the one source of their values), seed 0, with ``values`` changed."""
    assert isinstance(YAML, dict)
    return SyntheticSettings.from_config({**YAML, "seed": 0, **values})


SMALL = settings(num_manuals=3, steps_per_manual=4)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate(SMALL, root)
    return root


def test_the_reader_reads_the_synthetic_layout(small_dir: Path) -> None:
    result = read(small_dir)  # the download folder: the data is under its ARTA_LEGO/
    assert result.root == (small_dir / "ARTA_LEGO").resolve()
    counts = Counter(r.task for r in result.records)
    assert counts == {"grounding": 12, "object": 12, "state": 48}  # 3 manuals x 4 steps; state groups of 1 + 3
    assert result.dropped == {}
    assert result.skipped == {  # every manual's cover page and its unanswered collect row
        "object: step_class 'fullscreeneop' not in data.object_step_classes": 3,
        "object: [detection-collect] row without an answer (MiniGPT-v2 answered [detection] rows)": 3,
    }
    groups = Counter(r.group_id for r in result.records if r.task == "state")
    assert set(groups.values()) == {4}
    # the real state image: next to its fakes in even manuals, only in lego/<m>/images/ in odd ones
    copies = [p for p in (small_dir / "ARTA_LEGO" / "step_dataset").rglob("*.png") if "_fake" not in p.name]
    assert sorted({p.parent.name[:10] for p in copies}) == ["lego-90001", "lego-90003"]  # manuals 0 and 2
    yes = [r for r in result.records if r.task == "state" and r.solution == "Yes"]
    assert all("/lego/" in r.image and "/images/" in r.image for r in yes)  # data.state_original=images
    assert all("%20" in Path(r.image).name for r in result.records)  # URL-encoded names, as published
    for record in result.records:
        if record.task == "grounding":
            assert record.solution.split()[0] in {"Attach", "Place", "Add", "Put"} and "the base." in record.solution
            part = " ".join(record.solution.split()[2:5])
            assert record.context in (f"Find a {part}", f"Collect a {part}")  # the eop row before it
    with Image.open(result.records[0].image) as image:
        assert image.size == (112, 112)


def test_object_boxes_cover_the_drawn_parts(small_dir: Path) -> None:
    """Inside every answer box, the central region's most common colour is the queried part's colour."""
    records = [r for r in read(small_dir, tasks=["object"]).records]
    assert records
    for record in records:
        boxes = record.boxes()
        assert 1 <= len(boxes) <= SMALL.max_boxes
        size, color, shape = record.query.split()[-3:]
        assert all(box.label == f"{size} {color} {shape}" for box in boxes) and shape in SHAPES
        with Image.open(record.image) as image:
            rgb = image.convert("RGB")
        scale = rgb.width / 100
        assert all(isinstance(v, int) for item in json.loads(record.solution) for v in item["bbox_2d"])  # as published
        for box in boxes:
            x1, y1, x2, y2 = box.coords
            assert all(0 <= v <= 100 for v in box.coords) and x1 < x2 and y1 < y2
            w, h = (x2 - x1) * scale, (y2 - y1) * scale
            cx, cy = (x1 + x2) / 2 * scale, (y1 + y2) / 2 * scale
            region = rgb.crop((int(cx - 0.2 * w), int(cy - 0.2 * h), int(cx + 0.2 * w) + 1, int(cy + 0.2 * h) + 1))
            colours = Counter(region.getdata())
            assert colours.most_common(1)[0][0] == COLORS[color], (record.id, colours.most_common(3))


def test_state_fakes_differ_from_the_real_image(small_dir: Path) -> None:
    state = [r for r in read(small_dir, tasks=["state"]).records]
    real = {r.group_id: r for r in state if r.solution == "Yes"}
    for fake in (r for r in state if r.solution == "No"):
        with Image.open(fake.image) as a, Image.open(real[fake.group_id].image) as b:
            assert a.tobytes() != b.tobytes(), fake.id


def test_deterministic_from_the_seed(small_dir: Path, tmp_path: Path) -> None:
    chosen = settings(num_manuals=1, steps_per_manual=4)
    generate(chosen, tmp_path / "a")
    generate(chosen, tmp_path / "b")
    generate(settings(seed=1, num_manuals=1, steps_per_manual=4), tmp_path / "c")

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")
    assert chosen.digest() == settings(num_manuals=1, steps_per_manual=4).digest()
    assert chosen.digest() != settings(seed=1, num_manuals=1, steps_per_manual=4).digest()


def test_cached_once_and_never_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = settings(num_manuals=1, steps_per_manual=2)
    calls = []

    def broken(_: SyntheticSettings, out: Path) -> None:
        calls.append(out)
        (Path(out) / "json_data").mkdir(parents=True)
        raise KeyboardInterrupt  # killed half-way

    monkeypatch.setattr("lego_arta.data.synthetic.generate", broken)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(chosen, tmp_path)
    assert list((tmp_path / "data").iterdir()) == []  # neither the final dir nor the temp dir is left
    monkeypatch.undo()

    root = ensure_synthetic(chosen, tmp_path)
    assert root == (tmp_path / "data" / f"synthetic-{chosen.digest()}").resolve()
    stamp = (root / "settings.json").stat().st_mtime_ns
    monkeypatch.setattr("lego_arta.data.synthetic.generate", broken)
    assert ensure_synthetic(chosen, tmp_path) == root  # reused, not regenerated
    assert (root / "settings.json").stat().st_mtime_ns == stamp and len(calls) == 1


def test_settings_are_checked() -> None:
    with pytest.raises(DataError, match=r"unknown keys \['num_manual'\]"):
        SyntheticSettings.from_config({"num_manual": 3})
    with pytest.raises(DataError, match="colors"):
        settings(colors=["red", "mauve"])
    with pytest.raises(DataError, match=r"missing keys \['colors'"):
        SyntheticSettings.from_config({k: v for k, v in YAML.items() if k != "colors"})
    assert settings(colors=["red", "blue"]).colors == ("red", "blue")
