"""Throughput of every reward on 10k mixed synthetic completions, and of long completions; writes bench/rewards.json.

    python experiments/bench_rewards.py [--n 10000] [--batch 64] [--repeats 3] [--out bench/rewards.json]

Completions mix good / bad / legacy / fenced / think-wrapped / conversational answers for object, state and
grounding samples (seeded). Rewards are called the TRL way, one batch at a time, on one core; the best of
``--repeats`` passes is reported as applicable samples per second: the samples a reward scores (not None), so the
samples of other tasks in a mixed batch do not count. Then the grounding reward scores one batch of 32 completions of
30 KB each (what ``score.py`` and evaluation may read). Goals: iou_v2 >= 20k applicable samples/s, the long batch in
under 0.2 s; each is reported with whether it is met. Last, ``grounding_semantic`` with the tiny offline sentence
encoder: seconds per GRPO-sized batch of grounding completions (the encoder loaded once, before the timing; a real
encoder is larger and slower, measure it with ``--encoder <hub id or dir>``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core: set before numpy loads
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

from lego_arta.bench import BENCH_DIR, write_bench  # noqa: E402
from lego_arta.rewards import REWARDS  # noqa: E402

# the speed goals: iou_v2 keeps >= 20k applicable samples/s; 32 completions of 30 KB score in < 0.2 s
IOU_V2_GOAL = 20_000
LONG_COMPLETIONS, LONG_BYTES, LONG_GOAL_S = 32, 30_000, 0.2
WORDS = "attach the red blue yellow 1x2 2x4 brick plate beam axle pin gear on top of left right side".split()


def _label(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))


def _box(rng: random.Random, out_of_range: bool = False) -> list[float | int]:
    x1, y1 = rng.randint(0, 80), rng.randint(0, 80)
    box: list[float | int] = [x1, y1, x1 + rng.randint(1, 20), y1 + rng.randint(1, 20)]
    if out_of_range:
        box[rng.randrange(4)] = rng.choice([-5, 130.5])
    if rng.random() < 0.3:
        box = [v + 0.5 for v in box]
    return box


def _json(boxes: list[list[float | int]], labels: list[str]) -> str:
    return json.dumps([{"bbox_2d": b, "label": lab} for b, lab in zip(boxes, labels, strict=True)])


def _legacy(boxes: list[list[float | int]], labels: list[str]) -> str:
    return "".join(f"<p>{lab}</p>{{<{b[0]}><{b[1]}><{b[2]}><{b[3]}>}}" for b, lab in zip(boxes, labels, strict=True))


def _wrap(rng: random.Random, answer: str, distractor: str) -> str:
    style = rng.random()
    if style < 0.5:
        return f"<think>Let me look. {distractor}</think>\n<answer>{answer}</answer>"
    if style < 0.7:
        return f"<think>{distractor}</think> {answer}"
    if style < 0.85:
        return answer
    return f"<think>unclosed {distractor} <answer>{answer}"


def synthetic_batch(n: int, seed: int = 0) -> tuple[list[Any], list[str], list[str]]:
    """``n`` (completion, solution, task) triples, about 55% object, 30% state, 15% grounding."""
    rng = random.Random(seed)
    completions: list[Any] = []
    solutions, tasks = [], []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.55:
            k = rng.choice([1, 1, 1, 2, 3])
            ref_boxes, labels = [_box(rng) for _ in range(k)], [_label(rng) for _ in range(k)]
            solution = _json(ref_boxes, labels) if rng.random() < 0.5 else _legacy(ref_boxes, labels)
            m = max(0, k + rng.choice([-1, 0, 0, 0, 1]))
            pred = [_box(rng, out_of_range=rng.random() < 0.1) for _ in range(m)]
            pred_labels = [_label(rng) for _ in range(m)]
            style = rng.random()
            if style < 0.55:
                answer = _json(pred, pred_labels)
            elif style < 0.7:
                answer = f"```json\n{_json(pred, pred_labels)}\n```"
            elif style < 0.8:
                answer = _legacy(pred, pred_labels)
            elif style < 0.9 and pred:
                answer = json.dumps({"bbox_2d": pred[0], "label": pred_labels[0]})
            else:
                answer = f"I see a {_label(rng)} at the top left."
            completion = _wrap(rng, answer, _json([_box(rng)], ["decoy"]))
            task = "object"
        elif kind < 0.85:
            solution = rng.choice(["Yes", "No", "No", "No"])
            completion = _wrap(rng, rng.choice(["Yes", "No", "yes.", "I think no", "Unclear"]), "yes or no? no.")
            task = "state"
        else:
            solution = " ".join(rng.choices(WORDS, k=rng.randint(5, 25)))
            completion = _wrap(rng, " ".join(rng.choices(WORDS, k=rng.randint(0, 30))), "maybe the blue one")
            task = "grounding"
        # a conversational completion (a list of messages), as TRL passes them for chat datasets
        completions.append([{"role": "assistant", "content": completion}] if rng.random() < 0.2 else completion)
        solutions.append(solution)
        tasks.append(task)
    return completions, solutions, tasks


def bench(n: int, batch: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """Per reward: applicable samples per second (the lead figure), how many of the ``n`` it scored, seconds."""
    completions, solutions, tasks = synthetic_batch(n, seed)
    results: dict[str, Any] = {}
    for name, func in REWARDS.items():
        best = float("inf")
        applicable = 0
        for _ in range(repeats):
            start = time.perf_counter()
            values = []
            for i in range(0, n, batch):
                values += func(
                    completions[i : i + batch], solution=solutions[i : i + batch], task=tasks[i : i + batch]
                )
            best = min(best, time.perf_counter() - start)
            applicable = sum(v is not None for v in values)
        results[name] = {
            "applicable_per_s": round(applicable / best, 1),
            "applicable": applicable,
            "seconds": round(best, 4),
        }
    return results


def long_text(n_bytes: int, rng: random.Random) -> str:
    """About ``n_bytes`` of instruction-like words, cut to exactly ``n_bytes``."""
    words = rng.choices(WORDS, k=n_bytes // 4)
    return " ".join(words)[:n_bytes]


def bench_long(completions: int, n_bytes: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """Seconds (best of ``repeats``) for the grounding reward on one batch of ``completions`` texts of ``n_bytes``."""
    rng = random.Random(seed)
    batch = [long_text(n_bytes, rng) for _ in range(completions)]
    solutions = [" ".join(rng.choices(WORDS, k=rng.randint(5, 25))) for _ in range(completions)]
    grounding = REWARDS["grounding"]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        grounding(batch, solution=solutions, task=["grounding"] * completions)
        best = min(best, time.perf_counter() - start)
    return {"completions": completions, "bytes_each": n_bytes, "seconds": round(best, 4)}


def bench_semantic(encoder: str | None, batch: int, repeats: int) -> dict[str, Any]:
    """Seconds per batch of ``batch`` grounding completions for ``grounding_semantic`` (best of ``repeats``)."""
    from lego_arta.models.tiny_encoder import build_tiny_sentence_encoder
    from lego_arta.rewards import GroundingSemanticReward
    from lego_arta.scores.semantic import load_encoder

    model = encoder or str(build_tiny_sentence_encoder(Path(BENCH_DIR).parent / ".cache"))
    load_encoder(model)  # loaded once per process, as in training
    rng = random.Random(0)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(5, 25))) for _ in range(2 * batch)]
    reward = GroundingSemanticReward(model)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        reward(texts[:batch], solution=texts[batch:], task=["grounding"] * batch)
        best = min(best, time.perf_counter() - start)
    return {
        "encoder": "tiny (offline, random weights)" if encoder is None else encoder,
        "batch": batch,
        "seconds_per_batch": round(best, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of synthetic samples")
    parser.add_argument("--batch", type=int, default=64, help="samples per reward call (TRL calls per batch)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per reward; the best is reported")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "rewards.json")
    parser.add_argument("--encoder", default=None, help="grounding_semantic's encoder (default: the tiny offline one)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    results = bench(args.n, args.batch, args.repeats)
    long = bench_long(LONG_COMPLETIONS, LONG_BYTES, args.repeats)
    semantic = bench_semantic(args.encoder, args.batch, args.repeats)
    iou_v2 = results["iou_v2"]["applicable_per_s"]
    goals = {
        "iou_v2_applicable_per_s": {"value": iou_v2, "goal": IOU_V2_GOAL, "met": iou_v2 >= IOU_V2_GOAL},
        "grounding_long_batch_s": {
            "value": long["seconds"],
            "goal": LONG_GOAL_S,
            "met": long["seconds"] < LONG_GOAL_S,
        },
    }
    report = {
        "samples": args.n,
        "batch": args.batch,
        "repeats": args.repeats,
        "rewards": results,
        "grounding_long_batch": long,
        "grounding_semantic": semantic,
        "goals": goals,
        "cores_used": 1,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    write_bench("rewards", report, args.out)
    width = max(map(len, results))
    for name, r in results.items():
        print(f"{name:<{width}}  {r['applicable_per_s']:>10,.0f} applicable samples/s ({r['applicable']} of {args.n})")
    print(f"grounding, {long['completions']} x {long['bytes_each'] // 1000} KB in one batch: {long['seconds']:.3f} s")
    print(
        f"grounding_semantic ({semantic['encoder']}): {semantic['seconds_per_batch']:.3f} s per batch of {args.batch}"
    )
    for key, goal in goals.items():
        print(f"goal {key}: {goal['value']} (goal {goal['goal']}): {'met' if goal['met'] else 'NOT met'}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
