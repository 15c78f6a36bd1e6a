"""Seconds per training step: our pipeline vs a bare TRL script with identical settings, same machine, same run.

    python experiments/bench_train.py [--steps 20] [--rounds 4] [--profile-steps 5]    # writes bench/train.json

Both train the tiny Qwen2.5-VL with LoRA r8 on the same synthetic rows; "ours" is the trainer our pipeline builds
(``lego_arta.methods``: config from Hydra, our callbacks), "bare" is TRL + PEFT called directly as in TRL's examples.
Both do the same work: the same processor (the model config's pixel budget), the same data order (``seed`` and
``data_seed``) and the global RNG seeded the same way before each trainer is built (LoRA init, dropout, GRPO's
sampling), so GRPO generates the same completions; the bench checks that the two runs processed the same number of
tokens (TRL's ``num_tokens``) and stops if not. A round runs bare, ours, ours, bare (the mirror order in the next);
the median step time after the first (warm-up) step is reported, and for GRPO the seconds per generated completion
token. Target ratio <= 1.05.

Each ratio comes with its spread over the rounds and with the A/A spread (two runs of the same code in one round),
then two runs of each side under cProfile: the time per step inside the Trainer's ``training_step`` (the same code
for both), and the functions only one side calls, with their time. ``notes`` says what the numbers mean.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from peft import LoraConfig
from transformers import AutoModelForImageTextToText, TrainerCallback, set_seed
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from lego_arta.bench import write_bench
from lego_arta.config import ROOT, compose_config
from lego_arta.data import build_dataset, load_data
from lego_arta.methods.grpo import build_grpo_trainer
from lego_arta.methods.sft import build_sft_trainer
from lego_arta.models import load_model, load_processor, resolve_model_path
from lego_arta.rewards import build_reward_funcs
from lego_arta.tracking import Tracker

SETTINGS = {
    "sft": ["method=sft", "method.args.per_device_train_batch_size=4"],
    "grpo": [
        "method=grpo",
        "method.args.per_device_train_batch_size=2",
        "method.args.num_generations=2",
        "method.args.max_completion_length=16",
    ],
}


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kw):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._start)


def _ours(cfg: Any, rows: Any, out: Path) -> Any:
    model, processor = load_model(cfg.model, cfg.paths.cache_dir)
    build = build_sft_trainer if cfg.method.name == "sft" else build_grpo_trainer
    return build(cfg, model, processor, rows, out, Tracker())


def _bare(cfg: Any, rows: Any, out: Path) -> Any:
    """TRL + PEFT called directly, with the values our config resolves to."""
    path = resolve_model_path(cfg.model, cfg.paths.cache_dir)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype="float32", attn_implementation="sdpa")
    for name, param in model.named_parameters():
        if "visual" in name:
            param.requires_grad_(False)
    processor = load_processor(path, cfg.model)  # left padding, the configured pixel budget: the same inputs as ours
    lc = cfg.method.lora
    lora = LoraConfig(
        r=lc.r,
        lora_alpha=lc.lora_alpha,
        lora_dropout=lc.lora_dropout,
        target_modules=lc.target_modules,
        task_type=lc.task_type,  # PeftModelForCausalLM, as ours: else PEFT wraps the model in another class
    )
    a = cfg.method.args
    common: dict[str, Any] = {
        "output_dir": str(out),
        "max_steps": a.max_steps,
        "per_device_train_batch_size": a.per_device_train_batch_size,
        "learning_rate": a.learning_rate,
        "lr_scheduler_type": a.lr_scheduler_type,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "bf16": False,
        "activation_checkpointing": False,
        "remove_unused_columns": False,
        "logging_nan_inf_filter": a.logging_nan_inf_filter,  # ours logs a NaN loss as it is (conf/method/args)
        "seed": int(cfg.seed),
        "data_seed": int(cfg.seed),
    }
    if cfg.method.name == "sft":
        sft_args = SFTConfig(**common, max_length=None, completion_only_loss=True)
        data = rows.select_columns(["prompt", "completion", "images"])
        return SFTTrainer(model=model, args=sft_args, train_dataset=data, processing_class=processor, peft_config=lora)
    funcs, weights = build_reward_funcs(cfg.reward)
    reward_funcs: list[Any] = list(funcs)  # TRL's parameter: a list of model ids, models or callables (invariant)
    grpo_args = GRPOConfig(
        **common,
        num_generations=a.num_generations,
        max_completion_length=a.max_completion_length,
        temperature=a.temperature,
        beta=a.beta,
        reward_weights=weights,
    )
    data = rows.select_columns(["prompt", "images", "solution", "task", "id"])
    return GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=grpo_args,
        train_dataset=data,
        processing_class=processor,
        peft_config=lora,
    )


def _logged(trainer: Any) -> tuple[int, float]:
    """(TRL's ``num_tokens`` at the end, completion tokens generated) from the trainer's log history."""
    history = [row for row in trainer.state.log_history if "num_tokens" in row]
    batch = trainer.args.per_device_train_batch_size
    generated = sum(row["completions/mean_length"] * batch for row in history if "completions/mean_length" in row)
    return int(history[-1]["num_tokens"]), generated


def _key(path: str, name: str) -> str:
    """``<file under site-packages, the standard library or the repo>:<function>``."""
    for prefix in (str(ROOT), sysconfig.get_paths()["stdlib"]):
        path = path.removeprefix(prefix + "/")
    return f"{path.split('site-packages/')[-1]}:{name}"


def _functions(stats: pstats.Stats) -> dict[str, tuple[float, set[str]]]:
    """Per function (lines merged): cumulative seconds and the functions that called it."""
    out: dict[str, tuple[float, set[str]]] = {}
    for (path, _, name), (_, _, _, cumulative, callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = _key(path, name)
        seconds, called_by = out.get(key, (0.0, set()))
        out[key] = (seconds + cumulative, called_by | {_key(p, n) for p, _, n in callers})
    return out


def profile(overrides: list[str], rows: Any, tmp: Path, steps: int, top: int = 5) -> dict[str, Any]:
    """Two runs of each side under cProfile (bare, ours, ours, bare: each side runs first once), ``steps`` steps
    each: seconds per step inside the Trainer's ``training_step``, and where the sides part: the functions only one
    side calls, entered from code both call (their callees left out), the ``top`` of them by cumulative time."""
    cfg = compose_config([*overrides, f"method.args.max_steps={steps}"], output_dir=tmp)  # the cache is in overrides
    stats: dict[str, pstats.Stats] = {}
    for i, (name, build) in enumerate([("bare", _bare), ("ours", _ours), ("ours", _ours), ("bare", _bare)]):
        set_seed(int(cfg.seed))
        trainer = build(cfg, rows, tmp / f"profile-{i}")
        with cProfile.Profile() as prof:
            trainer.train()
        if name in stats:
            stats[name].add(prof)
        else:
            stats[name] = pstats.Stats(prof)
        del trainer
    functions = {name: _functions(s) for name, s in stats.items()}
    report: dict[str, Any] = {"steps": steps, "runs_per_side": 2}
    for name, other in (("ours", "bare"), ("bare", "ours")):
        step, _ = functions[name]["transformers/trainer.py:training_step"]
        report[f"s_per_training_step_{name}"] = step / (2 * steps)
        common = functions[name].keys() & functions[other].keys()
        only = functions[name].keys() - common
        entered = {k: v / 2 for k, (v, callers) in functions[name].items() if k in only and not callers & only}
        report[f"only_{name}_s_per_run"] = dict(sorted(entered.items(), key=lambda kv: -kv[1])[:top])
    return report


def notes(method: str, report: dict[str, Any]) -> list[str]:
    """What ``report`` (one method's) says, in words, from its own numbers."""
    prof = report["profile"]
    low, high = report["same_code_ratio_min_max"]
    only = ", ".join(f"{k} ({v:.4f} s per run)" for k, v in prof["only_ours_s_per_run"].items()) or "nothing"
    only_bare = ", ".join(prof["only_bare_s_per_run"]) or "nothing"
    return [
        f"{method}: ours / bare TRL = {report['ratio']:.3f}, from {report['ratio_min']:.3f} to "
        f"{report['ratio_max']:.3f} over {report['rounds']} rounds; two runs of the same code in one round differ "
        f"by {low:.3f} to {high:.3f} (A/A). "
        + (
            "The ratio lies inside that noise: no difference between ours and bare TRL is measurable here."
            if low <= report["ratio"] <= high
            else "The ratio lies outside that noise: the difference is real on this machine."
        ),
        f"{method}: profiled ({prof['runs_per_side']} runs of {prof['steps']} steps per side), the Trainer's "
        f"training_step takes {prof['s_per_training_step_ours']:.4f} s per step in ours and "
        f"{prof['s_per_training_step_bare']:.4f} s in bare TRL. Only ours calls {only}; only bare calls "
        f"{only_bare}. What ours pays for: the checkpoint it writes after the last step, with its model card rendered "
        "by jinja2 (save_strategy=steps, so that a run can resume; bare saves nothing), outside the timed steps; "
        "inside them its callbacks (history.jsonl, the rollouts table, save-on-signal) and, for GRPO, the share of "
        "groups each reward varies in (grpo.py:_calculate_rewards). Everything else is the same calls.",
    ]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of ``values``.

    >>> spread([1.0, 3.0, 2.0])
    {'median': 2.0, 'min': 1.0, 'max': 3.0}
    """
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench(
    method: str, steps: int, rounds: int, profile_steps: int, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """``rounds`` rounds of four runs (``steps`` steps each): bare, ours, ours, bare, or the mirror order in every
    other round, so that neither side gains from its place in the process. A round's ratio is ours over bare, each
    side's two run medians averaged; the A/A ratios (a side's second run over its first, in the same round) show how
    far two runs of the same code differ here: the noise floor a ratio is read against."""
    per_step: dict[str, list[float]] = {"ours": [], "bare": []}
    ratios: list[float] = []
    same_code: list[float] = []
    tokens: dict[str, set[int]] = {"ours": set(), "bare": set()}
    generated: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            *SETTINGS[method],
            f"method.args.max_steps={steps}",
            "method.args.save_steps=100000",
            "logger=none",
            *([f"paths.cache_dir={cache_dir}"] if cache_dir else []),
        ]
        cfg = compose_config(overrides, output_dir=tmp)
        data = load_data(cfg)
        rows = build_dataset(data.train, data.train, cfg.data, int(cfg.seed))
        for r in range(rounds):
            first, second = (("bare", _bare), ("ours", _ours))[:: 1 if r % 2 == 0 else -1]
            median: dict[str, list[float]] = {"ours": [], "bare": []}
            for i, (name, build) in enumerate((first, second, second, first)):
                set_seed(int(cfg.seed))  # the LoRA init happens while the trainer is built
                trainer = build(cfg, rows, Path(tmp) / f"{r}-{i}-{name}")
                timer = StepTimer()
                trainer.add_callback(timer)
                trainer.train()
                per_step[name].extend(timer.times[1:])
                median[name].append(statistics.median(timer.times[1:]))
                count, generated[name] = _logged(trainer)
                tokens[name].add(count)
                del trainer
            ratios.append(statistics.mean(median["ours"]) / statistics.mean(median["bare"]))
            same_code += [later / earlier for earlier, later in median.values()]
        profiled = profile(overrides, rows, Path(tmp), profile_steps) if profile_steps else None
    if len(tokens["ours"] | tokens["bare"]) != 1:
        raise RuntimeError(f"{method}: the runs processed different numbers of tokens {tokens}: not the same work")
    step = {name: spread(times) for name, times in per_step.items()}
    ratio, noise = spread(ratios), spread(same_code)
    report: dict[str, Any] = {"steps": steps, "rounds": rounds, "tokens": tokens["ours"].pop()}
    report |= {f"s_per_step_{name}": step[name]["median"] for name in step}
    report |= {f"s_per_step_{name}_min_max": [step[name]["min"], step[name]["max"]] for name in step}
    report |= {"ratio": ratio["median"], "ratio_min": ratio["min"], "ratio_max": ratio["max"]}
    report["ratio_per_round"] = ratios
    report["same_code_ratio_min_max"] = [noise["min"], noise["max"]]
    if method == "grpo":  # seconds per generated completion token (per step: the run's median)
        report["completion_tokens"] = generated["ours"]
        report |= {f"s_per_token_{name}": steps * step[name]["median"] / generated[name] for name in step}
    if profiled:
        report["profile"] = profiled
        report["notes"] = notes(method, report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4, help="an even number: each side runs first as often")
    parser.add_argument("--profile-steps", type=int, default=5, help="steps of the profiled run (0: no profile)")
    args = parser.parse_args()
    report = {m: bench(m, args.steps, args.rounds, args.profile_steps) for m in ("sft", "grpo")}
    path = write_bench("train", report)
    for m, r in report.items():
        print(
            f"{m}: ours {r['s_per_step_ours']:.3f} s/step, bare TRL {r['s_per_step_bare']:.3f} s/step, "
            f"ratio {r['ratio']:.3f} [{r['ratio_min']:.3f}, {r['ratio_max']:.3f}] over {r['rounds']} rounds"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
