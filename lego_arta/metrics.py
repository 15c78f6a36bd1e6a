"""Evaluation metrics of the study (Table 1), on raw model text, with the parser the rewards use.

``score(records) = aggregate(score_samples(records))``; records are mappings with ``prediction`` (raw model text),
``reference``, optional ``task`` (inferred from the reference when missing or None) and optional ``id``. Values are
x100 and keys exist only for the tasks present:

- grounding: ``f1_theme`` (SQuAD token F1), ``rouge`` (ROUGE-L F1), ``rouge1``, ``rouge2`` (rouge-score, stemmer),
  ``bleu`` (sentence BLEU-4 on word tokens, as the ``grounding`` reward).
- object: ``f1_object`` (token F1 of all labels joined), ``iou`` (raw boxes, degenerate dropped, Hungarian, mean over
  pairs, 0 without a valid predicted box), ``iou_strict`` (matched IoU sum / max(#pred, #ref)), ``iou50`` (share of
  samples with ``iou`` >= 0.5).
- state: ``f1_state`` (Yes positive, 2TP / (2TP + FP + FN)) and ``fpr`` (FP / (FP + TN)), 0 on a zero denominator.

One light pass: ``score_samples`` parses each record once; the metrics, their bootstrap CIs (resampling the per-sample
values within each task), format validity and the trivial references (always "Yes", copy the demo's answer) are all
aggregations of its output. ``score_predictions`` assembles them into a run's ``metrics.json`` keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from lego_arta.parsing import (
    TASKS,
    answer_text,
    completion_text,
    find_yes_no,
    parse_boxes,
    parse_yes_no,
    resolve_task,
    word_tokens,
)
from lego_arta.scores import (
    ROUGE_STEMS,
    bleu4,
    match_boxes,
    object_reference,
    rouge_l,
    rouge_n,
    token_f1,
    valid_boxes,
)

log = logging.getLogger(__name__)

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "grounding": ("f1_theme", "rouge", "rouge1", "rouge2", "bleu"),
    "object": ("f1_object", "iou", "iou_strict", "iou50"),
    "state": ("f1_state", "fpr"),
}
METRIC_KEYS: tuple[str, ...] = tuple(k for task in TASKS for k in TASK_METRICS[task])
# the study's seven metrics (its Table 1), in its order
STUDY_METRICS: tuple[str, ...] = ("f1_theme", "rouge", "bleu", "f1_object", "iou", "f1_state", "fpr")
# tasks whose trivial reference copies the answer of the prompt's first demo (state demos are a Yes/No pair)
COPY_DEMO_TASKS: tuple[str, ...] = ("grounding", "object")
_STATE_COUNTS = ("tp", "fp", "fn", "tn")


Scorer = Callable[[str], dict[str, float]]


def _grounding(reference: str) -> Scorer:
    # the reference is split once; each answer once: word tokens (token F1, BLEU), stems from them (rouge-score's)
    ref_words = word_tokens(answer_text(reference))
    ref_stems = ROUGE_STEMS.from_words(ref_words)

    def scores(answer: str) -> dict[str, float]:
        words = word_tokens(answer)
        stems = ROUGE_STEMS.from_words(words)
        return {
            "f1_theme": token_f1(words, ref_words),
            "rouge": rouge_l(ref_stems, stems),
            "rouge1": rouge_n(ref_stems, stems, 1),
            "rouge2": rouge_n(ref_stems, stems, 2),
            "bleu": bleu4(words, ref_words),
            "format_valid": float(bool(words)),
        }

    return scores


def _object(reference: str, where: str) -> Scorer:
    ref_boxes, ref_valid = object_reference(reference, where)
    ref_labels = word_tokens(" ".join(b.label for b in ref_boxes))

    def scores(answer: str) -> dict[str, float]:
        boxes = parse_boxes(answer)
        valid = valid_boxes(boxes)  # raw: no clamping
        total, pairs = match_boxes(valid, ref_valid)
        iou = total / pairs if pairs else 0.0
        strict = total / max(len(valid), len(ref_valid)) if len(valid) or len(ref_valid) else 0.0
        labels = word_tokens(" ".join(b.label for b in boxes))
        return {
            "f1_object": token_f1(labels, ref_labels),
            "iou": iou,
            "iou_strict": strict,
            "iou50": float(iou >= 0.5),
            "format_valid": float(len(valid) > 0),
        }

    return scores


def _state(reference: str) -> Scorer:
    ref_yes = parse_yes_no(answer_text(reference)) == "yes"

    def scores(answer: str) -> dict[str, float]:
        found = find_yes_no(answer)
        yes = found == "yes"
        return {
            "tp": float(yes and ref_yes),
            "fp": float(yes and not ref_yes),
            "fn": float(not yes and ref_yes),
            "tn": float(not yes and not ref_yes),
            "format_valid": float(found is not None),
        }

    return scores


def _field(record: Mapping[str, Any], field: str, name: str) -> Any:
    if field not in record:
        raise ValueError(f"record {name}: missing field {field!r}")
    return record[field]


def _text_field(record: Mapping[str, Any], field: str, name: str) -> str:
    try:
        return completion_text(_field(record, field, name))
    except TypeError as err:
        raise ValueError(f"record {name}: field {field!r}: {err}") from err


def score_samples(records: Iterable[Mapping[str, Any]], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per-sample values in [0, 1] (not x100): one pass over the records, each text parsed once.

    Each sample has its ``task``, the task's metric values (state samples: their confusion indicators ``tp``, ``fp``,
    ``fn``, ``tn``, one of them 1.0, instead of a score) and ``format_valid`` (1.0 when the answer has the task's form:
    object: a non-degenerate box parses; state: a Yes/No word is there; grounding: the answer has a word). A grounding
    or object record with a ``demo_answer`` (the answer of its prompt's first few-shot demo) also gets ``copy_demo``:
    the values that answer would score. The aggregations (:func:`aggregate`, :func:`format_validity`, the trivial
    references) read these values; nothing is parsed again.

    Args:
        records: mappings with ``prediction``, ``reference`` and optional ``task``, ``id`` and ``demo_answer``.
        names: how errors name each record (e.g. ``file:line``); default: its ``id`` when present, else ``#index``.

    Raises:
        ValueError: a missing or non-string field, an unknown task, or an object reference with no box; the message
            names the record (its ``id`` when present, else its index) and the field.
        TypeError: a record that is not a mapping.

    >>> score_samples([{"task": "state", "prediction": "<answer>Yes</answer>", "reference": "No"}])
    [{'task': 'state', 'tp': 0.0, 'fp': 1.0, 'fn': 0.0, 'tn': 0.0, 'format_valid': 1.0}]
    """
    out: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"record #{index} is {type(record).__name__}, expected a mapping (prediction, reference)")
        name = names[index] if names is not None else repr(record["id"]) if "id" in record else f"#{index}"
        prediction = _text_field(record, "prediction", name)
        reference = _field(record, "reference", name)
        if not isinstance(reference, str):
            raise ValueError(f"record {name}: field 'reference' is {type(reference).__name__}, expected a string")
        try:
            task = resolve_task(record.get("task"), reference)
        except ValueError as err:
            raise ValueError(f"record {name}: field 'task': {err}") from err
        if task == "grounding":
            scores = _grounding(reference)
        elif task == "object":
            scores = _object(reference, f"record {name}: field 'reference'")
        else:
            scores = _state(reference)
        sample: dict[str, Any] = {"task": task, **scores(answer_text(prediction))}
        if task in COPY_DEMO_TASKS and record.get("demo_answer") is not None:
            sample["copy_demo"] = scores(answer_text(_text_field(record, "demo_answer", name)))
        out.append(sample)
    return out


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
    """Metrics (x100) from ``score_samples`` output: means per task, F1/FPR from the summed state counts.

    Args:
        samples: per-sample dicts from ``score_samples``.

    >>> aggregate([{"task": "object", "f1_object": 1.0, "iou": 0.5, "iou_strict": 0.25, "iou50": 1.0},
    ...            {"task": "object", "f1_object": 0.0, "iou": 0.0, "iou_strict": 0.0, "iou50": 0.0}])
    {'f1_object': 50.0, 'iou': 25.0, 'iou_strict': 12.5, 'iou50': 50.0}
    """
    out: dict[str, float] = {}
    for task, group in _by_task(samples).items():
        if task == "state":
            f1, fpr = _state_metrics(*(sum(s[c] for s in group) for c in _STATE_COUNTS))
            out["f1_state"], out["fpr"] = float(f1), float(fpr)
        else:
            for key in TASK_METRICS[task]:
                out[key] = 100.0 * sum(s[key] for s in group) / len(group)
    return out


def score(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The study's metrics (x100) of ``records``; keys only for the tasks present.

    Args:
        records: mappings with ``prediction`` (raw model text), ``reference``, optional ``task`` and ``id``.

    >>> score([{"prediction": "<think>no</think>Yes", "reference": "Yes"},
    ...        {"prediction": "Attach the red brick", "reference": "Attach the red brick."}])
    {'f1_theme': 100.0, 'rouge': 100.0, 'rouge1': 100.0, 'rouge2': 100.0, 'bleu': 100.0, 'f1_state': 100.0, 'fpr': 0.0}
    """
    return aggregate(score_samples(records))


def bootstrap_ci(
    samples: Sequence[Mapping[str, Any]], *, n: int, seed: int, alpha: float = 0.05
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals (x100) of every metric, from per-sample values.

    Each of the ``n`` resamples draws, within each task, as many samples as the task has, with replacement (a seeded
    ``numpy.random.Generator``; tasks in the order grounding, object, state). The metrics of a task share resamples.

    Args:
        samples: per-sample dicts from ``score_samples``.
        n: number of bootstrap resamples.
        seed: seed of the generator.
        alpha: 1 - confidence level (0.05 gives 95% intervals).

    >>> samples = score_samples([{"task": "state", "prediction": p, "reference": "Yes"} for p in ["Yes", "No"] * 10])
    >>> aggregate(samples)["f1_state"], [round(v, 1) for v in bootstrap_ci(samples, n=200, seed=0)["f1_state"]]
    (66.66666666666666, [40.0, 85.7])
    """
    rng = np.random.default_rng(seed)
    quantiles = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    out: dict[str, tuple[float, float]] = {}
    for task, group in _by_task(samples).items():
        fields = _STATE_COUNTS if task == "state" else TASK_METRICS[task]
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
    """Share (x100) of answers in the form their task asks for, overall and per task, from ``score_samples`` output.

    Keys ``format_valid`` and ``format_valid_<task>`` for the tasks present (see :func:`score_samples` for each form).

    Args:
        samples: per-sample dicts from ``score_samples``.

    >>> format_validity(score_samples([{"task": "state", "prediction": "Yes", "reference": "No"},
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


def always_yes_reference(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``f1_state`` and ``fpr`` of the trivial model that always answers "Yes", from ``score_samples`` output.

    Every "Yes" reference (``tp`` + ``fn``) becomes a true positive, every "No" (``fp`` + ``tn``) a false positive.
    Reported beside results: on 1 Yes : 3 No groups it gives F1 40.0 and FPR 100.0. Empty when no state sample.

    Args:
        samples: per-sample dicts from ``score_samples`` (only the state samples are read).

    >>> always_yes_reference(score_samples([{"reference": r, "prediction": "No"} for r in ["Yes", "No", "No", "No"]]))
    {'f1_state': 40.0, 'fpr': 100.0}
    """
    groups = _by_task(samples)
    if "state" not in groups:
        return {}
    state = groups["state"]
    positives = sum(s["tp"] + s["fn"] for s in state)
    negatives = sum(s["fp"] + s["tn"] for s in state)
    f1, fpr = _state_metrics(positives, negatives, 0.0, 0.0)
    return {"f1_state": float(f1), "fpr": float(fpr)}


def copy_demo_reference(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The metrics (x100) of the trivial model that copies its prompt's first demo answer, from ``score_samples``.

    Over the grounding and object samples that had a ``demo_answer``; empty when none had.

    Args:
        samples: per-sample dicts from ``score_samples``.

    >>> copy_demo_reference(score_samples([{"task": "grounding", "prediction": "", "reference": "Attach the axle.",
    ...                                     "demo_answer": "Attach it."}]))["f1_theme"]
    40.0
    """
    return aggregate({"task": s["task"], **s["copy_demo"]} for s in samples if "copy_demo" in s)


class Scored(NamedTuple):
    """Everything scored from a list of predictions: the flat run metrics, and the values / CIs for a table."""

    metrics: dict[str, float]
    values: dict[str, float]
    cis: dict[str, tuple[float, float]]


def score_predictions(
    records: Sequence[Mapping[str, Any]],
    bootstrap_samples: int,
    seed: int,
    names: Sequence[str] | None = None,
) -> Scored:
    """The run metrics of predictions, in one scoring pass: what evaluation and ``experiments/score.py`` write.

    Keys: ``eval/<metric>`` with ``_lo`` / ``_hi`` 95% bootstrap bounds (when ``bootstrap_samples`` > 0),
    ``eval/format_valid*``, ``eval/num_samples``, and the trivial references beside the results: ``ref/always_yes/*``
    (state) and ``ref/copy_demo/*`` (grounding, object; for records with a ``demo_answer``). ``values`` holds the
    metrics and format validity (x100) and ``cis`` their intervals, for :func:`format_table`.

    Args:
        records: mappings with ``prediction``, ``reference``, optional ``task``, ``id`` and ``demo_answer``.
        bootstrap_samples: number of bootstrap resamples (0: no CIs).
        seed: seed of the bootstrap.
        names: how scoring errors name each record (default: its id or index).
    """
    samples = score_samples(records, names=names)
    values = aggregate(samples) | format_validity(samples)
    cis = bootstrap_ci(samples, n=bootstrap_samples, seed=seed) if bootstrap_samples > 0 else {}
    out = {f"eval/{k}": v for k, v in values.items()}
    for k, (lo, hi) in cis.items():
        out[f"eval/{k}_lo"], out[f"eval/{k}_hi"] = lo, hi
    out["eval/num_samples"] = float(len(samples))
    out |= {f"ref/always_yes/{k}": v for k, v in always_yes_reference(samples).items()}
    out |= {f"ref/copy_demo/{k}": v for k, v in copy_demo_reference(samples).items()}
    return Scored(out, values, cis)


def format_table(metrics: Mapping[str, float], cis: Mapping[str, tuple[float, float]] | None = None) -> str:
    """A markdown table of metrics (contract order first, then any other key), with CIs when given.

    Args:
        metrics: metric name -> value (x100).
        cis: optional metric name -> (low, high).

    >>> print(format_table({"iou": 61.234, "f1_object": 80.0}, {"iou": (55.0, 66.9)}))
    | metric | value | 95% CI |
    |---|---:|---|
    | f1_object | 80.00 |  |
    | iou | 61.23 | [55.00, 66.90] |
    """
    keys = [k for k in METRIC_KEYS if k in metrics] + sorted(k for k in metrics if k not in METRIC_KEYS)
    if cis is None:
        lines = ["| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {metrics[k]:.2f} |" for k in keys]
    else:
        lines = ["| metric | value | 95% CI |", "|---|---:|---|"]
        for k in keys:
            ci = f"[{cis[k][0]:.2f}, {cis[k][1]:.2f}]" if k in cis else ""
            lines.append(f"| {k} | {metrics[k]:.2f} | {ci} |")
    return "\n".join(lines)
