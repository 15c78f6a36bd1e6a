"""The data layer every method reads through: records, the LEGO-ARTA reader, synthetic scenes, split, demos, prompts.

split = load_data(cfg)                                   # read (or generate) and split, from the full config
train_ds = build_dataset(split.train, split.train, cfg.data, cfg.seed)   # TRL-ready: prompt, images, ...
test_ds = build_dataset(split.test, split.train, cfg.data, cfg.seed)     # demos come from train only
"""

from lego_arta.data.demos import DemoPool
from lego_arta.data.load import DataSplit, load_data, save_split
from lego_arta.data.prompts import (
    OBJECT_DIRECTIVE,
    REASONING_PREFIX,
    build_dataset,
    build_messages,
    build_rows,
    task_text,
)
from lego_arta.data.reader import ReadOptions, ReadResult, read_dataset
from lego_arta.data.records import GROUNDING_QUERY, PUBLISHED_COUNTS, STATE_QUERY, TASKS, DataError, Record
from lego_arta.data.split import flat_counts, load_records, save_records, split_records, split_summary
from lego_arta.data.synthetic import SyntheticSettings, ensure_synthetic, generate

__all__ = [
    "GROUNDING_QUERY",
    "OBJECT_DIRECTIVE",
    "PUBLISHED_COUNTS",
    "REASONING_PREFIX",
    "STATE_QUERY",
    "TASKS",
    "DataError",
    "DataSplit",
    "DemoPool",
    "ReadOptions",
    "ReadResult",
    "Record",
    "SyntheticSettings",
    "build_dataset",
    "build_messages",
    "build_rows",
    "ensure_synthetic",
    "flat_counts",
    "generate",
    "load_data",
    "load_records",
    "read_dataset",
    "save_records",
    "save_split",
    "split_records",
    "split_summary",
    "task_text",
]
