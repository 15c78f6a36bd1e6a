"""The packages import downwards only: a lower layer never imports a higher one (read from the source, with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "lego_arta"
# package -> the lego_arta packages it must not import (its own layer and those above it)
FORBIDDEN: dict[str, set[str]] = {
    "scores": {
        "rewards",
        "metrics",
        "sample_metrics",
        "data",
        "models",
        "methods",
        "evaluation",
        "planning",
        "checks",
        "pipeline",
        "report",
    },
    "rewards": {
        "metrics",
        "sample_metrics",
        "data",
        "models",
        "methods",
        "evaluation",
        "planning",
        "checks",
        "pipeline",
        "report",
    },
    "models": {"data", "methods", "evaluation", "planning", "checks", "pipeline", "report"},
    "data": {"methods", "evaluation", "planning", "checks", "pipeline", "report"},
    "evaluation": {"methods", "planning", "checks", "pipeline", "report"},
    "methods": {"planning", "checks", "pipeline", "report"},
}


def imported_packages(path: Path) -> set[str]:
    """The ``lego_arta.<package>`` names a module imports (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "lego_arta" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_no_layer_above_it(package):
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sorted((PACKAGE / package).rglob("*.py"))
    }
    assert not {k: v for k, v in wrong.items() if v}


def test_the_scan_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from lego_arta.data import load_data\n    import lego_arta.methods.grpo\n")
    assert imported_packages(module) == {"data", "methods"}
