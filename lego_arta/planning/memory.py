"""Peak GPU memory of one process, estimated from the architecture and the run's shapes: ``make plan``'s arithmetic.

An estimate, not a measurement: it counts the large tensors and ignores the allocator's fragmentation (``headroom``)
and small buffers (``overhead``). Sizes in bytes; per GPU (one data-parallel process) unless stated.

Symbols: ``P`` parameters of the model, ``P_t`` trainable (LoRA) parameters, ``G`` GPUs (data-parallel processes,
DeepSpeed ZeRO-2), ``L`` / ``h`` / ``i`` / ``kv`` / ``V`` the language model's layers / hidden size / MLP size /
key-value width (``kv_heads x head_dim``) / vocabulary, ``h_v`` / ``i_v`` the vision tower's hidden / MLP size,
``B`` sequences per micro-batch, ``T`` tokens per sequence (prompt with its visual tokens + completion), ``n`` image
patches of the batch (4 per visual token). Then::

    weights      = 2 P                                    bf16, not sharded by ZeRO-2
    lora         = 4 P_t + (4 + 4 + 8) P_t / G            fp32 adapter; its gradient, DeepSpeed's fp32 master copy and
                                                          Adam's two moments sharded by ZeRO-2
    per layer and token, the activations backward needs (2 bytes each; RMSNorm's fp32 copies count double):
      a = 12 h + 3 kv + 4 i                               norm in/out, q and k before and after RoPE, v, attention out;
                                                          MLP norm in/out, gate, up, silu(gate), their product
      a += 1.5 (6 h + i)   when lora_dropout > 0          each adapted projection keeps its dropped-out input + mask
    activations  = 2 a L B T                              without gradient checkpointing
                 = (2 h L + 2 a) B T                      with it: each layer's input, plus one layer recomputed
    logits       = 12 V B T_logits                        bf16 logits, their fp32 copy and log-softmax, bf16 gradient
                                                          (T_logits = T for SFT; completion + 1 for GRPO, TRL's
                                                          logits_to_keep)
    vision       = 2 n (4 h_v + 3 i_v)                    frozen tower: no graph, one block's working set at a time
    kv_cache     = 4 L kv S T                             K and V, bf16, for S sequences generated together
    prefill      = 2 S T (2 h + 2 kv + 3 i)               one layer's working set while the prompts are read

    train    = activations + logits + vision(B sequences' images)                    SFT, GRPO
    generate = kv_cache + prefill + vision(S sequences' images) + 4 V S              GRPO (S = per_device_train_batch
                                                                                     x steps_per_generation), eval
    peak     = weights + lora + max(train, generate) + overhead

Hybrid models (Qwen3.5: ``layer_types``, three linear-attention layers to one full-attention layer): of the
``L`` layers, ``L_a`` have full attention and ``L_l`` linear attention (Gated DeltaNet, with ``Q`` / ``K`` / ``Va``
the widths of its queries, keys and values: heads x head size). A linear-attention layer saves per token::

      a_l = 8 h + 2 (Q + K + Va) + 3 Va + 4 i             norms in/out, the qkv projection before and after its
                                                          convolution, the output gate, the rule's output, the
                                                          gated norm; the MLP as above

and caches no keys or values: its state is fixed per sequence, ``r = 4 Hv dk dv + 2 (Q + K + Va) c`` (the fp32
recurrent state of ``Hv`` value heads, the bf16 convolution window of ``c`` steps). Then ``2 a L`` above is
``2 a L_a + 2 a_l L_l``, ``2 a`` with checkpointing is the larger of the two, and
``kv_cache = 4 L_a kv S T + L_l r S``.

Attention is assumed to be FlashAttention-2 or a memory-efficient kernel (no ``T x T`` score matrix), as on the
study's GPUs. The vision tower and the logits of the 152k vocabulary are what a tiny model hides: at 2,600 visual
tokens per image a few-shot prompt holds 5,000-8,000 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GB = 1e9


@dataclass(frozen=True)
class Dims:
    """The sizes the estimate needs, read from the model config."""

    params: int
    trainable: int
    layers: int
    hidden: int
    intermediate: int
    kv: int
    vocab: int
    vision_hidden: int
    vision_intermediate: int
    # hybrid models: layers with full attention (the rest have linear attention; all of them when not hybrid), the
    # linear layers' qkv width (Q + K + Va), value width (Va) and fixed state per sequence in bytes (r)
    attention_layers: int = -1
    linear_qkv: int = 0
    linear_values: int = 0
    linear_state: int = 0

    @property
    def linear_layers(self) -> int:
        return self.layers - self.full_layers

    @property
    def full_layers(self) -> int:
        return self.layers if self.attention_layers < 0 else self.attention_layers

    @classmethod
    def from_config(cls, config: Any, params: int, trainable: int) -> Dims:
        """From a VLM config (``text_config`` / ``vision_config``; Qwen3.5's ``layer_types``) and the parameter
        counts."""
        text, vision = config.text_config, config.vision_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        hybrid: dict[str, int] = {}
        layer_types = getattr(text, "layer_types", None) or []
        if "linear_attention" in layer_types:
            keys = text.linear_num_key_heads * text.linear_key_head_dim
            values = text.linear_num_value_heads * text.linear_value_head_dim
            hybrid = {
                "attention_layers": sum(kind == "full_attention" for kind in layer_types),
                "linear_qkv": 2 * keys + values,
                "linear_values": values,
                "linear_state": 4 * text.linear_num_value_heads * text.linear_key_head_dim * text.linear_value_head_dim
                + 2 * (2 * keys + values) * text.linear_conv_kernel_dim,
            }
        return cls(
            params=params,
            trainable=trainable,
            layers=text.num_hidden_layers,
            hidden=text.hidden_size,
            intermediate=text.intermediate_size,
            kv=text.num_key_value_heads * head_dim,
            vocab=text.vocab_size,
            vision_hidden=vision.hidden_size,
            vision_intermediate=vision.intermediate_size,
            **hybrid,
        )


@dataclass(frozen=True)
class Workload:
    """What one process holds at once.

    ``train_seqs`` sequences of ``train_tokens`` tokens per training micro-batch (0: no training), of which
    ``logit_tokens`` get logits; ``gen_seqs`` sequences generated together up to ``gen_tokens`` (0: no generation);
    ``train_patches`` / ``gen_patches`` the image patches of those batches.
    """

    train_seqs: int
    train_tokens: int
    logit_tokens: int
    train_patches: int
    gen_seqs: int
    gen_tokens: int
    gen_patches: int
    gradient_checkpointing: bool
    lora_dropout: bool


def activation_bytes_per_token_layer(d: Dims, lora_dropout: bool, linear: bool = False) -> float:
    """``2 a`` (``2 a_l`` with ``linear``): bytes of one layer's saved activations for one token (see the module
    docstring)."""
    if linear:
        a: float = 8 * d.hidden + 2 * d.linear_qkv + 3 * d.linear_values + 4 * d.intermediate
    else:
        a = 12 * d.hidden + 3 * d.kv + 4 * d.intermediate
    if lora_dropout:
        a += 1.5 * (6 * d.hidden + d.intermediate)
    return 2 * a


def estimate(d: Dims, w: Workload, gpus: int, overhead_gb: float) -> dict[str, float]:
    """Each term of the module docstring's formula in GB, and ``peak``."""
    per_layer = activation_bytes_per_token_layer(d, w.lora_dropout)
    per_linear = activation_bytes_per_token_layer(d, w.lora_dropout, linear=True) if d.linear_layers else 0.0
    tokens = w.train_seqs * w.train_tokens
    if w.gradient_checkpointing:
        activations = (2 * d.hidden * d.layers + max(per_layer, per_linear)) * tokens
    else:
        activations = (per_layer * d.full_layers + per_linear * d.linear_layers) * tokens
    terms = {
        "weights": 2 * d.params,
        "lora": (4 * d.trainable + 16 * d.trainable / gpus) if w.train_seqs else 0.0,
        "activations": activations,
        "logits": 12 * d.vocab * w.train_seqs * w.logit_tokens,
        "vision_train": 2 * w.train_patches * (4 * d.vision_hidden + 3 * d.vision_intermediate),
        "kv_cache": 4 * d.full_layers * d.kv * w.gen_seqs * w.gen_tokens
        + d.linear_layers * d.linear_state * w.gen_seqs,
        "prefill": 2 * w.gen_seqs * w.gen_tokens * (2 * d.hidden + 2 * d.kv + 3 * d.intermediate),
        "vision_generate": 2 * w.gen_patches * (4 * d.vision_hidden + 3 * d.vision_intermediate),
        "generate_logits": 4 * d.vocab * w.gen_seqs,
    }
    out = {k: v / GB for k, v in terms.items()}
    out["train"] = out["activations"] + out["logits"] + out["vision_train"]
    out["generate"] = out["kv_cache"] + out["prefill"] + out["vision_generate"] + out["generate_logits"]
    out["overhead"] = overhead_gb
    out["peak"] = out["weights"] + out["lora"] + max(out["train"], out["generate"]) + overhead_gb
    return out


def first_fit(
    d: Dims, candidates: list[tuple[str, Workload]], gpus: int, overhead_gb: float, limit_gb: float
) -> tuple[str, dict[str, float]] | None:
    """The first ``(knob, workload)`` whose estimated peak is at most ``limit_gb``: ``(knob, its estimate)``."""
    for knob, workload in candidates:
        result = estimate(d, workload, gpus, overhead_gb)
        if result["peak"] <= limit_gb:
            return knob, result
    return None
