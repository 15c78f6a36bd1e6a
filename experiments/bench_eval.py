"""Evaluation throughput (samples/s) of the tiny model at batch 1 and batch 8; writes bench/eval.json.

    python experiments/bench_eval.py [--samples 32] [--max-new-tokens 32]

Greedy generation of a fixed number of new tokens for the same test rows at each batch size (the randomly
initialised model rarely stops early, so every sample costs the same). Target: batch 8 >= 2x batch 1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lego_arta.bench import write_bench
from lego_arta.config import compose_config
from lego_arta.data import build_dataset, load_data
from lego_arta.evaluation.generate import GenerationSettings, TransformersBackend, generate_predictions
from lego_arta.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["logger=none"], output_dir=tmp)
        data = load_data(cfg)
        model, processor = load_model(cfg.model, cfg.paths.cache_dir)
        rows = build_dataset(data.test, data.train, cfg.data, int(cfg.seed))
        rows = rows.select(range(min(args.samples, len(rows))))
        settings = GenerationSettings.from_config(cfg.eval, max_new_tokens=args.max_new_tokens, do_sample=False)
        backend = TransformersBackend(model, processor, settings=settings)
        generate_predictions(backend, rows.select(range(2)), Path(tmp) / "warmup.jsonl", batch_size=2, generator="")
        report: dict[str, float | int] = {"samples": len(rows), "max_new_tokens": args.max_new_tokens}
        for batch in (1, 8):
            start = time.perf_counter()
            generate_predictions(backend, rows, Path(tmp) / f"bs{batch}.jsonl", batch_size=batch, generator="")
            report[f"samples_per_s_batch{batch}"] = len(rows) / (time.perf_counter() - start)
    report["speedup_batch8_vs_1"] = report["samples_per_s_batch8"] / report["samples_per_s_batch1"]
    path = write_bench("eval", report)
    print(
        f"batch 1: {report['samples_per_s_batch1']:.2f} samples/s, batch 8: {report['samples_per_s_batch8']:.2f} "
        f"samples/s ({report['speedup_batch8_vs_1']:.2f}x); wrote {path}"
    )


if __name__ == "__main__":
    main()
