"""Text rewards: ``state`` (Yes/No match), ``grounding`` (BLEU-4 + ROUGE-1 of the step text) and
``grounding_semantic`` (the cosine of sentence embeddings of the step text and the answer)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lego_arta.errors import ConfigError
from lego_arta.parsing import answer_text, find_yes_no, parse_yes_no, word_tokens
from lego_arta.rewards.base import Sample, TaskReward, samples
from lego_arta.scores import bleu4, rouge_n
from lego_arta.scores.semantic import semantic_similarity


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

    def reward_sample(self, index: int, sample: Sample) -> float:
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

    def reward_sample(self, index: int, sample: Sample) -> float:
        # word tokens are rouge-score's tokens without stemmer: each text is tokenized once for both scores
        prediction = word_tokens(answer_text(sample.text))
        reference = word_tokens(answer_text(sample.reference or ""))
        return bleu4(prediction, reference) + rouge_n(reference, prediction, 1)


class GroundingSemanticReward(TaskReward):
    """The semantic similarity of the answer text and the reference step text: the cosine of their sentence
    embeddings, clipped to [0, 1] (:func:`lego_arta.scores.semantic.semantic_similarity`); 0.0 when either is empty;
    ``None`` for non-grounding samples. A batch is encoded in one call, the encoder loaded once per process.

    Args:
        encoder: the sentence encoder (a hub id or a local dir), or a function that gives it on first use (the tiny
            offline encoder is built then, not when the reward is configured); ``None`` (``reward.semantic.model``
            unset): a :class:`~lego_arta.errors.ConfigError` on first use.
    """

    __name__ = "grounding_semantic"
    task = "grounding"

    def __init__(self, encoder: str | Callable[[], str] | None) -> None:
        self._encoder = encoder

    def __repr__(self) -> str:
        shown = self._encoder if isinstance(self._encoder, str) else "built on first use" if self._encoder else "unset"
        return f"GroundingSemanticReward({shown})"

    @property
    def encoder(self) -> str:
        if self._encoder is None:
            raise ConfigError("reward.semantic.model is not set: a sentence-transformers model (hub id or local dir)")
        if not isinstance(self._encoder, str):
            self._encoder = self._encoder()
        return self._encoder

    def __call__(
        self,
        completions: Sequence[Any],
        solution: Sequence[str] | None = None,
        task: Sequence[str | None] | None = None,
        image_size: Any = None,
        **kwargs: Any,
    ) -> list[float | None]:
        batch = samples(self.__name__, completions, solution, task, image_size=image_size)
        on_task = [i for i, sample in enumerate(batch) if sample.task == self.task]
        out: list[float | None] = [None] * len(batch)
        if not on_task:
            return out
        answers = [answer_text(batch[i].text) for i in on_task]
        references = [answer_text(batch[i].reference or "") for i in on_task]
        for i, value in zip(on_task, semantic_similarity(answers, references, self.encoder), strict=True):
            out[i] = value
        return out


state = StateReward()
grounding = GroundingReward()
