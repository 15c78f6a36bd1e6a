"""The trivial answers a trained model must beat: the mean-box answer, and the paired bootstrap against each reference.

Known answers: identical predictions differ by 0 and never beat; a model better on every sample beats; a constant
difference has a zero-width interval; many 0 / 50 differences give the normal interval of a mean; F1-State is
recomputed on each resample for the model and for always-Yes alike.
"""

from __future__ import annotations

import json
import math

import datasets
import numpy as np
import pytest
from scipy import stats

from lego_arta.data.records import Record
from lego_arta.evaluation.generate import generate_predictions
from lego_arta.evaluation.trivial import mean_box, mean_box_answer, mean_box_answers, query_label
from lego_arta.metrics import (
    against_references,
    compare_predictions,
    compute_metrics,
    paired_difference,
    prediction_metrics,
    trivial_reference,
)
from lego_arta.paired import mean_metric, paired_bootstrap
from lego_arta.runs import read_jsonl
from lego_arta.sample_metrics import sample_metrics


def box_json(coords: list[int], label: str = "red brick") -> str:
    return json.dumps([{"bbox_2d": coords, "label": label}])


def obj(i: int, coords: list[int], query: str = "Find a red brick") -> Record:
    return Record(
        id=f"m/object/{i}",
        task="object",
        manual_id="m",
        group_id=f"m/object/{i}",
        image="/i.png",
        query=query,
        solution=box_json(coords),
    )


# --- the mean-box answer ---------------------------------------------------------------------------------------------


def test_mean_box_is_the_mean_of_every_training_box_rounded():
    train = [
        obj(0, [10, 20, 30, 40]),
        obj(1, [20, 30, 41, 61]),
        # a record with two boxes: each box counts once
        Record(
            id="m/object/2",
            task="object",
            manual_id="m",
            group_id="m/object/2",
            image="/i.png",
            query="Find an axle",
            solution=json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "axle"}, {"bbox_2d": [30, 40, 50, 60]}]),
        ),
        # other tasks have no boxes
        Record(id="m/state/0", task="state", manual_id="m", group_id="g", image="/s.png", query="q", solution="Yes"),
    ]
    # by hand: x1 (10+20+0+30)/4 = 15, y1 (20+30+0+40)/4 = 22.5 -> 22 (half to even), x2 (30+41+10+50)/4 = 32.75 -> 33,
    # y2 (40+61+10+60)/4 = 42.75 -> 43
    assert mean_box(b.coords for r in train for b in r.boxes()) == (15, 22, 33, 43)
    test = [obj(7, [60, 60, 90, 90], query="Find a 2x4 blue plate."), train[3]]
    answers = mean_box_answers(train, test)
    # one answer per object record of the test split; the label comes from the query, not from the reference
    assert answers == {"m/object/7": '[{"bbox_2d": [15, 22, 33, 43], "label": "2x4 blue plate"}]'}
    assert mean_box_answers(train[3:], test) == {}  # no training box: no reference


@pytest.mark.parametrize(
    ("query", "label"),
    [
        ("Find a 1x2 white beam", "1x2 white beam"),  # the dataset's "[detection]" query
        ("Collect an axle.", "axle"),  # "[detection-collect]", article "an", trailing full stop
        ("find 2x4 red brick", "2x4 red brick"),  # a split multi-label query has no article
        ("Where is the brick?", ""),  # not a Find / Collect query: no label
        ("Finder a brick", ""),  # "Find" must be a whole word
    ],
)
def test_query_label(query, label):
    assert query_label(query) == label
    assert json.loads(mean_box_answer((1, 2, 3, 4), query)) == [{"bbox_2d": [1, 2, 3, 4], "label": label}]


def test_mean_box_reference_is_scored_like_copy_the_demo():
    ref = box_json([10, 10, 50, 50])
    answer = mean_box_answer((10, 10, 30, 30), "Find a red brick")
    records = [
        {"id": "o1", "task": "object", "prediction": "", "reference": ref, "mean_box_answer": answer},
        {"id": "o2", "task": "object", "prediction": "", "reference": ref, "mean_box_answer": None},  # not counted
        {"id": "g1", "task": "grounding", "prediction": "x", "reference": "Attach it.", "mean_box_answer": answer},
    ]
    samples = sample_metrics(records)
    # scoring the answer as a prediction gives the same values: IoU 400 / 1600 = 0.25, label "red brick" exact
    assert trivial_reference(samples, "mean_box") == pytest.approx(
        compute_metrics([{**records[0], "prediction": answer}])
    )
    assert trivial_reference(samples, "mean_box") == pytest.approx(
        {"f1_object": 100.0, "iou": 25.0, "iou_strict": 25.0, "iou50": 0.0}
    )
    # grounding records never get it (an object answer)
    assert "mean_box" not in samples[2]


# --- the paired bootstrap with known answers ------------------------------------------------------------------------


def test_identical_predictions_differ_by_zero_and_do_not_beat():
    rng = np.random.default_rng(0)
    values = rng.random((40, 1))
    p = paired_bootstrap(values, values.copy(), mean_metric, n_resamples=500, seed=0)
    assert p.diff == 0.0 and p.low <= 0.0 <= p.high and not p.beats
    # the state metric too: the same answers on the same samples
    records = [{"task": "state", "prediction": a, "reference": r} for a, r in [("Yes", "Yes"), ("Yes", "No")] * 10]
    samples = sample_metrics(records)
    p = paired_difference(samples, samples, "f1_state", n=500, seed=0)
    assert p.diff == 0.0 and p.low <= 0.0 <= p.high and not p.beats


def test_better_on_every_sample_beats_and_a_constant_difference_has_no_width():
    rng = np.random.default_rng(1)
    reference = rng.random((30, 1)) * 0.5
    model = reference + 0.25  # better by 25 (x100) on every sample
    p = paired_bootstrap(model, reference, mean_metric, n_resamples=500, seed=0)
    assert p.diff == pytest.approx(25.0)
    assert p.low == pytest.approx(25.0) and p.high == pytest.approx(25.0)  # every resample differs by exactly 25
    assert p.beats
    # better by a varying amount: the interval lies within the smallest and largest per-sample gain
    gain = rng.uniform(0.05, 0.3, size=(30, 1))
    p = paired_bootstrap(reference + gain, reference, mean_metric, n_resamples=500, seed=0)
    assert 5.0 <= p.low <= p.diff <= p.high <= 30.0 and p.beats
    # worse on every sample: never beats
    assert not paired_bootstrap(reference, model, mean_metric, n_resamples=500, seed=0).beats


def test_paired_interval_is_the_normal_interval_of_the_mean_difference():
    # 400 samples: the model gains 0.5 on half of them, 0 on the others: mean 25, sd 25 (x100), standard error
    # 25 / sqrt(400) = 1.25; the 95% interval of the mean is about 25 ± 1.96 x 1.25 = [22.55, 27.45]
    reference = np.zeros((400, 1))
    model = np.tile([[0.5], [0.0]], (200, 1))
    p = paired_bootstrap(model, reference, mean_metric, n_resamples=4000, seed=0)
    assert p.diff == pytest.approx(25.0)
    assert p.low == pytest.approx(22.55, abs=0.4) and p.high == pytest.approx(27.45, abs=0.4)
    # pairing matters: the same gains against a reference that varies along with the model give a zero-width interval
    p = paired_bootstrap(model + 0.5, model, mean_metric, n_resamples=500, seed=0)
    assert (p.low, p.high) == pytest.approx((50.0, 50.0))


def test_paired_bootstrap_is_seeded_and_needs_two_samples_and_resamples():
    rng = np.random.default_rng(2)
    model, reference = rng.random((25, 1)), rng.random((25, 1))
    first = paired_bootstrap(model, reference, mean_metric, n_resamples=300, seed=0)
    assert paired_bootstrap(model, reference, mean_metric, n_resamples=300, seed=0) == first
    assert paired_bootstrap(model, reference, mean_metric, n_resamples=300, seed=1) != first
    # no resamples, or one sample: the difference without an interval, and no "beats"
    for m, r, n in [(model, reference, 0), (model[:1], reference[:1] - 1, 300)]:
        p = paired_bootstrap(m, r, mean_metric, n_resamples=n, seed=0)
        assert math.isfinite(p.diff) and math.isnan(p.low) and math.isnan(p.high) and not p.beats
    with pytest.raises(ValueError, match="expected two"):
        paired_bootstrap(model, reference[:3], mean_metric, n_resamples=10, seed=0)


def test_f1_state_is_recomputed_on_each_resample_against_always_yes():
    # 10 groups of 1 Yes + 3 No; the model answers every one right: F1 100 on any resample with a Yes in it, while
    # always-Yes scores 2P / (2P + N) on the resample's P Yes and N No references
    refs = ["Yes", "No", "No", "No"] * 10
    samples = sample_metrics([{"task": "state", "prediction": r, "reference": r} for r in refs])
    p = against_references(samples, n=2000, seed=0)["always_yes/f1_state"]
    assert (p.model, p.reference, p.diff) == pytest.approx((100.0, 40.0, 60.0))

    # by hand: a resample holds P ~ Binomial(40, 1/4) Yes references; always-Yes scores 2P / (P + 40) on it and the
    # model 100, so the interval's bounds are the difference at P's 97.5% and 2.5% quantiles (within one step of P:
    # the bootstrap's own quantiles of a discrete statistic)
    def diff(k: float) -> float:
        return 100.0 - 100.0 * 2 * k / (k + 40)

    k_hi, k_lo = (stats.binom.ppf(q, 40, 0.25) for q in (0.975, 0.025))
    assert diff(k_hi + 1) - 1e-9 <= p.low <= diff(k_hi - 1) + 1e-9
    assert diff(k_lo + 1) - 1e-9 <= p.high <= diff(k_lo - 1) + 1e-9
    assert p.beats


def test_against_references_and_the_metrics_json_keys():
    ref = box_json([10, 10, 50, 50])
    demo = box_json([10, 10, 30, 30])  # IoU 0.25 with the reference
    mean = mean_box_answer((60, 60, 90, 90), "Find a red brick")  # IoU 0
    records = []
    for i in range(6):
        # the model: exact on even samples, the demo's box on odd ones
        pred = ref if i % 2 == 0 else demo
        records.append(
            {"id": f"o{i}", "task": "object", "prediction": pred, "reference": ref, "demo_answer": demo}
            | {"mean_box_answer": mean}
        )
        # grounding: the model copies the demo's answer
        records.append(
            {"id": f"g{i}", "task": "grounding", "prediction": "Attach the blue plate.", "reference": "Attach the red"}
            | {"demo_answer": "Attach the blue plate."}
        )
    for i, r in enumerate(["Yes", "No", "No", "No"] * 2):
        records.append({"id": f"s{i}", "task": "state", "prediction": "No", "reference": r})  # always "No"
    metrics = prediction_metrics(records, bootstrap_samples=500, seed=0).metrics
    vs = {k: v for k, v in metrics.items() if k.startswith("vs/")}
    assert set(vs) == {
        f"vs/{key}{suffix}"
        for key in ("copy_demo/f1_theme", "copy_demo/iou", "mean_box/iou", "always_yes/f1_state")
        for suffix in ("", "_lo", "_hi", "_beats")
    }
    # IoU: model (1 + 0.25) / 2 = 62.5; copy the demo 25 (+0.75 on half the samples, 0 on the others); mean box 0
    assert metrics["vs/copy_demo/iou"] == pytest.approx(37.5)
    assert 0.0 < metrics["vs/copy_demo/iou_lo"] <= 37.5 <= metrics["vs/copy_demo/iou_hi"] <= 75.0
    assert metrics["vs/mean_box/iou"] == pytest.approx(62.5) and metrics["vs/mean_box/iou_lo"] >= 25.0 - 1e-9
    assert metrics["vs/copy_demo/iou_beats"] == metrics["vs/mean_box/iou_beats"] == 1.0
    # grounding: the model is the copy of the demo: 0, [0, 0], does not beat
    assert (metrics["vs/copy_demo/f1_theme"], metrics["vs/copy_demo/f1_theme_beats"]) == (0.0, 0.0)
    assert metrics["vs/copy_demo/f1_theme_lo"] == pytest.approx(0.0) == metrics["vs/copy_demo/f1_theme_hi"]
    # state: always "No" scores F1 0 against always-Yes' 40
    assert metrics["vs/always_yes/f1_state"] == pytest.approx(-40.0) and metrics["vs/always_yes/f1_state_beats"] == 0
    # each difference is the model's metric minus the reference's, as written beside it
    for key in ("copy_demo/iou", "mean_box/iou", "copy_demo/f1_theme", "always_yes/f1_state"):
        name, metric = key.split("/")
        assert metrics[f"vs/{key}"] == pytest.approx(metrics[f"eval/{metric}"] - metrics[f"ref/{name}/{metric}"])
    # without resamples: the differences only
    plain = prediction_metrics(records, bootstrap_samples=0, seed=0).metrics
    assert {k for k in plain if k.startswith("vs/")} == {k for k in vs if not k.endswith(("_lo", "_hi", "_beats"))}


def test_compare_predictions_pairs_two_runs_by_sample_id():
    ref = box_json([10, 10, 50, 50])
    sft = [
        {"id": f"o{i}", "task": "object", "prediction": box_json([10, 10, 30, 30]), "reference": ref} for i in range(8)
    ]
    grpo = [{**r, "prediction": ref} for r in sft]  # exact on every sample: +75 on each
    grpo = [*grpo[::-1], {"id": "extra", "task": "object", "prediction": "", "reference": ref}]  # order, extra id
    p = compare_predictions(grpo, sft, n=300, seed=0)["iou"]
    assert (p.model, p.reference, p.diff, p.n) == pytest.approx((100.0, 25.0, 75.0, 8))
    assert p.low == pytest.approx(75.0) and p.beats
    # pairing is by id, not by position: SFT exact on half the ids, the same answers per id in reverse order
    mixed = [{**r, "prediction": ref} if i < 4 else r for i, r in enumerate(sft)]
    p = compare_predictions(mixed[::-1], mixed, n=300, seed=0)["iou"]
    assert (p.diff, p.low, p.high) == (0.0, 0.0, 0.0)
    # the same predictions: 0 and no "beats"; state F1 recomputed for both
    refs = ["Yes", "No", "No", "No"] * 3
    state = [{"id": f"s{i}", "task": "state", "prediction": "Yes", "reference": r} for i, r in enumerate(refs)]
    same = compare_predictions(state, state, n=300, seed=0)["f1_state"]
    assert same.diff == 0.0 and not same.beats
    # another test split under the same ids is an error, not a comparison
    with pytest.raises(ValueError, match="'o0': the two runs have different references"):
        compare_predictions([{**sft[0], "reference": box_json([0, 0, 5, 5])}], sft, n=10, seed=0)
    with pytest.raises(ValueError, match="no 'id'"):
        compare_predictions([{"prediction": "", "reference": ref}], sft, n=10, seed=0)


# --- evaluation writes the answer into predictions.jsonl -------------------------------------------------------------


def test_generate_predictions_writes_extra_columns_and_refreshes_kept_rows(tmp_path):
    rows = {
        "id": ["a", "b", "c"],
        "task": ["object", "object", "state"],
        "prompt": [[{"role": "user", "content": [{"type": "text", "text": f"q{i}"}]}] for i in range(3)],
        "images": [[], [], []],
        "solution": [box_json([0, 0, 5, 5])] * 2 + ["Yes"],
        "demo_answer": [None, None, "No"],
    }
    dataset = datasets.Dataset.from_dict(rows)
    calls = []

    def backend(prompts, images):
        calls.append(len(prompts))
        return ["Yes"] * len(prompts)

    out = tmp_path / "predictions.jsonl"
    answers = {"a": box_json([1, 1, 4, 4]), "b": box_json([2, 2, 4, 4])}
    records = generate_predictions(backend, dataset, out, batch_size=2, generator="g", columns={"mean_box_answer": {}})
    assert [r["mean_box_answer"] for r in records] == [None, None, None]
    # resumed with the answers: nothing is generated again, every kept row gets its answer (None for the state row)
    records = generate_predictions(
        backend, dataset, out, batch_size=2, generator="g", columns={"mean_box_answer": answers}
    )
    assert calls == [2, 1]
    assert [r["mean_box_answer"] for r in records] == [answers["a"], answers["b"], None]
    assert [r["mean_box_answer"] for r in read_jsonl(out)] == [answers["a"], answers["b"], None]
