"""Evaluation metrics of the study (Table 1) over a test set, from the per-sample values of
:mod:`lego_arta.sample_metrics` (raw model text, parsed as the rewards parse it).

``compute_metrics(records) = aggregate(sample_metrics(records))``; records are mappings with ``prediction`` (raw
model text), ``reference``, optional ``task`` (inferred from the reference when missing or None) and optional ``id``.
Values are x100 and keys exist only for the tasks present:

- grounding: ``f1_theme`` (SQuAD token F1), ``rouge`` (ROUGE-L F1), ``rouge1``, ``rouge2`` (rouge-score, stemmer),
  ``bleu`` (sentence BLEU-4 on word tokens, as the ``grounding`` reward).
- object: ``f1_object`` (token F1 of all labels joined), ``iou`` (raw boxes, degenerate dropped, Hungarian, mean over
  pairs, 0 without a valid predicted box), ``iou_strict`` (matched IoU sum / max(#pred, #ref)), ``iou50`` (share of
  samples with ``iou`` >= 0.5).
- state: ``f1_state`` (Yes positive, 2TP / (2TP + FP + FN)) and ``fpr`` (FP / (FP + TN)), 0 on a zero denominator.

One light pass: ``sample_metrics`` parses each record once; the metrics, their bootstrap CIs (resampling the
per-sample values within each task), format validity, the trivial references (always "Yes", copy the demo's answer,
the mean training box) and the paired comparisons of the model with them (:mod:`lego_arta.paired`) are all
aggregations of its output. ``prediction_metrics`` assembles them into a run's ``metrics.json`` keys;
``compare_predictions`` pairs two runs' predictions by sample id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from lego_arta.markdown_table import markdown_table
from lego_arta.paired import Paired, mean_metric, paired_bootstrap
from lego_arta.parsing import (
    TASKS,
)
from lego_arta.sample_metrics import (
    ANSWER_REFERENCES,
    HEADLINE,
    METRIC_KEYS,
    REFERENCE_TASKS,
    STATE_COUNTS,
    TASK_METRICS,
    sample_metrics,
)

log = logging.getLogger(__name__)


def _state_metrics(tp: Any, fp: Any, fn: Any, tn: Any) -> tuple[Any, Any]:
    # Works on floats and on numpy arrays (bootstrap): F1 = 2TP/(2TP+FP+FN), FPR = FP/(FP+TN), 0 on a 0 denominator.
    f1_den, fpr_den = 2 * tp + fp + fn, fp + tn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(f1_den > 0, 2 * tp / np.where(f1_den > 0, f1_den, 1), 0.0)
        fpr = np.where(fpr_den > 0, fp / np.where(fpr_den > 0, fpr_den, 1), 0.0)
    return 100.0 * f1, 100.0 * fpr


def _by_task(samples: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for sample in samples:
        groups.setdefault(sample["task"], []).append(sample)
    return {task: groups[task] for task in TASKS if task in groups}


def aggregate(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Metrics (x100) from ``sample_metrics`` output: means per task, F1/FPR from the summed state counts.

    Args:
        samples: per-sample dicts from ``sample_metrics``.

    >>> aggregate([{"task": "object", "f1_object": 1.0, "iou": 0.5, "iou_strict": 0.25, "iou50": 1.0},
    ...            {"task": "object", "f1_object": 0.0, "iou": 0.0, "iou_strict": 0.0, "iou50": 0.0}])
    {'f1_object': 50.0, 'iou': 25.0, 'iou_strict': 12.5, 'iou50': 50.0}
    """
    out: dict[str, float] = {}
    for task, group in _by_task(samples).items():
        if task == "state":
            f1, fpr = _state_metrics(*(sum(s[c] for s in group) for c in STATE_COUNTS))
            out["f1_state"], out["fpr"] = float(f1), float(fpr)
        else:
            for key in TASK_METRICS[task]:
                out[key] = 100.0 * sum(s[key] for s in group) / len(group)
    return out


def compute_metrics(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The study's metrics (x100) of ``records``; keys only for the tasks present.

    Args:
        records: mappings with ``prediction`` (raw model text), ``reference``, optional ``task`` and ``id``.

    >>> compute_metrics([{"prediction": "<think>no</think>Yes", "reference": "Yes"},
    ...                  {"prediction": "Attach the red brick", "reference": "Attach the red brick."}])
    {'f1_theme': 100.0, 'rouge': 100.0, 'rouge1': 100.0, 'rouge2': 100.0, 'bleu': 100.0, 'f1_state': 100.0, 'fpr': 0.0}
    """
    return aggregate(sample_metrics(records))


def bootstrap_ci(
    samples: Sequence[Mapping[str, Any]], *, n: int, seed: int, alpha: float = 0.05
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals (x100) of every metric, from per-sample values.

    Each of the ``n`` resamples draws, within each task, as many samples as the task has, with replacement (a seeded
    ``numpy.random.Generator``; tasks in the order grounding, object, state). The metrics of a task share resamples.

    Args:
        samples: per-sample dicts from ``sample_metrics``.
        n: number of bootstrap resamples.
        seed: seed of the generator.
        alpha: 1 - confidence level (0.05 gives 95% intervals).

    >>> samples = sample_metrics([{"task": "state", "prediction": p, "reference": "Yes"} for p in ["Yes", "No"] * 10])
    >>> aggregate(samples)["f1_state"], [round(v, 1) for v in bootstrap_ci(samples, n=200, seed=0)["f1_state"]]
    (66.66666666666666, [40.0, 85.7])
    """
    rng = np.random.default_rng(seed)
    quantiles = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    out: dict[str, tuple[float, float]] = {}
    for task, group in _by_task(samples).items():
        fields = STATE_COUNTS if task == "state" else TASK_METRICS[task]
        values = np.array([[s[f] for f in fields] for s in group], dtype=float)  # (m, fields)
        m = len(group)
        stats = []
        chunk = max(1, 2_000_000 // m)
        for start in range(0, n, chunk):
            idx = rng.integers(0, m, size=(min(chunk, n - start), m))
            sums = np.stack([values[:, j][idx].sum(axis=1) for j in range(len(fields))], axis=1)
            if task == "state":
                stats.append(np.stack(_state_metrics(*sums.T), axis=1))
            else:
                stats.append(100.0 * sums / m)
        table = np.concatenate(stats) if stats else np.zeros((0, len(TASK_METRICS[task])))
        for j, key in enumerate(TASK_METRICS[task]):
            if len(table):
                lo, hi = np.percentile(table[:, j], quantiles)
                out[key] = (float(lo), float(hi))
    return {key: out[key] for key in METRIC_KEYS if key in out}


def format_validity(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Share (x100) of answers in the form their task asks for, overall and per task, from ``sample_metrics`` output.

    Keys ``format_valid`` and ``format_valid_<task>`` for the tasks present (see :func:`sample_metrics` for each form).

    Args:
        samples: per-sample dicts from ``sample_metrics``.

    >>> format_validity(sample_metrics([{"task": "state", "prediction": "Yes", "reference": "No"},
    ...                  {"task": "object", "prediction": "[1, 2]", "reference": '{"bbox_2d": [0, 0, 5, 5]}'}]))
    {'format_valid': 50.0, 'format_valid_object': 0.0, 'format_valid_state': 100.0}
    """
    groups = _by_task(samples)
    if not groups:
        return {}
    every = [s["format_valid"] for group in groups.values() for s in group]
    out = {"format_valid": 100.0 * sum(every) / len(every)}
    for task, group in groups.items():
        out[f"format_valid_{task}"] = 100.0 * sum(s["format_valid"] for s in group) / len(group)
    return out


def reference_samples(samples: Sequence[Mapping[str, Any]], reference: str) -> tuple[list[int], list[dict[str, Any]]]:
    """The indices of the samples a trivial reference answers, and its per-sample values there (from
    ``sample_metrics``).

    ``always_yes`` answers every state sample "Yes": a "Yes" reference (``tp`` + ``fn``) becomes a true positive, a
    "No" (``fp`` + ``tn``) a false positive. ``copy_demo`` and ``mean_box`` (:data:`ANSWER_REFERENCES`) answer the
    samples whose record carried their answer, with the values it got in :func:`sample_metrics`.

    Args:
        samples: per-sample dicts from ``sample_metrics``.
        reference: a name of :data:`REFERENCE_TASKS`.

    Raises:
        ValueError: an unknown reference.

    >>> reference_samples(sample_metrics([{"reference": "No", "prediction": "No"}]), "always_yes")
    ([0], [{'task': 'state', 'tp': 0.0, 'fp': 1.0, 'fn': 0.0, 'tn': 0.0, 'format_valid': 1.0}])
    """
    if reference == "always_yes":
        index = [i for i, s in enumerate(samples) if s["task"] == "state"]
        values = [
            {
                "task": "state",
                "tp": s["tp"] + s["fn"],
                "fp": s["fp"] + s["tn"],
                "fn": 0.0,
                "tn": 0.0,
                "format_valid": 1.0,
            }
            for s in (samples[i] for i in index)
        ]
        return index, values
    if reference not in ANSWER_REFERENCES:
        raise ValueError(f"unknown trivial reference {reference!r}: expected one of {list(REFERENCE_TASKS)}")
    index = [i for i, s in enumerate(samples) if reference in s]
    return index, [{"task": samples[i]["task"], **samples[i][reference]} for i in index]


def trivial_reference(samples: Sequence[Mapping[str, Any]], reference: str) -> dict[str, float]:
    """The metrics (x100) of a trivial reference (:func:`reference_samples`) on the samples it answers; {} on none.

    Reported beside results: always "Yes" gives F1-State 40.0 and FPR 100.0 on 1 Yes : 3 No groups; copy the demo
    scores its prompt's first demo answer (grounding, object); the mean box puts one box at the mean training box.

    Args:
        samples: per-sample dicts from ``sample_metrics``.
        reference: a name of :data:`REFERENCE_TASKS`.

    >>> trivial_reference(sample_metrics([{"reference": r, "prediction": "No"} for r in ["Yes", "No", "No", "No"]]),
    ...                   "always_yes")
    {'f1_state': 40.0, 'fpr': 100.0}
    >>> trivial_reference(sample_metrics([{"task": "grounding", "prediction": "", "reference": "Attach the axle.",
    ...                                   "demo_answer": "Attach it."}]), "copy_demo")["f1_theme"]
    40.0
    """
    return aggregate(reference_samples(samples, reference)[1])


def _counts_metric(j: int, fields: np.ndarray) -> np.ndarray:
    # F1-State (j = 0) or FPR (j = 1) of the summed tp, fp, fn, tn fields (fields, ..., samples)
    return _state_metrics(*fields.sum(axis=-1))[j]


def paired_difference(
    model: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]], metric: str, *, n: int, seed: int
) -> Paired:
    """``metric`` (x100) of the model minus the reference's, on the same samples, with its paired bootstrap interval.

    A mean metric (IoU, F1-Theme, ...) resamples the per-sample differences; F1-State and FPR are recomputed for both
    from each resample's summed counts (:func:`lego_arta.paired.paired_bootstrap`).

    Args:
        model: per-sample dicts from ``sample_metrics``, all of the task of ``metric``.
        reference: the reference's per-sample dicts for the same samples, in the same order.
        metric: a key of :data:`TASK_METRICS`.
        n: bootstrap resamples (0: no interval).
        seed: seed of the resampling.

    Raises:
        ValueError: the two lists differ in length or tasks, or a sample is not of the metric's task.
    """
    task = next(t for t, keys in TASK_METRICS.items() if metric in keys)
    tasks = [s["task"] for s in model]
    if len(model) != len(reference) or tasks != [s["task"] for s in reference] or set(tasks) - {task}:
        raise ValueError(f"paired {metric}: expected two lists of {task} samples, alike, in the same order")
    state = task == "state"
    fields = STATE_COUNTS if state else (metric,)
    m, r = (
        np.array([[s[f] for f in fields] for s in x], dtype=float).reshape(-1, len(fields)) for x in (model, reference)
    )
    measure = partial(_counts_metric, TASK_METRICS["state"].index(metric)) if state else mean_metric
    return paired_bootstrap(m, r, measure, n_resamples=n, seed=seed)


def against_references(samples: Sequence[Mapping[str, Any]], *, n: int, seed: int) -> dict[str, Paired]:
    """The model against each trivial reference, on the :data:`HEADLINE` metric of each task the reference answers.

    Paired over the samples the reference answered: ``copy_demo/f1_theme``, ``copy_demo/iou``, ``mean_box/iou``,
    ``always_yes/f1_state`` (the keys present for the tasks and answers present).

    Args:
        samples: per-sample dicts from ``sample_metrics``.
        n: bootstrap resamples (0: differences without intervals).
        seed: seed of every comparison's resampling.

    >>> records = [{"task": "state", "prediction": p, "reference": r} for p, r in [("Yes", "Yes"), ("No", "No")] * 4]
    >>> p = against_references(sample_metrics(records), n=200, seed=0)["always_yes/f1_state"]
    >>> round(p.model, 2), round(p.reference, 2), p.beats
    (100.0, 66.67, True)
    """
    out: dict[str, Paired] = {}
    for ref, tasks in REFERENCE_TASKS.items():
        index, values = reference_samples(samples, ref)
        for task in tasks:
            pick = [j for j, i in enumerate(index) if samples[i]["task"] == task]
            if pick:
                model = [samples[index[j]] for j in pick]
                out[f"{ref}/{HEADLINE[task]}"] = paired_difference(
                    model, [values[j] for j in pick], HEADLINE[task], n=n, seed=seed
                )
    return out


def compare_predictions(
    model: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]], *, n: int, seed: int
) -> dict[str, Paired]:
    """One run's predictions against another's (e.g. GRPO against the SFT it started from), paired by sample ``id``.

    Over the ids both runs answered, per task present: the :data:`HEADLINE` metric of ``model`` minus ``baseline``'s,
    with its paired bootstrap interval (:func:`paired_difference`); keys are the metric names.

    Args:
        model: prediction records (``id``, ``prediction``, ``reference``, optional ``task``), as in predictions.jsonl.
        baseline: the other run's records.
        n: bootstrap resamples (0: differences without intervals).
        seed: seed of the resampling.

    Raises:
        ValueError: a record without an ``id``, or an id whose reference differs between the runs (another test split).
    """
    for side, records in (("model", model), ("baseline", baseline)):
        if missing := [i for i, r in enumerate(records) if "id" not in r]:
            raise ValueError(f"{side} record #{missing[0]}: no 'id' to pair the runs' predictions by")
    by_id = {r["id"]: r for r in baseline}
    pairs = [(r, by_id[r["id"]]) for r in model if r["id"] in by_id]
    for a, b in pairs:
        if a["reference"] != b["reference"]:
            raise ValueError(f"sample {a['id']!r}: the two runs have different references (not one test split)")
    ours, theirs = sample_metrics([a for a, _ in pairs]), sample_metrics([b for _, b in pairs])
    out: dict[str, Paired] = {}
    for task, metric in HEADLINE.items():
        pick = [i for i, s in enumerate(ours) if s["task"] == task]
        if pick:
            out[metric] = paired_difference([ours[i] for i in pick], [theirs[i] for i in pick], metric, n=n, seed=seed)
    return out


class PredictionMetrics(NamedTuple):
    """Everything measured on a list of predictions: the flat run metrics, and the values / CIs for a table."""

    metrics: dict[str, float]
    values: dict[str, float]
    cis: dict[str, tuple[float, float]]


def prediction_metrics(
    records: Sequence[Mapping[str, Any]],
    bootstrap_samples: int,
    seed: int,
    names: Sequence[str] | None = None,
) -> PredictionMetrics:
    """The run metrics of predictions, in one pass: what evaluation and ``experiments/score.py`` write.

    Keys: ``eval/<metric>`` with ``_lo`` / ``_hi`` 95% bootstrap bounds (when ``bootstrap_samples`` > 0),
    ``eval/format_valid*``, ``eval/num_samples``, the trivial references beside the results: ``ref/always_yes/*``
    (state), ``ref/copy_demo/*`` (grounding, object; records with a ``demo_answer``) and ``ref/mean_box/*`` (object;
    records with a ``mean_box_answer``), and the model against each of them (:func:`against_references`):
    ``vs/<reference>/<metric>`` = model - reference (x100) on the samples the reference answered, with the paired
    bootstrap's ``_lo`` / ``_hi`` and ``_beats`` (1.0 when ``_lo`` > 0, else 0.0) when ``bootstrap_samples`` > 0 and
    there are two samples or more. ``values`` holds the metrics and format validity (x100) and ``cis`` their
    intervals, for :func:`format_table`.

    Args:
        records: mappings with ``prediction``, ``reference``, optional ``task``, ``id``, ``demo_answer`` and
            ``mean_box_answer``.
        bootstrap_samples: number of bootstrap resamples, for the CIs and the paired comparisons (0: no intervals).
        seed: seed of the bootstrap (the same for each comparison).
        names: how errors name each record (default: its id or index).
    """
    samples = sample_metrics(records, names=names)
    values = aggregate(samples) | format_validity(samples)
    cis = bootstrap_ci(samples, n=bootstrap_samples, seed=seed) if bootstrap_samples > 0 else {}
    out = {f"eval/{k}": v for k, v in values.items()}
    for k, (lo, hi) in cis.items():
        out[f"eval/{k}_lo"], out[f"eval/{k}_hi"] = lo, hi
    out["eval/num_samples"] = float(len(samples))
    for ref in REFERENCE_TASKS:
        out |= {f"ref/{ref}/{k}": v for k, v in trivial_reference(samples, ref).items()}
    for key, paired in against_references(samples, n=bootstrap_samples, seed=seed).items():
        out[f"vs/{key}"] = paired.diff
        if math.isfinite(paired.low):
            out[f"vs/{key}_lo"], out[f"vs/{key}_hi"] = paired.low, paired.high
            out[f"vs/{key}_beats"] = float(paired.beats)
    return PredictionMetrics(out, values, cis)


def format_table(metrics: Mapping[str, float], cis: Mapping[str, tuple[float, float]] | None = None) -> str:
    """A markdown table of metrics (contract order first, then any other key), with CIs when given.

    Args:
        metrics: metric name -> value (x100).
        cis: optional metric name -> (low, high).

    >>> print(format_table({"iou": 61.234, "f1_object": 80.0}, {"iou": (55.0, 66.9)}))
    | metric    | value | 95% CI         |
    |:----------|------:|:---------------|
    | f1_object | 80.00 |                |
    | iou       | 61.23 | [55.00, 66.90] |
    """
    keys = [k for k in METRIC_KEYS if k in metrics] + sorted(k for k in metrics if k not in METRIC_KEYS)
    if cis is None:
        return markdown_table(["metric", "value"], [[k, float(metrics[k])] for k in keys], align="lr")
    rows = [[k, float(metrics[k]), f"[{cis[k][0]:.2f}, {cis[k][1]:.2f}]" if k in cis else ""] for k in keys]
    return markdown_table(["metric", "value", "95% CI"], rows, align="lrl")
