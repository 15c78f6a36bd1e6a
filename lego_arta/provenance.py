"""What produced a run's digits: the machine, its numeric path and the library versions.

The same commit gives other digits on another CPU. torch picks its kernels by the CPU's capability
(``ATEN_CPU_CAPABILITY``: softmax, layer_norm, silu, SDPA, and ``torch.randn``'s draws), MKL its BLAS code path
(``MKL_CBWR``: mm, linear, bmm), oneDNN its instruction set (``ONEDNN_MAX_CPU_ISA``), and the number of compute threads
splits large sums differently. Over hundreds of training steps the rounding differences grow into other answers, so a
figure measured on a CPU names the path that produced it.

:func:`provenance` records the machine (CPU model, capability, BLAS and oneDNN builds, threads, the environment
variables that select kernels, the GPU), the versions of the training stack, and a **numeric fingerprint**: a hash of
each kernel family's output on fixed inputs (:func:`fingerprint`). Two runs with the same fingerprint ran the same
rounding; its ``rng`` part tells whether the random draws differ too. Every run writes it as ``provenance.json``
(:mod:`lego_arta.runs`), W&B gets it in the run's config, and the report prints it under Table 1.

>>> p = provenance()
>>> sorted(p) == sorted(PROVENANCE_KEYS)
True
>>> len(p["numeric_path"]), p["fingerprint"]["mm"] == fingerprint()["mm"]  # deterministic within a process
(8, True)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np

# environment variables that choose which kernels run, so which digits come out (recorded when set)
NUMERIC_ENV: Final = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
)
PACKAGES: Final = ("torch", "transformers", "trl", "peft", "accelerate", "numpy")
PROVENANCE_KEYS: Final = (
    "cpu",
    "cpu_count",
    "cpu_capability",
    "blas",
    "onednn",
    "threads",
    "env",
    "gpu",
    "platform",
    "python",
    "versions",
    "fingerprint",
    "numeric_path",
)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, where ``platform.processor()`` is empty or ``x86_64``;
    ``sysctl`` on macOS), else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(errors="replace"), re.MULTILINE)
        if match:
            return match.group(1).strip()
    if platform.system() == "Darwin":
        import subprocess

        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=False)
        if out.stdout.strip():
            return out.stdout.strip()
    return platform.processor() or platform.machine()


def _build_line(pattern: str) -> str | None:
    """The first line of ``torch.__config__.show()`` matching ``pattern`` (group 1), e.g. the MKL build."""
    import torch

    match = re.search(pattern, torch.__config__.show())
    return match.group(1).strip() if match else None


def _blas() -> str | None:
    """The BLAS torch was built with: ``MKL <version>`` (x86 wheels), else its ``BLAS_INFO`` (``open``, ...)."""
    mkl = _build_line(r"Math Kernel Library Version ([\d.]+)")
    return f"MKL {mkl}" if mkl else _build_line(r"BLAS_INFO=(\w+)")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _gpu() -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return {
        "name": torch.cuda.get_device_name(0),
        "count": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def _digest(tensor: Any) -> str:
    return hashlib.sha256(tensor.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:8]


def _kernels() -> dict[str, Callable[[], Any]]:
    """Each kernel family a tiny VLM's training runs, on fixed inputs drawn by numpy (torch's own draws depend on the
    CPU capability: they are the ``rng`` entry, not the inputs)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)

    def draw(*shape: int) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    a, b, w = draw(96, 160), draw(160, 80), draw(80, 160)
    q, k, v = draw(2, 4, 48, 16), draw(2, 4, 48, 16), draw(2, 4, 48, 16)
    x, big = draw(64, 192), draw(1 << 20)

    def rng_draw() -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(4096, generator=generator)

    return {
        "mm": lambda: a @ b,
        "linear": lambda: F.linear(a, w),
        "bmm": lambda: torch.bmm(q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2)),
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "softmax": lambda: torch.softmax(x, dim=-1),
        "layer_norm": lambda: F.layer_norm(x, (192,)),
        "silu": lambda: F.silu(x),
        "sum": lambda: big.sum().reshape(1),
        "rng": rng_draw,
    }


def fingerprint() -> dict[str, str]:
    """Per kernel family, the hash (8 hex digits) of its output on fixed inputs: the same hashes, the same rounding.

    ``rng`` hashes ``torch.randn``'s draws from a fixed seed: it differs where the random draws themselves differ.
    """
    import torch

    with torch.no_grad():
        return {name: _digest(kernel()) for name, kernel in _kernels().items()}


def numeric_path(prints: Mapping[str, str]) -> str:
    """One id (8 hex digits) for a whole fingerprint: the runs of one numeric path share it."""
    return hashlib.sha256(repr(sorted(prints.items())).encode()).hexdigest()[:8]


def provenance() -> dict[str, Any]:
    """The machine, numeric path and versions this process computes with (keys :data:`PROVENANCE_KEYS`)."""
    import torch

    prints = fingerprint()
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": _blas(),
        "onednn": _build_line(r"MKL-DNN v([\d.]+)"),
        "threads": torch.get_num_threads(),
        "env": {name: os.environ[name] for name in NUMERIC_ENV if name in os.environ},
        "gpu": _gpu(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": _versions(),
        "fingerprint": prints,
        "numeric_path": numeric_path(prints),
    }


def describe(prov: Mapping[str, Any]) -> str:
    """One line for a report: CPU, capability, BLAS, threads, kernel settings, GPU, numeric path id.

    >>> describe({"cpu": "AMD EPYC", "cpu_capability": "AVX2", "blas": "MKL 2024.2", "threads": 1,
    ...           "env": {"MKL_CBWR": "COMPATIBLE"}, "gpu": None, "numeric_path": "1a2b3c4d"})
    'AMD EPYC, AVX2, MKL 2024.2, 1 thread, MKL_CBWR=COMPATIBLE; numeric path 1a2b3c4d'
    """
    threads = prov.get("threads")
    parts = [
        str(prov.get("cpu")),
        str(prov.get("cpu_capability")),
        str(prov.get("blas")),
        f"{threads} thread{'s' if threads != 1 else ''}",
        *(f"{k}={v}" for k, v in sorted((prov.get("env") or {}).items())),
    ]
    gpu = prov.get("gpu")
    if gpu:
        parts.append(f"GPU {gpu.get('name')} x{gpu.get('count')}")
    return f"{', '.join(parts)}; numeric path {prov.get('numeric_path')}"
