"""Experiment tracking: W&B from the ``logger`` group (offline by default), or a no-op stand-in.

The W&B run lives in the Hydra run dir (``<run dir>/wandb/offline-run-*``), is grouped by ``experiment_name`` and
tagged with method and reward, so a sweep is one dashboard filter. Its id is kept in the run dir
(``wandb_run_id.txt``): a run started again there (resumed after a kill, requeued at a time limit) continues the same
W&B run (``resume="allow"``). Offline, each start writes its own ``offline-run-*`` folder under that one id, and W&B
cannot rewind: steps done again after a hard kill may appear twice there (``history.jsonl`` is the exact record). It is
always finished in a ``finally`` (Hydra's basic launcher runs multirun jobs in one process: an unfinished run would
swallow the next job's logs). Trainers started inside :func:`tracking` reuse the active run (the HF W&B callback only
starts one when none is active). In a multi-process launch only the main process opens a W&B run; the other ranks get
the no-op stand-in (and the HF callback logs from the main process only).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from PIL.Image import Image as PILImage

from lego_arta.distributed import is_main
from lego_arta.errors import ConfigError, UserError
from lego_arta.runs import WANDB_ID_FILE, read_provenance

log = logging.getLogger(__name__)

# W&B's environment variables for its staging and cache dirs -> the folder under <run dir>/wandb/ each points at
STAGING: dict[str, str] = {"WANDB_DATA_DIR": "data", "WANDB_CACHE_DIR": "cache"}


@dataclass(frozen=True)
class BoxedImage:
    """A table cell: an image with box layers that W&B draws as separate overlays one can toggle
    (``wandb.Image(boxes=)``), not burned into the pixels. ``layers`` maps a layer name (``prediction``,
    ``reference``) to its boxes as ``(x1, y1, x2, y2, label)`` on the 0-100 grid of the image."""

    image: PILImage
    layers: Mapping[str, Sequence[tuple[float, float, float, float, str]]]

    def wandb_boxes(self) -> dict[str, Any]:
        """The ``boxes=`` argument of ``wandb.Image``: fractions of the image, clamped to it, one class per layer."""

        def fraction(v: float) -> float:
            return min(max(v / 100.0, 0.0), 1.0)

        out = {}
        for class_id, (name, boxes) in enumerate(self.layers.items()):
            data = [
                {
                    "position": {
                        "minX": fraction(x1),
                        "minY": fraction(y1),
                        "maxX": fraction(x2),
                        "maxY": fraction(y2),
                    },
                    "class_id": class_id,
                    "box_caption": label,
                }
                for x1, y1, x2, y2, label in boxes
            ]
            out[name] = {"box_data": data, "class_labels": {class_id: name}}
        return out


class Tracker:
    """No-op stand-in (``logger=none``) and the interface :class:`WandbTracker` implements."""

    backend = "none"
    report_to: list[str] = []  # noqa: RUF012 (value for TrainingArguments.report_to)

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log scalar metrics (nothing to do here)."""

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Log a table; PIL images in cells become images, :class:`BoxedImage` cells images with box layers
        (nothing to do here)."""

    def summary(self, metrics: Mapping[str, Any]) -> None:
        """Set run summary values (nothing to do here)."""

    @property
    def records_lineage(self) -> bool:
        """Whether :meth:`use_data` and :meth:`log_weights` record anything (W&B: online runs only)."""
        return False

    def use_data(self, source: Mapping[str, Any]) -> None:
        """Record the run's data as its input (lineage; nothing to do here). ``source``: :func:`data_source`."""

    def log_weights(self, path: Path, kind: str, metrics: Mapping[str, float]) -> None:
        """Record the trained weights in ``path`` as the run's output, with its metrics (nothing to do here)."""

    @property
    def location(self) -> str | None:
        """Where the run's files are (None: nothing is written)."""
        return None

    def finish(self, exit_code: int = 0) -> None:
        """Close the run."""


class WandbTracker(Tracker):
    """A W&B run; offline unless ``logger.mode=online``."""

    backend = "wandb"
    report_to = ["wandb"]  # noqa: RUF012

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        import wandb

        self._wandb = wandb
        logger_cfg = cfg.logger
        tags = sorted({*(logger_cfg.tags or []), f"method:{cfg.method.name}", f"reward:{cfg.reward.name}"})
        os.environ.setdefault("WANDB_SILENT", "true")
        # the HF callback would otherwise log model checkpoints as artifacts
        os.environ.setdefault("WANDB_LOG_MODEL", "false")
        # W&B stages every table image under its data dir until a sync (default ~/.local/share/wandb, outside the run
        # dir, never cleaned) and its debug logs under its cache dir (~/.cache/wandb): both inside this run's dir, so
        # a run takes its files with it and deleting it leaves nothing behind. Read by W&B on each call: set per run
        for variable, folder in STAGING.items():
            os.environ[variable] = str(run_dir / "wandb" / folder)
        config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        prov = read_provenance(run_dir)  # written by the pipeline before tracking starts
        if prov is not None:
            config["provenance"] = prov
        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
        try:
            self.run = wandb.init(
                id=run_id,
                resume="allow",
                project=logger_cfg.project,
                entity=logger_cfg.entity,
                group=logger_cfg.group,
                job_type=logger_cfg.job_type,
                name=logger_cfg.name,
                tags=tags,
                mode=logger_cfg.mode,
                dir=str(run_dir),
                config=config,
                reinit="finish_previous",
            )
        except wandb.errors.UsageError as err:  # online without an API key: the user's setup, not a bug
            raise UserError(
                f"W&B {logger_cfg.mode}: {err} (or drop logger=wandb_online: offline is the default)"
            ) from err
        self.stopped = False
        self._guard_service()
        # our own logs (eval/*, tables) use the trainer's step axis when there is one
        self.run.define_metric("eval/*", step_metric="train/global_step", step_sync=False)
        self.run.define_metric("val/*", step_metric="train/global_step", step_sync=False)

    def _guard_service(self) -> None:
        """Keep a long run alive when W&B's service process dies (the OOM killer, a W&B bug).

        wandb 0.31 keeps the broken connection and raises on every later call (``log``, ``summary``, ``finish``), and
        has no setting to survive it: the run would die in the next ``wandb.log``, ours or one of transformers'
        ``WandbCallback`` or TRL's profiling. Every call of the run reaches the service through its interface's
        ``_publish`` / ``_deliver`` (wandb 0.31: ``run._interface``, an ``InterfaceSock``), so these two are guarded
        here: the first lost connection is logged once, later calls do nothing (a delivery, which expects an answer,
        raises ``ConnectionError`` again, caught by :meth:`finish`). ``history.jsonl`` and ``metrics.json`` keep every
        step; ``wandb sync`` uploads what was logged before. Can go when wandb survives its service (grep
        ``wandb/sdk/lib/service`` for a reconnect).
        """
        interface: Any = self.run._interface

        def guarded(call: Any, answer: bool) -> Any:
            @functools.wraps(call)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if self.stopped:
                    if answer:
                        raise ConnectionError("W&B stopped earlier in this run")
                    return None
                try:
                    return call(*args, **kwargs)
                except ConnectionError as err:
                    self.stopped = True
                    log.warning(
                        "W&B stopped (%s: %s): its service process is gone; training goes on without it, "
                        "history.jsonl and metrics.json keep every step (wandb sync uploads what was logged before)",
                        type(err).__name__,
                        err,
                    )
                    if answer:
                        raise
                    return None

            return wrapper

        interface._publish = guarded(interface._publish, answer=False)
        interface._deliver = guarded(interface._deliver, answer=True)

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.run.log(dict(metrics), step=step)

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        data = [[self._cell(v) for v in row] for row in rows]
        self.run.log({key: self._wandb.Table(columns=list(columns), data=data)})

    def _cell(self, value: Any) -> Any:
        if isinstance(value, BoxedImage):
            return self._wandb.Image(value.image, boxes=value.wandb_boxes())
        return self._wandb.Image(value) if isinstance(value, PILImage) else value

    def summary(self, metrics: Mapping[str, Any]) -> None:
        self.run.summary.update(dict(metrics))

    @property
    def records_lineage(self) -> bool:
        # wandb 0.31 offline: "Cannot use artifact when in offline mode"; lineage is for online runs
        return self.run.settings.mode != "offline" and not self.stopped

    def use_data(self, source: Mapping[str, Any]) -> None:
        """The data as the run's input artifact, by reference (nothing uploaded): the hub dataset at its revision, or
        the local dir with a digest of its files (paths and sizes) in the metadata."""
        artifact = self._wandb.Artifact(f"data-{source['name']}", type="dataset", metadata=dict(source))
        if "hub" in source:
            artifact.add_reference(str(source["uri"]), name=str(source["name"]), checksum=False)
        else:  # a file:// reference would list every file of the dir: the dir is named by its digest instead
            with artifact.new_file("source.json") as f:
                f.write(json.dumps(dict(source), indent=2))
        self.run.use_artifact(artifact)

    def log_weights(self, path: Path, kind: str, metrics: Mapping[str, float]) -> None:
        """The trained adapter (or model) as the run's output artifact with the run's metrics: uploads the weights,
        so only with ``logger.log_weights=true``."""
        artifact = self._wandb.Artifact(f"{kind}-{self.run.id}", type="model", metadata=dict(metrics))
        artifact.add_dir(str(path))
        self.run.log_artifact(artifact)

    @property
    def location(self) -> str | None:
        return str(Path(self.run.dir).parent)

    def finish(self, exit_code: int = 0) -> None:
        try:
            self.run.finish(exit_code=exit_code)
        except ConnectionError:  # the service died during the run: said once already (_guard_service)
            if not self.stopped:
                raise


BACKENDS: dict[str, type[Tracker]] = {"wandb": WandbTracker, "none": Tracker}


def data_source(data_cfg: Mapping[str, Any], root: Path, revision: str | None) -> dict[str, Any]:
    """Where a run's data came from, for its lineage: the hub id at its revision, or the local dir (the synthetic
    scenes' cache dir included) with a digest of its files' relative paths and sizes."""
    if data_cfg["hub"]:
        uri = f"https://huggingface.co/datasets/{data_cfg['hub']}/tree/{revision or 'main'}"
        return {"name": str(data_cfg["name"]), "uri": uri, "hub": str(data_cfg["hub"]), "revision": revision}
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root)}:{path.stat().st_size}\n".encode())
    return {"name": str(data_cfg["name"]), "uri": root.resolve().as_uri(), "digest": digest.hexdigest()[:16]}


def tracker_class(cfg: DictConfig) -> type[Tracker]:
    """The tracker class named by ``logger.backend``."""
    backend = cfg.logger.backend
    if backend not in BACKENDS:
        raise ConfigError(f"logger.backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    return BACKENDS[backend]


def report_to(cfg: DictConfig) -> list[str]:
    """``TrainingArguments.report_to`` for the configured tracker (the HF W&B callback logs the training curves)."""
    return list(tracker_class(cfg).report_to)


@contextmanager
def tracking(cfg: DictConfig, run_dir: str | Path) -> Iterator[Tracker]:
    """Open the tracker named by ``cfg.logger.backend`` for one run (on the main process) and always close it.

    Args:
        cfg: the composed config (``logger``, ``method``, ``reward`` groups are read).
        run_dir: the Hydra run dir; W&B writes ``run_dir/wandb/``.
    """
    wandb = tracker_class(cfg) is WandbTracker and is_main()
    tracker = WandbTracker(cfg, Path(run_dir)) if wandb else Tracker()
    exit_code = 1
    try:
        yield tracker
        exit_code = 0
    finally:
        tracker.finish(exit_code)
        if tracker.location:
            log.info("W&B run files: %s", tracker.location)
