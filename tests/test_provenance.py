"""What produced a run's digits: the provenance record, its fingerprint, and the report that names machines and never
pools the ablation's seeds across numeric paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lego_arta.provenance import PROVENANCE_KEYS, cpu_model, describe, fingerprint, numeric_path, provenance
from lego_arta.report import write_report
from lego_arta.report.ablation import ablation, resampled_power, seeds_for_power
from lego_arta.report.collect import collect_runs
from lego_arta.runs import PROVENANCE_FILE, read_provenance, write_provenance
from tests.conftest import ROOT
from tests.test_ablation import write_grpo_run


def test_provenance_names_the_cpu_and_the_versions():
    prov = provenance()
    assert set(prov) == set(PROVENANCE_KEYS)
    # platform.processor() says "x86_64" (or nothing) on Linux: the model name comes from /proc/cpuinfo
    if Path("/proc/cpuinfo").is_file() and "model name" in Path("/proc/cpuinfo").read_text():
        assert prov["cpu"] == cpu_model() and prov["cpu"] not in ("", "x86_64", "aarch64")
    assert prov["versions"]["torch"] and prov["versions"]["trl"] and prov["versions"]["transformers"]
    assert prov["threads"] >= 1 and prov["cpu_capability"]
    assert set(prov["fingerprint"]) == {"mm", "linear", "bmm", "sdpa", "softmax", "layer_norm", "silu", "sum", "rng"}
    assert prov["numeric_path"] == numeric_path(prov["fingerprint"])


def test_the_fingerprint_is_the_same_twice_and_moves_with_any_kernel():
    first = fingerprint()
    assert fingerprint() == first  # same process, same kernels: same hashes
    for kernel in first:  # one kernel rounding otherwise is another path
        assert numeric_path({**first, kernel: "00000000"}) != numeric_path(first)


def test_a_kernel_setting_is_recorded_and_keeps_the_random_draws():
    # MKL_CBWR picks MKL's code path: the matmuls may round otherwise (they do on AVX2 and AVX-512 CPUs with MKL),
    # torch.randn's draws stay (ATEN_CPU_CAPABILITY would change them too)
    code = "import json; from lego_arta.provenance import provenance; print(json.dumps(provenance()))"
    env = {**os.environ, "MKL_CBWR": "COMPATIBLE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    other = json.loads(out.stdout.strip().splitlines()[-1])
    assert other["env"]["MKL_CBWR"] == "COMPATIBLE"
    assert other["fingerprint"]["rng"] == fingerprint()["rng"]
    assert "MKL_CBWR=COMPATIBLE" in describe(other)


def test_every_run_dir_gets_its_provenance(tmp_path):
    written = write_provenance(tmp_path)
    assert read_provenance(tmp_path) == json.loads(json.dumps(written))
    (tmp_path / PROVENANCE_FILE).write_text("[1, 2]")  # not an object: reads as none, never a crash
    assert read_provenance(tmp_path) is None
    assert read_provenance(tmp_path / "missing") is None


def write_path_runs(root: Path, path: str, cpu: str, v1: list[float], v2: list[float]) -> None:
    """An ablation's GRPO runs (one per seed and reward) recorded on numeric path ``path``."""
    prov = {"cpu": cpu, "cpu_capability": "AVX2", "blas": "MKL 2024.2", "threads": 1, "env": {}, "gpu": None}
    for reward, values in (("v1", v1), ("v2", v2)):
        for seed, value in enumerate(values):
            run_dir = root / f"grpo_{reward}_s{seed}"
            write_grpo_run(run_dir, reward, seed, [0.1] * 4, value)
            (run_dir / PROVENANCE_FILE).write_text(json.dumps({**prov, "numeric_path": path}))


def test_the_ablation_is_compared_per_numeric_path_and_the_report_names_the_machines(tmp_path):
    # path A: v2 far above v1; path B: no difference. Pooled, the 20 seeds would hide that B disagrees
    write_path_runs(tmp_path / "ablation", "aaaa1111", "CPU A", [1.0, 1.1, 0.9, 1.2, 1.05], [3.0, 3.2, 2.9, 3.1, 3.05])
    write_path_runs(tmp_path / "ablation_b", "bbbb2222", "CPU B", [2.0, 3.0, 2.5, 2.2, 2.8], [2.1, 2.9, 2.4, 2.6, 2.7])
    roots = [tmp_path / "ablation", tmp_path / "ablation_b"]
    runs = collect_runs(roots)
    assert sorted(runs["numeric_path"].unique()) == ["aaaa1111", "bbbb2222"]
    endpoint = {label: c for label, scale, c in ablation(runs) if scale == "eval"}
    assert len(endpoint) == 2  # one comparison per path, never pooled
    a = next(c for label, c in endpoint.items() if "aaaa1111" in label)
    b = next(c for label, c in endpoint.items() if "bbbb2222" in label)
    assert a.n_baseline == a.n_variant == 5 and a.p_permutation < 0.05 and a.power > 0.8
    assert b.p_permutation > 0.05 and b.seeds_for_power > a.seeds_for_power
    report = write_report(roots, tmp_path / "both")
    markdown = report["markdown"]
    assert report["report_md"] == str(tmp_path / "both" / "report.md")
    machines = markdown.split("### Machines", 1)[1].split("\n## ", 1)[0]
    assert "CPU A, AVX2, MKL 2024.2, 1 thread; numeric path aaaa1111: 10 runs" in machines
    assert "CPU B, AVX2, MKL 2024.2, 1 thread; numeric path bbbb2222: 10 runs" in machines
    assert "numeric path aaaa1111, test IoU (eval/iou): significant at 0.05" in markdown
    assert "power" in markdown.split("## Reward ablation", 1)[1]


@pytest.mark.parametrize(
    ("v1", "v2", "expected"),
    [
        # separated arms: 4 vs 4 reach p = 2/70 < 0.05 whatever is drawn, unless a draw repeats one value (ties)
        ([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], (0.7, 1.0)),
        # the same seeds in both arms: rejections at about the test's level, whatever n
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], (0.0, 0.1)),
        # a bimodal arm (two of five seeds collapse) against a steady one: power grows with n but is not 1 at 5
        ([0.0, 0.2, 2.9, 3.3, 3.7], [3.0, 3.5, 2.8, 4.0, 3.2], (0.05, 0.6)),
    ],
)
def test_resampled_power(v1, v2, expected):
    low, high = expected
    assert low <= resampled_power(v1, v2, 4 if len(v1) == 3 else 5) <= high


def test_seeds_for_power_grows_as_the_effect_shrinks():
    steady = [3.0, 3.5, 2.8, 4.0, 3.2]
    collapsed, mixed = [0.0, 0.2, 0.4, 0.3, 0.1], [2.0, 3.3, 3.7, 2.4, 3.0]
    large, small = seeds_for_power(collapsed, steady), seeds_for_power(mixed, steady)
    assert 2 < large < small < 128
    assert resampled_power(collapsed, steady, int(large)) >= 0.8
    assert seeds_for_power(steady, steady) == float("inf")  # no effect: no number of seeds gives 80%
