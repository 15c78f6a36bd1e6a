"""Text rewards: ``state`` (Yes/No match) and ``grounding`` (BLEU-4 + ROUGE-1 of the step text)."""

from __future__ import annotations

from lego_arta.parsing import answer_text, find_yes_no, parse_yes_no, word_tokens
from lego_arta.rewards.base import Sample, TaskReward
from lego_arta.scores import bleu4, rouge_n


class StateReward(TaskReward):
    """1.0 when the completion's Yes/No (first whole word ``yes``/``no`` of the answer text) matches the reference's,
    else 0.0, and 0.0 when the answer holds no yes/no (thesis section 4.3: "+1.0 for correct yes/no predictions and
    0.0 otherwise"; the F1-State metric still reads a missing verdict as No); ``None`` for non-state samples.

    Args:
        completions: model outputs (strings or conversational message lists).
        solution: reference answers ("Yes"/"No").
        task: optional task column; inferred from ``solution`` when absent.

    >>> state(["<think>yes? no.</think><answer>No</answer>", "Maybe", [{"role": "assistant", "content": "yes"}]],
    ...       solution=["No", "No", "Yes"])
    [1.0, 0.0, 1.0]
    """

    __name__ = "state"
    task = "state"

    def score_sample(self, index: int, sample: Sample) -> float:
        found = find_yes_no(answer_text(sample.text))
        return float(found is not None and found == parse_yes_no(answer_text(sample.reference or "")))


class GroundingReward(TaskReward):
    """BLEU-4 on word tokens (``bleu4``) + ROUGE-1 F1 (rouge-score, no stemmer) of the answer text; max 2.0.

    ``None`` for non-grounding samples.

    Args:
        completions: model outputs (strings or conversational message lists).
        solution: reference step texts.
        task: optional task column; inferred from ``solution`` when absent.

    >>> grounding(["Attach the red brick.", "", "Yes"], solution=["Attach the red brick."] * 2 + ["No"])
    [2.0, 0.0, None]
    """

    __name__ = "grounding"
    task = "grounding"

    def score_sample(self, index: int, sample: Sample) -> float:
        # word tokens are rouge-score's tokens without stemmer: each text is tokenized once for both scores
        prediction = word_tokens(answer_text(sample.text))
        reference = word_tokens(answer_text(sample.reference or ""))
        return bleu4(prediction, reference) + rouge_n(reference, prediction, 1)


state = StateReward()
grounding = GroundingReward()
