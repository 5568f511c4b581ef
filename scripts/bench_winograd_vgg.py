"""Would Winograd convolutions make the CGN style loss's VGG cheaper on this CPU? (No.)

The MNIST CGN training step is bound by the frozen VGG16's 3x3 convolutions on 32x32 images
(``scripts/bench_cgn_training.py --roofline``: oneDNN's direct convolutions already run at
about the machine's fp32 GEMM peak). Winograd F(2x2, 3x3) does the same convolution with 2.25x
fewer multiply-accumulates; oneDNN offers it only on AVX-512 CPUs, so this script tries an
eager-PyTorch version (weights transformed once, input tiles transformed by strided slices,
16 batched GEMMs, output transform) against ``conv2d`` for the VGG layer shapes at batch 16:
forward without autograd (the real batch) and forward + input backward (the generated batch).
It prints the largest difference (the math is the same up to float rounding) and both times.

    python scripts/bench_winograd_vgg.py --threads 2 [--batch 16]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# F(2x2, 3x3) transforms (Lavin & Gray 2016): V = B^T d B, U = G g G^T, Y = A^T M A
_G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
VGG_LAYERS = [  # (in, out, size) of conv1_2 .. conv4_3 on a 32x32 input
    (64, 64, 32),
    (64, 128, 16),
    (128, 128, 16),
    (128, 256, 8),
    (256, 256, 8),
    (256, 256, 8),
    (256, 512, 4),
    (512, 512, 4),
    (512, 512, 4),
]


def winograd_weight(weight: Tensor) -> Tensor:
    """``[Cout, Cin, 3, 3]`` -> ``[16, Cin, Cout]`` (one GEMM operand per tile position)."""
    u = torch.einsum("ak,oikl,bl->abio", _G, weight.double(), _G)
    return u.reshape(16, weight.shape[1], weight.shape[0]).float().contiguous()


def _input_rows(t: Tensor, dim: int, n: int) -> list[Tensor]:
    """B^T along ``dim`` of a padded tensor: tiles of 4 at stride 2, as four strided slices."""
    index: list[slice] = [slice(None)] * t.dim()
    d = []
    for k in range(4):
        index[dim] = slice(k, k + n - 1, 2)
        d.append(t[tuple(index)])
    return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def winograd_conv3x3(x: Tensor, u: Tensor, bias: Tensor) -> Tensor:
    """``conv2d(x, w, bias, padding=1)`` (even H, W) via F(2x2, 3x3), ``u = winograd_weight(w)``."""
    n, c, h, w = x.shape
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # NHWC, free for channels_last
    tiles = [v for rows in _input_rows(padded, 1, h) for v in _input_rows(rows, 2, w)]
    m = torch.bmm(torch.stack(tiles, 0).reshape(16, -1, c), u).view(4, 4, n, h // 2, w // 2, -1)
    halves = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
    y = torch.stack([torch.stack([a[0] + a[1] + a[2], a[1] - a[2] - a[3]], 3) for a in halves], 2)
    return (y.reshape(n, h, w, -1) + bias).permute(0, 3, 1, 2)


def best_time(fn: Callable[[], object], repeats: int = 10) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def time_layer(cin: int, cout: int, size: int, batch: int) -> tuple[float, dict[str, float]]:
    """Largest |winograd - conv2d| and the best time of each way for one VGG layer shape."""
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1).requires_grad_(False)
    conv = conv.to(memory_format=torch.channels_last)
    u = winograd_weight(conv.weight)
    x = torch.randn(batch, cin, size, size).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grad = torch.randn(batch, cout, size, size).contiguous(memory_format=torch.channels_last)

    def wino(t: Tensor) -> Tensor:
        return winograd_conv3x3(t, u, conv.bias)

    with torch.no_grad():
        err = (wino(x) - conv(x)).abs().max().item()

    def forward(fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                fn(x)

        return run

    def forward_backward(fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def run() -> None:
            x.grad = None
            fn(x).backward(grad)

        return run

    return err, {
        "direct fwd": best_time(forward(conv)),
        "winograd fwd": best_time(forward(wino)),
        "direct fwd+bwd": best_time(forward_backward(conv)),
        "winograd fwd+bwd": best_time(forward_backward(wino)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    totals: dict[str, float] = {}
    for cin, cout, size in VGG_LAYERS:
        err, times = time_layer(cin, cout, size, args.batch)
        for key, value in times.items():
            totals[key] = totals.get(key, 0.0) + value
        cells = "  ".join(f"{k} {1e3 * v:6.1f} ms" for k, v in times.items())
        print(f"conv {cin:3d}->{cout:3d} @{size:2d}: max |diff| {err:.1e}  {cells}", flush=True)
    print("all layers: " + "  ".join(f"{k} {1e3 * v:.1f} ms" for k, v in totals.items()))


if __name__ == "__main__":
    main()
