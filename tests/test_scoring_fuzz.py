"""Bad model output never raises: arbitrary text, 1 MB strings, deep JSON, huge and non-finite numbers.

Every reward and ``compute_metrics`` must return finite values within their ranges. The 1 MB cases are also a
regression guard for linear-time parsing (a quadratic tag search takes minutes on them).
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lego_arta.metrics import compute_metrics, format_validity
from lego_arta.parsing import answer_text, completion_text, parse_boxes
from lego_arta.rewards import REWARDS
from lego_arta.sample_metrics import METRIC_KEYS, sample_metrics

MB = 1 << 20
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "<THINK>", "```json", "```", "\n", " ",
    '{"bbox_2d": [', '[{"bbox_2d": [', "]", "}", "}]", '"label": ', '"red brick"', ", ", "[", "{",
    "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" + "0" * 400, "9" * 5000, "true", "null", '"7"',
    "0", "10", "-5", "150", "2.5", "1e308", "-1e308", "5e-324",
    "<p>", "</p>", "{<", "><", ">}", "<delim>", "yes", "No", "YES.", "Yesterday", "attach the red brick",
]  # fmt: skip

numbers = st.one_of(
    st.integers(min_value=-(10**500), max_value=10**500).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: json.dumps(x)),
)
model_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12), numbers), max_size=40).map("".join)
coordinate = st.one_of(
    st.integers(min_value=-200, max_value=300), st.floats(min_value=-1e308, max_value=1e308, allow_nan=False)
)
box = st.tuples(coordinate, coordinate, coordinate, coordinate, st.text(max_size=10))


@st.composite
def object_reference(draw: st.DrawFn) -> str:
    boxes = draw(st.lists(box, min_size=1, max_size=4))
    if draw(st.booleans()):
        return json.dumps([{"bbox_2d": list(b[:4]), "label": b[4]} for b in boxes])
    ints = [tuple(int(max(-1e6, min(1e6, v))) for v in b[:4]) for b in boxes]
    return "".join(
        f"<p>{b[4]}</p>{{<{x1}><{y1}><{x2}><{y2}>}}" for b, (x1, y1, x2, y2) in zip(boxes, ints, strict=True)
    )


@st.composite
def sample(draw: st.DrawFn) -> tuple[str, str, str | None]:
    """(completion, solution, task or None)."""
    task = draw(st.sampled_from(["object", "state", "grounding", None]))
    if task == "object":
        reference = draw(object_reference())
    elif task == "state":
        reference = draw(st.sampled_from(["Yes", "No", "yes.", " NO "]))
    else:
        reference = draw(st.one_of(model_text, st.text()))
    return draw(model_text), reference, task


def check_rewards(completions: list, solutions: list[str], tasks: list[str | None]) -> None:
    task_column = None if all(t is None for t in tasks) else tasks
    for name, func in REWARDS.items():
        values = func(completions, solution=solutions, task=task_column)
        assert len(values) == len(completions)
        for completion, value in zip(completions, values, strict=True):
            if value is None:
                assert name != "format"
                continue
            assert math.isfinite(value), (name, value)
            if name in ("format", "state"):
                assert value in (0.0, 1.0)
            elif name == "iou_v2":
                assert 0.0 <= value <= 1.1 + 1e-12
            elif name == "iou_v1":
                # the range bonus is 0.1 per raw coordinate inside [0,100]: at most 0.4 per parsed box
                assert value >= 0.0
                if value > 1.5:
                    n_boxes = len(parse_boxes(answer_text(completion_text(completion))))
                    assert value <= 1.0 + 0.4 * n_boxes + 0.1 + 1e-9, (value, n_boxes)
            elif name == "label_rouge":
                assert 0.0 <= value <= 1.0
            else:
                assert 0.0 <= value <= 2.0 + 1e-12


def check_metrics(completions: list, solutions: list[str], tasks: list[str | None]) -> None:
    records = [
        {"prediction": c, "reference": s, "task": t} for c, s, t in zip(completions, solutions, tasks, strict=True)
    ]
    metrics = compute_metrics(records)
    assert set(metrics) <= set(METRIC_KEYS)
    for key, value in metrics.items():
        assert math.isfinite(value) and 0.0 <= value <= 100.0, (key, value)
    validity = format_validity(sample_metrics(records))
    assert validity and all(0.0 <= v <= 100.0 for v in validity.values())


@SETTINGS
@given(st.lists(sample(), min_size=1, max_size=6))
def test_rewards_never_raise_and_stay_in_range(batch):
    completions, solutions, tasks = (list(x) for x in zip(*batch, strict=True))
    check_rewards(completions, solutions, tasks)
    check_rewards([[{"role": "assistant", "content": c}] for c in completions], solutions, tasks)


@SETTINGS
@given(st.lists(sample(), min_size=1, max_size=6))
def test_metrics_never_raise_and_stay_in_range(batch):
    check_metrics(*(list(x) for x in zip(*batch, strict=True)))


@settings(max_examples=100, deadline=None)
@given(st.text(), st.text())
def test_arbitrary_unicode_text(completion, reference):
    # any text as completion and as (task-inferred) reference
    check_rewards([completion], [reference], [None])
    check_metrics([completion], [reference], [None])


BOX = '{"bbox_2d": [1, 2, 30, 40], "label": "red brick"}'
HUGE = {
    # repeated unclosed tags: a lazy regex per opening tag is quadratic
    "unclosed-answer": "<answer>" * (MB // 8),
    "unclosed-think": "<think>" * (MB // 7),
    "unclosed-p": "<p>" * (MB // 3),
    "closed-thinks": "<think></think>" * (MB // 15),
    "think-then-text": "<think>" + "yes " * (MB // 4),
    "answer-unclosed-long": "<think>x</think><answer>" + "a b " * (MB // 4),
    # 1 MB of words (grounding: BLEU, ROUGE on 260k tokens)
    "words": "attach the red brick on top of the blue plate " * (MB // 47),
    # 1 MB of legacy boxes (75k boxes) and of JSON boxes (20k boxes)
    "legacy-boxes": "<p>a</p>" + "{<1><2><30><40>}" * (MB // 16),
    "json-boxes": "[" + ",".join([BOX] * (MB // len(BOX))) + "]",
    "legacy-unclosed-brace": "{<1><2><3>" * (MB // 10),
    "digits-coordinate": "<p>a</p>{<" + "9" * MB + "><1><2><3>}",
    # deep nesting: json raises RecursionError
    "deep-list": "[" * 100_000,
    "deep-object": '{"bbox_2d": ' * 100_000,
    "deep-valid-prefix": "[" * 100_000 + "]" * 100_000,
    # huge and non-finite numbers
    "huge-floats": '[{"bbox_2d": [1e400, 0, 10, 10]}, {"bbox_2d": [-1e400, 0, 10, 10]}]',
    "huge-int": '[{"bbox_2d": [1' + "0" * 400 + ", 0, 10, 10]}]",
    "over-digit-limit": '[{"bbox_2d": [1' + "0" * 5000 + ", 0, 10, 10]}]",
    "nan-inf": '[{"bbox_2d": [NaN, 0, 10, 10]}, {"bbox_2d": [0, Infinity, 10, 10]}, {"bbox_2d": [0, 0, 1e308, 9]}]',
    "max-floats": '[{"bbox_2d": [-1.7e308, -1.7e308, 1.7e308, 1.7e308]}]',
    "fence-only": "```json" * (MB // 7),
}
REFERENCES = {"object": BOX, "state": "No", "grounding": "Attach the red brick on top of the blue plate."}


@pytest.mark.parametrize("text", list(HUGE.values()), ids=list(HUGE))
def test_huge_and_pathological_completions(text):
    # each pathological text against every kind of reference, through every reward and the metrics
    tasks = list(REFERENCES)
    completions = [text] * len(REFERENCES)
    check_rewards(completions, list(REFERENCES.values()), tasks)
    check_metrics(completions, list(REFERENCES.values()), tasks)


def test_extreme_boxes_have_exact_iou():
    # areas overflow float range: IoU is rescaled, not NaN; identical huge boxes have IoU 1
    huge = '[{"bbox_2d": [-1.7e308, -1.7e308, 1.7e308, 1.7e308], "label": "x"}]'
    assert compute_metrics([{"task": "object", "prediction": huge, "reference": huge}])["iou"] == 100.0
