"""Metrics (lego_arta.metrics): the contract's values per task, structure, bootstrap CIs, the always-Yes reference."""

from __future__ import annotations

import json
import math
import random

import pytest
from rouge_score import rouge_scorer, tokenizers

from lego_arta.metrics import (
    aggregate,
    bootstrap_ci,
    compute_metrics,
    format_table,
    format_validity,
    prediction_metrics,
    trivial_reference,
)
from lego_arta.sample_metrics import METRIC_KEYS, sample_metrics
from lego_arta.scores import RougeTokenizer, lcs_length, token_f1


def boxes_json(*boxes: tuple[list[float], str]) -> str:
    """A JSON answer with (bbox_2d, label) boxes."""
    return json.dumps([{"bbox_2d": b, "label": label} for b, label in boxes])


def grounding_metrics(prediction: str, reference: str) -> dict[str, float]:
    """The metrics of one grounding answer."""
    return compute_metrics([{"task": "grounding", "prediction": prediction, "reference": reference}])


def object_metrics(prediction: str, reference: str) -> dict[str, float]:
    """The metrics of one object answer."""
    return compute_metrics([{"task": "object", "prediction": prediction, "reference": reference}])


REF1 = boxes_json(([0, 0, 10, 10], "red brick"))
REF2 = boxes_json(([0, 0, 10, 10], "a"), ([50, 50, 60, 60], "b"))
HUNGARIAN_MEAN = 100 * (9 / 11 + 0.8) / 2  # greedy (best pair first) would give 100 * (0.9 + 7/12) / 2 = 74.2
# BLEU of a reordered 4-token hypothesis: unigram precision 1, no higher n-gram (method1: 0.1 / count)
REORDERED_BLEU = 100 * math.exp(0.25 * (math.log(0.1 / 3) + math.log(0.1 / 2) + math.log(0.1 / 1)))


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # identical text: everything 100
        pytest.param(
            "Attach the red brick.",
            "attach the red brick",
            dict.fromkeys(("f1_theme", "rouge", "rouge1", "rouge2", "bleu"), 100.0),
            id="identical",
        ),
        # a prefix of the reference: recall 4/6; ROUGE-2 3/3 vs 3/5; BLEU brevity penalty exp(1 - 6/4)
        pytest.param(
            "attach the red brick",
            "attach the red brick on top",
            {"f1_theme": 80.0, "rouge": 80.0, "rouge1": 80.0, "rouge2": 75.0, "bleu": 100 * math.exp(-0.5)},
            id="prefix",
        ),
        # ROUGE uses the Porter stemmer, token F1 and BLEU do not
        pytest.param(
            "attaching bricks",
            "attach brick",
            {"f1_theme": 0.0, "rouge": 100.0, "rouge1": 100.0, "rouge2": 100.0, "bleu": 0.0},
            id="stemming",
        ),
        # reordered words: token F1 and ROUGE-1 100, ROUGE-L = LCS 1 of 4, no bigram
        pytest.param(
            "brick red the attach",
            "attach the red brick",
            {"f1_theme": 100.0, "rouge": 25.0, "rouge1": 100.0, "rouge2": 0.0, "bleu": REORDERED_BLEU},
            id="reordered",
        ),
        # multiset token F1: "red" counts once in common; P = 1/3, R = 1/2
        pytest.param("red red red", "red brick", {"f1_theme": 40.0, "rouge1": 40.0}, id="multiset"),
        # empty prediction: 0 everywhere
        pytest.param(
            "",
            "attach the red brick",
            dict.fromkeys(("f1_theme", "rouge", "rouge1", "rouge2", "bleu"), 0.0),
            id="empty",
        ),
        # the think block is removed, the answer block is used
        pytest.param(
            "<think>attach the red brick</think><answer>blue plate</answer>",
            "blue plate",
            {"f1_theme": 100.0, "rouge": 100.0, "bleu": 100 * 0.1**0.5},
            id="think-answer",
        ),
    ],
)
def test_grounding_metrics(prediction, reference, expected):
    got = grounding_metrics(prediction, reference)
    assert list(got) == ["f1_theme", "rouge", "rouge1", "rouge2", "bleu"]
    assert {k: got[k] for k in expected} == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # exact box and label
        pytest.param(boxes_json(([0, 0, 10, 10], "red brick")), REF1, (100.0, 100.0, 100.0, 100.0), id="exact"),
        # float coordinates
        pytest.param(
            boxes_json(([2.5, 2.5, 7.5, 7.5], "red brick")), REF1, (100.0, 25.0, 25.0, 0.0), id="float-coords"
        ),
        # metrics do not clamp: (-10,0,10,10) vs (0,0,10,10) is IoU 0.5, and 0.5 counts for iou50
        pytest.param(boxes_json(([-10, 0, 10, 10], "red brick")), REF1, (100.0, 50.0, 50.0, 100.0), id="no-clamp"),
        # just below the 0.5 threshold
        pytest.param(boxes_json(([0, 0, 10, 4], "red brick")), REF1, (100.0, 40.0, 40.0, 0.0), id="below-iou50"),
        # Hungarian, not greedy
        pytest.param(
            boxes_json(([1, 0, 10, 10], "x"), ([0, 0, 8, 10], "y")),
            boxes_json(([0, 0, 10, 10], "x"), ([1, 0, 12, 10], "y")),
            (100.0, HUNGARIAN_MEAN, HUNGARIAN_MEAN, 100.0),
            id="hungarian-not-greedy",
        ),
        # more predicted boxes: mean over the 1 pair; strict divides by max(2, 1)
        pytest.param(
            boxes_json(([0, 0, 10, 10], "red brick"), ([50, 50, 60, 60], "red brick")),
            REF1,
            (100 * 2 / 3, 100.0, 50.0, 100.0),
            id="more-pred",
        ),
        # fewer predicted boxes: mean over the 1 pair; strict divides by max(1, 2)
        pytest.param(boxes_json(([0, 0, 10, 10], "a")), REF2, (100 * 2 / 3, 100.0, 50.0, 100.0), id="fewer-pred"),
        # a degenerate predicted box is dropped from IoU and counts but keeps its label
        pytest.param(
            boxes_json(([0, 0, 10, 10], "red"), ([5, 5, 5, 5], "brick")),
            REF1,
            (100.0, 100.0, 100.0, 100.0),
            id="degenerate-dropped",
        ),
        # no valid predicted box: IoU 0
        pytest.param(boxes_json(([5, 5, 5, 5], "red brick")), REF1, (100.0, 0.0, 0.0, 0.0), id="no-valid-box"),
        # no box at all: labels empty too
        pytest.param("a red brick", REF1, (0.0, 0.0, 0.0, 0.0), id="no-box"),
        # fenced JSON
        pytest.param(
            '```json\n{"bbox_2d": [0, 0, 10, 10], "label": "red brick"}\n```',
            REF1,
            (100.0, 100.0, 100.0, 100.0),
            id="fenced",
        ),
        # legacy format in the prediction and the reference
        pytest.param(
            "<p>red brick</p>{<0><0><10><10>}",
            "<p>red brick</p>{<0><0><10><10>}",
            (100.0, 100.0, 100.0, 100.0),
            id="legacy",
        ),
        # a misleading box and label inside <think>
        pytest.param(
            "<think>"
            + boxes_json(([0, 0, 10, 10], "red brick"))
            + "</think>"
            + boxes_json(([50, 50, 60, 60], "blue")),
            REF1,
            (0.0, 0.0, 0.0, 0.0),
            id="think-misleading",
        ),
    ],
)
def test_object_metrics(prediction, reference, expected):
    got = object_metrics(prediction, reference)
    assert list(got) == ["f1_object", "iou", "iou_strict", "iou50"]
    assert tuple(got.values()) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("predictions", "references", "f1", "fpr"),
    [
        # one of each confusion cell: F1 = 2/(2+1+1), FPR = 1/2
        pytest.param(["Yes", "Yes", "No", "No"], ["Yes", "No", "Yes", "No"], 50.0, 50.0, id="one-of-each"),
        # perfect
        pytest.param(["Yes", "No"], ["Yes", "No"], 100.0, 0.0, id="perfect"),
        # only "No" references, all right: F1 denominator 0 -> 0
        pytest.param(["No", "No"], ["No", "No"], 0.0, 0.0, id="no-positives"),
        # only "Yes" references: FPR 0 when there is no "No" reference
        pytest.param(["No", "Yes"], ["Yes", "Yes"], 100 * 2 / 3, 0.0, id="no-negatives"),
        # misleading think, default No, whole words
        pytest.param(["<think>yes</think>No", "Yesterday", "maybe"], ["No", "No", "Yes"], 0.0, 0.0, id="parsing"),
    ],
)
def test_state_metrics(predictions, references, f1, fpr):
    records = [
        {"task": "state", "prediction": p, "reference": r} for p, r in zip(predictions, references, strict=True)
    ]
    assert compute_metrics(records) == pytest.approx({"f1_state": f1, "fpr": fpr})


def test_always_yes_reference_on_one_to_three_groups():
    # the trivial reference of the contract: F1 40.0 and FPR 100.0 on groups of 1 Yes + 3 No
    records = [
        {"task": "state", "prediction": "No", "reference": r} for _ in range(5) for r in ("Yes", "No", "No", "No")
    ]
    records.append({"prediction": "", "reference": "Attach the brick."})  # other tasks are ignored
    samples = sample_metrics(records)
    assert trivial_reference(samples, "always_yes") == pytest.approx({"f1_state": 40.0, "fpr": 100.0})
    # the aggregation gives what scoring always-"Yes" predictions gives
    yes = [{**r, "prediction": "Yes"} for r in records if r.get("task") == "state"]
    assert trivial_reference(samples, "always_yes") == pytest.approx(compute_metrics(yes))
    # no state record: no keys
    assert trivial_reference(samples[-1:], "always_yes") == {}


def test_copy_demo_reference_scores_the_demo_answer_in_the_same_pass():
    # records with a demo_answer: the reference is what scoring the demo answers as predictions gives
    records = [
        {"task": "grounding", "prediction": "x", "reference": "Attach the red brick.", "demo_answer": "Attach it."},
        {
            "task": "object",
            "prediction": "",
            "reference": REF1,
            "demo_answer": boxes_json(([0, 0, 10, 5], "red brick")),
        },
        {"task": "object", "prediction": "", "reference": REF1, "demo_answer": None},  # no demo: not counted
        {"task": "state", "prediction": "No", "reference": "No", "demo_answer": "Yes"},  # state: never copied
    ]
    samples = sample_metrics(records)
    copied = [{**r, "prediction": r["demo_answer"]} for r in records[:2]]
    assert trivial_reference(samples, "copy_demo") == pytest.approx(compute_metrics(copied))
    # without any demo answer: no keys
    assert trivial_reference(sample_metrics(records[2:]), "copy_demo") == {}


def test_format_validity_is_an_aggregation_of_the_samples():
    records = [
        {"task": "grounding", "prediction": "<answer>Attach it</answer>", "reference": "Attach it."},  # words: valid
        {"task": "grounding", "prediction": "<think>hm</think> ...", "reference": "Attach it."},  # no word
        {"task": "object", "prediction": boxes_json(([0, 0, 10, 10], "a")), "reference": REF1},  # a valid box
        {"task": "object", "prediction": boxes_json(([5, 5, 5, 9], "a")), "reference": REF1},  # only a degenerate box
        {"task": "state", "prediction": "Maybe", "reference": "No"},  # no yes/no word
    ]
    samples = sample_metrics(records)
    assert [s["format_valid"] for s in samples] == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert format_validity(samples) == pytest.approx(
        {"format_valid": 40.0, "format_valid_grounding": 50.0, "format_valid_object": 50.0, "format_valid_state": 0.0}
    )


def test_prediction_metrics_is_one_pass_over_the_records():
    # every key of a run's metrics.json from one sample_metrics pass: metrics, CIs, validity, both references
    records = [*MIXED, {**MIXED[0], "id": "g2", "demo_answer": "attach the red brick on top"}]
    computed = prediction_metrics(records, bootstrap_samples=50, seed=0)
    samples = sample_metrics(records)
    assert computed.values == aggregate(samples) | format_validity(samples)
    assert computed.metrics["eval/num_samples"] == 4.0
    assert computed.metrics["ref/copy_demo/f1_theme"] == 100.0
    assert computed.metrics["ref/always_yes/fpr"] == 100.0
    assert set(computed.cis) == set(aggregate(samples))


MIXED = [
    {"id": "g", "prediction": "attach the red brick", "reference": "Attach the red brick on top."},
    {"id": "o", "prediction": boxes_json(([0, 0, 10, 5], "red brick")), "reference": REF1},
    {"id": "s", "prediction": "<answer>Yes</answer>", "reference": "No"},
]


def test_keys_only_for_tasks_present_and_metrics_aggregate_the_samples():
    # mixed records, tasks inferred: every key, in the contract's order
    assert list(compute_metrics(MIXED)) == list(METRIC_KEYS)
    assert compute_metrics(MIXED) == aggregate(sample_metrics(MIXED))
    # only object records: only object keys
    assert list(compute_metrics(MIXED[1:2])) == ["f1_object", "iou", "iou_strict", "iou50"]
    assert compute_metrics([]) == {}


def test_sample_metrics_are_per_sample_values_in_unit_range():
    samples = sample_metrics(MIXED)
    assert [s["task"] for s in samples] == ["grounding", "object", "state"]
    assert samples[1] == {
        "task": "object",
        "f1_object": 1.0,
        "iou": 0.5,
        "iou_strict": 0.5,
        "iou50": 1.0,
        "format_valid": 1.0,
    }
    assert samples[2] == {"task": "state", "tp": 0.0, "fp": 1.0, "fn": 0.0, "tn": 0.0, "format_valid": 1.0}
    assert all(0.0 <= v <= 1.0 for s in samples for k, v in s.items() if k != "task")


def test_task_column_overrides_inference():
    # "Yes" would be inferred as state; the task column makes it a grounding sample
    assert list(compute_metrics([{"task": "grounding", "prediction": "Yes", "reference": "Yes"}])) == list(
        METRIC_KEYS[:5]
    )
    # a None task is inferred
    assert list(compute_metrics([{"task": None, "prediction": "Yes", "reference": "Yes"}])) == ["f1_state", "fpr"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        # an object reference without a box, named by id
        pytest.param(
            [{"id": "x7", "task": "object", "prediction": "", "reference": "a red brick"}],
            r"record 'x7': field 'reference': object reference has no box",
            id="no-box-id",
        ),
        # named by index when there is no id
        pytest.param(
            [MIXED[0], {"task": "object", "prediction": "", "reference": "none"}],
            r"record #1: field 'reference': object reference has no box",
            id="no-box-index",
        ),
        # a missing field
        pytest.param([{"reference": "Yes"}], r"record #0: missing field 'prediction'", id="missing-prediction"),
        pytest.param([{"id": 3, "prediction": "Yes"}], r"record 3: missing field 'reference'", id="missing-reference"),
        # a reference that is not a string
        pytest.param(
            [{"prediction": "Yes", "reference": ["Yes"]}], r"record #0: field 'reference' is list", id="reference-type"
        ),
        # an unknown task
        pytest.param(
            [{"task": "detection", "prediction": "", "reference": "Yes"}],
            r"record #0: field 'task': unknown task 'detection'",
            id="unknown-task",
        ),
    ],
)
def test_invalid_records_are_clear_errors(records, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(records)


def test_non_mapping_record_is_a_type_error():
    # e.g. passing a metrics dict where records are expected
    with pytest.raises(TypeError, match="record #0 is str, expected a mapping"):
        compute_metrics({"f1_state": 40.0})  # type: ignore[arg-type]


def _bootstrap_records(n: int = 60) -> list[dict[str, str]]:
    rng = random.Random(0)
    words = "attach the red blue brick plate on top".split()
    records = []
    for i in range(n):
        records.append(
            {"prediction": " ".join(rng.choices(words, k=5)), "reference": " ".join(rng.choices(words, k=6))}
        )
        box = [rng.randint(0, 10), rng.randint(0, 10), rng.randint(20, 30), rng.randint(20, 30)]
        records.append(
            {"prediction": boxes_json((box, "brick")), "reference": boxes_json(([5, 5, 25, 25], "red brick"))}
        )
        records.append({"prediction": rng.choice(["Yes", "No"]), "reference": "Yes" if i % 4 == 0 else "No"})
    return records


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded():
    samples = sample_metrics(_bootstrap_records())
    values = aggregate(samples)
    cis = bootstrap_ci(samples, n=300, seed=0)
    # one interval per metric, in the same order as the metrics
    assert list(cis) == list(values)
    for key, (lo, hi) in cis.items():
        assert 0.0 <= lo <= values[key] + 1e-9 and values[key] - 1e-9 <= hi <= 100.0, key
    # seeded: same seed same intervals, another seed other intervals
    assert bootstrap_ci(samples, n=300, seed=0) == cis
    assert bootstrap_ci(samples, n=300, seed=1) != cis
    # a smaller alpha gives wider intervals
    wide = bootstrap_ci(samples, n=300, seed=0, alpha=0.01)
    assert all(wide[k][0] <= cis[k][0] and cis[k][1] <= wide[k][1] for k in cis)


def test_bootstrap_resamples_within_each_task():
    # one state sample (a true positive) among 50 grounding samples: resampled within its task it is always drawn,
    # so its F1 interval is exactly [100, 100]; pooled resampling would often miss it
    records = [{"prediction": "Yes", "reference": "Yes"}]
    records += [{"prediction": f"word{i}", "reference": f"word{i % 2}"} for i in range(50)]
    cis = bootstrap_ci(sample_metrics(records), n=200, seed=0)
    assert cis["f1_state"] == (100.0, 100.0)
    assert cis["fpr"] == (0.0, 0.0)
    # constant per-sample values give a zero-width interval
    assert cis["rouge2"] == (0.0, 0.0)


def test_format_table():
    metrics = {"fpr": 12.345, "iou": 61.2, "extra": 1.0}
    # contract order first, other keys after; two decimals
    assert format_table(metrics).splitlines() == [
        "| metric | value |",
        "|:-------|------:|",
        "| iou    | 61.20 |",
        "| fpr    | 12.35 |",
        "| extra  |  1.00 |",
    ]
    # with CIs: a third column, empty where a key has no interval
    lines = format_table(metrics, {"iou": (55.0, 66.94)}).splitlines()
    assert lines[0] == "| metric | value | 95% CI         |"
    assert lines[2] == "| iou    | 61.20 | [55.00, 66.94] |"
    assert lines[4] == "| extra  |  1.00 |                |"


def test_token_f1():
    # multiset overlap, 0 when a side is empty
    assert token_f1(["a", "a", "b"], ["a", "b", "c"]) == pytest.approx(2 / 3)
    assert token_f1([], ["a"]) == token_f1(["a"], []) == 0.0


def test_rouge_helpers_match_rouge_score():
    # the fast tokenizer gives rouge-score's tokens; the bit-parallel LCS gives rouge-score's ROUGE-L
    rng = random.Random(1)
    alphabet = ["attach", "attaching", "the", "bricks", "brick", "Red", "red,", "1x2", "on", "top!", "é", "a-b", " "]
    reference_scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for stem in (False, True):
        default = tokenizers.DefaultTokenizer(use_stemmer=stem)
        for _ in range(200):
            text = " ".join(rng.choices(alphabet, k=rng.randint(0, 30)))
            assert RougeTokenizer(stem).tokenize(text) == default.tokenize(text)
    for _ in range(200):
        a = " ".join(rng.choices(alphabet, k=rng.randint(0, 25)))
        b = " ".join(rng.choices(alphabet, k=rng.randint(0, 25)))
        expected = reference_scorer.score(a, b)["rougeL"].fmeasure
        assert grounding_metrics(b, a)["rouge"] == pytest.approx(100 * expected)
        ta, tb = RougeTokenizer(True).tokenize(a), RougeTokenizer(True).tokenize(b)
        assert lcs_length(ta, tb) == rouge_scorer._lcs_table(ta, tb)[-1][-1]


@pytest.mark.parametrize("length", [1, 40, 1500, 2500])
def test_rouge_from_counts_matches_rouge_score(length):
    # ROUGE-N from the counts made once, ROUGE-L from the bit-parallel LCS: rouge-score's own values (stemmer on, as
    # the metrics use it), short texts and long ones
    rng = random.Random(length)
    words = ["attach", "attaching", "the", "red", "bricks", "brick", "on", "top", "of", "plate"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    prediction = " ".join(rng.choices(words, k=length))
    reference = " ".join(rng.choices(words, k=40))
    expected = scorer.score(reference, prediction)
    got = grounding_metrics(prediction, reference)
    assert got["rouge1"] == pytest.approx(100 * expected["rouge1"].fmeasure, rel=1e-12)
    assert got["rouge2"] == pytest.approx(100 * expected["rouge2"].fmeasure, rel=1e-12)
    assert got["rouge"] == pytest.approx(100 * expected["rougeL"].fmeasure, rel=1e-12)


@pytest.mark.parametrize(
    ("prediction", "image_size", "iou"),
    [
        # the exact pixel answer on a 1260 x 840 frame (x * 12.6, y * 8.4) normalises to the reference: IoU 100
        pytest.param(([126, 168, 630, 504], "brick"), [1260, 840], 100.0, id="pixel-answer-normalised"),
        # a grid answer is untouched
        pytest.param(([10, 20, 50, 60], "brick"), [1260, 840], 100.0, id="grid-answer-untouched"),
        # beyond the frame: [630, 420, 1512, 924] -> [50, 50, 120, 110], not clamped by the metric; it touches the
        # reference [10, 20, 50, 60] only on x = 50: IoU 0
        pytest.param(([630, 420, 1512, 924], "brick"), [1260, 840], 0.0, id="beyond-the-frame"),
        # overshoot (102 <= 105) is read on the grid, not clamped: IoU = 40 x 40 / (92 x 40) = 43.478
        pytest.param(([10, 20, 102, 60], "brick"), [1260, 840], 100 * 1600 / 3680, id="overshoot-on-the-grid"),
        # without image_size nothing is normalised (older prediction files score as before): disjoint, IoU 0
        pytest.param(([126, 168, 630, 504], "brick"), None, 0.0, id="no-image-size"),
    ],
)
def test_object_iou_applies_the_frame_rule(prediction, image_size, iou):
    record = {
        "task": "object",
        "prediction": boxes_json(prediction),
        "reference": boxes_json(([10, 20, 50, 60], "brick")),
    }
    if image_size is not None:
        record["image_size"] = image_size
    assert compute_metrics([record])["iou"] == pytest.approx(iou)


def test_a_bad_image_size_names_the_record_and_field():
    record = {
        "id": "x7",
        "task": "object",
        "prediction": "[]",
        "reference": boxes_json(([1, 1, 5, 5], "pin")),
        "image_size": [3],
    }
    with pytest.raises(ValueError, match=r"record 'x7': field 'image_size'"):
        compute_metrics([record])
