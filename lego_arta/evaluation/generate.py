"""Batched generation over an evaluation dataset, streamed to ``predictions.jsonl`` and resumable."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, ProcessorMixin

from lego_arta.models import Family, generation_prefix
from lego_arta.runs import append_jsonl, read_jsonl

log = logging.getLogger(__name__)


def prompt_hash(prompt: Any) -> str:
    """Stable short hash of a chat prompt: a resumed evaluation only keeps predictions made for the same prompt."""
    return hashlib.sha256(json.dumps(prompt, sort_keys=True, default=str).encode()).hexdigest()[:16]


def generator_id(model: str, adapter: str | Path | None, settings: Mapping[str, Any]) -> str:
    """Short hash of what makes a prediction: the model (for a local dir, its weight files' sizes and times), the
    adapter's weights (their bytes), the generation settings.

    A resumed evaluation keeps only the rows of the same generator, so predictions never outlive the weights that
    made them (a run resumed to train more steps evaluates its new adapter, or its new fully fine-tuned model, from
    scratch). Model weights are not read: gigabytes; saving them again changes their time.
    """
    digest = hashlib.sha256(json.dumps([model, dict(settings)], sort_keys=True, default=str).encode())
    for path in sorted(Path(model).glob("*.safetensors")):  # nothing for a hub id
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    if adapter is not None:
        for path in sorted(Path(adapter).glob("adapter_model.*")):
            digest.update(path.read_bytes())  # a LoRA adapter: megabytes, not the base model
    return digest.hexdigest()[:16]


def finished_predictions(
    path: Path, dataset: Dataset, generator: str = "", reuse: Sequence[Path] = ()
) -> dict[str, dict[str, Any]]:
    """Rows of an existing ``predictions.jsonl`` (and of the ``reuse`` files) made by ``generator`` for the dataset's
    ids and prompts."""
    wanted = {row_id: prompt_hash(prompt) for row_id, prompt in zip(dataset["id"], dataset["prompt"], strict=True)}
    done = {}
    for source in [*reuse, path]:
        if not source.exists():
            continue
        for row in read_jsonl(source):
            if wanted.get(row.get("id")) == row.get("prompt_hash") and row.get("generator") == generator:
                done[row["id"]] = row
    return done


def shard_file(path: Path, rank: int) -> Path:
    """``predictions.rank<N>.jsonl``: rank N's part of an evaluation over several processes, beside ``path``."""
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def shard_files(path: Path) -> list[Path]:
    """Every rank's part of ``path`` left in its dir (a sharded evaluation not merged yet, or killed)."""
    return sorted(path.parent.glob(f"{path.stem}.rank*{path.suffix}"))


@dataclass(frozen=True)
class GenerationSettings:
    """What decides the generated tokens, read from ``conf/eval`` (its only source) and given identically to both
    backends: :meth:`hf` for transformers' ``generate``, :meth:`vllm` for vLLM's ``SamplingParams``.

    The checkpoint's own ``generation_config.json`` (Qwen2.5-VL-7B-Instruct's says ``repetition_penalty=1.05``,
    ``do_sample=true``, ``temperature=1e-6``) sets none of them; only its stop tokens (``eos_token_id``) are used, by
    both backends: transformers fills the fields left unset from it, vLLM adds them to the request's stop ids.
    ``top_k=0`` means no top-k filter in both (transformers would otherwise fill in 50).
    """

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float

    @classmethod
    def from_config(cls, eval_cfg: Mapping[str, Any], **changes: Any) -> GenerationSettings:
        """The ``eval`` config group's settings (``changes`` replace some: a benchmark's token budget)."""
        values = {f.name: eval_cfg[f.name] for f in fields(cls)} | changes
        return cls(
            max_new_tokens=int(values["max_new_tokens"]),
            do_sample=bool(values["do_sample"]),
            temperature=float(values["temperature"]),
            top_p=float(values["top_p"]),
            top_k=int(values["top_k"]),
            repetition_penalty=float(values["repetition_penalty"]),
        )

    def hf(self, pad_token_id: int | None) -> GenerationConfig:
        """A full ``GenerationConfig``: transformers 5.24 fills every field left ``None`` from the checkpoint's
        ``generation_config.json`` (``GenerationMixin._prepare_generation_config``), so each sampling field is set."""
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            num_beams=1,
            pad_token_id=pad_token_id,
        )

    def vllm(self, seed: int) -> dict[str, Any]:
        """Keyword arguments of ``vllm.SamplingParams``: greedy is ``temperature=0`` there."""
        return {
            "max_tokens": self.max_new_tokens,
            "temperature": self.temperature if self.do_sample else 0.0,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "seed": seed,
        }


def prompt_texts(
    processor: ProcessorMixin, prompts: Sequence[list[dict[str, Any]]], chat_kwargs: Mapping[str, Any]
) -> list[str]:
    """Each chat prompt as the chat template renders it with the generation prompt and ``chat_kwargs`` (the family's
    ``chat_template_kwargs``: what TRL's trainers pass it too)."""
    return [
        processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False, **chat_kwargs) for p in prompts
    ]


def model_inputs(
    processor: ProcessorMixin,
    prompts: Sequence[list[dict[str, Any]]],
    images: Sequence[list[Any]],
    chat_kwargs: Mapping[str, Any] | None = None,
):
    """The left-padded batch for generation: chat template text, and the images as they are.

    The processor resizes the images itself (the model family's image budget: the one path that training uses).
    """
    texts = prompt_texts(processor, prompts, chat_kwargs or {})
    flat = [img for imgs in images for img in imgs]
    return processor(text=texts, images=flat or None, padding=True, padding_side="left", return_tensors="pt")


@torch.inference_mode()
def generate_batch(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    prompts: Sequence[list[dict[str, Any]]],
    images: Sequence[list[Any]],
    settings: GenerationSettings,
    chat_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Generate one answer per chat prompt (left padding, ``settings``, the chat template told ``chat_kwargs``);
    returns the decoded new text."""
    inputs = model_inputs(processor, prompts, images, chat_kwargs).to(model.device)
    config = settings.hf(processor.tokenizer.pad_token_id)
    out = model.generate(**inputs, generation_config=config)  # type: ignore[operator]
    new_tokens = out[:, inputs["input_ids"].shape[1] :]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)


class TransformersBackend:
    """Generation with the transformers model in this process (the default; what the tests use).

    Given the model's ``family`` (bound to the model config), the processor is checked to resize to its budget.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        *,
        settings: GenerationSettings,
        family: Family | None = None,
        chat_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if family is not None:
            family.check_image_processor(processor)
        self.model, self.processor, self.settings = model, processor, settings
        self.chat_kwargs = dict(chat_kwargs or {})
        self.prefix = generation_prefix(processor, self.chat_kwargs)
        model.eval()

    def __call__(self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[list[Any]]) -> list[str]:
        """The model's turns: what the template's generation prompt opened them with
        (:func:`lego_arta.models.generation_prefix`), then the generated text."""
        texts = generate_batch(self.model, self.processor, prompts, images, self.settings, self.chat_kwargs)
        return [self.prefix + text for text in texts]


def vllm_requests(
    processor: ProcessorMixin,
    prompts: Sequence[list[dict[str, Any]]],
    images: Sequence[list[Any]],
    family: Family,
    chat_kwargs: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """vLLM's inputs: each prompt's chat template text and its images as the family's ``fit_image`` gives them."""
    texts = prompt_texts(processor, prompts, chat_kwargs or {})
    return [
        {"prompt": text, "multi_modal_data": {"image": [family.fit_image(i) for i in imgs]}}
        if imgs
        else {"prompt": text}
        for text, imgs in zip(texts, images, strict=True)
    ]


class VLLMBackend:
    """Generation with vLLM (``eval.backend=vllm``; GPU users, ``pip install vllm``), LoRA adapters included.

    The prompt text comes from the processor's chat template; the images go to vLLM as multi-modal data already
    prepared by the family's ``fit_image`` (Qwen2.5-VL: resized as training resizes them, so vLLM's own processor,
    given the same budget by ``vllm_processor_kwargs``, keeps their size); sampling as ``settings`` say (what the
    transformers backend gets too).
    """

    def __init__(
        self,
        model_path: str,
        processor: ProcessorMixin,
        *,
        settings: GenerationSettings,
        adapter: str | None,
        family: Family,
        seed: int,
        max_images: int = 4,
        chat_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest

        self.processor = processor
        self.family = family
        self.chat_kwargs = dict(chat_kwargs or {})
        self.prefix = generation_prefix(processor, self.chat_kwargs)
        self.llm = LLM(
            model=model_path,
            seed=seed,
            enable_lora=adapter is not None,
            limit_mm_per_prompt={"image": max_images},
            mm_processor_kwargs=family.vllm_processor_kwargs(),
        )
        self.params = SamplingParams(**settings.vllm(seed))
        self.lora = LoRARequest("adapter", 1, str(adapter)) if adapter else None

    def __call__(self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[list[Any]]) -> list[str]:
        requests = vllm_requests(self.processor, prompts, images, self.family, self.chat_kwargs)
        outputs = self.llm.generate(requests, self.params, lora_request=self.lora, use_tqdm=False)
        return [self.prefix + out.outputs[0].text for out in outputs]


def generate_predictions(
    backend: Callable[[Sequence[list[dict[str, Any]]], Sequence[list[Any]]], list[str]],
    dataset: Dataset,
    out_path: str | Path,
    *,
    batch_size: int,
    generator: str,
    reuse: Sequence[Path] = (),
    columns: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Generate with ``backend`` for every row of ``dataset`` (``id``, ``task``, ``prompt``, ``images``, ``solution``,
    ``demo_answer``).

    Each batch is appended to ``out_path`` as soon as it is done (id, task, prompt hash, generator, prediction,
    reference, demo answer, ``image_size`` (the frame rule's) and ``columns``: what ``experiments/score.py``
    needs); rows already there (or in the
    ``reuse`` files: the shards of an evaluation over several processes) for the same id, prompt and ``generator``
    (:func:`generator_id`) are kept and not generated again, so an interrupted evaluation resumes. Returns the
    predictions in dataset order.

    ``columns`` adds fields to every row: name -> {id: value}, None for an id without a value (evaluation adds
    ``mean_box_answer``, :mod:`lego_arta.evaluation.trivial`); kept rows get them anew.
    """
    out_path = Path(out_path)
    columns = columns or {}

    def extra(row_id: str) -> dict[str, Any]:
        return {name: values.get(row_id) for name, values in columns.items()}

    done = finished_predictions(out_path, dataset, generator, reuse)
    for row_id, row in done.items():
        row.update(extra(row_id))
    if done:
        log.info("resuming: %d of %d predictions already in %s", len(done), len(dataset), out_path)
    # rewrite the file with the kept rows only (drops rows of another prompt or generator, or a truncated line)
    out_path.write_text("".join(json.dumps(done[i]) + "\n" for i in dataset["id"] if i in done))
    todo = [i for i, row_id in enumerate(dataset["id"]) if row_id not in done]
    bar = tqdm(total=len(dataset), initial=len(done), desc="generate", unit="sample", dynamic_ncols=True)
    start, generated = time.perf_counter(), 0
    for lo in range(0, len(todo), batch_size):
        rows = dataset.select(todo[lo : lo + batch_size])
        answers = backend(rows["prompt"], rows["images"])
        for row, answer in zip(rows, answers, strict=True):
            record = {
                "id": row["id"],
                "task": row["task"],
                "prompt_hash": prompt_hash(row["prompt"]),
                "generator": generator,
                "prediction": answer,
                "reference": row["solution"],
                "demo_answer": row["demo_answer"],
                "image_size": row.get("image_size"),
                **extra(row["id"]),
            }
            append_jsonl(out_path, record)
            done[row["id"]] = record
        generated += len(answers)
        bar.update(len(answers))
        bar.set_postfix(samples_per_s=f"{generated / (time.perf_counter() - start):.2f}")
    bar.close()
    return [done[i] for i in dataset["id"]]
