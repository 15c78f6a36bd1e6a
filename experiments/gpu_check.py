"""What only a GPU can show, in one command that fits 10 minutes: `make gpu-check` (never part of `make test`).

    python experiments/gpu_check.py [--out bench/gpu.json] [--stage-timeout 200] [--budget 570]

On a machine with CUDA (and `make install-gpu`), in order, each stage a command of the cookbook with a time limit:
  tiny_bf16     the tiny default, 10 SFT steps: bf16 and flash-attention-2 chosen by `auto`
  build_7b      the Qwen2.5-VL-7B architecture from its own config.json (tests/fixtures/qwen2_5_vl_7b) with random
                bf16 weights, saved with the checkpoint's processor files: no download
  paper_sft     2 steps of experiment=paper_sft under DeepSpeed ZeRO-2 (accelerate launch, conf/accelerate/zero2.yaml)
  paper_grpo    1 step of experiment=paper_grpo_v1
  grpo_vllm     1 step of experiment=grpo_vllm (vLLM colocated), when vLLM imports
The 7B runs read synthetic pages of 1428 px (2,500 visual tokens each, prompts of ~7,600 tokens, as the real pages at
the study's budget). bench/gpu.json gets, per stage, its exit code, wall time, step times (history.jsonl) and peak
memory per stage (metrics.json's memory/*_peak_gib) beside `make plan`'s estimate for the same run.

A machine without network: build the wheels where there is one (`pip download` / `pip wheel` of the pinned
requirements, DeepSpeed with DS_BUILD_OPS=0) and install them there with `pip install --no-index --find-links`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lego_arta.bench import write_bench
from lego_arta.config import ROOT, compose_config
from lego_arta.runs import HISTORY_FILE, METRICS_FILE, read_jsonl

FIXTURE = ROOT / "tests" / "fixtures" / "qwen2_5_vl_7b"
WORK = ROOT / ".cache" / "gpu_check"
PAGE_PX = 1428  # a synthetic page this large gives 2,500 visual tokens at the study's 2600 x 28 x 28 budget
# what every 7B stage adds: no W&B, no evaluation beyond one answer per task, no validation
QUIET = ["logger=none", "eval.limit=1", "eval.val.every_steps=0"]


def stages(model_dir: Path, data_root: Path, vllm: bool) -> list[tuple[str, list[str], str | None]]:
    """``(name, command, experiment for make plan)`` of every stage, in order."""
    py, train = sys.executable, str(ROOT / "experiments" / "train.py")
    seven_b = [f"model.path={model_dir}", f"data.root={data_root}", *QUIET]
    zero2 = ["accelerate", "launch", "--config_file", str(ROOT / "conf" / "accelerate" / "zero2.yaml")]
    out = [
        ("tiny_bf16", [py, train, "method=sft", "method.args.max_steps=10", *QUIET], None),
        ("paper_sft", [*zero2, train, "experiment=paper_sft", "method.args.max_steps=2", *seven_b], "paper_sft"),
        ("paper_grpo", [py, train, "experiment=paper_grpo_v1", "method.args.max_steps=1", *seven_b], "paper_grpo_v1"),
    ]
    if vllm:
        out.append(("grpo_vllm", [py, train, "experiment=grpo_vllm", "method.args.max_steps=1", *seven_b], None))
    return out


def build_7b(out: Path) -> Path:
    """The 7B architecture from the fixture's config.json, random bf16 weights, and the fixture's processor files."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    if (out / "config.json").is_file():
        return out
    config = AutoConfig.from_pretrained(FIXTURE)
    with torch.device("cuda"):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    for name in ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.json"):
        shutil.copy2(FIXTURE / name, out / name)
    shutil.copy2(FIXTURE / "generation_config.json", out / "generation_config.json")
    return out


def pages() -> Path:
    """Synthetic scenes of :data:`PAGE_PX` px in the dataset's layout (generated once into the cache)."""
    from lego_arta.data import SyntheticSettings, ensure_synthetic

    cfg = compose_config(["data.synthetic.num_manuals=2", f"data.synthetic.image_size={PAGE_PX}"], output_dir=WORK)
    return ensure_synthetic(SyntheticSettings.from_config(cfg.data.synthetic), ROOT / ".cache")


def figures(run_dir: Path) -> dict[str, Any]:
    """Step times and peak memory a stage's run dir holds."""
    history = list(read_jsonl(run_dir / HISTORY_FILE)) if (run_dir / HISTORY_FILE).is_file() else []
    metrics = json.loads((run_dir / METRICS_FILE).read_text()) if (run_dir / METRICS_FILE).is_file() else {}
    return {
        "step_time_s": [row["step_time"] for row in history if "step_time" in row],
        "train_runtime_s": next((row["train_runtime"] for row in history if "train_runtime" in row), None),
        "memory_gib": {k: v for k, v in metrics.items() if k.startswith("memory/")},
    }


def planned_peak_gb(experiment: str, model_dir: Path, data_root: Path) -> float:
    """``make plan``'s peak-memory estimate for the stage's run, on the same prompts."""
    from lego_arta.planning.plan import make_plan

    cfg = compose_config(
        [f"experiment={experiment}", f"model.path={model_dir}", f"data.root={data_root}", "plan.max_records=8"],
        output_dir=WORK / "plan",
        config_name="plan",
    )
    return float(make_plan(cfg)["memory_gb"]["peak"])


def run(out: Path, timeout: float, budget: float) -> dict[str, Any]:
    """Every stage, each within ``timeout`` seconds and all within ``budget`` (a stage starts only with 60 s left)."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("error: make gpu-check needs a CUDA GPU (and make install-gpu); this machine has none")
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "stages": {}}
    start = time.perf_counter()
    model_dir = build_7b(WORK / "qwen2_5_vl_7b_random")
    report["stages"]["build_7b"] = {"wall_s": round(time.perf_counter() - start, 1), "path": str(model_dir)}
    data_root = pages()
    for name, command, experiment in stages(model_dir, data_root, importlib.util.find_spec("vllm") is not None):
        left = budget - (time.perf_counter() - start)
        if left < 60:
            report["stages"][name] = {"rc": None, "skipped": f"{budget:.0f} s budget spent"}
            continue
        run_dir = WORK / "runs" / name
        command = [*command, f"hydra.run.dir={run_dir}"]
        print(f"=== {name}: {shlex.join(command)}", flush=True)
        begin = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=min(timeout, left))
            rc, tail = proc.returncode, (proc.stdout + proc.stderr).splitlines()[-5:]
        except subprocess.TimeoutExpired:
            rc, tail = None, [f"stopped after {timeout:.0f} s"]
        stage = {"rc": rc, "wall_s": round(time.perf_counter() - begin, 1), **figures(run_dir), "last_lines": tail}
        if experiment is not None:
            stage["plan_peak_gb"] = planned_peak_gb(experiment, model_dir, data_root)
        report["stages"][name] = stage
        print(json.dumps({k: v for k, v in stage.items() if k != "last_lines"}), flush=True)
    write_bench("gpu", report, out)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "gpu.json")
    parser.add_argument("--stage-timeout", type=float, default=200.0, help="seconds per stage")
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for all of it (the lent GPU: 10 min)")
    args = parser.parse_args()
    run(args.out, args.stage_timeout, args.budget)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
