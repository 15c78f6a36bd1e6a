"""``make plan``: will this run fit, before any GPU time. No weights are read and no GPU is needed.

The model is built on the meta device from the checkpoint's ``config.json`` with the run's LoRA; the processor and
tokenizer come from the checkpoint's files; the prompts are the data layer's, few-shot demos and reasoning prefix
included, over the split the run reads (or, without ``data.root``, one stated example per task with every image at
``plan.image_size``). The memory figure is :mod:`lego_arta.planning.memory`'s estimate (its docstring has the formula).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, open_dict
from PIL import Image
from transformers import ProcessorMixin
from trl.data_utils import apply_chat_template

from lego_arta.data import GROUNDING_QUERY, PUBLISHED_COUNTS, STATE_QUERY, Record, build_rows, load_data
from lego_arta.models import Family, family
from lego_arta.models.loading import ModelPathError, load_processor, resolve_model_path
from lego_arta.planning.memory import GB, Dims, Workload, estimate, first_fit
from lego_arta.planning.meta import empty_model, parameter_counts, with_lora

log = logging.getLogger(__name__)


def model_files(cfg: DictConfig) -> tuple[str, str]:
    """The dir whose config/processor/tokenizer files the plan reads, and what it is.

    ``model.path`` when it is a local dir (or the tiny model, built when ``model.path`` is null), else ``model.files``
    (the checkpoint's small files without weights, e.g. tests/fixtures/qwen2_5_vl_7b for the 7B).
    """
    path = cfg.model.path
    if path is None or Path(str(path)).expanduser().is_dir():
        return resolve_model_path(cfg.model, cfg.paths.cache_dir), "model.path"
    if cfg.model.files is None:
        raise ModelPathError(
            f"model.path={path} is not a local dir and model.files is not set: the plan needs the checkpoint's "
            "config.json and processor files (no weights)"
        )
    return str(cfg.model.files), "model.files: the checkpoint's config and processor files, no weights (README.txt)"


@dataclass
class Prompt:
    """One prompt as the run builds it: its task, text tokens (one per image placeholder), image sizes, answer."""

    task: str
    text_tokens: int
    image_sizes: list[tuple[int, int]]  # (width, height)
    completion_tokens: int

    def tokens(self, vlm: Family) -> int:
        """All prompt tokens: each image placeholder expands to the image's tokens (the family's count)."""
        return self.text_tokens + sum(vlm.image_tokens(w, h) for w, h in self.image_sizes) - len(self.image_sizes)

    def visual(self, vlm: Family) -> list[int]:
        """Visual tokens of each image."""
        return [vlm.visual_tokens(w, h) for w, h in self.image_sizes]

    def patches(self, vlm: Family) -> int:
        """Patches the vision tower sees for all the prompt's images."""
        return sum(vlm.vision_patches(w, h) for w, h in self.image_sizes)


def count_prompt(
    processor: ProcessorMixin,
    row: dict[str, Any],
    image_sizes: list[tuple[int, int]],
    chat_kwargs: dict[str, Any] | None = None,
) -> Prompt:
    """A dataset row (``build_rows``) as TRL renders it (with the family's ``chat_kwargs``): prompt text tokens and
    the SFT completion's tokens."""
    example = {"prompt": row["prompt"], "completion": row["completion"], "chat_template_kwargs": chat_kwargs or {}}
    rendered = apply_chat_template(example, processor)
    tokenizer = processor.tokenizer
    text = len(tokenizer(rendered["prompt"], add_special_tokens=False)["input_ids"])
    completion = len(tokenizer(rendered["completion"], add_special_tokens=False)["input_ids"])
    return Prompt(row["task"], text, image_sizes, completion)


def example_records(cfg: DictConfig, tasks: list[str]) -> tuple[list[Record], list[Record]]:
    """One stated record per task (``plan.example``) and its demo pool (a previous step; a Yes and a No for state)."""
    ex = cfg.plan.example
    image = "example.png"

    def rec(task: str, n: int, query: str, solution: str, context: str = "") -> Record:
        rid = f"example/{task}/{n}"
        where: dict[str, Any] = {"id": rid, "group_id": rid, "manual_id": "example", "image": image, "step_num": n}
        return Record(task=task, query=query, solution=solution, context=context, **where)

    records, pool = [], []
    for task in tasks:
        if task == "object":
            records.append(rec(task, 2, ex.object.query, ex.object.solution))
            pool.append(rec(task, 1, ex.object.query, ex.object.solution))
        elif task == "grounding":
            records.append(rec(task, 2, GROUNDING_QUERY, ex.grounding.solution, ex.grounding.previous))
            pool.append(rec(task, 1, GROUNDING_QUERY, ex.grounding.previous, ex.grounding.previous))
        else:
            records.append(rec(task, 3, STATE_QUERY, "Yes"))
            pool += [rec(task, 1, STATE_QUERY, "Yes"), rec(task, 2, STATE_QUERY, "No")]
    return records, pool


def collect_prompts(cfg: DictConfig, processor: ProcessorMixin, trains: bool) -> tuple[list[Prompt], str]:
    """The run's prompts (the training split when it trains, else the test split), and where they came from."""
    data_cfg = cfg.data
    chat_kwargs = family(cfg.model).chat_template_kwargs(bool(cfg.data.reasoning))
    if cfg.data.root is None and cfg.data.hub is None and not cfg.data.synthetic:
        tasks = [t for t in cfg.data.tasks if not (trains and cfg.method.tasks) or t in cfg.method.tasks]
        records, pool = example_records(cfg, tasks)
        width, height = (int(v) for v in cfg.plan.image_size)
        rows = build_rows(records, pool, data_cfg, int(cfg.seed), family(cfg.model).image_frame((width, height)))
        prompts = [count_prompt(processor, row, [(width, height)] * len(row["images"]), chat_kwargs) for row in rows]
        source = (
            f"data.root is not set: one stated prompt per task (plan.example), every image at the stated largest "
            f"page size {width}x{height} (plan.image_size)"
        )
        return prompts, source
    data = load_data(cfg)
    records = data.test
    if trains:
        records = [r for r in data.train if not cfg.method.tasks or r.task in cfg.method.tasks]
    if cfg.plan.max_records is not None:
        records = records[: int(cfg.plan.max_records)]
    rows = build_rows(records, data.train, data_cfg, int(cfg.seed), family(cfg.model).image_frame())
    sizes: dict[str, tuple[int, int]] = {}
    prompts = []
    for row in rows:
        for path in row["images"]:
            if path not in sizes:
                with Image.open(path) as img:
                    sizes[path] = img.size
        prompts.append(count_prompt(processor, row, [sizes[p] for p in row["images"]], chat_kwargs))
    split = "training" if trains else "test"
    return prompts, f"{len(prompts)} {split} prompts of {data.root} ({len(sizes)} distinct images, real sizes)"


@dataclass(frozen=True)
class Shape:
    """The knobs that set the memory shapes of a run; ``trainer_args`` resolves TRL's own defaults."""

    method: str
    per_device: int
    accumulation: int
    steps_per_generation: int
    num_generations: int
    completion: int
    checkpointing: bool
    eval_batch: int
    eval_new_tokens: int
    after_train: bool
    vlm: Family  # the model family, bound to the image budget
    lora_dropout: bool
    vllm_share: float = 0.0  # GRPO with TRL's colocated vLLM: its vllm_gpu_memory_utilization (0: no vLLM)


def run_shape(cfg: DictConfig) -> Shape:
    """The run's shapes, read from the TRL config the run would build (bf16 off: it changes no shape here)."""
    method = str(cfg.method.name)
    shape: dict[str, Any] = {
        "per_device": 0,
        "accumulation": 1,
        "steps_per_generation": 0,
        "num_generations": 0,
        "completion": 0,
    }
    checkpointing = False
    if method in ("sft", "grpo"):
        from lego_arta.methods import trainer_config

        cpu_cfg = copy.deepcopy(cfg)
        with open_dict(cpu_cfg):
            cpu_cfg.method.args.bf16 = False
        args: Any = trainer_config(cpu_cfg, Path(cfg.paths.output_dir))  # SFTConfig or GRPOConfig
        shape |= {"per_device": args.per_device_train_batch_size, "accumulation": args.gradient_accumulation_steps}
        if method == "grpo":
            shape |= {
                "steps_per_generation": args.steps_per_generation,
                "num_generations": args.num_generations,
                "completion": args.max_completion_length,
            }
            if args.use_vllm and args.vllm_mode == "colocate":
                shape["vllm_share"] = float(args.vllm_gpu_memory_utilization)
        checkpointing = bool(args.activation_checkpointing)
    return Shape(
        method=method,
        checkpointing=checkpointing,
        eval_batch=int(cfg.eval.batch_size),
        eval_new_tokens=int(cfg.eval.max_new_tokens),
        after_train=bool(cfg.eval.after_train),
        vlm=family(cfg.model),
        lora_dropout=method != "none" and cfg.method.lora is not None and float(cfg.method.lora.lora_dropout) > 0,
        **shape,
    )


def workload(shape: Shape, prompts: list[Prompt]) -> Workload:
    """The largest prompt in every sequence of every batch: the peak a run reaches on its longest prompts."""
    longest = max(p.tokens(shape.vlm) for p in prompts)
    patches = max(p.patches(shape.vlm) for p in prompts)
    answer = max(p.completion_tokens for p in prompts)
    train_seqs = train_tokens = logit_tokens = gen_seqs = gen_tokens = 0
    if shape.method == "sft":
        train_seqs, train_tokens, logit_tokens = shape.per_device, longest + answer, longest + answer
    if shape.method == "grpo":
        train_seqs, train_tokens, logit_tokens = shape.per_device, longest + shape.completion, shape.completion + 1
        gen_seqs, gen_tokens = shape.per_device * shape.steps_per_generation, longest + shape.completion
    if shape.method == "none" or shape.after_train:
        eval_tokens = longest + shape.eval_new_tokens
        if shape.eval_batch * eval_tokens > gen_seqs * gen_tokens:
            gen_seqs, gen_tokens = shape.eval_batch, eval_tokens
    return Workload(
        train_seqs=train_seqs,
        train_tokens=train_tokens,
        logit_tokens=logit_tokens,
        train_patches=patches * train_seqs,
        gen_seqs=gen_seqs,
        gen_tokens=gen_tokens,
        gen_patches=patches * gen_seqs,
        gradient_checkpointing=shape.checkpointing,
        lora_dropout=shape.lora_dropout,
    )


def knobs(shape: Shape, gpus: int) -> list[tuple[str, Shape]]:
    """Changes to try, in order, each on top of the ones before: the verdict names the first set that fits.

    Gradient checkpointing on; a halved micro-batch with doubled accumulation (same effective batch); GRPO: fewer
    micro-batches generated at once (``steps_per_generation``, as long as a generation batch still holds whole
    groups of ``num_generations``); a halved evaluation batch; a half, a quarter, an eighth of the visual tokens per
    image (the family's smaller budget: fewer pixels, or fewer tiles).
    """
    out: list[tuple[str, Shape]] = []
    done: dict[str, object] = {}

    def add(new: Shape, **overrides: object) -> Shape:
        done.update({f"{k.replace('__', '.')}": v for k, v in overrides.items()})
        out.append((" ".join(f"{k}={v}" for k, v in done.items()), new))
        return new

    trains, grpo = shape.method != "none", shape.method == "grpo"
    if trains and not shape.checkpointing:
        shape = add(replace(shape, checkpointing=True), method__args__activation_checkpointing="true")
    while trains and shape.per_device > 1:
        b, acc = shape.per_device // 2, shape.accumulation * 2
        spg = shape.steps_per_generation * 2 if grpo else 0
        shape = replace(shape, per_device=b, accumulation=acc, steps_per_generation=spg)
        shape = add(shape, method__args__per_device_train_batch_size=b, method__args__gradient_accumulation_steps=acc)
    least = -(-shape.num_generations // max(shape.per_device * gpus, 1)) if grpo else 0
    while grpo and shape.steps_per_generation // 2 >= max(least, 1):
        spg = shape.steps_per_generation // 2
        shape = add(replace(shape, steps_per_generation=spg), method__args__steps_per_generation=spg)
    while shape.eval_batch > 1 and (not trains or shape.after_train):
        shape = add(replace(shape, eval_batch=shape.eval_batch // 2), eval__batch_size=shape.eval_batch // 2)
    for divisor in (2, 4, 8):
        smaller, overrides = shape.vlm.smaller(divisor)
        add(replace(shape, vlm=smaller), **{f"model__{key}": value for key, value in overrides.items()})
    return out


def percentiles(values: list[int]) -> dict[str, int]:
    """p50 / p90 / p99 / max (nearest rank)."""
    arr = np.asarray(values)
    return {f"p{q}": int(np.percentile(arr, q, method="higher")) for q in (50, 90, 99)} | {"max": int(arr.max())}


def judge(dims: Dims, shape: Shape, prompts: list[Prompt], gpus: int, overhead_gb: float, limit_gb: float) -> str:
    """ "fits", or the first set of :func:`knobs` with which the estimated peak fits in ``limit_gb``."""
    peak = estimate(dims, workload(shape, prompts), gpus, overhead_gb)["peak"]
    if peak <= limit_gb:
        return "fits"
    candidates = [(knob, workload(s, prompts)) for knob, s in knobs(shape, gpus)]
    found = first_fit(dims, candidates, gpus, overhead_gb, limit_gb)
    if found:
        return f"does not fit; it would with {found[0]} (estimated peak {found[1]['peak']:.1f} GB)"
    return (
        "does not fit even with one sequence at a time and an eighth of the visual tokens; the weights alone take "
        f"{2 * dims.params / 1e9:.1f} GB: use a larger GPU or shard the weights (DeepSpeed ZeRO-3)"
    )


def wall_time(cfg: DictConfig, tasks: list[str], test_records: int | None) -> dict[str, Any]:
    """The run's wall time: ``max_steps`` x the measured seconds per step of ``plan.gpu`` for this experiment, plus
    each validation's and the final evaluation's answers x ``plan.answer_seconds`` (an upper bound); the knobs to turn
    when it passes ``plan.time_limit_min``. Unknown parts are None (no measured figure for this GPU or experiment).

    ``test_records``: the test split's size when the data were read, else the published counts' ``split.test_size``
    share.
    """
    gpu, plan = str(cfg.plan.gpu), cfg.plan
    per_step = plan.step_seconds.get(gpu, {}).get(str(cfg.experiment_name))  # measured figures: absent = unknown
    per_answer = plan.answer_seconds.get(gpu)
    trains = cfg.method.name != "none"
    steps = int(cfg.method.args.max_steps) if trains else 0
    val = cfg.eval.val
    validations = steps // int(val.every_steps) if trains and int(val.every_steps) > 0 else 0
    val_answers = validations * int(val.limit) * len(tasks) if val.limit else None
    if test_records is None:
        test_records = sum(round(float(cfg.split.test_size) * PUBLISHED_COUNTS[t]) for t in tasks)
    if cfg.eval.limit:
        test_records = min(test_records, int(cfg.eval.limit) * len(tasks))
    test_answers = test_records if (not trains or cfg.eval.after_train) else 0
    train_s: float | None = 0.0  # a run that does not train
    if trains:
        train_s = steps * float(per_step) if per_step is not None else None
    answers = (val_answers or 0) + test_answers
    eval_s = answers * float(per_answer) if per_answer is not None else None
    total = train_s + eval_s if train_s is not None and eval_s is not None else None
    limit_s = float(plan.time_limit_min) * 60
    # past the limit by the whole estimate, or by the training alone when the answers have no measured rate
    known = total if total is not None else train_s
    requeues = max(0, math.ceil(known / limit_s) - 1) if known is not None else 0
    return {
        "gpu": gpu,
        "train_s": train_s,
        "seconds_per_step": per_step,
        "steps": steps,
        "validations": validations,
        "validation_answers": val_answers,
        "test_answers": test_answers,
        "answer_s": per_answer,
        "eval_s": eval_s,
        "total_s": total,
        "time_limit_s": limit_s,
        "requeues": requeues,
    }


def make_plan(cfg: DictConfig) -> dict[str, Any]:
    """Everything ``experiments/plan.py`` prints: counts, token statistics, the memory estimate and the verdict."""
    files, files_from = model_files(cfg)
    processor = load_processor(files, cfg.model)
    model = empty_model(files)
    config = model.config
    total, _ = parameter_counts(model)
    trains = cfg.method.name != "none"
    trainable = 0
    if trains:
        _, trainable = parameter_counts(with_lora(model, cfg.method.lora, cfg.model))
    dims = Dims.from_config(config, params=total, trainable=trainable)
    prompts, source = collect_prompts(cfg, processor, trains)
    stated = source.startswith("data.root is not set")  # the stated example prompts, not a split that was read
    shape = run_shape(cfg)
    w = workload(shape, prompts)
    gpus, limit = int(cfg.plan.gpus), float(cfg.plan.gpu_memory_gb) * float(cfg.plan.headroom)
    overhead = float(cfg.plan.overhead_gb)
    memory = estimate(dims, w, gpus, overhead)
    no_checkpointing = estimate(dims, replace(w, gradient_checkpointing=False), gpus, overhead)["activations"]
    verdict = judge(dims, shape, prompts, gpus, overhead, limit)
    visual = [v for p in prompts for v in p.visual(shape.vlm)]
    prompt_tokens = [p.tokens(shape.vlm) for p in prompts]
    result: dict[str, Any] = {
        "experiment": cfg.experiment_name,
        "method": shape.method,
        "model": cfg.model.name,
        "model_files": files,
        "model_files_from": files_from,
        "params_total": total,
        "params_trainable": trainable,
        "lora": trains and cfg.method.lora is not None,
        "vocab": dims.vocab,
        "family": shape.vlm.name,
        "image_budget": shape.vlm.budget(),
        "image_budget_text": shape.vlm.describe_budget(),
        "prompts_from": source,
        "visual_tokens_per_image": percentiles(visual),
        "prompt_tokens": percentiles(prompt_tokens),
        "images_per_prompt_max": max(len(p.image_sizes) for p in prompts),
        "by_task": {
            task: {
                "images": max(len(p.image_sizes) for p in prompts if p.task == task),
                "prompt_tokens_max": max(t for p, t in zip(prompts, prompt_tokens, strict=True) if p.task == task),
            }
            for task in sorted({p.task for p in prompts})
        },
        "shape": {k: v for k, v in shape.__dict__.items() if k != "vlm"},
        "workload": w.__dict__,
        "gpus": gpus,
        "gpu_memory_gb": float(cfg.plan.gpu_memory_gb),
        "usable_gb": limit,
        "memory_gb": memory,
        "activations_without_checkpointing_gb": no_checkpointing,
        "verdict": verdict,
        "wall_time": wall_time(cfg, sorted({p.task for p in prompts}), None if trains or stated else len(prompts)),
    }
    if shape.vllm_share:
        result["vllm"] = vllm_share(dims, w, float(cfg.plan.gpu_memory_gb), shape.vllm_share)
    if shape.method == "grpo":
        completions = shape.per_device * shape.accumulation * gpus
        mean_prompt = float(np.mean(prompt_tokens))
        result["grpo_step"] = {
            "completions": completions,
            "prompts": completions // shape.num_generations,
            "completion_tokens_max": completions * shape.completion,
            "tokens_mean_prompt": int(completions * (mean_prompt + shape.completion)),
            "tokens_longest_prompt": completions * (max(prompt_tokens) + shape.completion),
        }
    return result


def vllm_share(dims: Dims, w: Workload, gpu_gb: float, utilization: float) -> dict[str, Any]:
    """What TRL's colocated vLLM engine needs of its share of the GPU (``vllm_gpu_memory_utilization``): its own bf16
    copy of the weights and the KV cache of one generation batch (the memory formula's ``kv_cache``)."""
    share = gpu_gb * utilization
    weights = 2 * dims.params / GB
    kv = estimate(dims, w, 1, 0.0)["kv_cache"]
    return {"share_gb": share, "weights_gb": weights, "kv_cache_gb": kv, "fits": weights + kv <= share}


def format_plan(r: dict[str, Any]) -> str:
    """The plan as the lines ``make plan`` prints."""
    m, s, w = r["memory_gb"], r["shape"], r["workload"]
    pct = r["prompt_tokens"]
    trainable = r["params_trainable"]
    trained = "LoRA" if r["lora"] else "trained parameters"  # what the trainer's optimizer holds
    lines = [
        f"plan for experiment {r['experiment']} ({r['method']}), model {r['model']}: ESTIMATE, no weights read",
        f"  model files: {r['model_files']}  [{r['model_files_from']}]",
        f"  parameters: {r['params_total']:,} total, {trainable:,} trainable"
        + (
            f" ({100 * trainable / r['params_total']:.3f}%, {'LoRA' if r['lora'] else 'full fine-tuning'})"
            if trainable
            else " (no training)"
        ),
        f"  prompts: {r['prompts_from']}",
        f"  visual tokens per image at {r['image_budget_text']}: " + _stats(r["visual_tokens_per_image"]),
        "  prompt tokens (few-shot demos, visual tokens included): "
        + _stats(pct)
        + f"; up to {r['images_per_prompt_max']} images per prompt",
        "  by task: "
        + "; ".join(f"{t} {v['images']} images, {v['prompt_tokens_max']:,} tokens" for t, v in r["by_task"].items()),
    ]
    if "grpo_step" in r:
        g = r["grpo_step"]
        lines.append(
            f"  GRPO optimizer step on {r['gpus']} GPU(s): {g['completions']} completions ({g['prompts']} prompts x "
            f"{s['num_generations']} generations), completion tokens <= {g['completion_tokens_max']:,}, tokens "
            f"~{g['tokens_mean_prompt']:,} (mean prompt) to {g['tokens_longest_prompt']:,} (longest prompt)"
        )
    lines.append(f"  peak GPU memory per device on {r['gpus']} GPU(s), GB, ESTIMATE (lego_arta/planning/memory.py):")
    lines.append(_row(f"weights, bf16 ({r['params_total']:,} parameters)", m["weights"]))
    if trainable:
        lines.append(_row(f"{trained} fp32 + gradient, master, Adam (ZeRO-2 over {r['gpus']})", m["lora"]))
    if w["train_seqs"]:
        gc = "on" if w["gradient_checkpointing"] else "off"
        off = r["activations_without_checkpointing_gb"]
        lines += [
            f"    training micro-batch: {w['train_seqs']} x {w['train_tokens']:,} tokens, gradient checkpointing {gc}",
            _row("  activations", m["activations"], f"(checkpointing off: {off:.2f})" if gc == "on" else ""),
            _row(f"  logits, {r['vocab']:,} vocab x {w['logit_tokens']:,} tokens", m["logits"]),
            _row("  vision tower (frozen, transient)", m["vision_train"]),
        ]
    if w["gen_seqs"]:
        what = "GRPO rollouts, evaluation" if s["method"] == "grpo" else "evaluation"
        lines += [
            f"    generation ({what}): {w['gen_seqs']} x {w['gen_tokens']:,} tokens",
            _row("  KV cache", m["kv_cache"]),
            _row("  prefill working set", m["prefill"]),
            _row("  vision tower (transient)", m["vision_generate"]),
        ]
    lines += [
        _row("overhead (CUDA context, allocator)", m["overhead"]),
        _row(f"peak = weights + {trained} + max(training, generation) + overhead", m["peak"])
        + f"  of {r['usable_gb']:.1f} usable ({r['gpu_memory_gb']:.0f} GB x plan.headroom)",
        f"  verdict: {r['verdict']}",
    ]
    if "vllm" in r:
        v = r["vllm"]
        lines.append(
            f"  vLLM colocate share ({v['share_gb']:.1f} GB, method.args.vllm_gpu_memory_utilization): weights "
            f"{v['weights_gb']:.2f} + KV cache {v['kv_cache_gb']:.2f} GB: "
            + ("fits" if v["fits"] else "does NOT fit (a smaller model, or raise the share)")
        )
    lines += _wall_time_lines(r["wall_time"])
    return "\n".join(lines)


def _wall_time_lines(t: dict[str, Any]) -> list[str]:
    hours = t["time_limit_s"] / 3600
    if t["train_s"] is None:
        return [f"  wall time: no measured step time for this experiment on {t['gpu']} (plan.step_seconds)"]
    lines = [
        f"  wall time on {t['gpu']}, ESTIMATE (conf/plan.yaml: measured figures): training {t['steps']} steps x "
        f"{t['seconds_per_step'] or 0:g} s = {t['train_s'] / 3600:.1f} h"
    ]
    if t["eval_s"] is not None:
        val = (
            f"{t['validation_answers']} validation answers ({t['validations']} validations) + "
            if t["validations"]
            else ""
        )
        lines.append(
            f"    + {val}{t['test_answers']:,} test answers x <= {t['answer_s']:g} s = <= {t['eval_s'] / 3600:.1f} h; "
            f"total <= {t['total_s'] / 3600:.1f} h"
        )
    if t["requeues"]:
        lines.append(
            f"  warning: past the Slurm time limit of {hours:.0f} h (plan.time_limit_min): it needs "
            f"{t['requeues']} requeue(s) (hydra.launcher.max_num_timeout, 3 by default); "
            "or raise hydra.launcher.timeout_min, or generate with vLLM (experiment=grpo_vllm)"
        )
    return lines


def _stats(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in values.items())


def _row(label: str, gb: float, note: str = "") -> str:
    return f"    {label:<62}{gb:8.2f}" + (f"  {note}" if note else "")
