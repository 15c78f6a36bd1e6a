"""Synthetic scene generation time (the embedded default's data); writes bench/data.json.

    python experiments/bench_data.py [--manuals 20]

Draws ``--manuals`` manuals with the settings of conf/data/synthetic.yaml (seed 0) into a temporary dir, the cost
of a first run's data on a fresh cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lego_arta.bench import write_bench
from lego_arta.config import compose_config
from lego_arta.data import SyntheticSettings, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manuals", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["data=synthetic", f"data.synthetic.num_manuals={args.manuals}"], output_dir=tmp)
        settings = SyntheticSettings.from_config(cfg.data.synthetic)
        start = time.perf_counter()
        generate(settings, tmp)
        seconds = time.perf_counter() - start
        images = sum(1 for _ in Path(tmp).rglob("*.png"))
    report = {"manuals": args.manuals, "images": images, "seconds": seconds, "images_per_s": images / seconds}
    path = write_bench("data", report)
    print(f"generated {args.manuals} manuals ({images} images) in {seconds:.2f} s -> {path}")


if __name__ == "__main__":
    main()
