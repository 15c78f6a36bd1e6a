"""Build a tiny, randomly initialised sentence encoder fully offline: the embedded default of ``grounding_semantic``.

A 2-layer BERT over the tiny VLM's locally trained BPE tokenizer, mean-pooled, saved as a sentence-transformers
model dir (``modules.json``, the transformer and the pooling config), so it loads through the same
``SentenceTransformer(path)`` call as any real encoder (``reward.semantic.model=<hub id or local dir>``). Its
weights are random: the similarities it gives mean nothing semantically; it exists so that the reward's code path
runs anywhere. Built once into ``<cache>/models/tiny_sentence_encoder-<hash>`` and reused.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

from lego_arta.cache import build_dir
from lego_arta.models.tiny import tiny_dir, train_tokenizer

SETTINGS = {"vocab_size": 2048, "hidden_size": 32, "layers": 2, "heads": 2, "max_length": 256, "seed": 0}


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds a saved sentence-transformers model."""
    return (path / "modules.json").is_file()


def build_tiny_sentence_encoder(cache_dir: str | Path) -> Path:
    """Build the tiny sentence encoder once into the cache and return its dir."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    out = tiny_dir("tiny_sentence_encoder", SETTINGS, cache_dir)
    if is_complete(out):
        return out
    s = SETTINGS
    tokenizer = train_tokenizer(int(s["vocab_size"]), int(s["seed"]))
    torch.manual_seed(int(s["seed"]))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=int(s["hidden_size"]),
        num_hidden_layers=int(s["layers"]),
        num_attention_heads=int(s["heads"]),
        intermediate_size=2 * int(s["hidden_size"]),
        max_position_embeddings=int(s["max_length"]),
        pad_token_id=tokenizer.pad_token_id,
    )

    def write(out_tmp: Path) -> None:
        with tempfile.TemporaryDirectory(dir=out_tmp.parent) as bert:  # the BERT the sentence model wraps
            BertModel(config).save_pretrained(bert)
            tokenizer.save_pretrained(bert)
            transformer = Transformer(bert, max_seq_length=int(s["max_length"]))
            pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
            SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(out_tmp))

    build_dir(out, write, is_complete)
    return out
