"""GPU memory: what a run frees between its stages and the peak it records for each."""

from __future__ import annotations

import gc

import torch


def free_memory() -> None:
    """Collect what nothing references any more (the trainer, its optimizer, the training copy of the model: they hold
    reference cycles) and hand the freed GPU memory back to the driver, so that vLLM, which loads its own copy of the
    weights, finds it free."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_gpu_memory(stage: str) -> dict[str, float]:
    """``{"memory/<stage>_peak_gib": ...}``: the most memory torch held allocated on this process's GPU since the last
    call (GiB), then the count starts again; ``{}`` without CUDA. A run records ``load`` (the weights), ``train`` and
    ``eval`` (weights included), to set beside ``make plan``'s lines; the plan's peak also counts
    ``plan.overhead_gb`` for the CUDA context and the allocator's cache, which torch's count leaves out."""
    if not torch.cuda.is_available():
        return {}
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return {f"memory/{stage}_peak_gib": peak}
