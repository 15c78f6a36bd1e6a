"""The tiny offline Qwen2.5-VL: builds without network, reloads with the Auto classes, generates from an image."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from lego_arta.models import load_model, resolve_model_path
from lego_arta.models.loading import ModelPathError
from lego_arta.models.qwen2_5_vl import build_tiny_qwen2_5_vl
from tests.conftest import FIXTURE_7B


@pytest.fixture
def offline(monkeypatch):
    # any attempt to reach the hub fails loudly
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_tiny_model_builds_offline_reloads_and_generates(make_cfg, offline):
    cfg = make_cfg()
    path = resolve_model_path(cfg.model, cfg.paths.cache_dir)
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find a 1x2 white beam."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and "<|vision_start|><|image_pad|><|vision_end|>" in text
    inputs = processor(text=[text], images=[Image.new("RGB", (112, 112), (200, 30, 30))], return_tensors="pt")
    # 112 x 112 -> an (1, 8, 8) patch grid -> 16 image tokens after the 2x2 merge
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 16
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_tiny_build_is_deterministic_and_reused(make_cfg, tmp_path, offline):
    tiny = OmegaConf.to_container(make_cfg().model.tiny, resolve=True)
    first = build_tiny_qwen2_5_vl(tiny, tmp_path / "a")
    second = build_tiny_qwen2_5_vl(tiny, tmp_path / "b")
    a = AutoModelForImageTextToText.from_pretrained(first).state_dict()
    b = AutoModelForImageTextToText.from_pretrained(second).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_qwen2_5_vl(tiny, tmp_path / "a") == first  # reused, not rebuilt
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_tiny_build_another_process_finished_first_is_kept(make_cfg, tmp_path, offline):
    # two jobs of a parallel sweep build the same tiny model into one cache: the one that finishes second must not
    # replace the dir the first one may be loading from (the builds are the same: same settings and seed)
    from lego_arta.models.qwen2_5_vl import TINY_FILES
    from lego_arta.models.tiny import save_tiny

    tiny = OmegaConf.to_container(make_cfg().model.tiny, resolve=True)
    out = build_tiny_qwen2_5_vl(tiny, tmp_path)
    weights = (out / "model.safetensors").stat()
    assert save_tiny(out, tiny, [], {"late.txt": "the second build"}, TINY_FILES) == out
    assert (out / "model.safetensors").stat().st_ino == weights.st_ino and not (out / "late.txt").exists()
    assert [p.name for p in tmp_path.glob("models/*")] == [out.name]  # no temporary dir left behind


def test_tiny_processor_files_are_laid_out_as_the_7b_checkpoint_ships_them(make_cfg, tmp_path, offline):
    """AutoProcessor assembles the tiny processor from the same files as the real one. A ``Qwen2_5_VLProcessor``
    built and saved without a video processor failed on a GPU machine, where torchvision (the gpu extra) makes the
    video processor required: "Received a NoneType for argument video_processor" (H200, torchvision 0.26)."""
    tiny = OmegaConf.to_container(make_cfg().model.tiny, resolve=True)
    path = build_tiny_qwen2_5_vl(tiny, tmp_path)
    real = {"preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"}
    assert real <= {f.name for f in FIXTURE_7B.iterdir()}  # what the checkpoint ships (config.json aside)
    names = {f.name for f in path.iterdir()}
    assert real <= names and "chat_template.jinja" in names
    assert "processor_config.json" not in names  # a saved processor's own file: the checkpoint has none
    # a dir of the old layout (a saved processor) is rebuilt, not reused half-way
    (path / "preprocessor_config.json").unlink()
    assert (build_tiny_qwen2_5_vl(tiny, tmp_path) / "preprocessor_config.json").exists()
    processor = AutoProcessor.from_pretrained(path)
    assert processor.image_processor.size["longest_edge"] == make_cfg().model.max_pixels


def test_tiny_rope_theta_is_qwens_unless_set(make_cfg, tmp_path, offline):
    tiny = OmegaConf.to_container(make_cfg().model.tiny, resolve=True)
    default = AutoConfig.from_pretrained(build_tiny_qwen2_5_vl(tiny, tmp_path / "a"))
    tiny["text"]["rope_theta"] = 10
    lowered = AutoConfig.from_pretrained(build_tiny_qwen2_5_vl(tiny, tmp_path / "b"))
    assert default.text_config.rope_parameters["rope_theta"] == 1_000_000.0  # Qwen2.5-VL-7B's
    assert lowered.text_config.rope_parameters["rope_theta"] == 10.0


@pytest.mark.parametrize("freeze", [True, False])
def test_vision_tower_frozen_on_request(make_cfg, freeze, offline):
    cfg = make_cfg(f"model.freeze_vision={freeze}")
    model, _ = load_model(cfg.model, cfg.paths.cache_dir)
    visual = [p.requires_grad for n, p in model.named_parameters() if "visual" in n]
    text = [p.requires_grad for n, p in model.named_parameters() if "language_model" in n]
    assert visual and all(rg is not freeze for rg in visual)
    assert all(text)
    assert model.dtype == torch.float32  # CPU: fp32 + sdpa


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("/nonexistent/qwen", "model.path=/nonexistent/qwen: no such directory", id="missing-dir"),
        pytest.param("{tmp}", "no config.json", id="dir-without-model"),
    ],
)
def test_missing_model_dir_fails_naming_the_path(make_cfg, tmp_path, path, message):
    cfg = make_cfg("model=qwen2_5_vl_7b", f"model.path={path.format(tmp=tmp_path)}")
    with pytest.raises(ModelPathError, match=message):
        resolve_model_path(cfg.model, cfg.paths.cache_dir)


@pytest.mark.parametrize(
    ("requested", "cuda", "flash", "expected"),
    [
        ("auto", False, False, "sdpa"),  # CPU
        ("auto", True, True, "flash_attention_2"),  # GPU with the gpu extra
        ("auto", True, False, "sdpa"),  # GPU without flash-attn: falls back, with a warning (below)
        ("sdpa", True, True, "sdpa"),  # asked for: kept
        ("flash_attention_2", True, True, "flash_attention_2"),
        ("flash_attention_2", True, False, "flash-attn is not installed: make install-gpu"),  # an error, not sdpa
        ("flash_attention_2", False, True, "needs a CUDA GPU"),
    ],
)
def test_attention_follows_the_machine_and_refuses_what_it_cannot_run(
    make_cfg, monkeypatch, caplog, requested, cuda, flash, expected
):
    # the GPU cases are simulated: CUDA and flash-attn as this machine would report them
    import importlib.util

    from lego_arta.models.loading import AttentionError, attention_implementation

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (object() if flash else None) if name == "flash_attn" else find_spec(name, *a),
    )
    model_cfg = make_cfg(f"model.attn_implementation={requested}").model
    if expected in ("sdpa", "flash_attention_2"):
        with caplog.at_level("WARNING", logger="lego_arta.models.loading"):
            assert attention_implementation(model_cfg) == expected
        fallback = requested == "auto" and cuda and not flash
        assert ("falling back to sdpa on CUDA" in caplog.text) is fallback
    else:
        with pytest.raises(AttentionError, match=expected):
            attention_implementation(model_cfg)


def test_flash_attention_asked_for_here_fails_before_anything_loads(make_cfg, tmp_path):
    # this machine has no flash-attn (and no GPU): the config check says so, a user error (one line, exit 2)
    from lego_arta.checks import check_config
    from lego_arta.errors import UserError

    cfg = make_cfg("model.attn_implementation=flash_attention_2")
    with pytest.raises(UserError, match=r"model\.attn_implementation=flash_attention_2"):
        check_config(cfg, tmp_path, trains=False)
