"""The build cache's one way of writing a dir: atomic, and the first complete build of a dir stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from lego_arta.cache import build_dir


def _complete(path: Path) -> bool:
    return (path / "weights.bin").is_file()


def _write(text: str):
    def write(tmp: Path) -> None:
        (tmp / "weights.bin").write_text(text)

    return write


def test_a_build_lands_whole_and_leaves_no_temporary_dir(tmp_path):
    out = tmp_path / "models" / "tiny-abc"
    assert build_dir(out, _write("ours"), _complete) == out
    assert (out / "weights.bin").read_text() == "ours"
    assert [p.name for p in out.parent.iterdir()] == ["tiny-abc"]


def test_a_complete_dir_another_process_renamed_first_is_kept(tmp_path):
    out = tmp_path / "tiny-abc"

    def write_while_the_other_finishes(tmp: Path) -> None:
        _write("ours")(tmp)
        out.mkdir()  # the other process's rename lands while this one writes
        (out / "weights.bin").write_text("theirs")

    build_dir(out, write_while_the_other_finishes, _complete)
    assert (out / "weights.bin").read_text() == "theirs"  # it may be reading them: not replaced, not nested into
    assert sorted(p.name for p in out.iterdir()) == ["weights.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-abc"]


def test_an_incomplete_dir_of_an_older_layout_is_rebuilt(tmp_path):
    out = tmp_path / "tiny-abc"
    out.mkdir()
    (out / "old_layout.json").write_text("{}")
    build_dir(out, _write("ours"), _complete)
    assert sorted(p.name for p in out.iterdir()) == ["weights.bin"]


def test_an_interrupted_build_leaves_nothing_a_later_run_would_reuse(tmp_path):
    out = tmp_path / "tiny-abc"

    def write(tmp: Path) -> None:
        (tmp / "weights.bin").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dir(out, write, _complete)
    assert list(tmp_path.iterdir()) == []
