"""Text rewards (``state``, ``grounding``) and the text scores the metrics share: BLEU-4, ROUGE, LCS.

Scorer objects are built once (lazily) per process. ROUGE goes through ``rouge_score.rouge_scorer.RougeScorer`` with
``RougeTokenizer``: rouge-score's default tokenization (same tokens), one regex and memoised Porter stems, so a
1 MB completion is scored in a fraction of a second.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from lego_arta.parsing import answer_text, parse_yes_no, word_tokens
from lego_arta.rewards.base import Sample, TaskReward

# Texts longer than this (in tokens) are scored by the C-speed count paths (``_bleu4_counts``, ``_rouge_n_counts``):
# the same counts and arithmetic as NLTK / rouge-score, whose pure-Python n-gram generators take seconds on 1 MB.
_LIBRARY_MAX_TOKENS = 2000
_BLEU_WEIGHTS = (0.25, 0.25, 0.25, 0.25)
_VALID_TOKEN = re.compile(r"[a-z0-9]+")


@functools.cache
def _porter() -> Any:
    from nltk.stem import porter

    return porter.PorterStemmer()  # rouge-score's stemmer (NLTK_EXTENSIONS mode)


_STEMS: dict[str, str | None] = {}  # token -> rouge-score's token after stemming (None: dropped), memoised
_MAX_STEMS = 1 << 17


def _stem(token: str) -> str | None:
    if len(_STEMS) >= _MAX_STEMS:  # bounded memory on adversarial text
        _STEMS.clear()
    stem = _porter().stem(token) if len(token) > 3 else token  # rouge-score stems tokens longer than 3 characters
    _STEMS[token] = stem = stem if _VALID_TOKEN.fullmatch(stem) else None
    return stem


def _ngrams(tokens: Sequence[str], n: int) -> Counter[Any]:
    # n-gram counts; unigrams are counted as tokens (same comparisons, no 1-tuples)
    return Counter(tokens) if n == 1 else Counter(zip(*(tokens[i:] for i in range(n)), strict=False))


class RougeTokenizer:
    """rouge-score's ``DefaultTokenizer`` with the same output, faster.

    rouge-score lower-cases, replaces every non ``[a-z0-9]`` run by a space, splits, Porter-stems tokens longer than 3
    characters (when ``use_stemmer``) and drops invalid tokens. That is ``word_tokens`` plus memoised stemming.

    Args:
        use_stemmer: stem tokens longer than 3 characters with NLTK's Porter stemmer, as rouge-score does.

    >>> RougeTokenizer(use_stemmer=True).tokenize("Attaching the bricks!")
    ['attach', 'the', 'brick']
    """

    def __init__(self, use_stemmer: bool = False) -> None:
        self.use_stemmer = use_stemmer

    def tokenize(self, text: str) -> list[str]:
        tokens = word_tokens(text)
        if not self.use_stemmer:
            return tokens
        stems = _STEMS
        out = [stems[t] if t in stems else _stem(t) for t in tokens]
        return [t for t in out if t is not None] if None in out else out  # type: ignore[return-value]


@functools.cache
def _tokenizer(use_stemmer: bool) -> RougeTokenizer:
    return RougeTokenizer(use_stemmer)


@functools.cache
def rouge_scorer(rouge_types: tuple[str, ...], use_stemmer: bool) -> Any:
    """A cached ``rouge_score.rouge_scorer.RougeScorer`` using ``RougeTokenizer``."""
    from rouge_score import rouge_scorer as rs

    return rs.RougeScorer(list(rouge_types), tokenizer=_tokenizer(use_stemmer))


def _fmeasure(precision: float, recall: float) -> float:
    # rouge_score.scoring.fmeasure
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _rouge_n_counts(reference: Sequence[str], prediction: Sequence[str], n: int) -> float:
    # rouge-score's _create_ngrams + _score_ngrams F1, with a C-speed n-gram count (same counts, same arithmetic).
    ref, pred = _ngrams(reference, n), _ngrams(prediction, n)
    overlap = sum(min(count, pred[gram]) for gram, count in ref.items())
    return _fmeasure(overlap / max(sum(pred.values()), 1), overlap / max(sum(ref.values()), 1))


def rouge_f1(
    reference: str, prediction: str, rouge_types: Sequence[str] = ("rouge1",), use_stemmer: bool = False
) -> dict[str, float]:
    """ROUGE F1 scores of ``prediction`` against ``reference``, as rouge-score computes them.

    ``rougeN`` comes from ``rouge_score.rouge_scorer.RougeScorer`` (with ``RougeTokenizer``); for texts over 2,000
    tokens the same n-gram counts are taken in C (rouge-score's n-gram generator takes seconds on 1 MB). ``rougeL``
    uses ``lcs_length`` (rouge-score's O(n*m) table is too slow on long texts) with rouge-score's formula. Tests check
    both paths against rouge-score.

    Args:
        reference: the target text.
        prediction: the predicted text.
        rouge_types: ``rouge1``, ``rouge2``, ..., ``rougeL``.
        use_stemmer: Porter-stem tokens longer than 3 characters, as rouge-score's ``use_stemmer``.

    >>> rouge_f1("the red brick", "the red plate", ("rouge1", "rouge2", "rougeL"))
    {'rouge1': 0.6666666666666666, 'rouge2': 0.5, 'rougeL': 0.6666666666666666}
    """
    tokenizer = _tokenizer(use_stemmer)
    ref, pred = tokenizer.tokenize(reference), tokenizer.tokenize(prediction)
    out: dict[str, float] = {}
    ngram_types = tuple(t for t in rouge_types if t != "rougeL")
    if ngram_types and max(len(ref), len(pred)) <= _LIBRARY_MAX_TOKENS:
        scores = rouge_scorer(ngram_types, use_stemmer).score(reference, prediction)
        out.update({t: float(scores[t].fmeasure) for t in ngram_types})
    elif ngram_types:
        out.update({t: _rouge_n_counts(ref, pred, int(t.removeprefix("rouge"))) for t in ngram_types})
    if "rougeL" in rouge_types:
        lcs = lcs_length(ref, pred) if ref and pred else 0
        out["rougeL"] = _fmeasure(lcs / len(pred), lcs / len(ref)) if lcs else 0.0
    return {t: out[t] for t in rouge_types}


def rouge1_f1(reference: str, prediction: str) -> float:
    """ROUGE-1 F1 (rouge-score, no stemmer) of ``prediction`` against ``reference``.

    Args:
        reference: the target text.
        prediction: the predicted text.

    >>> rouge1_f1("red brick", "red plate")
    0.5
    """
    return rouge_f1(reference, prediction)["rouge1"]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel, O(len(b)) big-int steps).

    Gives the same number as rouge-score's O(n*m) table (``_lcs_table``), which is too slow on long texts.

    Args:
        a: first token list (its length sets the width of the bit vectors; the shorter list is used).
        b: second token list.

    >>> lcs_length("the red brick on top".split(), "red top brick".split())
    2
    """
    if len(a) > len(b):
        a, b = b, a
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        match = masks.get(token)
        if match:
            u = v & match
            v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _bleu4_counts(hyp: Sequence[str], ref: Sequence[str]) -> float:
    # NLTK's corpus_bleu for one hypothesis and one reference, weights 0.25 x 4, SmoothingFunction().method1
    # (epsilon 0.1), auto_reweigh off: same counts, same float operations, in linear time.
    logs = []
    for n in range(1, 5):
        hyp_counts, ref_counts = _ngrams(hyp, n), _ngrams(ref, n)
        numerator = sum(min(c, hyp_counts[g]) for g, c in ref_counts.items() if g in hyp_counts)
        denominator = max(1, len(hyp) - n + 1)
        if n == 1 and numerator == 0:
            return 0.0
        precision = numerator / denominator if numerator else (numerator + 0.1) / denominator
        logs.append(0.25 * math.log(precision))
    hyp_len, ref_len = len(hyp), len(ref)
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(math.fsum(logs))


@functools.cache
def _smoothing() -> Any:
    from nltk.translate.bleu_score import SmoothingFunction

    return SmoothingFunction().method1


def bleu4(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """Sentence BLEU-4 on word tokens: NLTK ``sentence_bleu``, weights 0.25 x 4, ``SmoothingFunction().method1``.

    0.0 when either side is empty. Texts over 2,000 tokens use the same counts and arithmetic in linear time (NLTK's
    n-gram generator takes seconds on a 1 MB completion); a test checks both paths agree.

    Args:
        hypothesis: predicted word tokens.
        reference: reference word tokens.

    >>> round(bleu4("attach the red brick".split(), "attach the red brick on top".split()), 4)
    0.6065
    """
    if not hypothesis or not reference:
        return 0.0
    if max(len(hypothesis), len(reference)) > _LIBRARY_MAX_TOKENS:
        return _bleu4_counts(hypothesis, reference)
    from nltk.translate.bleu_score import sentence_bleu

    return float(sentence_bleu([list(reference)], list(hypothesis), _BLEU_WEIGHTS, _smoothing()))


class StateReward(TaskReward):
    """1.0 when the completion's Yes/No (first whole word ``yes``/``no`` of the answer text, default No) matches the
    reference's, else 0.0; ``None`` for non-state samples.

    Args:
        completions: model outputs (strings or conversational message lists).
        solution: reference answers ("Yes"/"No").
        task: optional task column; inferred from ``solution`` when absent.

    >>> state(["<think>yes? no.</think><answer>No</answer>", "Maybe", [{"role": "assistant", "content": "yes"}]],
    ...       solution=["No", "Yes", "Yes"])
    [1.0, 0.0, 1.0]
    """

    __name__ = "state"
    task = "state"

    def score_sample(self, index: int, sample: Sample) -> float:
        return float(parse_yes_no(answer_text(sample.text)) == parse_yes_no(answer_text(sample.reference or "")))


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
        prediction, reference = answer_text(sample.text), answer_text(sample.reference or "")
        return bleu4(word_tokens(prediction), word_tokens(reference)) + rouge1_f1(reference, prediction)


state = StateReward()
grounding = GroundingReward()
