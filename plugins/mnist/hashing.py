"""sha256 of a module's weights, to label results by the exact weights they came from.

File hashes come from :func:`robustbench_cgn.data.download.sha256_file`.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["state_dict_sha256"]


def state_dict_sha256(module: torch.nn.Module) -> str:
    """Hex sha256 over a module's state dict (sorted keys, dtype, shape, raw bytes)."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
