"""Prepare the data of a run: read (or generate) and split, write the split files and a contact sheet.

    python experiments/prepare_data.py                                   # synthetic scenes (the default)
    python experiments/prepare_data.py data=lego_arta data.root=/data/arta split=manual
    python experiments/prepare_data.py data=lego_arta data.root=/data/arta data.max_drop_fraction=0.5
    python experiments/prepare_data.py data.synthetic.num_manuals=20 contact_sheet=false

Writes into the Hydra run dir: train.jsonl, test.jsonl (one record per line, image paths absolute),
split_summary.json (counts per task and split, dropped and skipped records by reason, an example of each drop) and
contact_sheet.png (a few samples per task with their boxes, query and answer). Prints the counts per task beside
the published ones, then the drop and skip reasons. ``conf/prepare_data.yaml``: the run config plus ``contact_sheet``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lego_arta.cli import hydra_task, launch
from lego_arta.data import PUBLISHED_COUNTS, flat_counts, load_data, save_split
from lego_arta.data.contact_sheet import contact_sheet

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict[str, float]:
    """Write the split files (and the contact sheet) into ``out_dir``; return the counts as flat metric keys.

    ``out_dir`` defaults to the Hydra run dir; pass it when calling from ``hydra.compose`` (tests), where there is no
    run dir (and override ``paths.cache_dir`` too).
    """
    out = Path(out_dir) if out_dir is not None else Path(HydraConfig.get().runtime.output_dir)
    split = load_data(cfg)
    save_split(split, out)
    if cfg.contact_sheet:
        path = contact_sheet(split.train + split.test, out / "contact_sheet.png", seed=int(cfg.seed))
        log.info("contact sheet: %s", path)
    print(counts_table(split.summary))
    return {key: float(n) for key, n in flat_counts(split.summary).items()}


def counts_table(summary: dict) -> str:
    """The counts per task and split beside the published counts, then the dropped and skipped records by reason.

    >>> print(counts_table({"counts": {"train": {"state": 3, "total": 3}, "test": {"state": 1, "total": 1}},
    ...                     "dropped": {"state: fake without its original": 1}, "skipped": {},
    ...                     "drop_examples": {"state: fake without its original": "step_dataset/x_fake1.png: ..."}}))
    task          train     test    total  published
    state             3        1        4     10,864
    total             3        1        4     35,612
    dropped (1): counted against data.max_drop_fraction
          1  state: fake without its original
             e.g. step_dataset/x_fake1.png: ...
    """
    counts = summary["counts"]
    lego = summary.get("layout", "lego_arta") == "lego_arta"  # summaries written before layouts: LEGO-ARTA
    if not lego:  # a referring set: its own split names, its tasks only, no published LEGO-ARTA counts
        splits = summary["splits"]
        named = f"(train = {splits['train']}, test = {splits['test']})"
        lines = [f"{'task':10}{'train':>9}{'test':>9}{'total':>9}   {named}"]
    else:
        lines = [f"{'task':10}" + "".join(f"{h:>9}" for h in ("train", "test", "total")) + f"{'published':>11}"]
    for task in counts["train"]:
        train, test = counts["train"][task], counts["test"][task]
        if not lego:
            if train + test or task == "total":
                lines.append(f"{task:10}{train:>9}{test:>9}{train + test:>9}")
            continue
        published = PUBLISHED_COUNTS.get(task, sum(PUBLISHED_COUNTS.values()))
        lines.append(f"{task:10}{train:>9}{test:>9}{train + test:>9}{published:>11,}")
    for kind, note in (("dropped", "counted against data.max_drop_fraction"), ("skipped", "by the record rules")):
        reasons = summary[kind]
        if reasons:
            lines.append(f"{kind} ({sum(reasons.values())}): {note}")
        for reason, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"{n:>7}  {reason}")
            if kind == "dropped":
                lines.append(f"{'':9}e.g. {summary['drop_examples'][reason]}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare_data")
@hydra_task
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    launch(main, "prepare_data")
