"""`cgnbench selfcheck`: device readiness checks pass on a working device, failures are loud."""

import pytest
import torch
from conftest import run_cli

from robustbench_cgn import selfcheck


def test_selfcheck_passes_on_the_cpu():
    result = run_cli("selfcheck", "--device", "cpu")
    out = " ".join(result.stdout.split())
    assert "fp32 matmul" in out and "out-of-memory fallback" in out
    assert "failed" not in out and out.count(" ok ") >= 4


def test_a_failing_or_crashing_check_is_reported_not_raised(monkeypatch):
    def crashes(device):
        raise RuntimeError("driver gone")

    monkeypatch.setattr(
        selfcheck,
        "CHECKS",
        (
            ("works", lambda d: (True, "fine")),
            ("wrong", lambda d: (False, "off")),
            ("crash", crashes),
        ),
    )
    results = selfcheck.run_checks(torch.device("cpu"))
    assert [r.status for r in results] == ["ok", "failed", "failed"]
    assert "driver gone" in results[2].detail


def test_cuda_without_a_gpu_is_one_clear_line():
    # a CUDA request without CUDA is a clear one-line error, not a traceback
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli("selfcheck", "--device", "cuda", check=False)
    assert result.returncode == 2 and "no CUDA device" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_check_passes_on_the_gpu():
    results = selfcheck.run_checks(torch.device("cuda"))
    failed = [(r.name, r.detail) for r in results if r.status == "failed"]
    assert not failed, failed
    assert [r.status for r in results if r.name == "pinned memory copy"] == ["ok"]
