"""GRPO rewards (lego_arta.rewards): the contract's values, TRL's call contract, the registry, the config builder."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from nltk.translate.bleu_score import SmoothingFunction, modified_precision, sentence_bleu
from omegaconf import open_dict

from lego_arta.config import iou_reward_nodes
from lego_arta.errors import ConfigError
from lego_arta.rewards import REWARDS, IoUReward, build_reward_funcs
from lego_arta.scores import bleu4, clipped_matches

CONF = Path(__file__).resolve().parents[1] / "conf"


def boxes_json(*boxes: tuple[list[float], str]) -> str:
    """A JSON answer with (bbox_2d, label) boxes."""
    return json.dumps([{"bbox_2d": b, "label": label} for b, label in boxes])


def well_formatted(answer: str, thought: str = "let me look") -> str:
    """A well-formatted completion."""
    return f"<think>{thought}</think>\n<answer>{answer}</answer>"


REF1 = boxes_json(([0, 0, 10, 10], "red brick"))
REF2 = boxes_json(([0, 0, 10, 10], "a"), ([50, 50, 60, 60], "b"))
HUNGARIAN_REF = boxes_json(([0, 0, 10, 10], "x"), ([1, 0, 12, 10], "y"))
HUNGARIAN_MEAN = (9 / 11 + 0.8) / 2  # greedy (best pair first) would give (0.9 + 7/12) / 2

IOU_CASES = [
    # exact match: iou 1, 4 coordinates inside, count bonus
    pytest.param(well_formatted(boxes_json(([0, 0, 10, 10], "red brick"))), REF1, 1.5, 1.1, id="exact"),
    # half overlap
    pytest.param(well_formatted(boxes_json(([0, 0, 10, 5], "red brick"))), REF1, 1.0, 0.6, id="half"),
    # float coordinates are not rounded nor rejected
    pytest.param(well_formatted(boxes_json(([2.5, 2.5, 7.5, 7.5], "x"))), REF1, 0.75, 0.35, id="float-coords"),
    # Hungarian, not greedy: the optimal assignment gives a larger mean
    pytest.param(
        well_formatted(boxes_json(([1, 0, 10, 10], "a"), ([0, 0, 8, 10], "b"))),
        HUNGARIAN_REF,
        HUNGARIAN_MEAN + 0.8 + 0.1,
        HUNGARIAN_MEAN + 0.1,
        id="hungarian-not-greedy",
    ),
    # more predicted boxes than reference boxes: mean over the one pair, no count bonus, bonus on all 8 coords
    pytest.param(
        well_formatted(boxes_json(([0, 0, 10, 10], "a"), ([50, 50, 60, 60], "b"))), REF1, 1.8, 1.0, id="more-pred"
    ),
    # fewer predicted boxes: mean over the one pair, no count bonus
    pytest.param(well_formatted(boxes_json(([0, 0, 10, 10], "a"))), REF2, 1.4, 1.0, id="fewer-pred"),
    # a degenerate predicted box is dropped (count uses valid boxes) but its coordinates count for v1's bonus
    pytest.param(
        well_formatted(boxes_json(([0, 0, 10, 10], "a"), ([5, 5, 5, 9], "b"))), REF1, 1.9, 1.1, id="degenerate-dropped"
    ),
    # a box that becomes degenerate after clamping is dropped: no valid box, iou 0; v1 counts 2 coordinates inside
    pytest.param(well_formatted(boxes_json(([110, 0, 120, 10], "a"))), REF1, 0.2, 0.0, id="degenerate-after-clamp"),
    # one coordinate outside [0,100]: v1 halves iou and counts 3 inside; v2 clamps without penalty
    pytest.param(
        well_formatted(boxes_json(([-10, 0, 10, 10], "a"))), REF1, 0.5 + 0.3 + 0.1, 1.1, id="out-of-range-one"
    ),
    # three coordinates outside (one inside): the clamped box (0,0,100,10) has IoU 0.1 with the reference
    pytest.param(
        well_formatted(boxes_json(([-10, -10, 110, 10], "a"))), REF1, 0.05 + 0.1 + 0.1, 0.2, id="out-of-range-two"
    ),
    # fenced JSON answer
    pytest.param(well_formatted('```json\n[{"bbox_2d": [0, 0, 10, 10]}]\n```'), REF1, 1.5, 1.1, id="fenced"),
    # a single JSON object instead of a list
    pytest.param(well_formatted('{"bbox_2d": [0, 0, 10, 10], "label": "a"}'), REF1, 1.5, 1.1, id="single-object"),
    # the legacy format, in the prediction and in the reference
    pytest.param(well_formatted("<p>a</p>{<0><0><10><10>}"), "<p>a</p>{<0><0><10><10>}", 1.5, 1.1, id="legacy"),
    # a misleading box inside <think> (no answer tags): the think block is removed
    pytest.param(
        '<think>[{"bbox_2d": [50, 50, 60, 60]}]</think> [{"bbox_2d": [0, 0, 10, 10]}]',
        REF1,
        1.5,
        1.1,
        id="think-misleading-no-answer-tags",
    ),
    # a misleading legacy box inside <think> with an answer block
    pytest.param(
        well_formatted(boxes_json(([0, 0, 10, 10], "a")), thought="{<50><50><60><60>}"),
        REF1,
        1.5,
        1.1,
        id="think-misleading",
    ),
    # no box at all: 0 (no count bonus since 0 != 1 reference box)
    pytest.param(well_formatted("a red brick at the top left"), REF1, 0.0, 0.0, id="no-box"),
    # invalid JSON and no legacy box: 0
    pytest.param(well_formatted('[{"bbox_2d": [0, 0, 10, 10],}]'), REF1, 0.0, 0.0, id="invalid-json"),
    # a non-finite coordinate skips the box
    pytest.param(well_formatted('[{"bbox_2d": [0, 0, 10, NaN]}]'), REF1, 0.0, 0.0, id="nan-coordinate"),
    # a TRL conversational completion
    pytest.param(
        [{"role": "assistant", "content": well_formatted(boxes_json(([0, 0, 10, 10], "a")))}],
        REF1,
        1.5,
        1.1,
        id="conversational",
    ),
    # reference boxes are never clamped: (-10,0,10,10) vs (0,0,10,10) is IoU 0.5
    pytest.param(
        well_formatted(boxes_json(([0, 0, 10, 10], "a"))),
        boxes_json(([-10, 0, 10, 10], "a")),
        1.0,
        0.6,
        id="reference-not-clamped",
    ),
    # a degenerate reference box is not counted: 1 valid predicted box == 1 valid reference box
    pytest.param(
        well_formatted(boxes_json(([0, 0, 10, 10], "a"))),
        boxes_json(([0, 0, 10, 10], "a"), ([5, 5, 5, 5], "b")),
        1.5,
        1.1,
        id="degenerate-reference-box",
    ),
]


@pytest.mark.parametrize(("completion", "solution", "v1", "v2"), IOU_CASES)
def test_iou_rewards(completion, solution, v1, v2):
    assert REWARDS["iou_v1"]([completion], solution=[solution]) == [pytest.approx(v1)]
    assert REWARDS["iou_v2"]([completion], solution=[solution], task=["object"]) == [pytest.approx(v2)]


def test_iou_v1_range_bonus_is_per_coordinate():
    # literal contract: 0.1 per raw coordinate inside [0,100], so three exact boxes give 1.2 of bonus
    solution = boxes_json(*[([i * 20, 0, i * 20 + 10, 10], "a") for i in range(3)])
    assert REWARDS["iou_v1"]([solution], solution=[solution]) == [pytest.approx(1.0 + 1.2 + 0.1)]


def test_iou_reward_is_configurable():
    # penalty / range bonus / count bonus come from the constructor (the reward config)
    reward = IoUReward("iou_custom", penalty=0.0, range_bonus=0.0, count_bonus=0.5)
    assert reward.__name__ == "iou_custom"
    assert reward([well_formatted(boxes_json(([-10, 0, 10, 10], "a")))], solution=[REF1]) == [0.5]


LABEL_CASES = [
    # same labels
    pytest.param(well_formatted(boxes_json(([0, 0, 10, 10], "red brick"))), REF1, 1.0, id="same"),
    # half the words: P = R = 0.5
    pytest.param(well_formatted(boxes_json(([0, 0, 10, 10], "red plate"))), REF1, 0.5, id="half"),
    # no stemming: "bricks" != "brick"
    pytest.param(well_formatted(boxes_json(([0, 0, 10, 10], "red bricks"))), REF1, 0.5, id="no-stemmer"),
    # no predicted box: 0 even though the text has the words
    pytest.param(well_formatted("red brick"), REF1, 0.0, id="no-box"),
    # a degenerate predicted box still contributes its label
    pytest.param(well_formatted(boxes_json(([5, 5, 5, 5], "red brick"))), REF1, 1.0, id="degenerate-label"),
    # labels of several boxes are joined: unigram order does not matter
    pytest.param(well_formatted(boxes_json(([0, 0, 1, 1], "b"), ([0, 0, 1, 1], "a"))), REF2, 1.0, id="several"),
    # a legacy reference with two boxes after one label has the label twice: P = 1, R = 0.5
    pytest.param(
        well_formatted(boxes_json(([0, 0, 1, 1], "pin"))),
        "<p>pin</p>{<0><0><1><1>}{<2><2><3><3>}",
        2 / 3,
        id="legacy-ref",
    ),
    # empty labels
    pytest.param(well_formatted('[{"bbox_2d": [0, 0, 10, 10]}]'), REF1, 0.0, id="empty-label"),
    # misleading labels inside <think> are ignored
    pytest.param(
        well_formatted(boxes_json(([0, 0, 10, 10], "blue plate")), thought=boxes_json(([0, 0, 10, 10], "red brick"))),
        REF1,
        0.0,
        id="think-misleading",
    ),
]


@pytest.mark.parametrize(("completion", "solution", "expected"), LABEL_CASES)
def test_label_rouge(completion, solution, expected):
    assert REWARDS["label_rouge"]([completion], solution=[solution]) == [pytest.approx(expected)]


FORMAT_CASES = [
    # state answer in the right format
    pytest.param(well_formatted("Yes"), "Yes", None, 1.0, id="state-ok"),
    # grounding answer in the right format
    pytest.param(well_formatted("Attach the brick."), "Attach the red brick.", None, 1.0, id="grounding-ok"),
    # object answer with a JSON box
    pytest.param(well_formatted(boxes_json(([0, 0, 10, 10], "a"))), REF1, None, 1.0, id="object-json"),
    # object answer with a fenced JSON box
    pytest.param(well_formatted('```json\n{"bbox_2d": [0, 0, 10, 10]}\n```'), REF1, None, 1.0, id="object-fenced"),
    # a degenerate JSON box is still a box
    pytest.param(well_formatted(boxes_json(([5, 5, 5, 5], "a"))), REF1, None, 1.0, id="object-degenerate-box"),
    # object answer in the legacy format is not JSON
    pytest.param(well_formatted("<p>a</p>{<0><0><10><10>}"), REF1, None, 0.0, id="object-legacy"),
    # object answer with JSON but no valid bbox_2d
    pytest.param(well_formatted('[{"label": "a"}]'), REF1, None, 0.0, id="object-json-no-box"),
    # the task column decides: the same completion is fine for a grounding sample
    pytest.param(well_formatted("a red brick"), REF1, "grounding", 1.0, id="task-column"),
    # whitespace before, between and after the blocks
    pytest.param("\n <think>r</think>\n\n<answer>Yes</answer> \n", "Yes", None, 1.0, id="whitespace"),
    # no think block
    pytest.param("<answer>Yes</answer>", "Yes", None, 0.0, id="no-think"),
    # text after the answer block
    pytest.param(well_formatted("Yes") + " done", "Yes", None, 0.0, id="text-after"),
    # plain answer
    pytest.param("Yes", "Yes", None, 0.0, id="plain"),
    # conversational completion
    pytest.param([{"role": "assistant", "content": well_formatted("No")}], "No", None, 1.0, id="conversational"),
]


@pytest.mark.parametrize(("completion", "solution", "task", "expected"), FORMAT_CASES)
def test_format(completion, solution, task, expected):
    tasks = None if task is None else [task]
    assert REWARDS["format"]([completion], solution=[solution], task=tasks) == [expected]


def test_format_without_solution_checks_tags_only():
    # TRL always passes dataset columns, but without any the structure alone is checked
    assert REWARDS["format"]([well_formatted("x"), "x"]) == [1.0, 0.0]


STATE_CASES = [
    # match
    pytest.param(well_formatted("Yes"), "Yes", 1.0, id="yes-yes"),
    # mismatch
    pytest.param(well_formatted("No"), "Yes", 0.0, id="no-yes"),
    # the first whole word wins
    pytest.param(well_formatted("No, it is not. Yes, I am sure."), "No", 1.0, id="first-word"),
    # no yes/no word: 0.0 whatever the reference (thesis section 4.3: +1.0 for a correct yes/no, 0.0 otherwise);
    # before, "none found = No" paid a verdict-free answer 1.0 on every fake (3 of 4 state samples)
    pytest.param(well_formatted("I cannot tell"), "No", 0.0, id="no-verdict-on-a-fake"),
    pytest.param(well_formatted("I cannot tell"), "Yes", 0.0, id="no-verdict-on-a-real"),
    pytest.param("", "No", 0.0, id="empty-answer"),
    # "Yesterday" is not "yes"
    pytest.param(well_formatted("Yesterday"), "Yes", 0.0, id="whole-word"),
    # misleading yes inside <think> with an answer block
    pytest.param(well_formatted("No", thought="yes yes yes"), "No", 1.0, id="think-misleading"),
    # misleading yes inside <think> without answer tags
    pytest.param("<think>yes, clearly yes</think> No.", "No", 1.0, id="think-misleading-no-tags"),
    # case and punctuation in the reference
    pytest.param("YES!", "Yes.", 1.0, id="case-punct"),
    # conversational completion
    pytest.param([{"role": "assistant", "content": "yes"}], "Yes", 1.0, id="conversational"),
]


@pytest.mark.parametrize(("completion", "solution", "expected"), STATE_CASES)
def test_state(completion, solution, expected):
    assert REWARDS["state"]([completion], solution=[solution]) == [expected]


GROUNDING_CASES = [
    # identical: BLEU 1 + ROUGE-1 1
    pytest.param("Attach the red brick.", "Attach the red brick.", 2.0, id="identical"),
    # case and punctuation are ignored (word tokens)
    pytest.param("ATTACH, the red-brick!", "attach the red brick", 2.0, id="case-punct"),
    # shorter: brevity penalty exp(1 - 6/4), all precisions 1; ROUGE-1 F1 0.8
    pytest.param("attach the red brick", "attach the red brick on top", 0.6065306597126334 + 0.8, id="brevity"),
    # fewer than 4 tokens: method1 smoothing gives 0.1 to empty 3- and 4-gram precisions
    pytest.param("attach it", "attach it", 0.1**0.5 + 1.0, id="short-smoothing"),
    # no common word: BLEU 0 (no unigram match), ROUGE 0
    pytest.param("blue plate", "attach the red brick", 0.0, id="disjoint"),
    # empty prediction
    pytest.param("", "attach the red brick", 0.0, id="empty"),
    # the think block is removed
    pytest.param(
        "<think>blue plate on the left</think>Attach the red brick.", "Attach the red brick.", 2.0, id="think"
    ),
    # conversational completion
    pytest.param(
        [{"role": "assistant", "content": well_formatted("Attach the red brick.")}],
        "Attach the red brick.",
        2.0,
        id="conversational",
    ),
]


@pytest.mark.parametrize(("completion", "solution", "expected"), GROUNDING_CASES)
def test_grounding(completion, solution, expected):
    assert REWARDS["grounding"]([completion], solution=[solution], task=["grounding"]) == [pytest.approx(expected)]


def test_mixed_task_batch_gives_none_off_task():
    # one object, one state, one grounding sample; task inferred from the solutions (no task column)
    completions = [
        well_formatted(boxes_json(([0, 0, 10, 10], "red brick"))),
        well_formatted("Yes"),
        well_formatted("Attach the red brick."),
    ]
    solutions = [REF1, "Yes", "Attach the red brick."]
    got = {name: func(completions, solution=solutions) for name, func in REWARDS.items()}
    assert got == {
        "format": [1.0, 1.0, 1.0],
        "iou_v1": [pytest.approx(1.5), None, None],
        "iou_v2": [pytest.approx(1.1), None, None],
        "label_rouge": [1.0, None, None],
        "state": [None, 1.0, None],
        "grounding": [None, None, 2.0],
    }


def test_task_column_overrides_inference():
    # "Yes" looks like a state reference, but the task column says grounding
    assert REWARDS["state"](["Yes"], solution=["Yes"], task=["grounding"]) == [None]
    assert REWARDS["grounding"](["Yes"], solution=["Yes"], task=["grounding"]) == [pytest.approx(0.1**0.75 + 1.0)]


def test_trl_keyword_arguments_are_accepted_and_ignored():
    # TRL passes prompts, completion_ids, trainer_state, log_* and every dataset column
    extra = {"prompts": ["p"], "completion_ids": [[1]], "trainer_state": None, "images": [None], "id": ["x"]}
    for func in REWARDS.values():
        assert len(func([well_formatted("Yes")], solution=["Yes"], task=["state"], **extra)) == 1


@pytest.mark.parametrize("name", ["iou_v1", "iou_v2", "label_rouge"])
def test_object_reference_without_box_is_an_error(name):
    # invalid data, not a model error: the message names the reward and the sample
    with pytest.raises(ValueError, match=rf"reward '{name}': solution\[1\]: object reference has no box"):
        REWARDS[name](
            [well_formatted("x"), well_formatted("x")], solution=[REF1, "a red brick"], task=["object", "object"]
        )


def test_bad_columns_are_errors():
    # a reward that needs references without the solution column
    with pytest.raises(ValueError, match="needs the `solution` column"):
        REWARDS["state"]([well_formatted("Yes")])
    # columns of the wrong length
    with pytest.raises(ValueError, match="2 values in `solution` for 1 completions"):
        REWARDS["state"]([well_formatted("Yes")], solution=["Yes", "No"])
    # an unknown task name
    with pytest.raises(ValueError, match=r"task\[0\]: unknown task 'detection'"):
        REWARDS["state"]([well_formatted("Yes")], solution=["Yes"], task=["detection"])


def test_registry_names_are_stable_and_picklable():
    # TRL logs rewards/<__name__>/mean: names equal the registry keys; rewards survive pickling (dataloader workers)
    assert list(REWARDS) == ["format", "iou_v1", "iou_v2", "label_rouge", "state", "grounding"]
    for name, func in REWARDS.items():
        assert func.__name__ == name
        assert pickle.loads(pickle.dumps(func)).__name__ == name


def _compose_reward(name: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"reward={name}", "logger=none"]).reward


@pytest.mark.parametrize(
    ("group", "iou_name", "penalty", "range_bonus"),
    [
        # reward v1: IoU with the range penalty and per-coordinate bonus
        pytest.param("v1", "iou_v1", 0.5, 0.1, id="v1"),
        # reward v2 inherits v1's weights through its defaults list; no penalty nor bonus
        pytest.param("v2", "iou_v2", 1.0, 0.0, id="v2"),
    ],
)
def test_build_reward_funcs_from_the_real_configs(group, iou_name, penalty, range_bonus):
    cfg = _compose_reward(group)
    funcs, weights = build_reward_funcs(cfg)
    assert [f.__name__ for f in funcs] == ["format", iou_name, "label_rouge", "state", "grounding"]
    assert weights == [1.0, 0.5, 0.5, 1.0, 0.5]
    iou = funcs[1]
    assert isinstance(iou, IoUReward)
    assert (iou.penalty, iou.range_bonus, iou.count_bonus) == (penalty, range_bonus, 0.1)
    # same values as the registry's reward of that name
    assert iou([well_formatted(boxes_json(([-10, 0, 10, 10], "a")))], solution=[REF1]) == REWARDS[iou_name](
        [well_formatted(boxes_json(([-10, 0, 10, 10], "a")))], solution=[REF1]
    )


def test_build_reward_funcs_drops_zero_weights_and_rejects_unknown_keys():
    cfg = _compose_reward("v1")
    # weight 0 drops the function
    cfg.weights.grounding = 0
    cfg.weights.iou = 0.0
    funcs, weights = build_reward_funcs(cfg)
    assert [f.__name__ for f in funcs] == ["format", "label_rouge", "state"]
    assert weights == [1.0, 0.5, 1.0]
    # a weight key without a reward node names itself and the reward nodes
    with open_dict(cfg):
        cfg.weights.bleu = 1.0
    with pytest.raises(ConfigError, match=r"unknown reward weight key 'bleu'.*valid keys: iou, format, label_rouge"):
        build_reward_funcs(cfg)


def test_a_weight_needs_its_reward_node():
    with pytest.raises(ConfigError, match=r"reward\.iou is no reward node with a _target_"):
        build_reward_funcs({"weights": {"iou": 1.0}})


@pytest.mark.parametrize("length", [1, 3, 7, 40, 2500])
def test_bleu_from_counts_matches_nltk(length):
    # bleu4 takes the clipped matches from counts made once and lets NLTK finish: NLTK's sentence_bleu value
    rng = random.Random(length)
    words = "the red blue brick plate on top of a beam".split()
    for _ in range(20):
        hyp = rng.choices(words, k=length)
        ref = rng.choices(words, k=rng.randint(1, 30))
        nltk = sentence_bleu([ref], hyp, (0.25,) * 4, SmoothingFunction().method1)
        assert bleu4(hyp, ref) == pytest.approx(nltk, rel=1e-12, abs=1e-300)
        # the numpy counts are NLTK's modified-precision numerators, and so is the Counter path of huge vocabularies
        numerators = [modified_precision([ref], hyp, n).numerator for n in range(1, 5)]
        assert clipped_matches(hyp, ref, 4) == numerators  # Counter below 500 hypothesis tokens, numpy above
        assert clipped_matches(hyp, ref, 20)[:4] == numerators  # 11 ** 20 > 2 ** 63: always the Counter path


def test_the_iou_constants_have_one_home_read_by_the_registry_and_the_reward_group():
    # lego_arta/rewards/iou.yaml (package data) is the one copy: REWARDS builds iou_v1 / iou_v2 from it, and
    # reward=v1 / v2 compose its nodes as reward.iou (the reward/iou config group); conf/ holds no constant
    package = iou_reward_nodes()
    for variant in ("v1", "v2"):
        node = package[variant]
        reward = REWARDS[node.name]
        assert isinstance(reward, IoUReward)
        assert (reward.penalty, reward.range_bonus, reward.count_bonus) == (
            node.penalty,
            node.range_bonus,
            node.count_bonus,
        )
        assert _compose_reward(variant).iou == node
    for path in (CONF / "reward").glob("*.yaml"):
        assert not {"penalty:", "range_bonus:", "count_bonus:"} & set(path.read_text().split()), path


IOU_TARGET = "lego_arta.rewards.detection.IoUReward"


@pytest.mark.parametrize(
    ("node", "message"),
    [
        # no code-side fallback: a missing constant is a config error naming the node and the constant
        pytest.param(
            {"_target_": IOU_TARGET, "name": "iou_x", "penalty": 1.0, "range_bonus": 0.0},
            r"reward\.iou: .*count_bonus",
            id="missing-constant",
        ),
        # a misspelled constant names itself
        pytest.param(
            {"_target_": IOU_TARGET, "name": "x", "penalty": 1, "range_bonus": 0, "count_bonus": 0, "penaltty": 1},
            r"reward\.iou: .*unexpected keyword argument 'penaltty'",
            id="misspelled-constant",
        ),
        # a target that does not import
        pytest.param({"_target_": f"{IOU_TARGET}s"}, r"reward\.iou: Error locating target", id="bad-target"),
        # a node without _target_ (the old form of reward.iou)
        pytest.param(
            {"name": "iou_x", "penalty": 1.0, "range_bonus": 0.0, "count_bonus": 0.0},
            r"reward\.iou is no reward node with a _target_",
            id="no-target",
        ),
        # a partial has no __name__, which TRL keys a reward by
        pytest.param(
            {"_target_": IOU_TARGET, "_partial_": True, "name": "iou_x"},
            r"reward\.iou: .*not a reward with a __name__",
            id="partial",
        ),
    ],
)
def test_a_reward_node_that_does_not_build_is_a_config_error_naming_it(node, message):
    with pytest.raises(ConfigError, match=message):
        build_reward_funcs({"iou": node, "weights": {"iou": 1.0}})


def test_iou_rewards_log_the_bare_matched_iou_for_trl():
    # TRL passes log_metric: both variants report the same bare IoU, so v1 and v2 curves share one scale
    ref = '[{"bbox_2d": [0, 0, 10, 10], "label": "brick"}]'
    completions = ['[{"bbox_2d": [0, 0, 10, 5], "label": "brick"}]', '[{"bbox_2d": [-10, 0, 10, 10]}]', "Yes"]
    logged: dict[str, list[float]] = {"iou_v1": [], "iou_v2": []}
    for name in logged:
        REWARDS[name](
            completions,
            solution=[ref, ref, "Yes"],
            log_metric=lambda key, value, n=name: logged[n].append((key, value)),
        )
    # IoU 0.5, and 1.0 after clamping the second box: mean 0.75 over the two object samples; both answers are read on
    # the grid (no coordinate above 105), and the second one has a raw coordinate outside [0, 100]
    expected = [
        ("iou/matched", pytest.approx(0.75)),
        ("frame/grid_share", 1.0),
        ("frame/in_range_share", 0.5),
    ]
    assert logged["iou_v1"] == logged["iou_v2"] == expected


# The frame rule (docs/scoring.md), by hand. The reference is one box [10, 20, 50, 60] on the grid; the query image
# was resized to a 1260 x 840 frame (width x height), so its exact pixel answer is [126, 168, 630, 504]
# (x * 12.6, y * 8.4). v1 = iou x (0.5 if any raw coordinate is outside [0, 100]) + 0.1 x #raw coordinates inside
# [0, 100] + 0.1 count bonus; v2 = iou + 0.1 count bonus.
FRAME_REF = '[{"bbox_2d": [10, 20, 50, 60], "label": "brick"}]'
FRAME = [1260, 840]
FRAME_CASES = [
    # an exact pixel answer: normalised to [10, 20, 50, 60], IoU 1. v2 = 1 + 0.1 count. v1: every raw coordinate is
    # outside [0, 100] (126, 168, 630, 504), so 1 x 0.5 penalty + 0 range bonus + 0.1 count = 0.6
    pytest.param("[126, 168, 630, 504]", FRAME, 0.6, 1.1, id="exact-pixel-answer"),
    # a grid answer is untouched: IoU 1, all 4 raw coordinates inside: v1 = 1 + 0.4 + 0.1 = 1.5; v2 = 1.1
    pytest.param("[10, 20, 50, 60]", FRAME, 1.5, 1.1, id="grid-answer-untouched"),
    # mixed: 630 > 105 puts the whole answer in pixels, so every coordinate is normalised, not only 630:
    # [10, 20, 630, 60] -> [0.794, 2.381, 50, 7.143], which ends above the reference (7.143 < 20): IoU 0 (normalising
    # 630 alone would have given the exact box). v1: three raw coordinates inside [0, 100] (10, 20, 60): 0 x 0.5 +
    # 0.3 + 0.1 count (one valid box) = 0.4; v2 = 0 + 0.1 = 0.1
    pytest.param("[10, 20, 630, 60]", FRAME, 0.4, 0.1, id="mixed-one-pixel-coordinate-normalises-all"),
    # a grid answer overshooting to 102: on the grid (<= 105), clamped to [10, 20, 100, 60], never read as pixels:
    # IoU = 1600 / (90 x 40) = 0.4444. v1: 102 is outside [0, 100]: 0.4444 x 0.5 + 0.3 (three inside) + 0.1 =
    # 0.62222; v2 = 0.4444 + 0.1 = 0.54444
    pytest.param("[10, 20, 102, 60]", FRAME, 0.622222, 0.544444, id="overshoot-102-clamped-not-normalised"),
    # a box beyond the frame: [630, 420, 1512, 924] -> [50, 50, 120, 110], clamped by the rewards to
    # [50, 50, 100, 100]: it touches the reference only on the edge x = 50, so IoU 0. v1 = 0 + 0 + 0.1 count = 0.1;
    # v2 = 0.1
    pytest.param("[630, 420, 1512, 924]", FRAME, 0.1, 0.1, id="box-beyond-the-frame"),
    # no image_size: nothing is normalised (the older rule): [126, 168, 630, 504] clamps to the degenerate
    # [100, 100, 100, 100], no valid box: IoU 0 and no count bonus; v1 = 0, v2 = 0
    pytest.param("[126, 168, 630, 504]", None, 0.0, 0.0, id="no-image-size-clamped"),
]


@pytest.mark.parametrize(("answer", "image_size", "v1", "v2"), FRAME_CASES)
def test_frame_rule_by_hand(answer, image_size, v1, v2):
    completion = json.dumps([{"bbox_2d": json.loads(answer), "label": "brick"}])
    sizes = None if image_size is None else [image_size]
    assert REWARDS["iou_v1"]([completion], solution=[FRAME_REF], image_size=sizes) == [pytest.approx(v1, abs=1e-6)]
    assert REWARDS["iou_v2"]([completion], solution=[FRAME_REF], image_size=sizes) == [pytest.approx(v2, abs=1e-6)]


def test_frame_rule_reports_the_grid_share_and_rejects_a_bad_image_size():
    logged: list[tuple[str, float]] = []
    completions = ['[{"bbox_2d": [126, 168, 630, 504]}]', '[{"bbox_2d": [10, 20, 50, 60]}]', "no box at all"]
    REWARDS["iou_v2"](
        completions, solution=[FRAME_REF] * 3, image_size=[FRAME] * 3, log_metric=lambda k, v: logged.append((k, v))
    )
    # the answer without a box has no frame: one of the two answers with a box is on the grid
    assert dict(logged)["frame/grid_share"] == 0.5
    # a dataset error names the reward, the sample and the column
    with pytest.raises(ValueError, match=r"reward 'iou_v2': image_size\[1\]"):
        REWARDS["iou_v2"](completions[:2], solution=[FRAME_REF] * 2, image_size=[FRAME, [0, 840]])


def test_the_semantic_grounding_reward_replaces_bleu_rouge_in_v2_semantic():
    cfg = _compose_reward("v2_semantic")
    funcs, weights = build_reward_funcs(cfg, default_encoder=lambda: "unused")
    assert [f.__name__ for f in funcs] == ["format", "iou_v2", "label_rouge", "state", "grounding_semantic"]
    assert weights == [1.0, 0.5, 0.5, 1.0, 1.0]
    # without an encoder configured or a default to build, the reward says what to set, on first use only
    funcs, _ = build_reward_funcs(cfg)
    with pytest.raises(ConfigError, match=r"reward\.semantic\.model is not set"):
        funcs[-1](["Attach it."], solution=["Attach it."])


def test_grounding_semantic_batches_one_encoding_and_never_raises(cache_dir, monkeypatch):
    from lego_arta.models.tiny_encoder import build_tiny_sentence_encoder
    from lego_arta.rewards import GroundingSemanticReward
    from lego_arta.scores import semantic

    encoder = semantic.load_encoder(str(build_tiny_sentence_encoder(cache_dir)))
    calls: list[int] = []
    real = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw))
    reward = GroundingSemanticReward(lambda: str(build_tiny_sentence_encoder(cache_dir)))
    completions = [
        "Attach the red brick.",
        "",
        "word " * 3000,
        well_formatted("Yes"),
        [{"role": "assistant", "content": "Attach"}],
    ]
    solutions = ["Attach the red brick.", "Attach the red brick.", "Attach it.", "Yes", "Attach the red brick."]
    tasks = ["grounding", "grounding", "grounding", "state", "grounding"]
    values = reward(completions, solution=solutions, task=tasks)
    # identical texts: cosine 1; an empty answer: 0 without encoding it; off-task: None; a long text is truncated
    assert values[0] == pytest.approx(1.0, abs=1e-5) and values[1] == 0.0 and values[3] is None
    assert all(0.0 <= v <= 1.0 for v in (values[2], values[4]))
    assert calls == [6]  # one encode call for the batch: 3 answers + 3 references (the empty pair is left out)
