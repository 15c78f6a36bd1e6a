"""Evaluation with the tiny model: predictions stream to disk, a killed run resumes, batching changes nothing."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from experiments import evaluate as evaluate_script
from lego_arta.data import build_dataset, load_data
from lego_arta.evaluation.generate import GenerationSettings, TransformersBackend, generate_predictions, generator_id
from lego_arta.evaluation.trivial import mean_box
from lego_arta.gpu_memory import peak_gpu_memory
from lego_arta.models import load_model
from lego_arta.runs import read_jsonl

pytestmark = pytest.mark.slow

SMALL = ["debug=quick", "data.synthetic.num_manuals=4"]  # the quick budget (conf/debug/quick.yaml), fewer scenes


def test_evaluation_writes_predictions_and_metrics_and_resumes_after_a_kill(make_cfg):
    cfg = make_cfg(*SMALL, "eval.limit=3")  # 9 predictions: the kill below cuts the fourth line
    metrics = evaluate_script.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    rows = list(read_jsonl(run_dir / "predictions.jsonl"))
    assert len(rows) == 9  # eval.limit=3 per task
    assert {t: sum(r["task"] == t for r in rows) for t in ("grounding", "object", "state")} == dict.fromkeys(
        ("grounding", "object", "state"), 3
    )
    assert set(rows[0]) == {
        "id",
        "task",
        "prompt_hash",
        "generator",
        "prediction",
        "reference",
        "demo_answer",
        "mean_box_answer",
        "image_size",
    }
    # the query image's frame after the processor's resize (the frame rule reads it): 112 x 112 scenes at the tiny
    # model's budget of 112 x 112 pixels
    assert all(row["image_size"] == [112, 112] for row in rows)
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    tasks = {r["task"] for r in rows}
    expected = {"grounding": "eval/f1_theme", "object": "eval/iou", "state": "eval/f1_state"}
    for task in tasks:
        key = expected[task]
        assert key in written and f"{key}_lo" in written and f"{key}_hi" in written
        assert written[f"{key}_lo"] <= written[key] <= written[f"{key}_hi"]
    # format validity: the random model's answers, counted per task by the shared parser
    assert 0.0 <= written["eval/format_valid"] <= 100.0 and "eval/format_valid_object" in written
    # the copy-the-demo reference, from the demo answer each row carries (demos are on by default)
    assert all(r["demo_answer"] for r in rows)
    assert {"ref/copy_demo/f1_theme", "ref/copy_demo/iou"} <= set(written)
    # the mean-box reference: one box at the training split's mean box on every object row, none on the others
    answers = [json.loads(r["mean_box_answer"]) for r in rows if r["task"] == "object"]
    assert all(r["mean_box_answer"] is None for r in rows if r["task"] != "object")
    data = load_data(cfg)
    mean = list(mean_box(b.coords for r in data.train for b in r.boxes()) or ())
    assert [[box["bbox_2d"] for box in answer] for answer in answers] == [[mean]] * len(answers)
    assert {"ref/mean_box/iou", "vs/mean_box/iou", "vs/mean_box/iou_lo", "vs/copy_demo/iou_beats"} <= set(written)
    if "state" in tasks:
        # the always-Yes reference: every "No" reference is a false positive
        has_no = any(r["task"] == "state" and r["reference"] == "No" for r in rows)
        assert written["ref/always_yes/fpr"] == (100.0 if has_no else 0.0)
    # killed mid-write, the evaluation resumes to the same predictions and metrics
    predictions = run_dir / "predictions.jsonl"
    complete = predictions.read_text()
    metrics_file = (run_dir / "metrics.json").read_text()
    # a kill mid-write: three finished lines and half of the fourth
    lines = complete.splitlines(keepends=True)
    predictions.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    (run_dir / "metrics.json").unlink()
    second = evaluate_script.run(cfg)
    assert second == metrics
    assert (run_dir / "metrics.json").read_text() == metrics_file
    assert predictions.read_text() == complete


def test_batch_size_does_not_change_greedy_predictions(make_cfg, tmp_path):
    cfg = make_cfg(*SMALL)
    data = load_data(cfg)
    model, processor = load_model(cfg.model, cfg.paths.cache_dir)
    dataset = build_dataset(data.test, data.train, cfg.data, int(cfg.seed)).select(range(8))
    backend = TransformersBackend(model, processor, settings=GenerationSettings.from_config(cfg.eval))
    runs = {
        bs: generate_predictions(backend, dataset, tmp_path / f"bs{bs}.jsonl", batch_size=bs, generator="")
        for bs in (1, 4)
    }
    assert [r["prediction"] for r in runs[1]] == [r["prediction"] for r in runs[4]]


def test_vllm_backend_gets_the_prompts_images_pixels_and_adapter(make_cfg, monkeypatch, tmp_path):
    # vLLM needs a GPU: a stand-in module records what our backend asks of vLLM's API (LLM, SamplingParams,
    # LoRARequest) and answers like it; everything before and after (prompts, streaming, scoring) is the real code
    calls: dict[str, object] = {}

    class Output:
        def __init__(self, text: str) -> None:
            self.outputs = [types.SimpleNamespace(text=text)]

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs

        def generate(self, requests, params, lora_request=None, use_tqdm=True):
            calls.setdefault("requests", []).extend(requests)
            calls["params"], calls["lora"] = params, lora_request
            return [Output("Yes") for _ in requests]

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM
    vllm.SamplingParams = lambda **kw: kw
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, id_, path: (name, id_, path)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora)

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    cfg = make_cfg(*SMALL, "eval.backend=vllm", f"method.adapter={adapter}")
    metrics = evaluate_script.run(cfg)
    assert calls["llm"]["limit_mm_per_prompt"] == {"image": 4}
    assert calls["llm"]["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 12544}
    assert calls["llm"]["enable_lora"] is True and calls["lora"] == ("adapter", 1, str(adapter))
    # conf/eval's settings, greedy (temperature 0 in vLLM's terms)
    expected = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "seed": 0}
    expected["max_tokens"] = cfg.eval.max_new_tokens
    assert calls["params"] == expected
    requests = calls["requests"]
    assert len(requests) == 3 * cfg.eval.limit  # eval.limit records of each task
    assert all(r["prompt"].endswith("<|im_start|>assistant\n") for r in requests)
    # one image per user turn: the demo's and the query's
    assert all(len(r["multi_modal_data"]["image"]) == r["prompt"].count("<|vision_start|>") for r in requests)
    assert metrics["eval/num_samples"] == len(requests) and "eval/f1_state" in metrics


def test_run_files_drop_only_a_cut_short_last_line(tmp_path):
    # a killed writer leaves half a last line: skipped; damage anywhere else is an error naming file and line
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "predic')
    assert [row["id"] for row in read_jsonl(path)] == ["a", "b"]
    path.write_text('{"id": "a"}\n{"id": "b", "pred\n{"id": "c"}\n')
    with pytest.raises(ValueError, match=r"predictions.jsonl:2: not a JSON line"):
        list(read_jsonl(path))


@pytest.mark.parametrize(
    ("change", "kept"),
    [
        (None, 3),  # same model, adapter and settings: an interrupted evaluation keeps its rows
        ("adapter", 0),  # a resumed training run saved new adapter weights: every row is made again
        ("model", 0),  # a resumed full fine-tuning run saved its model/ again: likewise
        ("settings", 0),  # another max_new_tokens: every row is made again
    ],
)
def test_resumed_predictions_belong_to_the_generator_that_made_them(tmp_path, change, kept):
    from datasets import Dataset

    adapter, model = tmp_path / "adapter", tmp_path / "model"
    adapter.mkdir()
    model.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights after step 20")
    (model / "model.safetensors").write_bytes(b"full weights after step 20")
    settings = {"max_new_tokens": 12}
    dataset = Dataset.from_list(
        [
            {
                "id": f"r{i}",
                "task": "state",
                "prompt": [{"role": "user", "content": f"q{i}"}],
                "images": [],
                "solution": "Yes",
                "demo_answer": "No",
            }
            for i in range(3)
        ]
    )
    calls: list[int] = []

    def backend(prompts, images):
        calls.append(len(prompts))
        return ["Yes"] * len(prompts)

    out = tmp_path / "predictions.jsonl"
    generate_predictions(backend, dataset, out, batch_size=4, generator=generator_id(str(model), adapter, settings))
    if change == "adapter":
        (adapter / "adapter_model.safetensors").write_bytes(b"weights after step 25")
    elif change == "model":
        (model / "model.safetensors").write_bytes(b"full weights after step 25 (again)")
    elif change == "settings":
        settings = {"max_new_tokens": 64}
    calls.clear()
    rows = generate_predictions(
        backend, dataset, out, batch_size=4, generator=generator_id(str(model), adapter, settings)
    )
    assert sum(calls) == 3 - kept
    assert len(rows) == 3 and len(out.read_text().splitlines()) == 3


def test_peak_gpu_memory_is_recorded_per_stage_and_restarts(monkeypatch):
    """On CUDA a run records torch's peak allocation of each stage in GiB (``metrics.json``, the W&B summary) and
    restarts the count for the next stage; without CUDA it records nothing."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert peak_gpu_memory("train") == {}
    resets: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**29)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: resets.append("reset"))
    assert peak_gpu_memory("train") == {"memory/train_peak_gib": 1.5}
    assert resets == ["reset"]


def test_the_semantic_metric_scores_grounding_answers_with_a_ci(cache_dir):
    from lego_arta.evaluation.evaluate import semantic_metric
    from lego_arta.models.tiny_encoder import build_tiny_sentence_encoder

    encoder = str(build_tiny_sentence_encoder(cache_dir))
    records = [
        {
            "task": "grounding",
            "prediction": "<answer>Attach the red brick.</answer>",
            "reference": "Attach the red brick.",
        },
        {"task": "grounding", "prediction": "", "reference": "Attach the red brick."},  # empty: 0
        {"task": "state", "prediction": "Yes", "reference": "No"},  # not grounding: left out
    ]
    out = semantic_metric(records, encoder, bootstrap_samples=200, seed=0)
    # (100 for the identical answer + 0 for the empty one) / 2, and a bootstrap interval around it within [0, 100]
    assert out["eval/semantic"] == pytest.approx(50.0, abs=1e-3)
    assert 0.0 <= out["eval/semantic_lo"] <= 50.0 <= out["eval/semantic_hi"] <= 100.0
    assert semantic_metric(records[2:], encoder, bootstrap_samples=200, seed=0) == {}
