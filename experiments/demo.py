"""The study end to end on the embedded default (tiny Qwen2.5-VL, synthetic LEGO scenes): `make demo`.

    python experiments/demo.py [OVERRIDE ...]          # e.g. demo.seeds=[0] method.args.max_steps=20
    python experiments/demo.py experiment=ablation     # make ablation: the reward ablation in the study's regime
    python experiments/demo.py experiment=ablation_unscaled   # the same without the group-std scaling

Stages (each a normal run dir under outputs/demo/, with config.yaml, metrics.json, W&B offline run):
  baseline  method=none, the untrained model few-shot
  sft       method=sft, the whole tiny model fine-tuned (method.lora=null: it has nothing pretrained for LoRA to adapt)
  grpo_*    method=grpo, LoRA r8 on the SFT stage's model (or adapter), reward v1 and v2, one run per seed (the
            ablation's bands)
then the report: outputs/demo/report.md (Table 1) and outputs/demo/reward_curves.png.
The GRPO stages depend only on the SFT stage: `demo.workers` of them run side by side, each in its own process on one
compute thread (generation on the tiny model gains nothing from a second thread); `demo.workers=1` runs them in
this process, one after another, on every core.
Stage sizes live in conf/experiment/demo.yaml (`demo.*`); extra overrides apply to every stage and win over its own.
`debug=quick` (conf/debug/quick.yaml) shrinks every stage: its values win over a stage's own, as they win over an
overlay's in a plain run, and values typed on the command line win over them. Another overlay with the same `demo.*`
stage plan runs the same way (`experiment=ablation` builds on demo.yaml), into outputs/<its experiment_name>/.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from lego_arta.config import CONF_DIR, ROOT, compose_config
from lego_arta.errors import UserError
from lego_arta.ownership import RunDirInUse, describe, live_owners
from lego_arta.pipeline import run_experiment
from lego_arta.report import write_report
from lego_arta.runs import ADAPTER_DIR, MODEL_DIR

log = logging.getLogger("demo")
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


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


class Stage(NamedTuple):
    name: str
    overrides: list[str]  # everything it was composed from, in order
    cfg: DictConfig
    wave: int = 0  # a chain's stages run wave after wave: a stage starts from a stage of an earlier wave
    seeded: bool = False  # one of several seeds: seeded stages of a wave run demo.workers at a time


def weights_of(stage: Stage, out: Path) -> str:
    """The override that starts a stage from what ``stage`` saved: its LoRA adapter, or its fully fine-tuned model."""
    if stage.cfg.method.lora is None:
        return f"model.path={out / stage.name / MODEL_DIR}"
    return f"method.adapter={out / stage.name / ADAPTER_DIR}"


def chain_stages(chain: Any, seeds: Sequence[int], out: Path, compose: Any) -> list[Stage]:
    """The stages of a ``demo.chain`` (an overlay's list of ``{name, overrides, from, seeds}``, each key given), in
    order.

    ``from: <stage>`` starts a stage from that earlier stage's saved weights (:func:`weights_of`); ``seeds: true``
    makes one stage per ``demo.seeds`` entry, named ``<name>_s<seed>``, with ``seed=<seed>``. A stage's wave is one
    more than its source's.

    Raises:
        ValueError: a ``from`` naming no earlier unseeded stage.
    """
    done: dict[str, Stage] = {}
    plan: list[Stage] = []
    for spec in chain:
        name, source = str(spec["name"]), spec["from"]
        # an entry may be a list (an interpolated stage plan, "${demo.grpo}"): its overrides in place
        base = [
            str(o)
            for item in spec["overrides"]
            for o in (item if isinstance(item, Sequence | ListConfig) and not isinstance(item, str) else [item])
        ]
        wave = 0
        if source is not None:
            if str(source) not in done:
                raise ValueError(f"demo.chain: stage {name} starts from {source}, not an earlier unseeded stage")
            base = [*base, weights_of(done[str(source)], out)]
            wave = done[str(source)].wave + 1
        if spec["seeds"]:
            for seed in seeds:
                stage = compose(f"{name}_s{seed}", [*base, f"seed={seed}"])
                plan.append(stage._replace(wave=wave, seeded=True))
        else:
            done[name] = compose(name, base)._replace(wave=wave)
            plan.append(done[name])
    return plan


def budget_keys(overrides: Sequence[str]) -> set[str]:
    """The keys that ``debug=NAME`` among ``overrides`` sets (``conf/debug/NAME.yaml``), e.g.
    ``method.args.max_steps``; none without it. A stage's own value of such a key gives way to the budget."""
    name = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "debug"), "null")
    return set() if name == "null" else set(_leaves(OmegaConf.load(CONF_DIR / "debug" / f"{name}.yaml")))


def _leaves(node: Any, prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        if isinstance(value, DictConfig):
            yield from _leaves(value, f"{prefix}{key}.")
        elif prefix or key != "defaults":
            yield f"{prefix}{key}"


def compose_stages(overrides: Sequence[str]) -> tuple[DictConfig, Path, list[Stage]]:
    """The demo's own config (its ``demo.*`` stage plan), its output dir and every stage composed, in order.

    A stage is the overlay, then the stage's overrides, then ``overrides`` (later ones win). A stage override of a key
    that the quick budget (``debug=quick`` in ``overrides``) sets is left out, so that the budget wins over the stage's
    own size as it wins over an overlay's values in a plain run (``debug`` comes after ``experiment`` in the defaults
    list); a value typed in ``overrides`` still wins over the budget.
    """
    # the last experiment= wins, as a later value does on any command line (make ablation ARGS="experiment=...")
    named = [o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")]
    experiment = named[-1] if named else "demo"
    overrides = [f"experiment={experiment}", *(o for o in overrides if not o.startswith("experiment="))]
    probe = compose_config(overrides, output_dir=ROOT / "outputs" / experiment)
    out = Path(probe.paths.log_dir) / probe.experiment_name
    budget = budget_keys(overrides)

    def compose(name: str, stage_overrides: list[str]) -> Stage:
        kept = [o for o in stage_overrides if o.split("=", 1)[0].lstrip("+~") not in budget]
        composed = [overrides[0], *kept, *overrides[1:]]
        return Stage(name, composed, compose_config(composed, output_dir=out / name))

    if probe.demo.chain:
        return probe, out, chain_stages(probe.demo.chain, probe.demo.seeds, out, compose)
    sft = compose("sft", ["method=sft", *probe.demo.sft, *probe.demo.sft_extra]).cfg
    planned = [compose(*stage) for stage in stages(probe.demo, out, sft_lora=sft.method.lora is not None)]
    grpo = [s.name.startswith("grpo_") for s in planned]  # the GRPO stages need only the SFT stage's model
    return probe, out, [s._replace(wave=int(g), seeded=g) for s, g in zip(planned, grpo, strict=True)]


class Outcome(NamedTuple):
    name: str
    seconds: float
    error: str | None  # "<type>: <message>" of a failed stage, None when it finished
    trace: str | None  # its traceback, written to <stage>/error.txt


def run_stage(stage: Stage) -> Outcome:
    """Run one stage (train, evaluate) and time it; a failure is returned, not raised, so the others go on."""
    start = time.perf_counter()
    log.info("=== stage %s: %s", stage.name, " ".join(stage.overrides))
    try:
        run_experiment(stage.cfg, train=True)
    except Exception as err:  # one failing stage must not lose the others
        return Outcome(stage.name, time.perf_counter() - start, f"{type(err).__name__}: {err}", traceback.format_exc())
    return Outcome(stage.name, time.perf_counter() - start, None, None)


def _worker_init() -> None:
    """A stage process: the demo's log format, and torch on one thread (the processes share the cores)."""
    import torch

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    torch.set_num_threads(1)


def run_stages(stages: Sequence[Stage], workers: int) -> Iterator[Outcome]:
    """Each stage's outcome: in this process one after another (``workers`` <= 1), else ``workers`` processes side by
    side (spawned: a fresh interpreter each, as a sweep job would be); in the stages' order either way."""
    if workers <= 1 or len(stages) <= 1:
        yield from map(run_stage, stages)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(stages)), mp_context=context, initializer=_worker_init) as pool:
        yield from pool.map(run_stage, stages)


def run(overrides: list[str]) -> dict[str, Any]:
    """Run every stage, then the report; a failed stage is reported and the others go on.

    Wave by wave (a stage starts from a stage of an earlier wave): a wave's single stages (baseline, SFT, a
    pre-stage) run here in turn, then its seeded stages (the GRPO seeds, which need only the SFT stage's model)
    ``demo.workers`` at a time (:func:`run_stages`).
    """
    probe, out, planned = compose_stages(overrides)
    if live := live_owners(out, float(probe.ownership.stale_after_s)):  # never delete a live run's dir
        where, owner = live[0]
        raise RunDirInUse(f"{where} is in use by {describe(owner)}: {out} is not deleted; wait for that run to end")
    if out.exists():
        shutil.rmtree(out)  # a demo is a fresh run: stale stages would mix into the report
    out.mkdir(parents=True)
    outcomes: list[Outcome] = []
    for wave in sorted(
        {stage.wave for stage in planned}
    ):  # a wave's single stages in turn, then its seeds side by side
        here = [stage for stage in planned if stage.wave == wave]
        outcomes += run_stages([s for s in here if not s.seeded], 1)
        outcomes += run_stages([s for s in here if s.seeded], int(probe.demo.workers))
    failed: dict[str, str] = {}
    for outcome in outcomes:
        if outcome.error is not None:
            failed[outcome.name] = outcome.error
            (out / outcome.name).mkdir(parents=True, exist_ok=True)
            (out / outcome.name / "error.txt").write_text(outcome.trace or outcome.error)
            log.error("stage %s failed: %s", outcome.name, outcome.error)
    timings = {outcome.name: outcome.seconds for outcome in outcomes}
    report = write_report(out, out, smoothing=float(probe.demo.smoothing))
    return {"out": out, "timings": timings, "failed": failed, "report": report}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    start = time.perf_counter()
    try:
        result = run(sys.argv[1:])
    except UserError as err:  # one line, as the entry scripts print it (lego_arta/cli.py)
        print(f"error: {err}", file=sys.stderr)
        return 2
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
