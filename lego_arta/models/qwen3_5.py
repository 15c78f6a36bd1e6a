"""Qwen3.5 (natively multimodal, e.g. Qwen/Qwen3.5-9B): its LoRA targets, reasoning switch and tiny offline model
(:class:`Qwen3_5`); the image budget, the 0-1000 box frame and the vision side are Qwen3-VL's
(:mod:`lego_arta.models.qwen3_vl`: 16 px patches, 2 x 2 merged, the same processor classes).

Its language model mixes two layer kinds, three linear-attention (Gated DeltaNet) layers to one full-attention layer
(``layer_types`` in the checkpoint's config). A linear-attention layer's projections are ``linear_attn.in_proj_qkv``
(queries, keys and values of the delta rule), ``in_proj_z`` (the output gate), ``in_proj_a`` / ``in_proj_b`` (the
per-head decay and write strength) and ``out_proj``; a full-attention layer has ``self_attn.q_proj`` (queries and
their gate) / ``k_proj`` / ``v_proj`` / ``o_proj``. The LoRA targets are every one of them and the MLPs: the study's
recipe is every linear projection of the language model (:attr:`Family.lora_targets`), and a regex of q/k/v/o alone
would adapt the attention of one layer in four. ``in_proj_a`` / ``in_proj_b`` have one output per value head (32 in
the 9B), so rank 8 is not low there; they hold 0.2 % of the adapter's parameters and are kept for the recipe's sake.

The chat template (TRL's ``qwen3_5_think.jinja``, the one Qwen3.5-4B and larger ship) ends the generation prompt with
``<think>\\n`` unless ``enable_thinking`` is false, where it ends with an empty ``<think>\\n\\n</think>\\n\\n``. Either
way the model's completion does not start with ``<think>``; the project passes ``enable_thinking=data.reasoning`` on
purpose, and what the template put after ``<|im_start|>assistant\\n`` is given back to the completion before any
reward or metric reads it (:func:`lego_arta.models.generation_prefix`), so the study's format reward pays a
reasoning answer that follows the format.
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration
from trl.chat_template_utils import qwen3_5_think_chat_template

from lego_arta.models.qwen3_vl import Qwen3_VL


class Qwen3_5(Qwen3_VL):
    """Qwen3.5 (``model.family=qwen3_5``): Qwen3-VL's budget and frame; LoRA also on the linear-attention layers;
    ``enable_thinking`` set from ``data.reasoning``."""

    name = "qwen3_5"
    lora_targets = (
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|in_proj_qkv|in_proj_z|in_proj_a|in_proj_b|out_proj"
        r"|gate_proj|up_proj|down_proj)"
    )

    tiny_classes = (Qwen3_5Config, Qwen3_5ForConditionalGeneration, qwen3_5_think_chat_template)

    def chat_template_kwargs(self, reasoning: bool) -> dict[str, Any]:
        return {"enable_thinking": bool(reasoning)}
