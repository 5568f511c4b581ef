"""A short readiness check of the compute device (``cgnbench selfcheck``).

Each check is small (well under a second on a GPU) and compares the device against the CPU in
float32 or against float32 on the same device, so a broken driver, a wrong CUDA build or a
precision mode that does not work on this device shows up before an hour-long run does. The
checks exercise exactly the features runs use: pinned host memory and asynchronous copies,
channels_last convolutions, bf16/fp16 autocast (fp16 with a gradient scaler), one training step
of a small CNN, and the out-of-memory fallback of batched inference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .oom import ChunkedPredictor


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok", "failed" or "skipped"
    detail: str
    seconds: float


def device_summary(device: torch.device) -> dict[str, str]:
    """What the check runs on: versions, the device name, its memory and capability."""
    info = {
        "torch": torch.__version__,
        "device": str(device),
        "cpu threads": str(torch.get_num_threads()),
        "cpu capability": torch.backends.cpu.get_cpu_capability(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["cuda runtime"] = str(torch.version.cuda)
        info["gpu"] = f"{props.name} (compute capability {props.major}.{props.minor})"
        info["gpu memory"] = f"{props.total_memory / 2**30:.1f} GiB"
        info["gpus visible"] = str(torch.cuda.device_count())
        info["bf16 supported"] = str(torch.cuda.is_bf16_supported())
    return info


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> tuple[bool, str]:
    err = (
        (a.float().cpu() - b.float().cpu()).norm() / b.float().cpu().norm().clamp_min(1e-12)
    ).item()
    return err <= rtol, f"relative error {err:.2e} (limit {rtol:.0e})"


def _small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def check_matmul(device: torch.device) -> tuple[bool, str]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(512, 512, generator=g), torch.randn(512, 512, generator=g)
    # TF32 may be on for CUDA matmuls: allow its 10-bit mantissa
    return _close(a.to(device) @ b.to(device), a.double() @ b.double(), 5e-3)


def check_pinned_copy(device: torch.device) -> tuple[bool, str]:
    if device.type != "cuda":
        return True, "skipped: pinned memory is for host-to-GPU copies"
    host = torch.arange(1 << 20, dtype=torch.float32).pin_memory()
    on_device = host.to(device, non_blocking=True)
    back = on_device.cpu()
    torch.cuda.synchronize(device)
    return bool(host.is_pinned() and torch.equal(back, host)), "4 MiB round trip, non_blocking"


def check_channels_last_conv(device: torch.device) -> tuple[bool, str]:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, padding=1).to(device)
    x = torch.randn(8, 16, 32, 32, device=device)
    ref = conv(x)
    conv_cl = conv.to(memory_format=torch.channels_last)
    out = conv_cl(x.contiguous(memory_format=torch.channels_last))
    ok, detail = _close(out, ref, 5e-3)
    return (
        ok,
        f"{detail}, output channels_last: {out.is_contiguous(memory_format=torch.channels_last)}",
    )


def _autocast_check(device: torch.device, dtype: torch.dtype) -> tuple[bool, str]:
    if device.type == "cpu" and dtype is torch.float16:
        return True, "skipped: fp16 autocast is CUDA only (use bf16 on the CPU)"
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return True, "skipped: this GPU has no bf16"
    torch.manual_seed(0)
    model = _small_cnn().to(device).eval()
    x = torch.randn(16, 3, 32, 32, device=device)
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast(device.type, dtype=dtype):
            out = model(x)
    ok, detail = _close(out, ref, 5e-2)
    return ok and out.dtype == dtype, f"{detail}, output {out.dtype}"


def check_training_step(device: torch.device) -> tuple[bool, str]:
    """One SGD step under the device's mixed precision (fp16 + GradScaler on CUDA): the loss
    must be finite and go down on the same batch."""
    torch.manual_seed(0)
    model = _small_cnn().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(32, 3, 16, 16, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,), device=device)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    losses = []
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    ok = all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    return (
        ok,
        f"{str(dtype).removeprefix('torch.')} autocast, loss {losses[0]:.3f} -> {losses[-1]:.3f}",
    )


def check_oom_fallback(device: torch.device) -> tuple[bool, str]:
    """A batch that 'does not fit' is split in halves and gives the same logits."""
    torch.manual_seed(0)
    model = _small_cnn().to(device).eval()
    x = torch.randn(64, 3, 16, 16, device=device)

    def predict(images):
        if images.shape[0] > 16:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return {"": model(images)}

    messages: list[str] = []
    with torch.inference_mode():
        out = ChunkedPredictor(predict, device, messages.append)(x)[""]
        ref = model(x)
    ok, detail = _close(out, ref, 1e-4)
    return ok and len(messages) == 2, f"{len(messages)} halvings to batch 16, {detail}"


CHECKS: tuple[tuple[str, Callable[[torch.device], tuple[bool, str]]], ...] = (
    ("fp32 matmul vs float64 on the CPU", check_matmul),
    ("pinned memory copy", check_pinned_copy),
    ("channels_last convolution", check_channels_last_conv),
    ("bf16 autocast inference", lambda d: _autocast_check(d, torch.bfloat16)),
    ("fp16 autocast inference", lambda d: _autocast_check(d, torch.float16)),
    ("mixed-precision training step", check_training_step),
    ("out-of-memory fallback", check_oom_fallback),
)


def run_checks(device: torch.device) -> list[CheckResult]:
    """Every check on ``device``; an exception is a failed check, never a crash."""
    results = []
    for name, check in CHECKS:
        start = time.perf_counter()
        try:
            ok, detail = check(device)
            status = "skipped" if detail.startswith("skipped") else ("ok" if ok else "failed")
        except Exception as exc:  # noqa: BLE001 - reported as the check's result
            status, detail = "failed", f"{type(exc).__name__}: {exc}"
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        results.append(CheckResult(name, status, detail, time.perf_counter() - start))
    return results
