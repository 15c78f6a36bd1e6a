"""Per-sample values of the study's metrics: one pass over the records, each text parsed once.

:func:`sample_metrics` gives each record its task's values in [0, 1] (state: its confusion indicators), its format
validity, and the values of the trivial answers it carries (:data:`ANSWER_REFERENCES`). ``lego_arta.metrics``
aggregates them over a test set (Table 1, CIs, references, comparisons). The metric and reference registries
(:data:`TASK_METRICS`, :data:`HEADLINE`, :data:`REFERENCE_TASKS`, ...) live here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

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
from lego_arta.scores.boxes import frame_size, match_boxes, object_reference, to_grid, valid_boxes
from lego_arta.scores.text import ROUGE_STEMS, bleu4, rouge_l, rouge_n, token_f1

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "grounding": ("f1_theme", "rouge", "rouge1", "rouge2", "bleu"),
    "object": ("f1_object", "iou", "iou_strict", "iou50"),
    "state": ("f1_state", "fpr"),
}
METRIC_KEYS: tuple[str, ...] = tuple(k for task in TASKS for k in TASK_METRICS[task])
# the study's seven metrics (its Table 1), in its order
STUDY_METRICS: tuple[str, ...] = ("f1_theme", "rouge", "bleu", "f1_object", "iou", "f1_state", "fpr")
# trivial answers a record may carry, measured in the same pass as its prediction:
# reference name -> (the record's field holding the answer, the tasks it answers)
ANSWER_REFERENCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "copy_demo": ("demo_answer", ("grounding", "object")),  # the prompt's first demo's answer (state demos: a pair)
    "mean_box": ("mean_box_answer", ("object",)),  # one box at the mean training box (mean_box_answer)
}
# every trivial reference and the tasks it answers; always "Yes" needs no answer field
REFERENCE_TASKS: dict[str, tuple[str, ...]] = {
    "always_yes": ("state",),
    **{name: tasks for name, (_, tasks) in ANSWER_REFERENCES.items()},
}
# the metric of each task that a trained model is compared on, with the trivial references and with other runs
HEADLINE: dict[str, str] = {"grounding": "f1_theme", "object": "iou", "state": "f1_state"}
STATE_COUNTS = ("tp", "fp", "fn", "tn")


# an answer's metric values, against a reference read once
Measure = Callable[[str], dict[str, float]]


def _grounding(reference: str) -> Measure:
    # the reference is split once; each answer once: word tokens (token F1, BLEU), stems from them (rouge-score's)
    ref_words = word_tokens(answer_text(reference))
    ref_stems = ROUGE_STEMS.from_words(ref_words)

    def values(answer: str) -> dict[str, float]:
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

    return values


def _object(reference: str, where: str, image_size: Sequence[float] | None) -> Measure:
    ref_boxes, ref_valid = object_reference(reference, where)
    ref_labels = word_tokens(" ".join(b.label for b in ref_boxes))

    def values(answer: str) -> dict[str, float]:
        boxes = parse_boxes(answer)
        valid = valid_boxes(to_grid(boxes, image_size))  # the frame rule, no clamping
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

    return values


def _state(reference: str) -> Measure:
    ref_yes = parse_yes_no(answer_text(reference)) == "yes"

    def values(answer: str) -> dict[str, float]:
        found = find_yes_no(answer)
        yes = found == "yes"
        return {
            "tp": float(yes and ref_yes),
            "fp": float(yes and not ref_yes),
            "fn": float(not yes and ref_yes),
            "tn": float(not yes and not ref_yes),
            "format_valid": float(found is not None),
        }

    return values


def _field(record: Mapping[str, Any], field: str, name: str) -> Any:
    if field not in record:
        raise ValueError(f"record {name}: missing field {field!r}")
    return record[field]


def _text_field(record: Mapping[str, Any], field: str, name: str) -> str:
    try:
        return completion_text(_field(record, field, name))
    except TypeError as err:
        raise ValueError(f"record {name}: field {field!r}: {err}") from err


def _image_size(record: Mapping[str, Any], name: str) -> Sequence[float] | None:
    size = record.get("image_size")
    if size is not None:
        try:
            frame_size(size)
        except ValueError as err:
            raise ValueError(f"record {name}: field 'image_size': {err}") from err
    return size


def sample_metrics(records: Iterable[Mapping[str, Any]], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per-sample values in [0, 1] (not x100): one pass over the records, each text parsed once.

    Each sample has its ``task``, the task's metric values (state samples: their confusion indicators ``tp``, ``fp``,
    ``fn``, ``tn``, one of them 1.0, instead of a value) and ``format_valid`` (1.0 when the answer has the task's form:
    object: a non-degenerate box parses; state: a Yes/No word is there; grounding: the answer has a word). A record
    carrying a trivial answer (:data:`ANSWER_REFERENCES`) also gets the values that answer would get, under the
    reference's name: ``copy_demo`` from a grounding or object ``demo_answer`` (the answer of its prompt's first
    few-shot demo), ``mean_box`` from an object ``mean_box_answer`` (one box at the training split's mean box,
    :func:`lego_arta.evaluation.trivial.mean_box_answer`). The aggregations (:func:`aggregate`,
    :func:`format_validity`, the trivial references and the comparisons with them) read these values; nothing is
    parsed again.

    Args:
        records: mappings with ``prediction``, ``reference`` and optional ``task``, ``id``, ``demo_answer``,
            ``mean_box_answer`` and ``image_size`` (``[width, height]`` of the query image as the model saw it: object
            answers in its pixels are normalised to the grid by the frame rule, :func:`lego_arta.scores.to_grid`).
        names: how errors name each record (e.g. ``file:line``); default: its ``id`` when present, else ``#index``.

    Raises:
        ValueError: a missing or non-string field, an unknown task, or an object reference with no box; the message
            names the record (its ``id`` when present, else its index) and the field.
        TypeError: a record that is not a mapping.

    >>> sample_metrics([{"task": "state", "prediction": "<answer>Yes</answer>", "reference": "No"}])
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
            measure = _grounding(reference)
        elif task == "object":
            measure = _object(reference, f"record {name}: field 'reference'", _image_size(record, name))
        else:
            measure = _state(reference)
        sample: dict[str, Any] = {"task": task, **measure(answer_text(prediction))}
        for ref, (field, tasks) in ANSWER_REFERENCES.items():
            if task in tasks and record.get(field) is not None:
                sample[ref] = measure(answer_text(_text_field(record, field, name)))
        out.append(sample)
    return out
