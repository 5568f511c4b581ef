"""Reading a weights file with a reason a user can act on, whatever is wrong with it.

``torch.load`` fails in many ways (an empty file, a truncated zip, HTML saved as ``.pth``,
pickled code refused by ``weights_only``) and some of its exceptions carry no message; every
loader of the harness reads through :func:`load_weights_file` so each becomes one line naming
the file, what it was meant to be and why it cannot be read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import CGNBenchError, DataNotFoundError

__all__ = ["load_weights_file"]


def load_weights_file(path: str | os.PathLike, what: str, *, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, or one :class:`CGNBenchError` line."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{what} not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CGNBenchError(f"cannot read {what} {path}: the file is empty (0 bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated files, pickled code, files that are not torch's
        text = str(exc)
        first = (text.strip().splitlines() or [""])[0].strip()
        reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        if "Unsupported global" in text:
            name = text.split("Unsupported global:", 1)[1].split(" was ")[0].strip()
            reason = f"it holds pickled code or objects ({name}), not plain tensors (refused)"
        elif "Weights only load failed" in text:
            reason = "it is not a PyTorch weights file (unreadable pickle data)"
        raise CGNBenchError(
            f"cannot read {what} {path} ({size:,} bytes): {reason}; "
            "is it complete and a PyTorch weights file?"
        ) from None
