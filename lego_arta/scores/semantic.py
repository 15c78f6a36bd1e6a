"""Semantic similarity of two texts: the cosine of their sentence embeddings (sentence-transformers), clipped to
[0, 1].

BLEU and ROUGE pay for shared words, not shared meaning (thesis section 7 names semantic similarity as the more
robust reward for natural text). An encoder is loaded once per process and model (``load_encoder``); a batch of
pairs is encoded in one call. The cosine is clipped to [0, 1] (a negative cosine, unrelated texts, scores 0 like no
overlap does), an empty answer or reference scores 0, and a text longer than the encoder's limit is truncated by it,
never an error. torch and sentence-transformers are imported only when an encoder is used: the light scoring path
(``experiments/score.py``) stays free of them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any


@functools.lru_cache(maxsize=4)
def load_encoder(model: str) -> Any:
    """The ``SentenceTransformer`` at ``model`` (a hub id or a local dir), loaded once per process."""
    import torch
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model, device="cuda" if torch.cuda.is_available() else "cpu")


def semantic_similarity(answers: Sequence[str], references: Sequence[str], model: str) -> list[float]:
    """Per pair, the cosine of the two sentence embeddings clipped to [0, 1]; 0 when either text is empty.

    Args:
        answers: answer texts.
        references: reference texts, one per answer.
        model: the sentence encoder (a hub id or a local dir; see :func:`load_encoder`).
    """
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers for {len(references)} references")
    keep = [i for i, (a, r) in enumerate(zip(answers, references, strict=True)) if a.strip() and r.strip()]
    out = [0.0] * len(answers)
    if not keep:
        return out
    encoder = load_encoder(model)
    texts = [answers[i] for i in keep] + [references[i] for i in keep]
    embeddings = encoder.encode(texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
    left, right = embeddings[: len(keep)], embeddings[len(keep) :]
    cosines = (left * right).sum(dim=-1).clamp(0.0, 1.0).tolist()
    for i, value in zip(keep, cosines, strict=True):
        out[i] = float(value)
    return out
