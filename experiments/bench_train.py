"""Seconds per training step: our pipeline vs a bare TRL script with identical settings, same machine, same run.

    python experiments/bench_train.py [--steps 20] [--rounds 2]     # writes bench/train.json

Both train the tiny Qwen2.5-VL with LoRA r8 on the same synthetic rows; "ours" is the trainer our pipeline builds
(``lego_arta.methods``: config from Hydra, our callbacks), "bare" is TRL + PEFT called directly as in TRL's examples.
Both do the same work: the same processor (the model config's pixel budget), the same data order (``seed`` and
``data_seed``) and the global RNG seeded the same way before each trainer is built (LoRA init, dropout, GRPO's
sampling), so GRPO generates the same completions; the bench checks that the two runs processed the same number of
tokens (TRL's ``num_tokens``) and stops if not. Rounds alternate which of the two runs first; the median step time
after the first (warm-up) step is reported, and for GRPO the seconds per generated completion token. Target ratio
<= 1.05.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from peft import LoraConfig
from transformers import AutoModelForImageTextToText, TrainerCallback, set_seed
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from lego_arta.bench import write_bench
from lego_arta.config import compose_config
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
    lora = LoraConfig(r=lc.r, lora_alpha=lc.lora_alpha, lora_dropout=lc.lora_dropout, target_modules=lc.target_modules)
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
        "seed": int(cfg.seed),
        "data_seed": int(cfg.seed),
    }
    if cfg.method.name == "sft":
        args = SFTConfig(**common, max_length=None, completion_only_loss=True)
        data = rows.select_columns(["prompt", "completion", "images"])
        return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=processor, peft_config=lora)
    funcs, weights = build_reward_funcs(cfg.reward)
    args = GRPOConfig(
        **common,
        num_generations=a.num_generations,
        max_completion_length=a.max_completion_length,
        temperature=a.temperature,
        beta=a.beta,
        reward_weights=weights,
    )
    data = rows.select_columns(["prompt", "images", "solution", "task", "id"])
    return GRPOTrainer(
        model=model, reward_funcs=funcs, args=args, train_dataset=data, processing_class=processor, peft_config=lora
    )


def _logged(trainer: Any) -> tuple[int, float]:
    """(TRL's ``num_tokens`` at the end, completion tokens generated) from the trainer's log history."""
    history = [row for row in trainer.state.log_history if "num_tokens" in row]
    batch = trainer.args.per_device_train_batch_size
    generated = sum(row["completions/mean_length"] * batch for row in history if "completions/mean_length" in row)
    return int(history[-1]["num_tokens"]), generated


def bench(method: str, steps: int, rounds: int) -> dict[str, Any]:
    per_step: dict[str, list[float]] = {"ours": [], "bare": []}
    tokens: dict[str, set[int]] = {"ours": set(), "bare": set()}
    generated: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            *SETTINGS[method],
            f"method.args.max_steps={steps}",
            "method.args.save_steps=100000",
            "logger=none",
        ]
        cfg = compose_config(overrides, output_dir=tmp)
        data = load_data(cfg)
        rows = build_dataset(data.train, data.train, cfg.data, int(cfg.seed))
        for r in range(rounds):
            builders = [("bare", _bare), ("ours", _ours)]
            for name, build in builders if r % 2 == 0 else builders[::-1]:  # neither always pays the first run's costs
                set_seed(int(cfg.seed))  # the LoRA init happens while the trainer is built
                trainer = build(cfg, rows, Path(tmp) / f"{name}{r}")
                timer = StepTimer()
                trainer.add_callback(timer)
                trainer.train()
                per_step[name].extend(timer.times[1:])
                count, generated[name] = _logged(trainer)
                tokens[name].add(count)
    if len(tokens["ours"] | tokens["bare"]) != 1:
        raise RuntimeError(f"{method}: the runs processed different numbers of tokens {tokens}: not the same work")
    median = {name: statistics.median(times) for name, times in per_step.items()}
    report = {"steps": steps, "rounds": rounds, "tokens": tokens["ours"].pop()}
    report |= {"s_per_step_ours": median["ours"], "s_per_step_bare": median["bare"]}
    report["ratio"] = median["ours"] / median["bare"]
    if method == "grpo":  # seconds per generated completion token (per step: the run's median)
        report["completion_tokens"] = generated["ours"]
        report |= {f"s_per_token_{name}": steps * median[name] / generated[name] for name in median}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    report = {m: bench(m, args.steps, args.rounds) for m in ("sft", "grpo")}
    path = write_bench("train", report)
    for m, r in report.items():
        print(
            f"{m}: ours {r['s_per_step_ours']:.3f} s/step, bare TRL {r['s_per_step_bare']:.3f} s/step, "
            f"ratio {r['ratio']:.3f}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
