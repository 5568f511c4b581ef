"""What the machine can do: CPU model and the instruction sets that matter for speed (AVX2,
AVX-512, AVX-512 BF16, AMX), threads, the GPU, and matrix-multiply peaks measured on the spot.

Speed figures are only meaningful beside the hardware they were measured on: machines of one
kind differ (some AVX2 only, some with AMX bf16 units), so benchmark scripts write
:func:`hardware_record` into their JSON and divide by :func:`gemm_peak` measured in the same
run, never by another machine's numbers.
"""

from __future__ import annotations

import os
import platform
import time
from functools import lru_cache
from typing import Any

import torch

__all__ = ["bf16_is_fast", "cpu_flags", "cpu_model", "gemm_peak", "hardware_record"]

#: The CPU flags (as Linux names them in /proc/cpuinfo) reported in a hardware record.
SPEED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    try:
        text = open("/proc/cpuinfo").read()  # noqa: SIM115 (read once, Linux only)
    except OSError:
        return {}
    first = text.split("\n\n", 1)[0]
    info = {}
    for line in first.splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is not readable."""
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 matrix multiplies run natively: CUDA GPUs that support bf16, CPUs with AMX
    or AVX-512 BF16. Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})
    return False


def gemm_peak(
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    size: int = 2048,
    seconds: float = 1.0,
) -> float:
    """Measured matrix-multiply throughput in TFLOP/s (``size`` x ``size`` by ``size`` x
    ``size``, best of the repetitions that fit in about ``seconds``), at the current thread
    count. A floor for "how fast could this machine do it"."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.mm(a, b)  # warm-up (kernel choice, page faults)
    sync()
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return 2 * size**3 / best / 1e12


def hardware_record(measure: bool = True) -> dict[str, Any]:
    """The machine as a JSON-ready dict; with ``measure`` the fp32 and bf16 GEMM peaks of the
    CPU (and of the GPU when there is one), measured now."""
    flags = cpu_flags()
    record: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": sorted(flag for flag in SPEED_FLAGS if flag in flags),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "bf16_fast_on_cpu": bf16_is_fast(torch.device("cpu")),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if measure:
        record["gemm_tflops"] = {
            "cpu": {
                "fp32": gemm_peak(torch.float32, "cpu"),
                "bf16": gemm_peak(torch.bfloat16, "cpu"),
            }
        }
        if torch.cuda.is_available():
            record["gemm_tflops"]["cuda"] = {
                "fp32": gemm_peak(torch.float32, "cuda", size=8192),
                "bf16": gemm_peak(torch.bfloat16, "cuda", size=8192),
            }
    return record
