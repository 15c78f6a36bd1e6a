"""Build a tiny, randomly initialised Qwen2.5-VL fully offline: the embedded default model.

Real ``Qwen2_5_VLForConditionalGeneration`` architecture with small text and vision configs, a byte-level BPE
tokenizer trained locally with ``tokenizers`` (Qwen2 pre-tokenizer, Qwen special tokens, TRL's Qwen2.5-VL chat
template byte for byte so TRL recognises it) and the real image processor. Everything is written with
``save_pretrained`` into a cache dir keyed by a hash of the settings, built once and reused; the same settings and
seed give the same weights. The processor's files are laid out as Qwen2.5-VL-7B-Instruct ships them
(``preprocessor_config.json``, the tokenizer's files, the chat template; no ``processor_config.json``), so
``AutoProcessor`` assembles the tiny model's processor exactly as it does the real one's: with torchvision installed
that includes a video processor read from ``preprocessor_config.json``, which a ``Qwen2_5_VLProcessor`` built here
without one would refuse ("Received a NoneType for argument video_processor").
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from trl.chat_template_utils import qwen2_5_vl_chat_template

log = logging.getLogger(__name__)

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


def train_tokenizer(vocab_size: int, seed: int) -> Qwen2Tokenizer:
    """The byte-level BPE of the tiny models, trained on :func:`_corpus`, with Qwen's special tokens after it."""
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
    for token in SPECIAL_TOKENS:
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # the tokenizers BPE takes (a, b) pairs
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )
    tokenizer.chat_template = qwen2_5_vl_chat_template
    tokenizer.padding_side = "left"  # decoder-only generation pads on the left
    return tokenizer


def settings_hash(tiny: Mapping[str, Any]) -> str:
    """Short, stable hash of the builder settings: the cache dir name, so changed sizes build a new model."""
    blob = json.dumps(tiny, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def build_tiny_qwen2_5_vl(
    tiny: Mapping[str, Any], cache_dir: str | Path, min_pixels: int = 3136, max_pixels: int = 12544
) -> Path:
    """Build the tiny Qwen2.5-VL once into ``cache_dir/models/tiny_qwen2_5_vl-<hash>`` and return that dir.

    Args:
        tiny: builder settings (``model.tiny`` of the config): ``seed``, ``vocab_size``, ``text``, ``vision``.
        cache_dir: root of the project's build cache (``paths.cache_dir``).
        min_pixels: smallest image area the saved processor resizes to.
        max_pixels: largest image area the saved processor resizes to.

    Returns:
        The model dir, loadable with ``AutoModelForImageTextToText`` / ``AutoProcessor``.
    """
    tiny = dict(tiny)
    out = Path(cache_dir) / "models" / f"tiny_qwen2_5_vl-{settings_hash(tiny)}"
    if (out / "model.safetensors").exists() and (out / "preprocessor_config.json").exists():
        return out
    log.info("building the tiny Qwen2.5-VL into %s", out)
    seed = int(tiny["seed"])
    tokenizer = train_tokenizer(int(tiny["vocab_size"]), seed)
    text, vision = dict(tiny["text"]), dict(tiny["vision"])
    mrope_section = list(text.pop("mrope_section"))
    # Qwen2.5-VL's own unless set (+model.tiny.text.rope_theta=10: the README's position experiment)
    rope_theta = float(text.pop("rope_theta", 1_000_000.0))
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    if sum(mrope_section) * 2 != head_dim:
        raise ValueError(f"model.tiny.text.mrope_section={mrope_section} must sum to head size / 2 = {head_dim // 2}")
    ids: dict[str, int] = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS}  # type: ignore[arg-type]
    config = Qwen2_5_VLConfig(
        text_config={
            **text,
            "vocab_size": len(tokenizer),
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta, "mrope_section": mrope_section},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={**vision, "out_hidden_size": text["hidden_size"], "in_channels": 3, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=vision["patch_size"],
        merge_size=vision["spatial_merge_size"],
    )
    # write into a temp dir, then rename: a killed build never leaves a half model that gets reused
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".building-"))
    try:
        model.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)  # preprocessor_config.json, as the 7B checkpoint has it
        tokenizer.save_pretrained(tmp)
        (tmp / "chat_template.jinja").write_text(qwen2_5_vl_chat_template)
        (tmp / "tiny_settings.json").write_text(json.dumps(tiny, indent=2, sort_keys=True, default=str))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny Qwen2.5-VL built: %.2fM parameters, vocab %d, %s", n_params / 1e6, len(tokenizer), out)
    return out
