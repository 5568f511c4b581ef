"""The hardware record speed figures are written beside (``robustbench_cgn.hardware``)."""

from __future__ import annotations

import json

import torch

from robustbench_cgn import hardware


def test_bf16_is_fast_only_with_amx_or_avx512_bf16(monkeypatch):
    cpu = torch.device("cpu")
    for flags, fast in [("fpu avx2 fma", False), ("avx512f avx512_bf16", True), ("amx_bf16", True)]:
        monkeypatch.setattr(hardware, "_cpuinfo", lambda flags=flags: {"flags": flags})
        assert hardware.bf16_is_fast(cpu) is fast
        assert hardware.cpu_flags() == frozenset(flags.split())


def test_gemm_peak_is_measured_in_tflops():
    peak = hardware.gemm_peak(torch.float32, "cpu", size=256, seconds=0.05)
    assert 1e-4 < peak < 100  # a 2-core CPU does between 0.1 GFLOP/s and 100 TFLOP/s


def test_record_is_json_with_the_flags_that_matter(monkeypatch):
    monkeypatch.setattr(
        hardware, "_cpuinfo", lambda: {"model name": "Test CPU", "flags": "avx2 sse"}
    )
    record = hardware.hardware_record(measure=False)
    json.dumps(record)
    assert record["cpu"] == "Test CPU" and record["cpu_flags"] == ["avx2"]
    assert record["threads"] == torch.get_num_threads() and "gemm_tflops" not in record
