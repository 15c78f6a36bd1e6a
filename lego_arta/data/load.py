"""The one entry point the rest of the code calls: config -> records -> leakage-safe split."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from lego_arta.data.hub import hub_snapshot
from lego_arta.data.lmms_rec import read_lmms_rec
from lego_arta.data.reader import ReadOptions, read_dataset
from lego_arta.data.records import DataError, Record
from lego_arta.data.referring_synthetic import ReferringSettings, ensure_referring_synthetic
from lego_arta.data.split import SUMMARY_FILE, TEST_FILE, TRAIN_FILE, save_records, split_records, split_summary
from lego_arta.data.synthetic import SyntheticSettings, ensure_synthetic
from lego_arta.data.vlm_r1_rec import read_vlm_r1_rec

log = logging.getLogger(__name__)

# data.layout -> what reads it: the LEGO-ARTA download (and the synthetic scenes), lmms-lab's referring parquet
# (RefCOCO, RefCOCO+, RefCOCOg; the synthetic referring set), VLM-R1's referring JSON
LAYOUTS = ("lego_arta", "lmms_rec", "vlm_r1_rec")


@dataclass
class DataSplit:
    """The records every method reads: the split, its summary, where it came from, what was dropped and skipped."""

    train: list[Record]
    test: list[Record]
    summary: dict[str, Any]
    root: Path
    dropped: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    revision: str | None = None  # the commit of data.hub that was read (None: data.root or synthetic)


def load_data(cfg: DictConfig | Mapping[str, Any]) -> DataSplit:
    """Read (from ``data.root``, the ``data.hub`` snapshot, or the synthetic scenes, generated first when both are
    null) and split the data of a run.

    Args:
        cfg: the full composed config; uses ``data``, ``split`` and ``paths.cache_dir`` (the latter only
            when generating). Under ``hydra.compose`` (no Hydra run), override ``paths.cache_dir`` with a real dir.

    Raises:
        DataError: a config or dataset problem, before any model is loaded: a file-level problem, a drop under
            ``data.strict``, or a task losing more than ``data.max_drop_fraction`` of its records.
    """
    data = _node(cfg, "data")
    split = _node(cfg, "split")
    options = ReadOptions.from_config(data)
    layout = str(_key(data, "layout", "data"))
    if layout not in LAYOUTS:
        raise DataError(f"data.layout={layout}: expected one of {', '.join(LAYOUTS)}")
    root, hub = _key(data, "root", "data"), _key(data, "hub", "data")
    revision = None
    if hub is not None:
        if root is not None:
            raise DataError(f"data.root={root} and data.hub={hub} are both set: read one of them")
        root, revision = hub_snapshot(str(hub), _key(data, "revision", "data"))
    elif root is None and layout == "lego_arta":
        synthetic = _key(data, "synthetic", "data")
        if not synthetic:
            raise DataError(
                "data.root is not set: pass data.root=DIR (the download folder, or its ARTA_LEGO/), or "
                "data.hub=PPPPPeter/arta (downloaded into the Hugging Face cache)"
            )
        root = ensure_synthetic(SyntheticSettings.from_config(synthetic), _cache_dir(cfg))
    elif root is None:
        referring = _key(data, "synthetic_referring", "data")
        if not referring:
            raise DataError(f"data.root is not set: pass data.root=DIR (a local copy of the {layout} layout)")
        root = ensure_referring_synthetic(ReferringSettings.from_config(referring), _cache_dir(cfg))
    by = str(_key(split, "by", "split"))
    if layout == "lego_arta":
        result = read_dataset(root, options)
    else:  # a referring layout: its own splits (data.splits), whatever split.by says
        splits = dict(_key(data, "splits", "data"))
        if layout == "lmms_rec":
            result = read_lmms_rec(
                root,
                splits,
                strict=options.strict,
                max_drop_fraction=options.max_drop_fraction,
                cache_dir=_cache_dir(cfg),
            )
        else:
            result = read_vlm_r1_rec(
                root,
                splits,
                _key(data, "image_root", "data"),
                strict=options.strict,
                max_drop_fraction=options.max_drop_fraction,
            )
        by = "published"
    test_size = float(_key(split, "test_size", "split"))
    seed = int(_key(split, "seed", "split"))
    train, test = split_records(result.records, test_size=test_size, seed=seed, by=by, published=result.published)
    if layout != "lego_arta" and not train:
        log.info("no training split in data.splits (%s): these records are for evaluation only", layout)
    for task in options.tasks:
        if not any(r.task == task for r in train):
            log.warning("no %s record in the training split", task)
    summary = split_summary(
        train,
        test,
        data=str(_key(data, "name", "data")),
        layout=layout,
        **({"splits": dict(_key(data, "splits", "data"))} if layout != "lego_arta" else {}),
        root=str(result.root),
        split={"by": by, "test_size": test_size, "seed": seed},
        dropped=dict(sorted(result.dropped.items())),
        skipped=dict(sorted(result.skipped.items())),
        drop_examples=dict(sorted(result.examples.items())),
        **({"hub": {"id": hub, "revision": revision}} if hub is not None else {}),
    )
    log.info("split %s: %s", by, summary["counts"])
    return DataSplit(
        train=train,
        test=test,
        summary=summary,
        root=result.root,
        dropped=result.dropped,
        skipped=result.skipped,
        revision=revision,
    )


def save_split(split: DataSplit, out_dir: str | Path) -> dict[str, Path]:
    """Write ``train.jsonl``, ``test.jsonl`` and ``split_summary.json`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "train": save_records(split.train, out / TRAIN_FILE),
        "test": save_records(split.test, out / TEST_FILE),
        "summary": out / SUMMARY_FILE,
    }
    paths["summary"].write_text(json.dumps(split.summary, indent=2, sort_keys=True) + "\n")
    return paths


def _key(node: Mapping[str, Any], key: str, name: str) -> Any:
    """``node[key]``; a missing key is a ``DataError`` (the defaults live in the YAML configs only)."""
    try:
        return node[key]
    except KeyError as e:
        raise DataError(f"{name}.{key}: missing from the config (see conf/{name}/)") from e


def _node(cfg: DictConfig | Mapping[str, Any], key: str) -> dict[str, Any]:
    """``cfg[key]`` as a plain resolved dict (``paths`` is left out: it may need a Hydra run to resolve)."""
    try:
        node = cfg[key]
    except (KeyError, AttributeError) as e:
        raise DataError(f"the config has no {key!r} node") from e
    if isinstance(node, DictConfig):
        try:
            plain = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as e:
            raise DataError(
                f"{e.full_key or key}: missing value (???); set it on the command line, e.g. {e.full_key}=..."
            ) from e
        assert isinstance(plain, dict)
        return {str(k): v for k, v in plain.items()}
    return dict(node)


def _cache_dir(cfg: DictConfig | Mapping[str, Any]) -> Path:
    try:
        return Path(str(cfg["paths"]["cache_dir"]))
    except Exception as e:  # an unresolvable ${hydra:...} outside a Hydra run
        raise DataError(
            f"paths.cache_dir does not resolve ({e}); outside a Hydra run, override it: paths.cache_dir=DIR"
        ) from e
