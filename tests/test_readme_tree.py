"""The README's file tree has one line per tracked file, and every line names a tracked file."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT


def tree_paths(readme: str) -> list[str]:
    """The path at the start of each line of the README's "## File tree" code block."""
    block = readme.split("## File tree", 1)[1].split("```", 2)[1]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def test_the_file_tree_lists_every_tracked_file_once() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    listed = tree_paths((ROOT / "README.md").read_text())
    assert len(listed) == len(set(listed)), sorted({p for p in listed if listed.count(p) > 1})
    assert sorted(set(tracked) - set(listed)) == [], "files without a line in the README's file tree"
    assert sorted(set(listed) - set(tracked)) == [], "README file-tree lines naming no tracked file"
