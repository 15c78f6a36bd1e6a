"""The one parser (lego_arta.parsing): answer text, format, word tokens, boxes, yes/no, task inference."""

from __future__ import annotations

import pytest

from lego_arta.parsing import (
    Box,
    answer_text,
    completion_text,
    infer_task,
    is_think_answer,
    parse_boxes,
    parse_yes_no,
    resolve_task,
    word_tokens,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the content of the answer block, stripped
        pytest.param("<think>x</think><answer>  Yes \n</answer>", "Yes", id="answer-block"),
        # no answer block: think blocks removed, rest stripped
        pytest.param("<think>no no no</think>\n Yes", "Yes", id="think-removed"),
        # the first answer block wins
        pytest.param("<answer>A</answer><answer>B</answer>", "A", id="first-answer"),
        # an unclosed <answer> is plain text
        pytest.param("<think>t</think><answer>Yes", "<answer>Yes", id="unclosed-answer"),
        # an unclosed <think> is plain text (kept)
        pytest.param("<think>Yes", "<think>Yes", id="unclosed-think"),
        # every closed think block is removed, text between kept
        pytest.param("<think>a</think>B<think>c</think>D", "BD", id="several-thinks"),
        # tags are lower-case: upper-case tags are plain text
        pytest.param("<ANSWER>Yes</ANSWER>", "<ANSWER>Yes</ANSWER>", id="upper-case-tags"),
        # literal rule: the first answer block in the raw text, even inside a think block
        pytest.param("<think><answer>No</answer></think><answer>Yes</answer>", "No", id="answer-inside-think"),
        # closing tag before opening tag is not a block
        pytest.param("</answer>x<answer>", "</answer>x<answer>", id="reversed-tags"),
        # plain text
        pytest.param("  plain  ", "plain", id="plain"),
        # empty
        pytest.param("", "", id="empty"),
    ],
)
def test_answer_text(text, expected):
    assert answer_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the canonical format
        pytest.param("<think>r</think><answer>a</answer>", True, id="exact"),
        # whitespace before, between and after
        pytest.param(" \n<think>r</think>\n\n<answer>a</answer>\t\n", True, id="whitespace-around"),
        # empty blocks are still blocks
        pytest.param("<think></think><answer></answer>", True, id="empty-blocks"),
        # no think block
        pytest.param("<answer>a</answer>", False, id="no-think"),
        # no answer block
        pytest.param("<think>r</think> a", False, id="no-answer"),
        # blocks in the wrong order
        pytest.param("<answer>a</answer><think>r</think>", False, id="wrong-order"),
        # text between the blocks
        pytest.param("<think>r</think>so<answer>a</answer>", False, id="text-between"),
        # text after the answer
        pytest.param("<think>r</think><answer>a</answer>.", False, id="text-after"),
        # a second answer block
        pytest.param("<think>r</think><answer>a</answer><answer>b</answer>", False, id="two-answers"),
        # an answer block nested in the think block
        pytest.param("<think><answer>x</answer></think><answer>a</answer>", False, id="nested-answer"),
        # unclosed answer
        pytest.param("<think>r</think><answer>a", False, id="unclosed-answer"),
        # upper-case tags are not tags
        pytest.param("<THINK>r</THINK><ANSWER>a</ANSWER>", False, id="upper-case"),
    ],
)
def test_is_think_answer(text, expected):
    assert is_think_answer(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # lower-cased, punctuation dropped, digits kept
        pytest.param(
            "Attach the 2x4 Brick, then: PLATE!", ["attach", "the", "2x4", "brick", "then", "plate"], id="mix"
        ),
        # apostrophes and hyphens split words
        pytest.param("don't re-attach", ["don", "t", "re", "attach"], id="split"),
        # non-ASCII letters are not word characters
        pytest.param("café naïve", ["caf", "na", "ve"], id="non-ascii"),
        # nothing to keep
        pytest.param(" ,.;!", [], id="empty"),
    ],
)
def test_word_tokens(text, expected):
    assert word_tokens(text) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # JSON list with ints
        pytest.param('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]', [Box(1, 2, 3, 4, "a")], id="json-ints"),
        # float coordinates are kept as floats
        pytest.param(
            '[{"bbox_2d": [1.5, 2.25, 3, 4e1], "label": "a"}]', [Box(1.5, 2.25, 3, 40, "a")], id="json-floats"
        ),
        # several boxes
        pytest.param(
            '[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8], "label": "b"}]',
            [Box(1, 2, 3, 4, "a"), Box(5, 6, 7, 8, "b")],
            id="json-several",
        ),
        # one object instead of a list
        pytest.param('{"bbox_2d": [1, 2, 3, 4], "label": "a"}', [Box(1, 2, 3, 4, "a")], id="single-object"),
        # a ```json fence that is the whole answer
        pytest.param('```json\n[{"bbox_2d": [1, 2, 3, 4]}]\n```', [Box(1, 2, 3, 4, "")], id="fenced"),
        # a fence with text around it is not JSON, and there is no legacy box: nothing
        pytest.param('Here:\n```json\n[{"bbox_2d": [1, 2, 3, 4]}]\n```', [], id="fence-with-text"),
        # a plain ``` fence (no json) is not the contract's fence
        pytest.param('```\n[{"bbox_2d": [1, 2, 3, 4]}]\n```', [], id="fence-without-json"),
        # items without a valid bbox_2d are skipped: missing, 3 numbers, string, bool, nested list, non-dict
        pytest.param(
            '[{"label": "x"}, {"bbox_2d": [1, 2, 3]}, {"bbox_2d": ["1", 2, 3, 4]}, {"bbox_2d": [true, 2, 3, 4]},'
            ' {"bbox_2d": [[1, 2, 3, 4]]}, 7, "s", {"bbox_2d": [1, 2, 3, 4], "label": "ok"}]',
            [Box(1, 2, 3, 4, "ok")],
            id="invalid-items-skipped",
        ),
        # non-finite coordinates skip the box: NaN, Infinity, 1e400, an int beyond float range
        pytest.param(
            '[{"bbox_2d": [NaN, 2, 3, 4]}, {"bbox_2d": [1, Infinity, 3, 4]}, {"bbox_2d": [1, 2, 1e400, 4]},'
            ' {"bbox_2d": [1, 2, 3, 1' + "0" * 400 + "]}]",
            [],
            id="non-finite-skipped",
        ),
        # a missing label is "", a non-string one is str(label)
        pytest.param(
            '[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [1, 2, 3, 4], "label": 7},'
            ' {"bbox_2d": [1, 2, 3, 4], "label": null}]',
            [Box(1, 2, 3, 4, ""), Box(1, 2, 3, 4, "7"), Box(1, 2, 3, 4, "None")],
            id="labels",
        ),
        # degenerate and out-of-range boxes are parsed (callers filter)
        pytest.param(
            '[{"bbox_2d": [5, 5, 5, 9]}, {"bbox_2d": [-5, 0, 150, 9]}]',
            [Box(5, 5, 5, 9), Box(-5, 0, 150, 9)],
            id="degenerate-kept",
        ),
        # JSON that parses to a non-box value: no boxes, and the legacy format is not tried
        pytest.param('"<p>a</p>{<1><2><3><4>}"', [], id="json-string-no-legacy"),
        # the legacy format, one box
        pytest.param("<p>red brick</p>{<10><20><30><40>}", [Box(10, 20, 30, 40, "red brick")], id="legacy"),
        # several boxes after one label, anything between them (MiniGPT-v2 <delim>)
        pytest.param(
            "<p>pin</p>{<1><2><3><4>}<delim>{<5><6><7><8>}",
            [Box(1, 2, 3, 4, "pin"), Box(5, 6, 7, 8, "pin")],
            id="legacy-several-boxes",
        ),
        # several labels, floats, signs and whitespace inside the braces
        pytest.param(
            "<p> a </p>{<1.5><2><3><4>} <p>b</p>{ <-5> <+6> <7.> <.8> }",
            [Box(1.5, 2, 3, 4, "a"), Box(-5, 6, 7, 0.8, "b")],
            id="legacy-floats-signs",
        ),
        # a box before any label gets the label ""
        pytest.param(
            "{<1><2><3><4>}<p>a</p>{<5><6><7><8>}", [Box(1, 2, 3, 4, ""), Box(5, 6, 7, 8, "a")], id="legacy-no-label"
        ),
        # an unclosed <p> is plain text: later boxes keep the current label
        pytest.param(
            "<p>a</p>{<1><2><3><4>}<p>b{<5><6><7><8>}",
            [Box(1, 2, 3, 4, "a"), Box(5, 6, 7, 8, "a")],
            id="legacy-unclosed-p",
        ),
        # a malformed legacy box (3 numbers) is not a box
        pytest.param("<p>a</p>{<1><2><3>}", [], id="legacy-malformed"),
        # deeply nested JSON does not parse (RecursionError caught); no legacy box either
        pytest.param("[" * 100_000, [], id="deep-nesting"),
        # prose
        pytest.param("a red brick at the top left", [], id="prose"),
    ],
)
def test_parse_boxes(answer, expected):
    assert parse_boxes(answer) == expected


def test_box_valid():
    # degenerate: x1 >= x2 or y1 >= y2
    assert Box(0, 0, 1, 1).valid and not Box(1, 0, 1, 1).valid and not Box(0, 2, 1, 1).valid


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # the first whole word wins
        pytest.param("No, yes.", "no", id="first-no"),
        # any case
        pytest.param("YES", "yes", id="upper"),
        # whole words only: "Yesterday" and "nothing" are not answers
        pytest.param("Yesterday nothing happened; yes", "yes", id="whole-words"),
        # word boundaries as in word_tokens: digits are word characters ("no2" is not "no"), "_" is not ("yes_")
        pytest.param("no2 yes_", "yes", id="token-boundaries"),
        # none found: No
        pytest.param("I cannot tell", "no", id="default-no"),
        # empty
        pytest.param("", "no", id="empty"),
    ],
)
def test_parse_yes_no(answer, expected):
    assert parse_yes_no(answer) == expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        # boxes parse: object (JSON or legacy)
        pytest.param('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]', "object", id="json-object"),
        pytest.param("<p>a</p>{<1><2><3><4>}", "object", id="legacy-object"),
        # a yes/no reference, punctuation and case ignored
        pytest.param("Yes", "state", id="yes"),
        pytest.param(" no. ", "state", id="no-punct"),
        # anything else: grounding
        pytest.param("No, attach the brick", "grounding", id="sentence-starting-with-no"),
        pytest.param("Attach the 2x4 brick.", "grounding", id="sentence"),
        pytest.param("", "grounding", id="empty"),
    ],
)
def test_infer_task(reference, expected):
    assert infer_task(reference) == expected


def test_resolve_task_prefers_the_column_and_rejects_unknown_names():
    # the task column wins over inference
    assert resolve_task("grounding", "Yes") == "grounding"
    # a missing task is inferred
    assert resolve_task(None, "Yes") == "state"
    # an unknown task name is a clear error listing the valid ones
    with pytest.raises(ValueError, match=r"unknown task '\[detection\]'; valid tasks: grounding, object, state"):
        resolve_task("[detection]", "Yes")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        # plain string
        pytest.param("Yes", "Yes", id="string"),
        # TRL conversational completion
        pytest.param([{"role": "assistant", "content": "Yes"}], "Yes", id="conversational"),
        # the last message is the completion
        pytest.param([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "b", id="last"),
        # content as a list of parts
        pytest.param([{"role": "assistant", "content": [{"type": "text", "text": "Yes"}]}], "Yes", id="parts"),
        # empty conversation
        pytest.param([], "", id="empty"),
    ],
)
def test_completion_text(completion, expected):
    assert completion_text(completion) == expected


def test_completion_text_rejects_other_types():
    with pytest.raises(TypeError, match="got int"):
        completion_text(3)
