"""What the tiny offline models share: a byte-level BPE tokenizer trained locally on the project's prompt corpus,
the cache dir keyed by the builder settings, and an atomic save.

Each family's builder (``Family.build_tiny``) makes a randomly initialised model of its real architecture with small
text and vision configs, and the checkpoint's real processor classes; the same settings and seed give the same
weights. Everything is written with ``save_pretrained`` into a temporary dir that is renamed into place, so a killed
build never leaves a half model that gets reused.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from trl.chat_template_utils import qwen2_5_vl_chat_template

from lego_arta.cache import build_dir

# Qwen2.5-VL's special tokens, in the order the real tokenizer numbers them (after the BPE vocab).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Words of the LEGO-ARTA prompts and answers, so the tiny BPE gives them short token sequences.
_COLOURS = "white black red blue yellow green orange grey gray brown tan purple pink lime azure dark light".split()
_PARTS = "brick plate beam tile slope axle pin gear wheel connector bush technic round flat".split()
_WORDS = (
    "find a an the of to on in at with and or is was this step previous instruction attach place put add connect "
    "push insert turn rotate build assemble top bottom left right front back side base part parts object objects "
    "position positions format coordinates normalized corner output answer json label bbox_2d yes no just tell me "
    "completed correctly first thinking process tags then final what which image shows describe there are "
    "providing xleft ytop xright ybottom for you are helpful assistant picture collect"
).split()


def _corpus(seed: int, lines: int = 4000) -> Iterator[str]:
    """Deterministic text resembling the project's prompts and answers (queries, JSON boxes, yes/no, steps)."""
    rng = random.Random(seed)
    for _ in range(lines):
        colour, part = rng.choice(_COLOURS), rng.choice(_PARTS)
        size = f"{rng.randint(1, 4)}x{rng.choice([1, 2, 3, 4, 6, 8])}"
        boxes = [
            {
                "bbox_2d": sorted(rng.sample(range(101), 2)) + sorted(rng.sample(range(101), 2)),
                "label": f"{size} {part}",
            }
            for _ in range(rng.randint(1, 4))
        ]
        yield f"Find a {size} {colour} {part}. " + json.dumps(boxes)
        yield " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 15))).capitalize() + "."
        where, answer = rng.choice(_WORDS), rng.choice(["Yes", "No"])
        yield f"<think>The {size} {colour} {part} is at the {where}.</think><answer>{answer}</answer>"


def train_tokenizer(
    vocab_size: int,
    seed: int,
    named_tokens: Mapping[str, str] | None = None,
    chat_template: str | None = None,
    plain_tokens: Sequence[str] = (),
) -> Qwen2Tokenizer:
    """The byte-level BPE of the tiny models, trained on :func:`_corpus`, with Qwen's special tokens after it.

    Args:
        vocab_size: the BPE trainer's target size (the corpus is small: the vocabulary stays below it).
        seed: of the corpus.
        named_tokens: a family's own special tokens by attribute name (InternVL: ``context_image_token`` ->
            ``<IMG_CONTEXT>``...), added after Qwen's and readable as ``tokenizer.<name>`` / ``<name>_id``.
        chat_template: the template to carry; default TRL's Qwen2.5-VL template (byte for byte, so TRL knows it).
        plain_tokens: added tokens that are not special (Qwen3's ``<think>`` / ``</think>``: one token each, kept
            by ``skip_special_tokens=True`` as the real tokenizers keep them), after the special ones.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is a token: any text round-trips
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(seed), trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    named = dict(named_tokens or {})
    for token in [*SPECIAL_TOKENS, *named.values()]:
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # the tokenizers BPE takes (a, b) pairs
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[*SPECIAL_TOKENS[1:], *named.values()],
        model_max_length=32768,
        **named,
    )
    if plain_tokens:
        tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in plain_tokens])
    tokenizer.chat_template = chat_template or qwen2_5_vl_chat_template
    tokenizer.padding_side = "left"  # decoder-only generation pads on the left
    return tokenizer


def settings_hash(tiny: Mapping[str, Any]) -> str:
    """Short, stable hash of the builder settings: the cache dir name, so changed sizes build a new model."""
    blob = json.dumps(tiny, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def tiny_dir(name: str, tiny: Mapping[str, Any], cache_dir: str | Path) -> Path:
    """``cache_dir/models/<name>-<hash of the settings>``: changed settings build a new model."""
    return Path(cache_dir) / "models" / f"{name}-{settings_hash(tiny)}"


def is_built(out: Path, required: Sequence[str]) -> bool:
    """Whether ``out`` holds every one of the ``required`` files (a dir of an older layout lacks some)."""
    return all((out / name).exists() for name in required)


def save_tiny(
    out: Path, tiny: Mapping[str, Any], parts: list[Any], files: Mapping[str, str], required: Sequence[str]
) -> Path:
    """Write ``parts`` (each with ``save_pretrained``) and the text ``files`` into ``out`` with
    :func:`lego_arta.cache.build_dir` (atomic; a complete dir another process built first is kept); return ``out``.

    The settings go to ``tiny_settings.json`` beside them; a dir without every one of the ``required`` files (an older
    layout) is rebuilt.
    """

    def write(tmp: Path) -> None:
        for part in parts:
            part.save_pretrained(tmp)
        for name, text in files.items():
            (tmp / name).write_text(text)
        (tmp / "tiny_settings.json").write_text(json.dumps(tiny, indent=2, sort_keys=True, default=str))

    return build_dir(out, write, lambda path: is_built(path, required))
