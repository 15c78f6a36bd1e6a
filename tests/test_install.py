"""The install paths: CPU by default, the GPU path in the order flash-attn needs, a vLLM range that fits the pins,
and a built wheel that scores away from the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def planned(*args: str) -> list[str]:
    """The pip commands ``make`` would run (``make -n``: printed, nothing installed), into a fresh venv path."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        [make, "-n", *args, "VENV=/nonexistent/venv"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if " -m pip install " in line and "--upgrade pip" not in line]


def test_make_install_gpu_puts_torch_then_flash_attn_without_isolation_then_the_package():
    # flash-attn's build imports torch: in pip's isolated build environment there is none (flash-attention#1675)
    steps = planned("install-gpu")
    assert len(steps) == 4, steps
    torch, tools, flash, package = steps
    assert (
        "torch==2.13.0" in torch
        and "torchvision==" in torch
        and "--index-url https://download.pytorch.org/whl/cu" in torch
    )
    assert "packaging" in tools and "ninja" in tools  # what flash-attn's setup.py imports, now from the venv
    assert "--no-build-isolation" in flash
    gpu_extra = next(r for r in PYPROJECT["project"]["optional-dependencies"]["gpu"] if r.startswith("flash-attn"))
    assert f'"{gpu_extra}"' in flash  # the gpu extra's own spec: pip then finds it installed
    assert package.endswith('-e ".[dev,gpu]"')


def test_make_install_on_cpu_installs_no_flash_attn():
    steps = planned("install")
    assert [s.split(" -m pip install --quiet ")[1] for s in steps] == ["torch==2.13.0", '-e ".[dev]"']


def test_torchvision_comes_with_the_gpu_extra():
    assert any(r.startswith("torchvision") for r in PYPROJECT["project"]["optional-dependencies"]["gpu"])


# each vLLM release's pins, from its wheel metadata (pip install --dry-run --no-deps --report vllm==X, 2026-11-26)
VLLM_PINS = {
    "0.26.0": ("2.11.0", ">=5.5.3"),
    "0.27.0": ("2.13.0", ">=5.5.3"),
    "0.28.0": ("2.13.0", ">=5.5.3"),
    "0.29.0": ("2.13.0", ">=5.10.4"),
    "0.30.0": ("2.13.0", ">=5.10.4"),
    "0.31.0": ("2.13.0", ">=5.10.4,<5.18.0"),
    "0.32.0": ("2.13.0", ">=5.16.1,<5.20.0"),
    "0.33.0": ("2.14.0", ">=5.16.1,<5.21.0"),
}
TRL_VLLM = (Version("0.22.0"), Version("0.31.0"))  # trl 1.16 trl/import_utils.py is_vllm_available


def test_the_vllm_extra_admits_exactly_the_releases_that_fit_torch_transformers_and_trl():
    deps = {Requirement(r).name: Requirement(r).specifier for r in PYPROJECT["project"]["dependencies"]}
    (extra,) = (Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["vllm"])
    # the oldest transformers our range admits (5.24.0): what any vLLM in the extra must accept
    transformers = Version(next(s.version for s in deps["transformers"] if s.operator == ">="))
    for version, (torch, needs_transformers) in VLLM_PINS.items():
        fits = (
            Version(torch) in deps["torch"]
            and Version(torch) == Version("2.13.0")  # the Makefile's TORCH_SPEC / GPU_TORCH_SPEC
            and transformers in SpecifierSet(needs_transformers)
            and TRL_VLLM[0] <= Version(version) <= TRL_VLLM[1]
        )
        assert (Version(version) in extra.specifier) is fits, version


# run by the installed package, from a folder outside the repository: the registry's IoU rewards on the doctest's
# samples (an exact box; a box with a raw coordinate outside [0, 100], exact once clamped; an off-task answer)
SCORE = """
import json, lego_arta, lego_arta.config
from lego_arta.rewards import REWARDS
ref = '[{"bbox_2d": [0, 0, 10, 10], "label": "brick"}]'
answers = ['[{"bbox_2d": [0, 0, 10, 10]}]', '[{"bbox_2d": [-10, 0, 10, 10]}]', "Yes"]
print(json.dumps({
    "file": lego_arta.__file__,
    "conf": str(lego_arta.config.CONF_DIR),
    **{name: REWARDS[name](answers, solution=[ref, ref, "Yes"]) for name in ("iou_v1", "iou_v2")},
}))
"""


def test_a_non_editable_install_imports_the_rewards_and_scores(tmp_path: Path):
    # the IoU rewards' constants are package data (lego_arta/rewards/iou.yaml), not the repository's conf/: a wheel
    # installed into a bare folder imports lego_arta.rewards and scores. The wheel is built from a copy of the sources,
    # so that the build leaves no build/ or *.egg-info in the repository.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "lego_arta", source / "lego_arta", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    dist, site = tmp_path / "dist", tmp_path / "site"
    offline = ["--no-deps", "--no-index"]  # no network: the build uses the venv's setuptools (the dev extra)
    subprocess.run(
        [*pip, "wheel", *offline, "--no-build-isolation", "-w", dist, source], check=True, capture_output=True
    )
    (wheel,) = dist.glob("lego_arta-*.whl")
    subprocess.run([*pip, "install", *offline, "--target", site, wheel], check=True, capture_output=True)
    # the dependencies come from the venv; the repository is neither the working dir nor on the path
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", SCORE], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.splitlines()[-1])
    assert Path(got["file"]).is_relative_to(site), got["file"]
    assert not Path(got["conf"]).exists()  # no conf/ beside the installed package: nothing read it
    # v1: 1 + 0.4 range bonus + 0.1 count; 1 x 0.5 penalty + 0.3 + 0.1. v2: iou + 0.1 count for both
    assert got["iou_v1"] == [pytest.approx(1.5), pytest.approx(0.9), None]
    assert got["iou_v2"] == [pytest.approx(1.1), pytest.approx(1.1), None]
