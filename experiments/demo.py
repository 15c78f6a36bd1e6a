"""The study end to end on the embedded default (tiny Qwen2.5-VL, synthetic LEGO scenes): `make demo`.

    python experiments/demo.py [OVERRIDE ...]          # e.g. demo.seeds=[0] method.args.max_steps=20
    python experiments/demo.py experiment=ablation     # make ablation: the reward ablation in the study's regime

Stages (each a normal run dir under outputs/demo/, with config.yaml, metrics.json, W&B offline run):
  baseline  method=none, the untrained model few-shot
  sft       method=sft, the whole tiny model fine-tuned (method.lora=null: it has nothing pretrained for LoRA to adapt)
  grpo_*    method=grpo, LoRA r8 on the SFT stage's model (or adapter), reward v1 and v2, one run per seed (the
            ablation's bands)
then the report: outputs/demo/report.md (Table 1) and outputs/demo/reward_curves.png.
Stage sizes live in conf/experiment/demo.yaml (`demo.*`); extra overrides apply to every stage. Another overlay
with the same `demo.*` stage plan runs the same way (`experiment=ablation` builds on demo.yaml), into
outputs/<its experiment_name>/.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from lego_arta.config import ROOT, compose_config
from lego_arta.pipeline import run_experiment
from lego_arta.report import write_report
from lego_arta.runs import ADAPTER_DIR, MODEL_DIR

log = logging.getLogger("demo")


def stages(demo: Any, out: Path, sft_lora: bool = True) -> list[tuple[str, list[str]]]:
    """(name, overrides) of every stage, in order; GRPO stages start from what the SFT stage saved: its LoRA adapter,
    or (``sft_lora=False``, SFT with ``method.lora=null``) its fully fine-tuned model."""
    plan = [("baseline", ["method=none", *demo.baseline]), ("sft", ["method=sft", *demo.sft, *demo.sft_extra])]
    sft = out / "sft"
    start = f"method.adapter={sft / ADAPTER_DIR}" if sft_lora else f"model.path={sft / MODEL_DIR}"
    for reward in demo.rewards:
        for seed in demo.seeds:
            overrides = ["method=grpo", f"reward={reward}", f"seed={seed}", start, *demo.grpo, *demo.grpo_extra]
            plan.append((f"grpo_{reward}_s{seed}", overrides))
    return plan


def run(overrides: list[str]) -> dict[str, Any]:
    """Run every stage, then the report; a failed stage is reported and the others go on."""
    experiment = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), "demo")
    overrides = [f"experiment={experiment}", *(o for o in overrides if not o.startswith("experiment="))]
    probe = compose_config(overrides, output_dir=ROOT / "outputs" / experiment)
    out = Path(probe.paths.log_dir) / probe.experiment_name
    if out.exists():
        shutil.rmtree(out)  # a demo is a fresh run: stale stages would mix into the report
    out.mkdir(parents=True)
    timings: dict[str, float] = {}
    failed: dict[str, str] = {}
    sft_overrides = [overrides[0], "method=sft", *probe.demo.sft, *probe.demo.sft_extra, *overrides[1:]]
    sft = compose_config(sft_overrides, output_dir=out / "sft")
    for name, stage_overrides in stages(probe.demo, out, sft_lora=sft.method.lora is not None):
        start = time.perf_counter()
        log.info("=== stage %s: %s", name, " ".join(stage_overrides))
        cfg = compose_config([overrides[0], *stage_overrides, *overrides[1:]], output_dir=out / name)
        try:
            run_experiment(cfg, train=True)
        except Exception as err:  # one failing stage must not lose the others
            failed[name] = f"{type(err).__name__}: {err}"
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "error.txt").write_text(traceback.format_exc())
            log.error("stage %s failed: %s", name, failed[name])
        timings[name] = time.perf_counter() - start
    report = write_report(out, out, smoothing=float(probe.demo.smoothing))
    return {"out": out, "timings": timings, "failed": failed, "report": report}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    start = time.perf_counter()
    result = run(sys.argv[1:])
    out: Path = result["out"]
    total = time.perf_counter() - start
    print((out / "report.md").read_text())
    print(
        f"\nDemo finished in {total / 60:.1f} min ({', '.join(f'{k} {v:.0f}s' for k, v in result['timings'].items())})"
    )
    print(f"  Table 1:        {out / 'report.md'}")
    if (out / "reward_curves.png").exists():
        print(f"  reward curves:  {out / 'reward_curves.png'}")
    print(f"  W&B (offline):  {out}/*/wandb/offline-run-*")
    print(f"  upload them:    wandb sync {out}/*/wandb/offline-run-*")
    if result["failed"]:
        print(f"  FAILED stages:  {result['failed']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
