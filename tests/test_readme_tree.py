"""The file tree (docs/files.md, linked from the README) has one line per tracked file, and every line names a tracked
file."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT


def tree_paths(readme: str) -> list[str]:
    """The path at the start of each line of the "## File tree" code block of docs/files.md."""
    block = readme.split("## File tree", 1)[1].split("```", 2)[1]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def test_the_file_tree_lists_every_tracked_file_once() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert "(docs/files.md)" in (ROOT / "README.md").read_text()  # the README links it
    listed = tree_paths((ROOT / "docs" / "files.md").read_text())
    assert len(listed) == len(set(listed)), sorted({p for p in listed if listed.count(p) > 1})
    assert sorted(set(tracked) - set(listed)) == [], "files without a line in docs/files.md"
    assert sorted(set(listed) - set(tracked)) == [], "docs/files.md lines naming no tracked file"
