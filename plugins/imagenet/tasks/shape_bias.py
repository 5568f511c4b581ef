"""Shape bias on the cue-conflict stimuli (Geirhos et al. 2019; model-vs-human protocol).

A stimulus ``<shape><k>-<texture><j>.png`` shows one category's shape with another's texture.
Stimuli whose shape and texture categories agree are dropped (1,200 of 1,280 remain). A
decision counts as a *shape* hit when it names the shape category and a *texture* hit when it
names the texture category; ``shape_bias = shape hits / (shape hits + texture hits)``. Models
decide among the 16 categories by the mean softmax probability over each category's ImageNet
indices (:func:`decide_16`). Decisions of models and of human observers are exchanged in the
model-vs-human raw-data CSV format (:data:`RAW_DATA_COLUMNS`), so both score the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import pandas as pd
import torch

RAW_DATA_COLUMNS = (
    "subj",
    "session",
    "trial",
    "rt",
    "object_response",
    "category",
    "condition",
    "imagename",
)
_STIMULUS = re.compile(r"(?:^|_)([a-z]+)\d+-([a-z]+)\d+\.(?:png|jpe?g)$")


def parse_stimulus(name: str) -> tuple[str, str]:
    """``"airplane1-bicycle2.png"`` or model-vs-human's ``"0001_s5n_s01_0_bird_00_bird3-bird2.png"``
    -> ``(shape, texture)`` categories."""
    match = _STIMULUS.search(Path(name).name)
    if match is None:
        raise ValueError(f"{name!r} is not a cue-conflict stimulus name (<shape>N-<texture>M.png)")
    return match.group(1), match.group(2)


def decide_16(
    probabilities: torch.Tensor, category_indices: Mapping[str, Sequence[int]]
) -> list[str]:
    """16-way decisions from ``[N, 1000]`` ImageNet probabilities (softmax already applied):
    per category the mean probability over its indices, then the argmax category."""
    categories = sorted(category_indices)
    scores = torch.stack(
        [probabilities[:, list(category_indices[c])].mean(dim=1) for c in categories], dim=1
    )
    return [categories[i] for i in scores.argmax(dim=1).tolist()]


@dataclass(frozen=True)
class ShapeBias:
    """Shape bias and the fractions behind it, overall and per category (of the shape label
    for ``shape_fraction``, of the texture label for ``texture_fraction``)."""

    shape_bias: float
    shape_fraction: float  # shape hits / all conflict trials
    texture_fraction: float
    n: int  # conflict trials scored
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)


def shape_bias(
    decisions: Sequence[str], shapes: Sequence[str], textures: Sequence[str]
) -> ShapeBias:
    """Score decisions against shape/texture labels; trials whose shape equals their texture
    are dropped. A decision that is neither (another category, or ``na``) counts in ``n``."""
    frame = pd.DataFrame({"decision": decisions, "shape": shapes, "texture": textures})
    frame = frame[frame["shape"] != frame["texture"]]
    if frame.empty:
        raise ValueError("no cue-conflict trials (every shape equals its texture)")
    frame = frame.assign(
        shape_hit=frame["decision"] == frame["shape"],
        texture_hit=frame["decision"] == frame["texture"],
    )
    hits_shape, hits_texture = int(frame["shape_hit"].sum()), int(frame["texture_hit"].sum())
    per_category = {}
    for category in sorted(set(frame["shape"]) | set(frame["texture"])):
        by_shape = frame[frame["shape"] == category]
        by_texture = frame[frame["texture"] == category]
        s, t = int(by_shape["shape_hit"].sum()), int(by_texture["texture_hit"].sum())
        per_category[category] = {
            "shape_fraction": s / len(by_shape) if len(by_shape) else float("nan"),
            "texture_fraction": t / len(by_texture) if len(by_texture) else float("nan"),
            "shape_bias": s / (s + t) if s + t else float("nan"),
        }
    total = hits_shape + hits_texture
    return ShapeBias(
        shape_bias=hits_shape / total if total else float("nan"),
        shape_fraction=hits_shape / len(frame),
        texture_fraction=hits_texture / len(frame),
        n=len(frame),
        per_category=per_category,
    )


def read_raw_data(paths: Iterable[str | PathLike[str]]) -> pd.DataFrame:
    """Concatenate model-vs-human raw-data CSVs, with ``shape``/``texture`` columns parsed
    from ``imagename``. Missing columns are a clear error."""
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        missing = [c for c in RAW_DATA_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: not a model-vs-human raw-data CSV (missing {missing})")
        frames.append(frame)
    if not frames:
        raise ValueError("no raw-data CSV files given")
    data = pd.concat(frames, ignore_index=True)
    parsed = [parse_stimulus(name) for name in data["imagename"]]
    data["shape"] = [shape for shape, _ in parsed]
    data["texture"] = [texture for _, texture in parsed]
    return data


def score_raw_data(data: pd.DataFrame) -> ShapeBias:
    """Shape bias of the pooled decisions in a raw-data frame (humans: all observers)."""
    return shape_bias(
        data["object_response"].astype(str).tolist(),
        data["shape"].tolist(),
        data["texture"].tolist(),
    )


def write_raw_data(
    path: str | PathLike[str],
    subject: str,
    imagenames: Sequence[str],
    decisions: Sequence[str],
    session: int = 1,
) -> Path:
    """Write decisions in the model-vs-human raw-data format (``rt`` NaN, ``condition`` 0,
    ``category`` the shape label), importable by :func:`read_raw_data` and by model-vs-human."""
    shapes = [parse_stimulus(name)[0] for name in imagenames]
    frame = pd.DataFrame(
        {
            "subj": subject,
            "session": session,
            "trial": range(1, len(imagenames) + 1),
            "rt": float("nan"),
            "object_response": list(decisions),
            "category": shapes,
            "condition": 0,
            "imagename": [Path(name).name for name in imagenames],
        },
        columns=list(RAW_DATA_COLUMNS),
    )
    out = Path(path)
    frame.to_csv(out, index=False)
    return out
