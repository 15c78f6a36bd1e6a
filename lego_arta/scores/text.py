"""Text scores on tokens: token F1, BLEU-4 (NLTK), ROUGE-N and ROUGE-L F1 (rouge-score), LCS length.

Linear in the texts' length with a small constant, so ``score.py`` and evaluation can read arbitrary text: callers
tokenize each text once (``word_tokens``; ``ROUGE_TOKENS`` / ``ROUGE_STEMS``, built once, here) and pass the tokens;
each score counts each n-gram order once, in C (``Counter``, numpy), and lets the library do the scoring from the
counts: NLTK's ``Fraction``, ``brevity_penalty`` and ``SmoothingFunction().method1`` finish BLEU as ``corpus_bleu``
does, rouge-score's ``_score_ngrams`` gives ROUGE-N and its ``fmeasure`` ROUGE-L. The libraries' entry points
(``sentence_bleu``, ``RougeScorer.score``) tokenize again and count n-grams in pure Python per call: NLTK's BLEU alone
takes 25 ms on one 30 KB completion. Tests check every value against those entry points.

ROUGE-L's LCS is ``lcs_length`` (bit-parallel): rouge-score's O(n*m) table is too slow on long texts.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from rouge_score.scoring import fmeasure

from lego_arta.parsing import word_tokens

_BLEU_WEIGHTS = (0.25, 0.25, 0.25, 0.25)
# From this many hypothesis tokens on, numpy counts n-grams faster than Counter (measured: equal near 500 tokens).
_NUMPY_TOKENS = 500
_VALID_TOKEN = re.compile(r"[a-z0-9]+")


def _ngrams(tokens: Sequence[str], n: int) -> Counter[Any]:
    # n-gram counts in C; unigrams as plain tokens (rouge-score's _score_ngrams only compares keys of one kind)
    return Counter(tokens) if n == 1 else Counter(zip(*(tokens[i:] for i in range(n)), strict=False))


def _overlap(a: Counter[Any], b: Counter[Any]) -> int:
    # clipped matches: the sum over n-grams of min(count in a, count in b), iterating the smaller side
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return sum(min(count, large[gram]) for gram, count in small.items() if gram in large)


def clipped_matches(hypothesis: Sequence[str], reference: Sequence[str], max_n: int) -> list[int]:
    """For n = 1..``max_n``: the hypothesis n-grams matched in the reference, each clipped to its reference count.

    NLTK's ``modified_precision`` numerators (one reference), each n-gram order counted once. A short hypothesis is
    counted with ``Counter``. A long one is not turned into Python tuples: only the reference's tokens can match, so
    the tokens become ids in the reference's vocabulary (0: not in it) and the n-grams exact integer codes, counted by
    numpy (unless the reference's vocabulary is too large for 64-bit codes). Both give the same numbers.

    Args:
        hypothesis: predicted tokens.
        reference: reference tokens.
        max_n: the largest n-gram order.

    >>> clipped_matches("the red red brick".split(), "the red brick".split(), 2)
    [3, 2]
    """
    vocab = {token: i for i, token in enumerate(dict.fromkeys(reference), start=1)}
    base = len(vocab) + 1
    if len(hypothesis) < _NUMPY_TOKENS or base**max_n >= 2**63:
        return [_overlap(_ngrams(hypothesis, n), _ngrams(reference, n)) for n in range(1, max_n + 1)]
    hyp = np.fromiter(map(vocab.get, hypothesis, itertools.repeat(0)), dtype=np.int64, count=len(hypothesis))
    ref = np.fromiter(map(vocab.__getitem__, reference), dtype=np.int64, count=len(reference))
    out = []
    for n in range(1, max_n + 1):
        if len(hyp) < n or len(ref) < n:
            out.append(0)
            continue
        hyp_codes, ref_codes = _codes(hyp, n, base), _codes(ref, n, base)
        hyp_codes = hyp_codes[_known(hyp, n)]
        ref_grams, ref_counts = np.unique(ref_codes, return_counts=True)
        hyp_grams, hyp_counts = np.unique(hyp_codes, return_counts=True)
        _, ri, hi = np.intersect1d(ref_grams, hyp_grams, assume_unique=True, return_indices=True)
        out.append(int(np.minimum(ref_counts[ri], hyp_counts[hi]).sum()))
    return out


def _codes(ids: np.ndarray, n: int, base: int) -> np.ndarray:
    # the n-gram starting at each position as one integer: ids[i] * base**(n-1) + ... + ids[i+n-1]
    m = len(ids) - n + 1
    codes = ids[:m].copy()
    for k in range(1, n):
        codes = codes * base + ids[k : k + m]
    return codes


def _known(ids: np.ndarray, n: int) -> np.ndarray:
    # n-grams made of reference tokens only
    m = len(ids) - n + 1
    known = ids[:m] > 0
    for k in range(1, n):
        known &= ids[k : k + m] > 0
    return known


def token_f1(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """SQuAD-style multiset token F1; 0.0 when either side is empty.

    Args:
        prediction: predicted tokens.
        reference: reference tokens.

    >>> token_f1(["red", "red", "brick"], ["red", "brick", "plate"])
    0.6666666666666666
    """
    if not prediction or not reference:
        return 0.0
    common = _overlap(Counter(prediction), Counter(reference))
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(reference)
    return 2 * precision * recall / (precision + recall)


class _NLTKBleu(NamedTuple):
    fraction: type
    brevity_penalty: Any
    smoothing: Any


@functools.cache
def _nltk_bleu() -> _NLTKBleu:
    from nltk.translate import bleu_score  # importing NLTK takes a second: only when BLEU is first asked for

    return _NLTKBleu(bleu_score.Fraction, bleu_score.brevity_penalty, bleu_score.SmoothingFunction().method1)


def bleu4(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """Sentence BLEU-4: NLTK's ``sentence_bleu`` with weights 0.25 x 4 and ``SmoothingFunction().method1``.

    0.0 when either side is empty. The clipped matches come from :func:`clipped_matches` (NLTK's
    ``modified_precision`` numerators; the denominators are the hypothesis n-gram counts); NLTK's ``Fraction``,
    ``brevity_penalty`` and smoothing then finish the score as ``corpus_bleu`` does. A test checks the value against
    ``sentence_bleu``.

    Args:
        hypothesis: predicted word tokens.
        reference: reference word tokens.

    >>> round(bleu4("attach the red brick".split(), "attach the red brick on top".split()), 4)
    0.6065
    """
    if not hypothesis or not reference:
        return 0.0
    matches = clipped_matches(hypothesis, reference, len(_BLEU_WEIGHTS))
    if matches[0] == 0:
        return 0.0
    nltk = _nltk_bleu()
    p_n = [nltk.fraction(m, max(1, len(hypothesis) - n + 1), _normalize=False) for n, m in enumerate(matches, start=1)]
    p_n = nltk.smoothing(p_n)
    logs = (w * math.log(p) for w, p in zip(_BLEU_WEIGHTS, p_n, strict=True) if p > 0)
    return float(nltk.brevity_penalty(len(reference), len(hypothesis)) * math.exp(math.fsum(logs)))


@functools.cache
def _porter() -> Any:
    from nltk.stem import porter

    return porter.PorterStemmer()  # rouge-score's stemmer (NLTK_EXTENSIONS mode)


class RougeTokenizer:
    """rouge-score's ``DefaultTokenizer`` with the same output, faster.

    rouge-score lower-cases, replaces every non ``[a-z0-9]`` run by a space, splits, Porter-stems tokens longer than 3
    characters (when ``use_stemmer``) and drops invalid tokens. That is ``word_tokens`` plus memoised stemming (a
    bounded memo: adversarial text cannot grow it without limit).

    Args:
        use_stemmer: stem tokens longer than 3 characters with NLTK's Porter stemmer, as rouge-score does.

    >>> RougeTokenizer(use_stemmer=True).tokenize("Attaching the bricks!")
    ['attach', 'the', 'brick']
    """

    _MAX_STEMS = 1 << 17

    def __init__(self, use_stemmer: bool = False) -> None:
        self.use_stemmer = use_stemmer
        self._stems: dict[str, str | None] = {}  # token -> its stem (None: rouge-score drops it)

    def _stem(self, token: str) -> str | None:
        if len(self._stems) >= self._MAX_STEMS:
            self._stems.clear()
        stem = _porter().stem(token) if len(token) > 3 else token  # rouge-score stems tokens longer than 3 characters
        self._stems[token] = stem = stem if _VALID_TOKEN.fullmatch(stem) else None
        return stem

    def tokenize(self, text: str) -> list[str]:
        return self.from_words(word_tokens(text))

    def from_words(self, words: list[str]) -> list[str]:
        """The tokens of a text already split by ``word_tokens`` (the list itself when nothing is stemmed)."""
        if not self.use_stemmer:
            return words
        stems = self._stems
        out = [stems[t] if t in stems else self._stem(t) for t in words]
        return [t for t in out if t is not None] if None in out else out  # type: ignore[return-value]


ROUGE_TOKENS = RougeTokenizer(use_stemmer=False)  # the tokens of ``word_tokens``
ROUGE_STEMS = RougeTokenizer(use_stemmer=True)


@functools.cache
def _score_ngrams() -> Any:
    # rouge-score (pinned ==0.1.2) has no public ROUGE-N on counts; _score_ngrams is what RougeScorer.score calls on
    # its own counts. Tests compare with RougeScorer.score: if they fail after an upgrade, look here first.
    from rouge_score import rouge_scorer

    return rouge_scorer._score_ngrams


def rouge_n(reference: Sequence[str], prediction: Sequence[str], n: int) -> float:
    """ROUGE-N F1 as rouge-score computes it, on already tokenized text (``ROUGE_TOKENS`` / ``ROUGE_STEMS``).

    Args:
        reference: the target's tokens.
        prediction: the predicted tokens.
        n: the n-gram order.

    >>> rouge_n("the red brick".split(), "the red plate".split(), 2)
    0.5
    """
    return float(_score_ngrams()(_ngrams(reference, n), _ngrams(prediction, n)).fmeasure)


def rouge_l(reference: Sequence[str], prediction: Sequence[str]) -> float:
    """ROUGE-L F1 as rouge-score computes it (``lcs_length``, then rouge-score's F-measure); 0.0 if a side is empty.

    Args:
        reference: the target's tokens.
        prediction: the predicted tokens.

    >>> rouge_l("the red brick on top".split(), "red top brick".split())
    0.5
    """
    if not reference or not prediction:
        return 0.0
    lcs = lcs_length(reference, prediction)
    return float(fmeasure(lcs / len(prediction), lcs / len(reference)))


def rouge_f1(
    reference: str, prediction: str, rouge_types: Sequence[str] = ("rouge1",), use_stemmer: bool = False
) -> dict[str, float]:
    """ROUGE F1 scores of ``prediction`` against ``reference`` texts, as rouge-score's ``RougeScorer`` gives them.

    Each text is tokenized once; ``rougeN`` is :func:`rouge_n`, ``rougeL`` is :func:`rouge_l`.

    Args:
        reference: the target text.
        prediction: the predicted text.
        rouge_types: ``rouge1``, ``rouge2``, ..., ``rougeL``.
        use_stemmer: Porter-stem tokens longer than 3 characters, as rouge-score's ``use_stemmer``.

    >>> rouge_f1("the red brick", "the red plate", ("rouge1", "rouge2", "rougeL"))
    {'rouge1': 0.6666666666666666, 'rouge2': 0.5, 'rougeL': 0.6666666666666666}
    """
    tokenizer = ROUGE_STEMS if use_stemmer else ROUGE_TOKENS
    ref, pred = tokenizer.tokenize(reference), tokenizer.tokenize(prediction)
    return {
        t: rouge_l(ref, pred) if t == "rougeL" else rouge_n(ref, pred, int(t.removeprefix("rouge")))
        for t in rouge_types
    }


def rouge1_f1(reference: str, prediction: str) -> float:
    """ROUGE-1 F1 (rouge-score, no stemmer) of ``prediction`` against ``reference``.

    Args:
        reference: the target text.
        prediction: the predicted text.

    >>> rouge1_f1("red brick", "red plate")
    0.5
    """
    return rouge_n(ROUGE_TOKENS.tokenize(reference), ROUGE_TOKENS.tokenize(prediction), 1)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel, O(len(b)) big-int steps).

    Gives the same number as rouge-score's O(n*m) table (``_lcs_table``), which is too slow on long texts.

    Args:
        a: first token list (its length sets the width of the bit vectors; the shorter list is used).
        b: second token list.

    >>> lcs_length("the red brick on top".split(), "red top brick".split())
    2
    """
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    masks: dict[str, int] = {}
    for i, token in enumerate(short):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(short)) - 1
    v = full
    for token in long:
        match = masks.get(token)
        if match:
            u = v & match
            v = ((v + u) | (v - u)) & full
    return len(short) - v.bit_count()
