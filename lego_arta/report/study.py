"""The study's own Table 1, as reported (Qwen2.5-VL-7B-Instruct, LEGO-ARTA test split), for comparison beside ours.

These are the study's published numbers, not results of this project: keep them labelled as such (``STUDY_LABEL``).
Values are x100, single runs without confidence intervals.

>>> STUDY_TABLE1["SFT (LoRA r8)"]["f1_state"]
100.0
>>> list(STUDY_TABLE1)
['base, few-shot', 'SFT (LoRA r8)', 'GRPO (LoRA r8)']
"""

from __future__ import annotations

from typing import Final

STUDY_LABEL: Final = "study (Qwen2.5-VL-7B, reported)"

# row label -> metric key (the `eval/<key>` of metrics.json) -> value x100
STUDY_TABLE1: Final[dict[str, dict[str, float]]] = {
    "base, few-shot": {
        "f1_theme": 31.55,
        "rouge": 27.37,
        "bleu": 4.94,
        "f1_object": 59.35,
        "iou": 60.82,
        "f1_state": 38.55,
        "fpr": 30.19,
    },
    "SFT (LoRA r8)": {
        "f1_theme": 57.16,
        "rouge": 52.99,
        "bleu": 24.35,
        "f1_object": 81.14,
        "iou": 14.16,
        "f1_state": 100.00,
        "fpr": 0.00,
    },
    "GRPO (LoRA r8)": {
        "f1_theme": 22.21,
        "rouge": 18.99,
        "bleu": 2.72,
        "f1_object": 62.96,
        "iou": 65.49,
        "f1_state": 39.66,
        "fpr": 36.18,
    },
}
