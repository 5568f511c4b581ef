"""Where a result came from: software versions, hardware, host and project commit."""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

_PACKAGES = ("cgnbench", "torch", "torchvision", "timm", "numpy", "pandas", "grad-cam", "pluggy")


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    versions = {}
    for name in (*_PACKAGES, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The project's git commit (with ``-dirty``) when it runs from a checkout, else None."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def collect(device: torch.device, plugin_versions: dict[str, str | None] | None = None) -> dict:
    info: dict[str, Any] = {
        "packages": package_versions(),
        "plugins": plugin_versions or {},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "device_name": device_description(device),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "git_commit": git_commit(),
    }
    return info


def jsonable(obj: Any) -> Any:
    """Keep JSON-friendly scalars/containers; drop tensors and arrays (too big for metadata)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items() if not is_array(v)}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def is_array(v: Any) -> bool:
    return isinstance(v, Tensor | np.ndarray)
