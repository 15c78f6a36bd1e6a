"""Generation settings: conf/eval's, given identically to transformers and to vLLM, not the checkpoint's own."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from PIL import Image
from transformers import GenerationConfig

from lego_arta.evaluation.evaluate import Weights, make_backend
from lego_arta.models import load_model, resolve_model_path
from tests.conftest import FIXTURE_7B

PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Was this step completed?"}]}]


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """vLLM needs a GPU: a stand-in module records what our backend hands to ``LLM`` and ``SamplingParams``."""
    calls: dict[str, Any] = {}

    class LLM:
        def __init__(self, **kwargs: Any) -> None:
            calls["llm"] = kwargs

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM  # type: ignore[attr-defined]
    vllm.SamplingParams = lambda **kw: calls.setdefault("params", kw)  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda *a: a  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora)
    return calls


def hf_effective_config(model: Any, backend: Any, monkeypatch: pytest.MonkeyPatch) -> GenerationConfig:
    """The generation config ``model.generate`` really runs with when ``backend`` generates one answer."""
    seen = {}
    real = model._prepare_generation_config

    def spy(generation_config: Any, **kwargs: Any) -> Any:
        config, model_kwargs = real(generation_config, **kwargs)
        seen["config"] = config
        return config, model_kwargs

    monkeypatch.setattr(model, "_prepare_generation_config", spy)
    backend([PROMPT], [[Image.new("RGB", (56, 56), (200, 30, 30))]])
    return seen["config"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # conf/eval as shipped: greedy, no top-k / top-p filter, no repetition penalty (the checkpoint says 1.05)
        ([], {"do_sample": False, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0}),
        # sampling: every value reaches both backends as set
        (
            [
                "eval.do_sample=true",
                "eval.temperature=0.7",
                "eval.top_p=0.9",
                "eval.top_k=20",
                "eval.repetition_penalty=1.1",
            ],
            {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.1},
        ),
    ],
)
def test_both_backends_get_the_same_settings_not_the_checkpoints(
    make_cfg, monkeypatch, fake_vllm, overrides, expected
):
    cfg = make_cfg("eval.max_new_tokens=3", *overrides)
    model, processor = load_model(cfg.model, cfg.paths.cache_dir)
    # what from_pretrained gives the real 7B: its generation_config.json (sampling at 1e-6, repetition_penalty 1.05)
    checkpoint = GenerationConfig.from_pretrained(FIXTURE_7B)
    assert (checkpoint.do_sample, checkpoint.repetition_penalty, checkpoint.temperature) == (True, 1.05, 1e-6)
    model.generation_config = checkpoint
    weights = Weights(resolve_model_path(cfg.model, cfg.paths.cache_dir), model=model)
    hf = hf_effective_config(model, make_backend(cfg, processor, weights), monkeypatch)
    make_backend(
        make_cfg("eval.max_new_tokens=3", *overrides, "eval.backend=vllm"), processor, Weights(str(FIXTURE_7B))
    )
    vllm = fake_vllm["params"]
    assert hf.max_new_tokens == vllm["max_tokens"] == 3
    assert hf.do_sample is expected["do_sample"]
    # vLLM samples greedily at temperature 0; transformers ignores temperature when not sampling
    assert vllm["temperature"] == expected["temperature"]
    if expected["do_sample"]:
        assert hf.temperature == expected["temperature"]
    for key in ("top_p", "top_k", "repetition_penalty"):
        assert getattr(hf, key) == vllm[key] == expected[key], key
    # the checkpoint's stop tokens stay: transformers takes them from generation_config.json, vLLM adds them itself
    assert hf.eos_token_id == checkpoint.eos_token_id == [151645, 151643]
    assert "generation_config" not in fake_vllm["llm"]  # vLLM's default "auto": the file's eos ids, not its sampling


def test_generate_without_a_full_config_inherits_the_checkpoints_penalty(make_cfg):
    # why GenerationSettings.hf sets every field: keyword arguments alone (the old call) leave the rest to the file
    cfg = make_cfg()
    model, _ = load_model(cfg.model, cfg.paths.cache_dir)
    model.generation_config = GenerationConfig.from_pretrained(FIXTURE_7B)
    old, _ = model._prepare_generation_config(None, max_new_tokens=3, do_sample=False)
    assert old.repetition_penalty == 1.05
